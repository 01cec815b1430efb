"""The Knowledge page with Streamlit's AppTest (fake model, real ``minilm`` embedder, real Chroma folder):
create a knowledge base, upload several files at once (one bad), see each document's status and error, try
a query and see the hits with scores, delete a document, re-embed, and delete the knowledge base."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.config import load_settings
from core.kb import KnowledgeService

APP = Path(__file__).resolve().parents[1] / "app.py"
PAGE = "ui/knowledge_page.py"
EMBEDDER = "minilm"


def open_page() -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=120)
    at.run()
    at.switch_page(PAGE).run()
    assert not at.exception, at.exception
    return at


@pytest.fixture
def knowledge(app_home: Path) -> KnowledgeService:
    service = KnowledgeService.open(load_settings())
    yield service
    service.close()


def test_create_upload_query_delete(knowledge: KnowledgeService) -> None:
    at = open_page()
    assert "No knowledge bases yet" in at.info[0].value
    at.text_input[0].set_value("旅行笔记")
    at.selectbox(key="kb-create-embedder").set_value(EMBEDDER)
    at.button[0].click().run()  # the form's Create button
    assert not at.exception, at.exception
    assert [kb.name for kb in knowledge.rows.kbs()] == ["旅行笔记"]
    assert at.selectbox(key="inkstone_kb_pick").value == "旅行笔记"

    uploader = at.get("file_uploader")[0]
    uploader.set_value([
        ("kyoto.txt", b"The Kyoto guesthouse serves breakfast at seven in the garden room.", "text/plain"),
        ("../../escape\n.md", b"# Lisbon\n\nTram 28 climbs to the castle every twelve minutes.", "text/markdown"),
        ("empty.txt", b"", "text/plain"),
    ])  # fmt: skip
    at.run()
    next(b for b in at.button if b.label == "Ingest").click().run()
    assert not at.exception, at.exception
    assert "3 files, 2 added" in at.warning[0].value and "1 errors" in at.warning[0].value
    assert any(e.value.startswith("empty.txt:") for e in at.error)
    table = at.dataframe[0].value
    rows = dict(zip(table["document"], table["status"], strict=True))
    assert rows == {"empty.txt": "error", "escape .md": "ready", "kyoto.txt": "ready"}
    assert at.get("file_uploader")[0].value in (None, [])  # a fresh uploader: nothing is ingested twice

    at.text_input(key=f"kb-query-{knowledge.get('旅行笔记').id}").set_value("when is breakfast served").run()
    hits = [m.value for m in at.markdown if "score" in m.value]
    assert hits and hits[0].startswith("**1. kyoto.txt** · score ")

    at.selectbox(key=f"kb-doc-{knowledge.get('旅行笔记').id}").set_value("kyoto.txt")
    next(b for b in at.button if b.label == "Delete document").click().run()
    assert sorted(d.name for d in knowledge.documents("旅行笔记")) == ["empty.txt", "escape .md"]

    at.button(key="kb-drop").click().run()
    assert "cannot be undone" in at.warning[-1].value and knowledge.rows.kbs()  # nothing deleted yet
    at.button(key="kb-drop-yes").click().run()
    assert knowledge.rows.kbs() == [] and "No knowledge bases yet" in at.info[0].value


def test_reembed_button_switches_the_embedder(knowledge: KnowledgeService, tmp_path: Path) -> None:
    doc = tmp_path / "owls.txt"
    doc.write_text("Barn owls swallow their prey whole and cough up pellets.", encoding="utf-8")
    knowledge.ingest("birds", [doc], embedder=EMBEDDER)
    at = open_page()
    assert "Built with minilm" in at.info[0].value  # the default embedder for new ones is another
    kb = knowledge.get("birds")
    assert at.selectbox(key=f"kb-reembed-{kb.id}").value == knowledge.default_embedder
    next(b for b in at.button if b.label == "Re-embed").click().run()
    assert not at.exception, at.exception
    assert knowledge.get("birds").embedder == knowledge.default_embedder
    assert any("Re-embedded birds" in s.value for s in at.success)
    at.text_input(key=f"kb-query-{kb.id}").set_value("owl pellets").run()
    assert any("owls.txt" in m.value for m in at.markdown)
