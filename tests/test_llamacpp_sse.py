"""The llama-server event reader (``core.llamacpp.sse``) against a real loopback socket server that sends exactly the
bytes a test gives it: chunked bodies split at awkward places, a sized error response, an ``error:`` event, a
connection closed mid-answer, and Stop while the server is silent."""

from __future__ import annotations

import json
import socket
import threading
import time

import pytest

from core.llamacpp.sse import StreamClosed, StreamRefused, post_events


class OneShot:
    """Accepts one connection, reads the request, then sends ``parts`` (bytes) with a short pause between them."""

    def __init__(self, parts: list[bytes], close: bool = True, hold_s: float = 0.0) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(1)
        self.port = self.sock.getsockname()[1]
        self.request = b""
        self.closed_by_client = threading.Event()
        self._thread = threading.Thread(target=self._serve, args=(parts, close, hold_s), daemon=True)
        self._thread.start()

    def _serve(self, parts: list[bytes], close: bool, hold_s: float) -> None:
        conn, _ = self.sock.accept()
        with conn:
            while b"\r\n\r\n" not in self.request:
                self.request += conn.recv(4096)
            head, _, body = self.request.partition(b"\r\n\r\n")
            length = int(next(h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length")).split(b":")[1])
            while len(body) < length:
                body += conn.recv(4096)
            self.request = head + b"\r\n\r\n" + body
            for part in parts:
                conn.sendall(part)
                time.sleep(0.01)
            if hold_s:
                conn.settimeout(hold_s)
                try:
                    if conn.recv(1) == b"":
                        self.closed_by_client.set()
                except TimeoutError:
                    pass
        self.sock.close()


def chunked(*pieces: bytes) -> bytes:
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"


def events(*tokens: int) -> list[bytes]:
    return [b"data: " + json.dumps({"tokens": [t], "stop": False}).encode() + b"\n\n" for t in tokens]


def test_events_split_anywhere_arrive_whole_and_in_order() -> None:
    body = chunked(*events(1, 2, 3), b'data: {"tokens":[],"stop":true,"stop_type":"eos"}\n\n')
    wire = HEAD + body
    parts = [wire[i : i + 7] for i in range(0, len(wire), 7)]  # every boundary: inside sizes, CRLFs and JSON
    server = OneShot(parts)
    got = [e for batch in post_events(server.port, "k3y", "/completion", {"prompt": [5, 6]}, threading.Event())
           for e in batch]
    assert [e["tokens"] for e in got] == [[1], [2], [3], []]
    assert got[-1]["stop_type"] == "eos"
    assert b"Authorization: Bearer k3y" in server.request
    assert json.loads(server.request.partition(b"\r\n\r\n")[2]) == {"prompt": [5, 6]}


def test_one_chunk_holding_several_events_is_one_batch() -> None:
    server = OneShot([HEAD + chunked(b"".join(events(7, 8, 9)))])
    batches = list(post_events(server.port, "k", "/completion", {}, threading.Event()))
    assert [[e["tokens"][0] for e in b] for b in batches] == [[7, 8, 9]]


def test_an_error_status_is_refused_with_the_servers_text() -> None:
    text = b'{"error":{"code":400,"message":"the request exceeds the available context size"}}'
    server = OneShot([b"HTTP/1.1 400 Bad Request\r\nContent-Length: %d\r\n\r\n" % len(text), text])
    with pytest.raises(StreamRefused) as err:
        list(post_events(server.port, "k", "/completion", {}, threading.Event()))
    assert err.value.status == 400 and "exceeds the available context size" in err.value.text


def test_an_error_event_in_the_stream_is_refused() -> None:
    server = OneShot([HEAD, chunked(*events(1), b'error: {"message":"slot failed"}\n\n')])
    with pytest.raises(StreamRefused, match="slot failed"):
        list(post_events(server.port, "k", "/completion", {}, threading.Event()))


def test_a_connection_closed_mid_answer_is_an_error_not_an_ending() -> None:
    server = OneShot([HEAD, b"%x\r\n%s\r\n" % (len(events(1)[0]), events(1)[0])])  # no final 0-size chunk
    got = []
    with pytest.raises(StreamClosed):
        for batch in post_events(server.port, "k", "/completion", {}, threading.Event()):
            got += batch
    assert [e["tokens"] for e in got] == [[1]]


def test_stop_closes_the_connection_while_the_server_is_silent() -> None:
    server = OneShot([HEAD, b"%x\r\n%s\r\n" % (len(events(1)[0]), events(1)[0])], hold_s=5.0)
    stop = threading.Event()
    started = time.monotonic()
    got = []
    for batch in post_events(server.port, "k", "/completion", {}, stop):
        got += batch
        stop.set()  # the user pressed Stop after the first token; the server sends nothing more
    assert [e["tokens"] for e in got] == [[1]]
    assert server.closed_by_client.wait(3.0), "the server never saw the connection close"
    assert time.monotonic() - started < 3.0


def test_a_malformed_event_is_an_error_not_a_crash() -> None:
    server = OneShot([HEAD, chunked(*events(1), b"data: {not json\n\n")])
    with pytest.raises(StreamClosed, match="malformed event"):
        list(post_events(server.port, "k", "/completion", {}, threading.Event()))


def test_nothing_listening_is_an_os_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(OSError):
        list(post_events(port, "k", "/completion", {}, threading.Event()))
