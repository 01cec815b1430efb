"""RAG in a real browser: ``streamlit run app.py`` (``fake`` model, ``minilm`` embedder, real Chroma folder)
driven by Playwright. Upload a file on the Knowledge page, turn RAG on in a chat, ask about the file, and see
the source listed under the answer, also after a reload. Skipped without playwright or chromium (see
``tests/test_browser.py``, whose server helpers this reuses)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.test_browser import CHROMIUM, TIMEOUT_MS, browser_tab, free_port, running_app, send, sync_api

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
    with running_app(env, port) as url:
        yield url, home / "inkstone.db"


@pytest.fixture
def tab(rag_app: tuple[str, Path]) -> Iterator[sync_api.Page]:
    with browser_tab() as page:
        yield page


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

    main.get_by_test_id("stFileUploaderDropzoneInput").set_input_files(str(doc))
    main.get_by_role("button", name="Ingest").click()
    sync_api.expect(main.get_by_text("1 files, 1 added")).to_be_visible(timeout=2 * TIMEOUT_MS)
    sync_api.expect(main.get_by_test_id("stDataFrame")).to_be_visible(timeout=TIMEOUT_MS)

    tab.get_by_role("link", name="Chat").click()
    tab.get_by_text("Answer from my documents").click()  # the switch above the message box
    sync_api.expect(tab.get_by_test_id("stBottom").get_by_text("火山 notes")).to_be_visible(timeout=TIMEOUT_MS)
    send(tab, "When did Mount Korvath last erupt?")
    answer = tab.get_by_test_id("stChatMessage").nth(1)
    sync_api.expect(answer).to_contain_text("Question: When did Mount Korvath last erupt?", timeout=2 * TIMEOUT_MS)
    sync_api.expect(answer.get_by_text("Sources: [1] volcano.txt")).to_be_visible(timeout=2 * TIMEOUT_MS)

    tab.wait_for_url("**session=*")
    tab.reload()  # the sources come from the stored answer
    again = tab.get_by_test_id("stChatMessage").nth(1)
    sync_api.expect(again.get_by_text("Sources: [1] volcano.txt")).to_be_visible(timeout=TIMEOUT_MS)

    from core.history.store import HistoryStore

    store = HistoryStore.open(db_path)
    try:
        [session] = store.list_sessions()
        reply = store.messages(session.id)[-1]
        assert reply.sources[0]["source"] == "volcano.txt" and "1822" in reply.sources[0]["text"]
    finally:
        store.close()
