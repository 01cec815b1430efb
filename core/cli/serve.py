"""``python -m core serve``: the loaded model as an OpenAI-compatible API (``/v1/chat/completions``, ``/v1/models``,
``/health``, ``/metrics``), over a thin layer on ``core.api``.

Binds 127.0.0.1 by default; any other address needs ``--api-key`` (or ``INKSTONE_API_KEY``). Ctrl-C stops it.
"""

from __future__ import annotations

import argparse
import sys

from core.cli.common import add_home_flag, fail, settings_from_args
from core.errors import InkstoneError


def build_parser() -> argparse.ArgumentParser:
    """Flags of ``serve``."""
    p = argparse.ArgumentParser(prog="python -m core serve", description="Serve the model over an OpenAI API.")
    p.add_argument("--host", help="address to bind (default 127.0.0.1; others need an API key)")
    p.add_argument("--port", type=int, help="port (default 8000)")
    p.add_argument("--model", help="profile id or local model directory (see `python -m core model list`)")
    p.add_argument("--api-key", help="key clients must send as `Authorization: Bearer KEY` ($INKSTONE_API_KEY)")
    p.add_argument("--cors-origin", action="append", help="allow browser calls from this origin (repeatable)")
    p.add_argument("--device", choices=["auto", "cuda", "cpu"])
    p.add_argument("--quantize", choices=["4bit", "8bit", "none"])
    add_home_flag(p)
    return p


def run(args: argparse.Namespace) -> int:
    """Load the model once, then serve until interrupted."""
    from core.api.server import ApiServer, check_binding
    from core.engine import build_engine

    try:
        settings = settings_from_args(
            args, model=args.model, api_host=args.host, api_port=args.port, api_key=args.api_key,
            api_cors_origins=tuple(args.cors_origin) if args.cors_origin else None, device=args.device,
            quantize=args.quantize,
        )
        check_binding(settings.api_host, settings.api_key)  # refuse before spending time on loading the model
        print(f"Loading {settings.model}…", file=sys.stderr)
        engine = build_engine(settings, progress=lambda msg: print(msg, file=sys.stderr))
        server = ApiServer(lambda: engine, settings.api_host, settings.api_port, api_key=settings.api_key,
                           cors_origins=list(settings.api_cors_origins), log_level="info")
    except InkstoneError as exc:
        return fail(exc)
    print(f"Serving {engine.backend.model_id} at {server.url} (Ctrl-C stops)", file=sys.stderr, flush=True)
    server.serve_forever()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    return run(build_parser().parse_args(argv))
