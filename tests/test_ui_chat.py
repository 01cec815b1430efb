"""The chat page and the sidebar session list, driven with Streamlit's AppTest on the ``fake`` model.

Each test gets its own data dir (INKSTONE_HOME) and a cleared ``st.cache_resource``, so the engine is
built fresh; what the UI claims to have stored is checked by opening the SQLite history directly.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from core.history.store import HistoryStore

APP = Path(__file__).resolve().parents[1] / "app.py"


@pytest.fixture
def store(app_store: HistoryStore) -> HistoryStore:
    """The app's history database (see conftest)."""
    return app_store


def start(session: str | None = None) -> AppTest:
    """A new browser tab (or a refresh): a fresh AppTest, optionally with ``?session=<id>``."""
    at = AppTest.from_file(str(APP), default_timeout=30)
    if session is not None:
        at.query_params["session"] = session
    at.run()
    assert not at.exception, at.exception
    return at


def send(at: AppTest, text: str) -> AppTest:
    at.chat_input[0].set_value(text).run()
    assert not at.exception, at.exception
    return at


def bubbles(at: AppTest) -> list[tuple[str, str]]:
    """(role, text) of every chat message on the page."""
    return [(m.name, " ".join(md.value for md in m.markdown)) for m in at.chat_message]


def session_buttons(at: AppTest) -> dict[str, str]:
    """Sidebar session buttons: session id -> title."""
    return {
        b.key.removeprefix("open-"): b.label for b in at.sidebar.button if (b.key or "").startswith("open-")
    }


def add_turn(store: HistoryStore, session_id: str, question: str, answer: str, **answer_fields) -> None:
    store.add_message(session_id, "user", question)
    reply = store.add_message(session_id, "assistant", answer)
    if answer_fields:
        store.update_message(reply.id, **answer_fields)


def test_sending_shows_the_answer_and_stores_both_messages(store: HistoryStore) -> None:
    at = send(start(), "hello there")
    assert bubbles(at) == [("user", "hello there"), ("assistant", "You said: hello there")]
    assert "tokens/s" in at.caption[0].value and "first token" in at.caption[0].value
    [session] = store.list_sessions()
    assert at.query_params["session"] == session.id  # the open session is in the URL
    assert session_buttons(at) == {session.id: "hello there"}  # auto-titled from the first message
    messages = store.messages(session.id)
    assert [(m.role, m.content, m.status) for m in messages] == [
        ("user", "hello there", "complete"),
        ("assistant", "You said: hello there", "complete"),
    ]
    assert messages[1].completion_tokens == 4


def test_new_chat_is_a_draft_until_its_first_message(store: HistoryStore) -> None:
    at = send(start(), "an older chat")
    [older] = store.list_sessions()
    at.sidebar.button[0].click().run()  # "New chat"
    assert not at.exception, at.exception
    assert [s.id for s in store.list_sessions()] == [older.id]  # nothing stored for the draft
    assert session_buttons(at) == {older.id: "an older chat"}
    assert "session" not in at.query_params and bubbles(at) == []
    assert "Start a conversation" in at.main.caption[0].value
    at.sidebar.button[0].click().run()  # clicking it again on a draft stores nothing either
    assert len(store.list_sessions()) == 1
    send(at, "first words")
    newer = next(s for s in store.list_sessions() if s.id != older.id)
    assert [m.content for m in store.messages(newer.id)] == ["first words", "You said: first words"]
    assert at.query_params["session"] == newer.id
    assert list(session_buttons(at)) == [newer.id, older.id]
    assert at.sidebar.button(key=f"open-{newer.id}").proto.type == "primary"  # marked as the open one


def test_empty_chats_are_not_listed_unless_open(store: HistoryStore) -> None:
    empty = store.create_session(model="fake", title="Left empty by an older version")
    used = store.create_session(model="fake", title="Used")
    add_turn(store, used.id, "q", "a")
    assert session_buttons(start()) == {used.id: "Used"}
    assert session_buttons(start(empty.id)) == {used.id: "Used", empty.id: "Left empty by an older version"}


def test_sessions_are_listed_newest_first_and_switching_reloads_history(store: HistoryStore) -> None:
    older = store.create_session(model="fake", title="Older")
    add_turn(store, older.id, "about cats", "cats answer")
    newer = store.create_session(model="fake", title="Newer")
    add_turn(store, newer.id, "about dogs", "dogs answer")
    at = start(older.id)
    assert list(session_buttons(at)) == [newer.id, older.id]
    assert bubbles(at) == [("user", "about cats"), ("assistant", "cats answer")]
    at.sidebar.button(key=f"open-{newer.id}").click().run()
    assert bubbles(at) == [("user", "about dogs"), ("assistant", "dogs answer")]
    assert at.query_params["session"] == newer.id


def test_search_filters_by_title_and_content(store: HistoryStore) -> None:
    fruit = store.create_session(model="fake", title="Fruit")
    add_turn(store, fruit.id, "tell me about pears", "pears are sweet")
    cars = store.create_session(model="fake", title="Engines")
    add_turn(store, cars.id, "tell me about cars", "cars drive")
    at = start()
    at.sidebar.text_input(key="inkstone_search").set_value("pears").run()
    assert list(session_buttons(at)) == [fruit.id]
    at.sidebar.text_input(key="inkstone_search").set_value("engines").run()
    assert list(session_buttons(at)) == [cars.id]
    at.sidebar.text_input(key="inkstone_search").set_value("zebra").run()
    assert session_buttons(at) == {} and "No chat matches" in at.sidebar.caption[0].value


def test_rename(store: HistoryStore) -> None:
    session = store.create_session(model="fake")
    at = start(session.id)
    title_input = next(t for t in at.sidebar.text_input if t.label == "Title")
    title_input.set_value("Trip planning")
    at.sidebar.button(key=f"rename-{session.id}").click().run()
    assert store.get_session(session.id).title == "Trip planning"
    assert session_buttons(at) == {session.id: "Trip planning"}


def test_delete_asks_for_confirmation(store: HistoryStore) -> None:
    keep = store.create_session(model="fake", title="Keep")
    add_turn(store, keep.id, "kept question", "kept answer")
    doomed = store.create_session(model="fake", title="Doomed")
    add_turn(store, doomed.id, "q", "a")
    at = start(doomed.id)
    at.sidebar.button(key=f"delete-{doomed.id}").click().run()
    assert "cannot be undone" in at.sidebar.warning[0].value
    assert {s.id for s in store.list_sessions()} == {keep.id, doomed.id}  # nothing deleted yet
    at.sidebar.button(key="delete-no").click().run()
    assert {s.id for s in store.list_sessions()} == {keep.id, doomed.id}
    at.sidebar.button(key=f"delete-{doomed.id}").click().run()
    at.sidebar.button(key="delete-yes").click().run()
    assert [s.id for s in store.list_sessions()] == [keep.id]
    assert store.messages(doomed.id) == []
    assert session_buttons(at) == {keep.id: "Keep"}
    assert "session" not in at.query_params and bubbles(at) == []


@pytest.mark.parametrize("text", ["   ", "\n\t "])
def test_empty_message_warns_and_stores_nothing(store: HistoryStore, text: str) -> None:
    at = send(start(), text)
    assert "empty" in at.warning[0].value
    assert store.list_sessions() == [] and bubbles(at) == []


def test_oversized_message_is_refused_with_an_error(store: HistoryStore) -> None:
    session = store.create_session(model="fake")
    at = send(start(session.id), "word " * 5000)  # the fake model's context window is 4096 "tokens"
    assert at.error and "context" in at.error[0].value.lower()
    assert store.messages(session.id) == []


def test_oversized_first_message_creates_no_session(store: HistoryStore) -> None:
    at = AppTest.from_file(str(APP), default_timeout=30)
    at.run()
    at.chat_input[0].set_value("word " * 5000).run()
    assert at.error and "tokens of prompt" in at.error[0].value
    assert store.list_sessions() == []


def test_regenerate_shows_the_new_answer_and_keeps_the_old_one(store: HistoryStore) -> None:
    session = store.create_session(model="fake")
    add_turn(store, session.id, "question one", "a stale answer")
    old_answer = store.messages(session.id)[-1]
    at = start(session.id)
    next(b for b in at.main.button if b.label == "Regenerate").click().run()
    assert not at.exception
    assert bubbles(at) == [("user", "question one"), ("assistant", "You said: question one")]
    messages = store.messages(session.id)
    assert [(m.role, m.content, m.status) for m in messages] == [
        ("user", "question one", "complete"),
        ("assistant", "You said: question one", "complete"),
    ]
    assert messages[-1].id != old_answer.id
    assert store.children(session.id)[messages[0].id] == [old_answer.id, messages[-1].id]  # ‹ 1/2 › away


def test_open_session_survives_refresh_and_restart(store: HistoryStore) -> None:
    at = send(start(), "remember me")
    session_id = store.list_sessions()[0].id
    refreshed = start(session_id)  # a browser refresh keeps ?session=<id>
    assert bubbles(refreshed) == [("user", "remember me"), ("assistant", "You said: remember me")]
    st.cache_resource.clear()  # an app restart: the engine is built again from the same data dir
    restarted = start(session_id)
    assert bubbles(restarted) == bubbles(at)
    assert session_buttons(restarted) == {session_id: "remember me"}


def test_unknown_session_in_the_url_opens_nothing(store: HistoryStore) -> None:
    at = start("0000000000000deadbeef0000")
    assert bubbles(at) == [] and "session" not in at.query_params


def test_stopped_and_failed_answers_are_marked(store: HistoryStore) -> None:
    session = store.create_session(model="fake")
    add_turn(store, session.id, "go on", "half an ans", status="stopped")
    add_turn(
        store,
        session.id,
        "again",
        "",
        status="error",
        error="The GPU ran out of memory: lower max_new_tokens.",
    )
    at = start(session.id)
    assert ":material/stop_circle: stopped" in at.caption[0].value
    assert at.error[0].value == "The GPU ran out of memory: lower max_new_tokens."
    assert bubbles(at)[1] == ("assistant", "half an ans")


def test_omitted_turns_are_announced(store: HistoryStore) -> None:
    session = store.create_session(model="fake", settings={"max_turns": 1})
    add_turn(store, session.id, "first question", "first answer")
    at = send(start(session.id), "second question")
    assert at.info[0].value == "1 earlier turn was left out of the prompt; they stay in the history."
    assert len(store.messages(session.id)) == 4  # nothing was deleted to make room


def test_export_buttons_offer_markdown_and_json(store: HistoryStore) -> None:
    at = send(start(), "export me")
    labels = [b.proto.label for b in at.get("download_button")]
    assert labels == ["Export Markdown", "Export JSON"]


def test_model_that_cannot_load_shows_an_error(app_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INKSTONE_MODEL", "no-such-model")
    at = AppTest.from_file(str(APP), default_timeout=30).run()
    assert not at.exception
    assert "Unknown model 'no-such-model'" in at.error[0].value
    assert not at.chat_input  # the script stopped before the pages


def test_loading_the_model_shows_a_status_only_while_it_loads(store: HistoryStore) -> None:
    at = start()
    assert [s.label for s in at.status] == ["Loaded fake"]
    at.run()
    assert not at.status  # a later run finds the engine cached: no stale status is replayed
    other_tab = start()
    assert not other_tab.status  # and another tab shares the loaded engine
