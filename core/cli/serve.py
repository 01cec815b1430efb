"""``python -m core serve``: the loaded model as an OpenAI-compatible API (``/v1/chat/completions``, ``/v1/models``,
``/health``, ``/metrics``), over a thin layer on ``core.api``.

``--ui gradio`` also serves the Gradio chat page (``gradio_ui/``) at ``/`` of the same server: one engine, one fair
queue, one batch for the page and API clients; with ``--no-api`` only the page is served. Core never imports a
front end: the front end is named in ``FRONT_ENDS`` and loaded by name, as the commands are in ``core.cli``.

Binds 127.0.0.1 by default; any other address needs ``--api-key`` (or ``INKSTONE_API_KEY``), and the page then
asks for that key. Ctrl-C stops it.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Any

from core.cli.common import add_home_flag, fail, settings_from_args
from core.errors import ConfigError, InkstoneError

FRONT_ENDS = {"gradio": "gradio_ui.server"}
"""``--ui`` name -> module with ``mount(app, engine, api_key=, allowed=)`` and ``launch(engine, host, port, ...)``."""
PAGE_PORT = 7860
"""The page's default port with ``--no-api`` (Gradio's usual one)."""


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
    p.add_argument("--ui", choices=sorted(FRONT_ENDS), help="also serve this chat page at / (same model and queue)")
    p.add_argument("--no-api", action="store_true", help="with --ui: serve only the page (default port 7860)")
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
        if args.no_api and not args.ui:
            raise ConfigError("--no-api serves only a chat page: add --ui gradio, or leave --no-api out.")
        check_binding(settings.api_host, settings.api_key)  # refuse before spending time on loading the model
        front = front_end(args.ui) if args.ui else None
        print(f"Loading {settings.model}…", file=sys.stderr)
        engine = build_engine(settings, progress=lambda msg: print(msg, file=sys.stderr))
        allowed = [str(settings.adapters)]  # persona avatar images
        if front is not None and args.no_api:
            port = args.port or PAGE_PORT
            print(f"Serving {engine.backend.model_id}: the page at http://{settings.api_host}:{port}/ (Ctrl-C stops)",
                  file=sys.stderr, flush=True)  # fmt: skip
            front.launch(lambda: engine, settings.api_host, port, api_key=settings.api_key, allowed=allowed)
            return 0
        server = ApiServer(lambda: engine, settings.api_host, settings.api_port, api_key=settings.api_key,
                           cors_origins=list(settings.api_cors_origins), log_level="info")
        if front is not None:
            front.mount(server.app, lambda: engine, api_key=settings.api_key, allowed=allowed)
    except InkstoneError as exc:
        return fail(exc)
    page = f"; the chat page at {server.url.removesuffix('/v1')}/" if front is not None else ""
    print(f"Serving {engine.backend.model_id} at {server.url}{page} (Ctrl-C stops)", file=sys.stderr, flush=True)
    server.serve_forever()
    return 0


def front_end(name: str) -> Any:
    """The front end's serving module, loaded by name (ConfigError naming the missing package)."""
    try:
        return importlib.import_module(FRONT_ENDS[name])
    except ModuleNotFoundError as exc:
        raise ConfigError(f"The {name} page cannot be served: {exc}. Install Inkstone's requirements "
                          "(`pip install -r requirements.txt`), or leave --ui out.") from None


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    return run(build_parser().parse_args(argv))
