"""RAG in a real browser: ``streamlit run app.py`` (``fake`` model, ``minilm`` embedder, real Chroma folder)
driven by Playwright. Upload a file on the Knowledge page, turn RAG on in a chat, ask about the file, and see
the source listed under the answer, also after a reload. Skipped without playwright or chromium (see
``tests/test_browser.py``, whose server helpers this reuses)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.test_browser import CHROMIUM, ROOT, TIMEOUT_MS, free_port, send, sync_api, wait_healthy

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="needs a chromium binary (apt-get install chromium)")

FACT = "Mount Korvath is a dormant volcano. Its last eruption happened in the year 1822 and buried Selm in ash."


@pytest.fixture
def rag_app(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """The app on a free port with a fresh data dir and ``minilm`` as the embedder of new knowledge bases."""
    home, port = tmp_path / "data", free_port()
    config = tmp_path / "inkstone.toml"
    config.write_text('embedder = "minilm"\n', encoding="utf-8")
    env = {**os.environ, "INKSTONE_HOME": str(home), "INKSTONE_MODEL": "fake", "INKSTONE_CONFIG": str(config),
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}  # fmt: skip
    env.pop("INKSTONE_CHROMA_URL", None)
    command = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
               "--server.address", "127.0.0.1", "--server.headless", "true",
               "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none"]  # fmt: skip
    server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, server)
        yield url, home / "inkstone.db"
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()


@pytest.fixture
def tab(rag_app: tuple[str, Path]) -> Iterator[sync_api.Page]:
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
        )
        page = browser.new_page()
        page.set_default_timeout(TIMEOUT_MS)
        yield page
        browser.close()


def test_upload_then_ask_with_rag_shows_the_source(rag_app: tuple[str, Path], tab: sync_api.Page,
                                                   tmp_path: Path) -> None:  # fmt: skip
    url, db_path = rag_app
    doc = tmp_path / "volcano.txt"
    doc.write_text(FACT, encoding="utf-8")
    tab.goto(url)
    tab.get_by_role("link", name="Knowledge").click()
    main = tab.get_by_test_id("stMain")
    main.get_by_label("Name").fill("火山 notes")
    main.get_by_role("button", name="Create").click()
    sync_api.expect(main.get_by_text("Created 火山 notes (minilm).")).to_be_visible(timeout=2 * TIMEOUT_MS)

    tab.get_by_test_id("stFileUploaderDropzoneInput").set_input_files(str(doc))
    main.get_by_role("button", name="Ingest").click()
    sync_api.expect(main.get_by_text("1 files, 1 added")).to_be_visible(timeout=2 * TIMEOUT_MS)
    sync_api.expect(main.get_by_test_id("stDataFrame")).to_be_visible(timeout=TIMEOUT_MS)

    tab.get_by_role("link", name="Chat").click()
    tab.get_by_text("Answer from my documents").click()  # the switch above the message box
    sync_api.expect(tab.get_by_test_id("stBottom").get_by_text("火山 notes")).to_be_visible(timeout=TIMEOUT_MS)
    send(tab, "When did Mount Korvath last erupt?")
    answer = tab.get_by_test_id("stChatMessage").nth(1)
    sync_api.expect(answer).to_contain_text("You said: When did Mount Korvath last erupt?", timeout=2 * TIMEOUT_MS)
    sync_api.expect(answer.get_by_text("Sources: [1] volcano.txt")).to_be_visible(timeout=2 * TIMEOUT_MS)

    tab.wait_for_url("**session=*")
    tab.reload()  # the sources come from the stored answer
    again = tab.get_by_test_id("stChatMessage").nth(1)
    sync_api.expect(again.get_by_text("Sources: [1] volcano.txt")).to_be_visible(timeout=TIMEOUT_MS)

    from core.history import HistoryStore

    store = HistoryStore.open(db_path)
    try:
        [session] = store.list_sessions()
        reply = store.messages(session.id)[-1]
        assert reply.sources[0]["source"] == "volcano.txt" and "1822" in reply.sources[0]["text"]
    finally:
        store.close()
