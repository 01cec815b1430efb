"""Session export and import: Markdown (headings, roles, stopped/error marks, sources) and OpenAI-shaped
JSON of a session with Chinese text, a JSON roundtrip through import, and import refusing a bad document
with one error listing every problem and storing nothing.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.errors import InputError
from core.history.export import session_from_json, session_to_json, session_to_markdown
from core.history.store import HistoryStore, Session


@pytest.fixture
def store(tmp_path: Path):
    s = HistoryStore.open(tmp_path / "inkstone.db")
    yield s
    s.close()


@pytest.fixture
def chat(store: HistoryStore) -> Session:
    s = store.create_session(model="qwen2.5-0.5b", persona="tutor", settings={"temperature": 0.3})
    store.add_message(s.id, "system", "用中文回答。")
    store.add_message(s.id, "user", "法国的首都是哪里？")
    answer = store.add_message(s.id, "assistant", "首都是巴黎。")
    store.update_message(answer.id, sources=[{"file": "地理.pdf", "page": 12}, {"source": "notes.md"}])
    store.add_message(s.id, "user", "再详细一点")
    store.add_message(s.id, "assistant", "巴黎位于", status="stopped")
    failed = store.add_message(s.id, "assistant", "")
    store.update_message(failed.id, status="error", error="CUDA out of memory")
    return store.get_session(s.id)


def test_markdown(store: HistoryStore, chat: Session) -> None:
    md = session_to_markdown(chat, store.messages(chat.id))
    assert md.startswith("# 法国的首都是哪里？\n")
    assert "Model: `qwen2.5-0.5b` · Persona: tutor" in md
    assert md.count("**User**") == 2 and md.count("**Assistant**") == 3 and md.count("**System**") == 1
    assert "**User**\n\n法国的首都是哪里？\n" in md
    assert "[1] 地理.pdf, p. 12" in md and "[2] notes.md" in md
    assert "巴黎位于\n\n_(answer stopped before it was finished)_" in md
    assert "_(answer failed: CUDA out of memory)_" in md


def test_json_shape(store: HistoryStore, chat: Session) -> None:
    data = session_to_json(chat, store.messages(chat.id))
    assert {"id", "title", "model", "persona", "created_at", "messages"} <= set(data)
    assert (data["id"], data["title"], data["model"], data["persona"]) == (
        chat.id, "法国的首都是哪里？", "qwen2.5-0.5b", "tutor"
    )  # fmt: skip
    assert data["messages"][:2] == [
        {"role": "system", "content": "用中文回答。"},
        {"role": "user", "content": "法国的首都是哪里？"},
    ]
    assert data["messages"][2]["sources"][0] == {"file": "地理.pdf", "page": 12}
    assert data["messages"][4] == {"role": "assistant", "content": "巴黎位于", "status": "stopped"}
    assert data["messages"][5]["status"] == "error" and data["messages"][5]["error"] == "CUDA out of memory"
    text = json.dumps(data, ensure_ascii=False)
    assert "巴黎" in text and json.loads(text) == data


def test_json_roundtrip_through_import(store: HistoryStore, chat: Session) -> None:
    original = store.messages(chat.id)
    data = json.loads(json.dumps(session_to_json(chat, original), ensure_ascii=False))
    imported = session_from_json(store, data)
    assert imported.id != chat.id
    assert (imported.title, imported.model, imported.persona, imported.settings) == (
        chat.title, chat.model, chat.persona, chat.settings
    )  # fmt: skip
    copied = store.messages(imported.id)
    keys = ("role", "content", "status", "sources", "error")
    assert [[getattr(m, k) for k in keys] for m in copied] == [
        [getattr(m, k) for k in keys] for m in original
    ]
    again = session_to_json(imported, copied)
    assert again["messages"] == data["messages"]


def test_import_plain_openai_messages_names_the_session(store: HistoryStore) -> None:
    data = {
        "model": "m",
        "messages": [{"role": "user", "content": "你好，世界"}, {"role": "assistant", "content": "你好"}],
    }
    session = session_from_json(store, data)
    assert session.title == "你好，世界" and session.title_auto
    assert [m.status for m in store.messages(session.id)] == ["complete", "complete"]


def test_import_refuses_bad_documents_naming_every_problem(store: HistoryStore) -> None:
    bad = {
        "messages": [
            {"role": "robot", "content": "x"},  # ("tool" messages are tool results now: test_export_tools.py)
            {"role": "user"},
            "hello",
            {"role": "assistant", "content": "", "status": "done"},
        ]
    }
    with pytest.raises(InputError) as info:
        session_from_json(store, bad)
    text = str(info.value)
    for part in ('"model"', "messages[0].role", "messages[1].content", "messages[2]", "messages[3].status"):
        assert part in text
    assert store.list_sessions() == []
    with pytest.raises(InputError, match="not a JSON object"):
        session_from_json(store, [])
    with pytest.raises(InputError, match='"messages"'):
        session_from_json(store, {"model": "m"})


def test_import_of_text_that_cannot_be_stored_leaves_nothing_behind(store: HistoryStore) -> None:
    before = len(store.list_sessions())
    doc = {"model": "m", "messages": [{"role": "user", "content": "fine"},
                                      {"role": "assistant", "content": "bad \udcff"}]}
    with pytest.raises(InputError, match="not valid UTF-8"):
        session_from_json(store, doc)
    assert len(store.list_sessions()) == before
