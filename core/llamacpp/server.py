"""A managed ``llama-server`` process: started on a free loopback port with a random key, checked, restarted with
another set of LoRA adapters, stopped with Inkstone.

Why a server process rather than bindings: the server is llama.cpp's own continuous batch over parallel slots (the
fair queue admits several answers at once), it builds from the same source package as ``llama-bench`` with no
Python binding to keep in step with llama.cpp's C API, and a crash in native code ends that process, not the app
(the backend says so and the next answer starts it again).

The process listens on 127.0.0.1 only, with an ``--api-key`` only this process knows, and dies with its parent
(Linux ``PR_SET_PDEATHSIG``, from a launcher thread that lives as long as the app). Its log goes to a file in the
cache; a start that fails names the log's last lines.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from core.errors import ModelError
from core.llamacpp.sse import StreamClosed, StreamRefused, post_events

START_TIMEOUT_S = 120.0
"""Seconds a start may take (loading the GGUF and warming up) before it counts as failed."""


SLOT_SIMILARITY = 0.02
"""A new answer goes to the idle slot whose cached prompt shares the longest start with its own once that start is
2% of the prompt (llama.cpp's default is 10%, below which it takes the least recently used slot): a new chat then
reuses the persona's system prompt already computed in a slot, not only a conversation's own history. The prompt a
slot held is kept in the server's RAM prompt cache when most of it would be lost."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_LAUNCHER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="inkstone-llamacpp-launch")
"""Every server is started from this one long-lived thread: Linux delivers ``PR_SET_PDEATHSIG`` when the *thread*
that started the child ends, and answers (which may restart the server for a new adapter) run on short-lived ones."""


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


class LlamaServer:
    """One ``llama-server`` for one GGUF, with ``slots`` parallel answers sharing ``context`` tokens of KV cache."""

    def __init__(self, binary: Path, gguf: Path, *, context: int, slots: int, threads: int, log: Path) -> None:
        self.binary, self.gguf, self.context, self.slots, self.threads = binary, gguf, context, slots, threads
        self.log = log
        self.adapters: list[Path] = []
        """GGUF LoRA files the running process loaded, in order: request ``lora`` ids are indexes into it."""
        self._held: list[subprocess.Popen[bytes] | None] = [None]
        """The running process, in a list the finalizer shares: a replaced engine (another model picked) that is
        garbage collected, or the app's exit, ends its server."""
        self._key = secrets.token_hex(16)
        self._port = 0
        self._lock = threading.Lock()
        self._client: Any = None
        weakref.finalize(self, _end, self._held)

    @property
    def _proc(self) -> subprocess.Popen[bytes] | None:
        return self._held[0]

    @_proc.setter
    def _proc(self, proc: subprocess.Popen[bytes] | None) -> None:
        self._held[0] = proc

    @property
    def running(self) -> bool:
        """True while the process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def start(self, adapters: list[Path] | None = None) -> None:
        """Start (or restart with ``adapters``) and wait until it answers; ModelError with its log otherwise."""
        with self._lock:
            self._stop_locked()
            self.adapters = list(adapters or [])
            self._port = _free_port()
            args = [str(self.binary), "-m", str(self.gguf), "--host", "127.0.0.1", "--port", str(self._port),
                    "--api-key", self._key, "-c", str(self.context), "-np", str(self.slots), "--kv-unified",
                    "-t", str(self.threads), "-tb", str(self.threads), "--no-webui", "--no-warmup",
                    "--slot-prompt-similarity", str(SLOT_SIMILARITY)]
            for path in self.adapters:
                args += ["--lora", str(path)]
            if self.adapters:
                args.append("--lora-init-without-apply")  # every adapter at scale 0 unless a request names it
            self.log.parent.mkdir(parents=True, exist_ok=True)
            with self.log.open("wb") as out:
                self._proc = _LAUNCHER.submit(
                    subprocess.Popen, args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    preexec_fn=_die_with_parent if sys.platform == "linux" else None).result()
            self._wait_ready()

    def _wait_ready(self) -> None:
        import httpx

        # A fresh loopback connection per request (no keep-alive): the server drops idle connections after a few
        # seconds, and a request sent on one as it closed got no response at all.
        limits = httpx.Limits(max_connections=self.slots * 2 + 4, max_keepalive_connections=0)
        self._client = httpx.Client(base_url=f"http://127.0.0.1:{self._port}", timeout=httpx.Timeout(30.0),
                                    headers={"Authorization": f"Bearer {self._key}"}, limits=limits, trust_env=False)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                raise ModelError(f"llama-server did not start (exit code {self._proc.returncode if self._proc else '?'}"
                                 f"): {self.log_tail()}")
            try:
                if self._client.get("/health", timeout=2.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self._stop_locked()
        raise ModelError(f"llama-server did not answer within {START_TIMEOUT_S:.0f} s: {self.log_tail()}")

    def log_tail(self, lines: int = 6) -> str:
        """The last lines of the server's log, in one line (for error messages)."""
        try:
            text = self.log.read_text(encoding="utf-8", errors="replace").strip().splitlines()
        except OSError:
            return f"(no log at {self.log})"
        return " | ".join(text[-lines:]) + f" (full log: {self.log})"

    def stream(self, body: dict[str, Any], stop: threading.Event) -> Iterator[list[dict[str, Any]]]:
        """POST ``/completion`` with ``stream: true`` and yield its events in batches (those that arrived together;
        see ``core.llamacpp.sse``); setting ``stop`` closes the connection (the server then ends that answer and
        frees its slot). ModelError when the server is gone or refuses."""
        if not self.running or self._client is None:
            raise ModelError(f"llama-server is not running: {self.log_tail()}")
        try:
            yield from post_events(self._port, self._key, "/completion", {**body, "stream": True}, stop)
        except StreamRefused as exc:
            raise ModelError(f"llama-server refused the request ({exc.status}): {exc.text[:300]}") from None
        except (OSError, StreamClosed) as exc:  # refused, reset, or closed before the answer ended
            raise ModelError(f"llama-server stopped answering ({type(exc).__name__}): {self.log_tail()}") from None

    def stop(self) -> None:
        """End the process (if any)."""
        with self._lock:
            self._stop_locked()

    def _stop_locked(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
        _end(self._held)


def _end(held: list[subprocess.Popen[bytes] | None]) -> None:
    """Terminate the process in ``held`` (killed if it does not end within 10 s) and empty the slot."""
    proc, held[0] = held[0], None
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)


def default_threads() -> int:
    """Threads for the server: the CPUs this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)
