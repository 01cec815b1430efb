"""ChatService's one finalize step (through the answer recorder): every way a stream ends (finished, stopped,
failed, consumer gone, a backend that never says ``Finished``, a store that cannot be written until later) leaves a
settled answer row with the right text, status, error, decode speed and sources; and the backend protocol carries
what callers need."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

import core.backends.timing
import core.history.recorder
from core.backends.base import Backend, ModelInfo
from core.backends.fake import FakeBackend
from core.chat.service import ChatService, Done, Failed, Sources, Started, Token
from core.config import GenerationSettings
from core.history.store import HistoryStore
from tests.timed_fakes import Clock, NoFinish, Timed


@pytest.fixture
def store(tmp_path: Path) -> Iterator[HistoryStore]:
    s = HistoryStore.open(tmp_path / "inkstone.db")
    yield s
    s.close()


def new_session(store: HistoryStore, **settings: object) -> str:
    return store.create_session(model="fake", settings=GenerationSettings().with_updates(**settings).to_dict()).id


def test_stream_without_finished_is_stored_as_an_error_not_a_crash(store: HistoryStore) -> None:
    sid = new_session(store)
    events = list(ChatService(store, NoFinish(["half an answer"])).send(sid, "hi"))
    assert isinstance(events[-1], Failed) and "without saying it was finished" in events[-1].error
    answer = store.messages(sid)[-1]
    assert (answer.status, answer.content) == ("error", "half an answer")
    assert "without saying it was finished" in answer.error


def test_tokens_per_s_is_decode_speed_without_time_to_first_token(
    store: HistoryStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = Clock()
    monkeypatch.setattr(core.backends.timing, "perf_counter", clock)  # where the backend measures
    sid = new_session(store)
    done = list(ChatService(store, Timed(clock, ["one two three four five"])).send(sid, "count"))[-1]
    assert isinstance(done, Done)
    # 5 tokens: the first after 2.0 s, four more over 0.4 s, Finished 0.1 s later (the end-of-answer step)
    assert done.stats.ttft_ms == pytest.approx(2000)
    assert done.stats.tokens_per_s == pytest.approx(4 / 0.5)
    assert store.messages(sid)[-1].tokens_per_s == pytest.approx(4 / 0.5)


def test_retriever_sources_reach_prompt_events_and_row(store: HistoryStore) -> None:
    backend = FakeBackend(["Paris [1]."])
    seen: list[tuple[str, str]] = []

    def retriever(session, question):  # noqa: ANN001, ANN202
        seen.append((session.id, question))
        return [{"file": "atlas.pdf", "page": 3, "text": "Paris is the capital of France."}]

    sid = new_session(store)
    events = list(ChatService(store, backend, retriever=retriever).send(sid, "Capital of France?"))
    assert seen == [(sid, "Capital of France?")]
    sources = [e for e in events if isinstance(e, Sources)]
    assert sources and sources[0].items[0]["file"] == "atlas.pdf"
    assert isinstance(events[-1], Done)
    asked = backend.prompts[-1][-1]
    assert asked["role"] == "user" and "Paris is the capital of France.\n(atlas.pdf, p. 3)" in asked["content"]
    assert store.messages(sid)[-1].sources == sources[0].items


def test_store_that_cannot_be_written_mid_answer_ends_it_with_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(core.history.recorder, "SAVE_EVERY_S", 0.0)  # save after every token
    store = HistoryStore.open(tmp_path / "inkstone.db", timeout=0.05)
    sid = new_session(store)
    events = ChatService(store, FakeBackend(["one two three"])).send(sid, "hi")
    assert isinstance(next(events), Started)
    other = sqlite3.connect(tmp_path / "inkstone.db")
    other.execute("BEGIN IMMEDIATE")  # another program holds the write lock
    rest = list(events)
    assert not any(isinstance(e, Token) for e in rest)
    assert isinstance(rest[-1], Failed) and "locked" in rest[-1].error and "could not be saved" in rest[-1].error
    answer_id = rest[-1].message_id
    assert store.get_message(answer_id).status == "streaming"  # could not be written while locked
    other.rollback()
    other.close()
    store.create_session(model="fake")  # the next write that succeeds settles it, with the reason
    answer = store.get_message(answer_id)
    assert answer.status == "error" and "locked" in answer.error
    store.close()


def test_backend_protocol_has_what_callers_use() -> None:
    backend = FakeBackend(context_window=123, model_id="fake")
    assert isinstance(backend, Backend)
    assert backend.busy is False and backend.loaded is None
    assert backend.info() == ModelInfo("fake", 123, "fake")


def test_consumer_gone_releases_the_backend_at_once(store: HistoryStore) -> None:
    backend = FakeBackend(["one two three four"])
    events = ChatService(store, backend).send(new_session(store), "hi")
    next(events), next(events)
    assert backend.busy
    events.close()
    assert not backend.busy  # not left to garbage collection
    assert store.messages(store.list_sessions()[0].id)[-1].status == "stopped"


def test_finished_is_kept_even_when_stop_was_set(store: HistoryStore) -> None:
    stop = threading.Event()
    sid = new_session(store)
    events = ChatService(store, FakeBackend(["a b c d"])).send(sid, "hi", stop)
    for event in events:
        if isinstance(event, Token):
            stop.set()
    answer = store.messages(sid)[-1]
    assert answer.status == "stopped" and answer.completion_tokens == 1 and answer.content == "a"
    assert isinstance(event, Done) and event.stats.status == "stopped"
