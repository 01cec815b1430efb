"""Command dispatch. Each command module has ``build_parser()``, ``run(args)`` and ``main(argv)``."""

from __future__ import annotations

import importlib
import sys

COMMANDS = {
    "chat": ("core.cli.chat", "chat with a model once (MESSAGE) or interactively"),
    "sessions": ("core.cli.sessions", "list, show, export, delete and search stored sessions"),
    "model": ("core.cli.model", "list, inspect, prompt and generate with models"),
}


def usage() -> str:
    """The top-level help text."""
    lines = ["usage: python -m core <command> [options]", "", "commands:"]
    lines += [f"  {name:<10} {help_}" for name, (_, help_) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the command named by the first argument; return its exit status."""
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print(usage())
        return 0 if args else 2
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(f"error: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    return int(module.main(rest))
