"""Each answer stores the persona that wrote it (id, name and avatar at the time): migration m006, the chat
service, and the Markdown/JSON exports (which keep the names after the persona is deleted)."""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlite_utils import Database

from core.backends.fake import FakeBackend
from core.chat.service import ChatService, Done
from core.history.export import session_from_json, session_to_json, session_to_markdown
from core.history.store import HistoryStore
from core.personas.store import load_persona
from core.storage import migrations


@pytest.fixture
def store(tmp_path: Path) -> Iterator[HistoryStore]:
    s = HistoryStore.open(tmp_path / "inkstone.db")
    yield s
    s.close()


@pytest.fixture
def adapters(tmp_path: Path) -> Path:
    root = tmp_path / "adapters"
    for pid, name, avatar in (("poet", "Poet", "🪶"), ("owl", "Wise Owl", "🦉")):
        (root / pid).mkdir(parents=True)
        (root / pid / "persona.toml").write_text(
            f'name = "{name}"\navatar = "{avatar}"\nsystem_prompt = "You are {name}."\n', encoding="utf-8"
        )
    return root


def ask(service: ChatService, session_id: str, text: str) -> None:
    events = list(service.send(session_id, text))
    assert isinstance(events[-1], Done), events[-1]


def test_an_m005_database_upgrades_and_keeps_its_answers(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old = Database(sqlite3.connect(path))
    assert migrations.migrate(old, until="m005_training_jobs")[-1] == "m005_training_jobs"
    stamp = "2025-01-01T00:00:00.000000+00:00"
    old.execute("INSERT INTO sessions (id, title, title_auto, model, persona, settings, created_at, updated_at) "
                "VALUES ('s1', 'Old chat', 0, 'fake', 'poet', '{}', ?, ?)", [stamp, stamp])  # fmt: skip
    old.execute("INSERT INTO messages (id, session_id, role, content, status, created_at, sources) "
                "VALUES ('m1', 's1', 'assistant', 'An old answer', 'complete', ?, '[]')", [stamp])  # fmt: skip
    old.close()
    store = HistoryStore.open(path)
    assert "m006_message_persona" in migrations.applied_migrations(store.db)
    [answer] = store.messages("s1")
    assert (answer.content, answer.persona_id, answer.persona_name, answer.persona_avatar) == (
        "An old answer", None, None, None)  # fmt: skip
    assert "**Assistant**" in session_to_markdown(store.get_session("s1"), [answer])
    store.close()


def test_each_answer_keeps_the_persona_that_wrote_it(store: HistoryStore, adapters: Path) -> None:
    backend = FakeBackend(["Roses bloom.", "Hoot, I know.", "Plain answer."])
    service = ChatService(store, backend, lambda pid: load_persona(adapters, pid))
    sid = store.create_session(model="fake", persona="poet").id
    ask(service, sid, "a poem")
    store.update_session(sid, persona="owl")
    ask(service, sid, "a fact")
    store.update_session(sid, persona="")
    ask(service, sid, "anything")
    answers = [m for m in store.messages(sid) if m.role == "assistant"]
    assert [(m.content, m.persona_id, m.persona_name, m.persona_avatar) for m in answers] == [
        ("Roses bloom.", "poet", "Poet", "🪶"),
        ("Hoot, I know.", "owl", "Wise Owl", "🦉"),
        ("Plain answer.", None, None, None),
    ]
    assert [m.persona_id for m in store.messages(sid) if m.role == "user"] == [None, None, None]
    assert backend.prompts[1][0] == {"role": "system", "content": "You are Wise Owl."}


def test_a_regenerated_answer_is_signed_by_the_persona_that_wrote_it(store: HistoryStore, adapters: Path) -> None:
    service = ChatService(store, FakeBackend(["First.", "Second."]), lambda pid: load_persona(adapters, pid))
    sid = store.create_session(model="fake", persona="poet").id
    ask(service, sid, "hello")
    store.update_session(sid, persona="owl")
    assert isinstance(list(service.regenerate(sid))[-1], Done)
    [answer] = [m for m in store.messages(sid) if m.role == "assistant"]
    assert (answer.content, answer.persona_name) == ("Second.", "Wise Owl")


def test_exports_name_who_answered_even_after_the_persona_is_deleted(store: HistoryStore, adapters: Path) -> None:
    service = ChatService(store, FakeBackend(["Roses bloom.", "Hoot."]), lambda pid: load_persona(adapters, pid))
    sid = store.create_session(model="fake", persona="poet").id
    ask(service, sid, "a poem")
    store.update_session(sid, persona="owl")
    ask(service, sid, "a fact")
    shutil.rmtree(adapters / "poet")
    session, messages = store.get_session(sid), store.messages(sid)
    markdown = session_to_markdown(session, messages)
    assert "**Assistant (Poet)**\n\nRoses bloom." in markdown
    assert "**Assistant (Wise Owl)**\n\nHoot." in markdown
    assert "**User**\n\na poem" in markdown
    data = json.loads(json.dumps(session_to_json(session, messages), ensure_ascii=False))
    assert data["messages"][0] == {"role": "user", "content": "a poem"}
    assert data["messages"][1] == {"role": "assistant", "content": "Roses bloom.", "name": "poet",
                                   "persona": {"id": "poet", "name": "Poet", "avatar": "🪶"}}  # fmt: skip
    copy = session_from_json(store, data)  # an import keeps who answered
    assert [m.persona_name for m in store.messages(copy.id)] == [None, "Poet", None, "Wise Owl"]


def test_import_refuses_a_bad_persona_field(store: HistoryStore) -> None:
    from core.errors import InputError

    doc = {"model": "fake", "messages": [{"role": "assistant", "content": "hi", "persona": "poet"}]}
    with pytest.raises(InputError, match=r"messages\[0\]\.persona"):
        session_from_json(store, doc)
    assert store.list_sessions() == []
