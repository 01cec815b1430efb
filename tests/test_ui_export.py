"""The chat page's export buttons and the sidebar's import (AppTest, ``fake`` model): the Markdown and JSON a
user downloads carry the chat's RAG switch and the names of its knowledge bases, as ``python -m core sessions
export`` does; importing that JSON opens a new chat with the same choice (a missing knowledge base is named and
left out; a file that is not an export is refused with nothing stored).

What a download button offers is read where Streamlit keeps it (its in-memory media store), matched by the
button's URL.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from streamlit.runtime.memory_media_file_storage import MemoryMediaFileStorage
from streamlit.testing.v1 import AppTest

from core.history.store import HistoryStore
from core.kb.rows import KnowledgeRows

APP = Path(__file__).resolve().parents[1] / "app.py"


@pytest.fixture
def offered(monkeypatch: pytest.MonkeyPatch) -> dict[str, bytes]:
    """file id -> the bytes a download button offers, recorded as Streamlit stores them."""
    files: dict[str, bytes] = {}
    original = MemoryMediaFileStorage.load_and_get_id

    def recording(self, path_or_data, mimetype, kind, filename=None):  # noqa: ANN001, ANN202
        file_id = original(self, path_or_data, mimetype, kind, filename)
        files[file_id] = path_or_data if isinstance(path_or_data, bytes) else b""
        return file_id

    monkeypatch.setattr(MemoryMediaFileStorage, "load_and_get_id", recording)
    return files


@pytest.fixture
def rows(app_home: Path) -> Iterator[KnowledgeRows]:
    """The app database's knowledge tables with two knowledge-base rows (no documents needed to export)."""
    db = KnowledgeRows.open(app_home / "inkstone.db")
    for name in ("旅行笔记", "recipes"):
        db.add_kb(name, f"c-{len(name)}", "minilm", 384, 800, 100)
    yield db
    db.close()


def downloads(at: AppTest, offered: dict[str, bytes]) -> dict[str, str]:
    """Export button label -> the text it downloads."""
    out = {}
    for button in at.get("download_button"):
        file_id = button.proto.url.rsplit("/", 1)[-1].split(".")[0]
        out[button.proto.label] = offered[file_id].decode("utf-8")
    return out


def test_exports_carry_the_rag_switch_and_knowledge_bases(
    app_store: HistoryStore, rows: KnowledgeRows, offered: dict[str, bytes]
) -> None:
    at = AppTest.from_file(str(APP), default_timeout=30).run()
    at.chat_input[0].set_value("what did I note about Kyoto?").run()
    assert not at.exception, at.exception
    data = json.loads(downloads(at, offered)["Export JSON"])
    assert data["rag"] is False and data["knowledge_bases"] == []  # RAG was never turned on for this chat

    at.toggle[0].set_value(True).run()  # "Answer from my documents": with none picked, it takes them all
    assert not at.exception, at.exception
    [session] = app_store.list_sessions()
    exported = downloads(at, offered)
    data = json.loads(exported["Export JSON"])
    assert data["id"] == session.id and data["rag"] is True
    assert data["knowledge_bases"] == ["recipes", "旅行笔记"]
    assert "RAG: on (recipes, 旅行笔记)" in exported["Export Markdown"]

    at.multiselect[0].set_value(["旅行笔记"]).run()  # narrowed to one
    data = json.loads(downloads(at, offered)["Export JSON"])
    assert data["rag"] is True and data["knowledge_bases"] == ["旅行笔记"]


def import_file(at: AppTest, name: str, content: bytes) -> AppTest:
    """Upload ``content`` in the sidebar's "Import a chat" box and press Import."""
    at.sidebar.get("file_uploader")[0].set_value((name, content, "application/json")).run()
    next(b for b in at.sidebar.button if b.key == "import-chat").click().run()
    assert not at.exception, at.exception
    return at


def test_import_opens_the_chat_with_its_rag_choice(
    app_store: HistoryStore, rows: KnowledgeRows, offered: dict[str, bytes]
) -> None:
    at = AppTest.from_file(str(APP), default_timeout=30).run()
    at.chat_input[0].set_value("what did I note about Kyoto?").run()
    at.toggle[0].set_value(True).run()
    exported = json.loads(downloads(at, offered)["Export JSON"])
    [original] = app_store.list_sessions()

    at = AppTest.from_file(str(APP), default_timeout=30).run()  # another tab
    document = {**exported, "knowledge_bases": ["旅行笔记", "Old notes"]}
    import_file(at, "kyoto.json", json.dumps(document, ensure_ascii=False).encode("utf-8"))
    copy = next(s for s in app_store.list_sessions() if s.id != original.id)
    assert at.query_params["session"] == copy.id  # the imported chat is open
    assert [m.value for m in at.chat_message[0].markdown] == ["what did I note about Kyoto?"]
    assert at.toggle[0].value is True and at.multiselect[0].value == ["旅行笔记"]
    assert "'Old notes'" in at.sidebar.warning[0].value and "does not exist here" in at.sidebar.warning[0].value
    assert not at.get("file_uploader")[0].value  # a fresh uploader: nothing is imported twice
    at.run()
    assert not at.sidebar.warning  # the notice is shown once


def test_import_of_a_bad_file_is_refused(app_store: HistoryStore) -> None:
    at = AppTest.from_file(str(APP), default_timeout=30).run()
    import_file(at, "notes.json", b"{not json")
    assert at.sidebar.error[0].value.startswith("Cannot import 'notes.json'")
    import_file(at, "chat.json", json.dumps({"model": "m", "messages": [], "rag": "on"}).encode())
    assert '"rag" is not true or false' in at.sidebar.error[0].value
    assert app_store.list_sessions() == []
