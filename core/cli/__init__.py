"""Command dispatch. Each command module has ``build_parser()``, ``run(args)`` and ``main(argv)``."""

from __future__ import annotations

import importlib
import os
import sys

COMMANDS = {
    "chat": ("core.cli.chat", "chat with a model once (MESSAGE) or interactively"),
    "sessions": ("core.cli.sessions", "list, show, export, delete and search stored sessions"),
    "model": ("core.cli.model", "list, inspect, prompt and generate with models"),
    "train": ("core.cli.train", "train a LoRA persona from an Alpaca/chat data file"),
    "merge": ("core.cli.merge", "merge a LoRA persona into a full model directory"),
    "kb": ("core.cli.kb", "knowledge bases for RAG: create, ingest, query, remove, drop, reembed"),
    "serve": ("core.cli.serve", "serve the model over an OpenAI-compatible HTTP API"),
}


def usage() -> str:
    """The top-level help text."""
    lines = ["usage: python -m core <command> [options] [--verbose]", "", "commands:"]
    lines += [f"  {name:<10} {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "--verbose shows the model libraries' own warnings and progress bars (hidden by default)."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the command named by the first argument; return its exit status."""
    args = sys.argv[1:] if argv is None else argv
    args = [a for a in args if a != "--verbose"]  # read by core.offline when core was imported
    if not args or args[0] in ("-h", "--help"):
        print(usage())
        return 0 if args else 2
    name, rest = args[0], args[1:]
    if name not in COMMANDS:
        print(f"error: unknown command {name!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[name][0])
    try:
        code = int(module.main(rest))
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (`... | head`): it has what it wanted. Send the rest nowhere, quietly.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 0
    except KeyboardInterrupt:  # Ctrl-C outside an answer (loading a model, a long search): no traceback
        print("\ninterrupted", file=sys.stderr)
        return 130
    return code
