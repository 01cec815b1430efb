"""Helpers shared by the CLI commands: common flags, settings from flags, printing errors."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from core.config import Settings, load_settings
from core.errors import InkstoneError


def add_home_flag(parser: argparse.ArgumentParser) -> None:
    """Add ``--home`` (data dir; overrides inkstone.toml and INKSTONE_HOME)."""
    parser.add_argument("--home", help="data directory (default: $INKSTONE_HOME or ./data)")


def settings_from_args(args: argparse.Namespace, **extra: Any) -> Settings:
    """Settings with the flags the user gave layered on top."""
    cli = {"home": getattr(args, "home", None), **extra}
    return load_settings(cli)


def print_json(obj: Any) -> None:
    """Print one JSON object on one line (UTF-8, not ASCII-escaped)."""
    print(json.dumps(obj, ensure_ascii=False, default=str))


def fail(exc: InkstoneError) -> int:
    """Print an Inkstone error to stderr and return the exit status 1."""
    print(f"error: {exc}", file=sys.stderr)
    return 1
