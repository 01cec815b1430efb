"""The chat page's export buttons (AppTest, ``fake`` model): the Markdown and JSON a user downloads carry the
chat's RAG switch and the names of its knowledge bases, as ``python -m core sessions export`` does.

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

from core.history import HistoryStore
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
