"""The same library code against a real Chroma server (`chroma run`) through HttpClient, and a server that is down.

The test starts `chroma run` from the venv on a free port with a temp --path, waits for its heartbeat,
ingests, searches, removes and re-adds a document, then stops the server: the next call must be a
StoreUnavailable that names the server and says how to fix it. Skipped only if the `chroma` CLI is missing.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from knowledge_fakes import FakeEmbedder

from knowledge import KnowledgeLibrary, StoreUnavailable

CHROMA = Path(sys.executable).parent / "chroma"
FAKE = "fake-64"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def chroma_server(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen]]:
    if not CHROMA.exists():
        pytest.skip(f"the chroma CLI is not installed at {CHROMA}")
    port = free_port()
    log = open(tmp_path / "chroma.log", "wb")
    proc = subprocess.Popen(
        [str(CHROMA), "run", "--path", str(tmp_path / "server-data"), "--host", "127.0.0.1", "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            with urllib.request.urlopen(f"{url}/api/v2/heartbeat", timeout=2) as response:
                if response.status == 200:
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            log.close()
            pytest.fail(f"chroma run did not come up: {(tmp_path / 'chroma.log').read_text(errors='replace')[-2000:]}")
        time.sleep(0.3)
    yield url, proc
    if proc.poll() is None:
        proc.terminate()
        proc.wait(timeout=30)
    log.close()


def test_library_works_against_a_chroma_server_and_reports_it_down(chroma_server, tmp_path: Path) -> None:
    url, proc = chroma_server
    lib = KnowledgeLibrary(tmp_path / "unused-local-dir", chroma_url=url)
    lib.register_embedder(FakeEmbedder(FAKE))
    doc = tmp_path / "team.md"
    doc.write_text("The team meets every Tuesday in room 4.\n\n团队每周二在四号会议室开会。", encoding="utf-8")
    stats = lib.add_document("kb-team", FAKE, "team", doc, "team.md", 200, 20)
    assert stats.chunks == 1 and lib.count("kb-team") == 1
    assert not (tmp_path / "unused-local-dir").exists()  # nothing written locally in server mode

    other = KnowledgeLibrary(tmp_path / "elsewhere", chroma_url=url)  # a second client sees the same data
    other.register_embedder(FakeEmbedder(FAKE))
    hits = other.search([("kb-team", FAKE)], "团队 开会 Tuesday", floor=0.0)
    assert [(h.source, h.page) for h in hits] == [("team.md", None)]

    lib.add_document("kb-team", FAKE, "team", doc, "team.md", 200, 20)
    assert other.count("kb-team") == 1
    lib.remove_document("kb-team", "team")
    assert other.count("kb-team") == 0

    proc.terminate()
    proc.wait(timeout=30)
    with pytest.raises(StoreUnavailable, match=rf"Chroma server at {url}.*chroma run"):
        lib.search([("kb-team", FAKE)], "Tuesday")


def test_server_that_is_not_running_is_store_unavailable(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(StoreUnavailable, match=rf"cannot open the Chroma server at {url}"):
        KnowledgeLibrary(tmp_path / "x", chroma_url=url)
