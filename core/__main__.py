"""``python -m core <command> ...``: the Inkstone command line (chat, sessions, model)."""

from core.cli import main

raise SystemExit(main())
