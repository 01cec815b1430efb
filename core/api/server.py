"""Running the API: ``ApiServer`` serves the app with uvicorn in a background thread (the Streamlit app,
tests, benchmarks) or in the foreground (``python -m core serve``).

Binding anything but a loopback address needs an API key: an open port on the network must not hand the
model (and the stored history) to anyone who finds it.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time

from core.api.completions import EngineGetter
from core.errors import ConfigError

STARTUP_TIMEOUT_S = 20.0


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_binding(host: str, api_key: str | None) -> None:
    """ConfigError when ``host`` is not loopback and no API key is set."""
    if not is_loopback(host) and not api_key:
        raise ConfigError(
            f"Refusing to serve on {host} without an API key: anyone who can reach this machine could use the "
            "model. Pass --api-key KEY (or set INKSTONE_API_KEY), or bind 127.0.0.1."
        )


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (for tests and benchmarks)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class ApiServer:
    """The API app under uvicorn, on ``host:port``."""

    def __init__(self, engine: EngineGetter, host: str = "127.0.0.1", port: int = 8000, *, api_key: str | None = None,
                 cors_origins: list[str] | None = None, log_level: str = "warning") -> None:
        import uvicorn

        from core.api.app import create_app

        check_binding(host, api_key)
        self.host, self.port = host, port
        self.app = create_app(engine, api_key=api_key, cors_origins=cors_origins)
        config = uvicorn.Config(self.app, host=host, port=port, log_level=log_level, access_log=False,
                                timeout_graceful_shutdown=2)
        self._server = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The base URL of the OpenAI-compatible API (``http://host:port/v1``)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/v1"

    def start(self) -> ApiServer:
        """Serve in a daemon thread; returns once the port accepts connections (ConfigError if it cannot)."""
        self._thread = threading.Thread(target=self._server.run, name="inkstone-api", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise ConfigError(f"The API server could not start on {self.host}:{self.port} (is the port in "
                                  "use?): pick another --port.")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        """Stop serving and wait for the thread (open streams are cut)."""
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)

    @property
    def running(self) -> bool:
        """True while the server thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def serve_forever(self) -> None:
        """Serve in the foreground until Ctrl-C (uvicorn's own signal handling)."""
        self._server.run()
