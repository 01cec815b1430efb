"""Server-sent events from the managed ``llama-server``, read on a plain loopback socket in the caller's thread.

An answer's tokens arrive one event each. Read through httpx on a reader thread, every event cost about 0.3 ms of
Python CPU time (measured on the 2-core test machine: its HTTP layers plus a hand-over between threads); the server's
two compute threads share those cores, so SmolLM2 (about 5 ms a token) lost 6-9% of its decode speed to reading its
own answer. Here one ``recv`` takes whatever has arrived, the HTTP/1.1 framing (chunked or sized body) and the
``data:`` lines are parsed with bytes operations, and the events that came together are handed over as one batch.
After a batch the reader waits ``pace_s`` before the next ``recv`` so that a fast model's tokens come a few at a
time (fewer wake-ups of the app while the server decodes); the first event is read at once, so the time to the
first token is not paced. A set ``stop`` is seen within ``POLL_S`` and closes the connection, which makes the server
end that answer and free its slot.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

POLL_S = 0.1
"""Seconds a ``recv`` waits before the stop event is checked again."""

PACE_S = 0.008
"""Seconds between reads once an answer streams (a few tokens of a fast model; well under a screen refresh)."""


class StreamClosed(ConnectionError):
    """The server closed the connection before the response ended."""


class StreamRefused(RuntimeError):
    """The server answered with an error status (``status``) or an ``error:`` event; ``text`` is what it said."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(f"{status}: {text}")
        self.status, self.text = status, text


class _Body:
    """Incremental HTTP/1.1 response parser: status and headers, then a chunked or sized body, as lines."""

    def __init__(self) -> None:
        self.raw = b""  # bytes received and not yet parsed
        self.status = 0
        self.chunked = False
        self.length: int | None = None  # Content-Length, when the body is sized
        self.headers_done = False
        self.done = False
        self._left = -1  # data bytes left in the current chunk (-1: a size line comes next)
        self._crlf = 0  # bytes of a chunk's closing CRLF still to skip
        self._seen = 0  # body bytes of a sized body
        self._lines = bytearray()  # body bytes not yet returned as complete lines

    def feed(self, data: bytes) -> list[bytes]:
        """Take bytes from the socket; return the complete body lines they finish (without their newline)."""
        self.raw += data
        if not self.headers_done and not self._headers():
            return []
        if self.chunked:
            self._dechunk()
        else:
            self._lines += self.raw
            self._seen += len(self.raw)
            self.raw = b""
            self.done = self.length is not None and self._seen >= self.length
        cut = self._lines.rfind(b"\n") + 1
        if not cut:
            return []
        lines = bytes(self._lines[: cut - 1]).split(b"\n")
        del self._lines[:cut]
        return lines

    def rest(self) -> bytes:
        """Body bytes not yet returned as lines (the end of an error response's text)."""
        return bytes(self._lines)

    def _headers(self) -> bool:
        end = self.raw.find(b"\r\n\r\n")
        if end < 0:
            return False
        head, self.raw = self.raw[:end].decode("latin-1").split("\r\n"), self.raw[end + 4 :]
        parts = head[0].split(" ", 2)
        self.status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
        for line in head[1:]:
            name, _, value = line.partition(":")
            name, value = name.strip().lower(), value.strip()
            if name == "transfer-encoding" and "chunked" in value.lower():
                self.chunked = True
            elif name == "content-length" and value.isdigit():
                self.length = int(value)
        self.headers_done = True
        return True

    def _dechunk(self) -> None:
        while self.raw and not self.done:
            if self._crlf:
                skip = min(self._crlf, len(self.raw))
                self.raw, self._crlf = self.raw[skip:], self._crlf - skip
            elif self._left < 0:
                end = self.raw.find(b"\r\n")
                if end < 0:
                    return
                try:
                    size = int(self.raw[:end].split(b";")[0].strip() or b"0", 16)
                except ValueError:
                    raise StreamClosed(f"a malformed chunk from the server: {self.raw[:40]!r}") from None
                self.raw = self.raw[end + 2 :]
                if size == 0:
                    self.done = True  # trailers, if any, are not needed
                    return
                self._left = size
            else:
                take = self.raw[: self._left]
                self.raw, self._left = self.raw[len(take) :], self._left - len(take)
                self._lines += take
                if self._left == 0:
                    self._left, self._crlf = -1, 2


def post_events(port: int, key: str, path: str, body: dict[str, Any], stop: threading.Event,
                pace_s: float | None = None, connect_timeout: float = 10.0) -> Iterator[list[dict[str, Any]]]:
    """POST ``body`` as JSON to ``http://127.0.0.1:port/path`` and yield the ``data:`` events in batches.

    Raises StreamRefused for an error status or an ``error:`` event, StreamClosed when the connection ends early,
    OSError when it cannot be opened. ``pace_s`` defaults to ``PACE_S``. Returns when the response ends or once
    ``stop`` is set (the socket is closed).
    """
    pace_s = PACE_S if pace_s is None else pace_s
    payload = json.dumps(body, separators=(",", ":")).encode()
    request = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {key}\r\n"
               f"Content-Type: application/json\r\nAccept: text/event-stream\r\nContent-Length: {len(payload)}\r\n"
               "Connection: close\r\n\r\n").encode() + payload
    sock = socket.create_connection(("127.0.0.1", port), timeout=connect_timeout)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.sendall(request)
        sock.settimeout(POLL_S)
        response = _Body()
        while not stop.is_set():
            try:
                data = sock.recv(1 << 16)
            except TimeoutError:
                continue
            if not data:
                if response.headers_done and (response.done or (not response.chunked and response.length is None)):
                    if response.status != 200:
                        raise StreamRefused(response.status, response.rest().decode("utf-8", "replace"))
                    return
                raise StreamClosed("the server closed the connection before the answer ended")
            lines = response.feed(data)
            if response.status and response.status != 200:
                if response.done:
                    text = b"\n".join(lines).decode("utf-8", "replace") + response.rest().decode("utf-8", "replace")
                    raise StreamRefused(response.status, text.strip())
                continue
            events = []
            for line in lines:
                if line.startswith(b"data: "):
                    try:
                        events.append(json.loads(line[6:].decode()))
                    except ValueError:  # not JSON, or not UTF-8
                        raise StreamClosed(f"a malformed event from the server: {line[:80]!r}") from None
                elif line.startswith(b"error: "):
                    raise StreamRefused(500, line[7:].decode("utf-8", "replace"))
            if events:
                yield events
            if response.done:
                return
            if events and pace_s > 0:
                time.sleep(pace_s)  # the first event was read at once; later ones gather for a moment
    finally:
        sock.close()
