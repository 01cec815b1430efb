"""``python -m gradio_ui``: only the Gradio chat page, without the API (``python -m core serve --ui gradio
--no-api``, with the same flags)."""

from __future__ import annotations

import sys

from core.cli.serve import main

if __name__ == "__main__":
    sys.exit(main(["--ui", "gradio", "--no-api", *sys.argv[1:]]))
