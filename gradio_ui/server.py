"""Serving the Gradio page: mounted on the OpenAI API's app (``python -m core serve --ui gradio``) or alone
(``python -m core serve --ui gradio --no-api``, also ``python -m gradio_ui``).

Mounted, the page and the API share the process's one engine: one loaded model, one fair queue, one batch. The
binding rule is ``serve``'s (``core.api.server.check_binding``): any address but loopback needs an API key, and the
page then asks for it (Gradio's login form: the key is the password, any user name). Nothing is fetched from the
internet: no share link (no frpc binary), no server-side rendering (no Node), no analytics, no version check,
the theme's fonts are Gradio's bundled ones (``core.offline`` also sets Gradio's switches for every process).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable
from typing import Any

import gradio as gr

from core.api.server import check_binding
from gradio_ui.page import EngineGetter, build

PATH = "/"
"""Where the page is mounted on the API's app (its routes, ``/v1/...``, ``/health``, ``/metrics``, come first)."""
AUTH_MESSAGE = "This Inkstone needs its API key: type any user name, and the key as the password."
OFFLINE_OPTIONS: dict[str, Any] = {"ssr_mode": False, "footer_links": [], "run_history": False, "mcp_server": False}
"""Launch options that keep Gradio from starting Node, linking out, or recording runs in the browser."""


def key_check(api_key: str | None) -> Callable[[str, str], bool] | None:
    """Gradio's ``auth`` for ``api_key``: the password must be the key (None: no login)."""
    if not api_key:
        return None
    expected = api_key.encode()

    def check(_user: str, password: str) -> bool:
        return hmac.compare_digest((password or "").encode(), expected)

    return check


def page(engine: EngineGetter) -> gr.Blocks:
    """The page with its queue: no per-event limit, since the engine's fair queue decides who generates."""
    return build(engine).queue(default_concurrency_limit=None)


def mount(app: Any, engine: EngineGetter, *, api_key: str | None = None, allowed: list[str] | None = None) -> Any:
    """Mount the page at ``/`` of the API's FastAPI ``app`` (same engine, same key); returns the app."""
    return gr.mount_gradio_app(app, page(engine), path=PATH, auth=key_check(api_key),
                               auth_message=AUTH_MESSAGE if api_key else None, allowed_paths=allowed or [],
                               **OFFLINE_OPTIONS)  # fmt: skip


def launch(engine: EngineGetter, host: str, port: int, *, api_key: str | None = None,
           allowed: list[str] | None = None) -> None:  # fmt: skip
    """Serve only the page on ``host:port`` until Ctrl-C (ConfigError: not loopback and no key)."""
    check_binding(host, api_key)
    page(engine).launch(server_name=host, server_port=port, share=False, auth=key_check(api_key),
                        auth_message=AUTH_MESSAGE if api_key else None, allowed_paths=allowed or [],
                        quiet=True, **OFFLINE_OPTIONS)  # fmt: skip
