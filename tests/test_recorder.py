"""One answer recorder for every front end: the same answer stored through the chat service and through the API
(``inkstone_session``) gets the same columns (status, token counts, persona, time to first token and decode
tokens/s from the backend's ``Finished``); the API and ``/metrics`` read the reason and speed from ``Finished``; a
stream without ``Finished`` is stored the same way by both; and every new session is created in one place."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import core.backends.timing
from core.api.app import create_app
from core.backends.fake import FakeBackend
from core.backends.timing import after_wait
from core.chat.defaults import create_chat, draft_config
from core.chat.service import ChatService, Done, Failed
from core.cli.chat import Target, build_parser
from core.config import GenerationSettings, load_settings
from core.engine import Engine, build_engine
from core.history.recorder import NO_FINISH
from core.history.store import Message
from tests.timed_fakes import Clock, NoFinish, Timed

REPLY = "one two three four five"


def make_engine(tmp_path: Path, backend: FakeBackend) -> Engine:
    adapters = tmp_path / "adapters"
    (adapters / "poet").mkdir(parents=True)
    (adapters / "poet" / "persona.toml").write_text('name = "Poet"\navatar = "🪶"\nsystem_prompt = "You rhyme."\n',
                                                    encoding="utf-8")
    settings = load_settings({"home": str(tmp_path / "data"), "model": "fake", "adapters": str(adapters)},
                             config_file=tmp_path / "none.toml")
    return build_engine(settings, backend=backend)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(core.backends.timing, "perf_counter", clock)  # where every backend measures
    return clock


@pytest.fixture
def engine(tmp_path: Path, clock: Clock) -> Iterator[Engine]:
    engine = make_engine(tmp_path, Timed(clock, [REPLY]))
    yield engine
    engine.store.close()


def columns(message: Message) -> tuple:
    return (message.status, message.content, message.error, message.prompt_tokens, message.completion_tokens,
            message.persona_id, message.persona_name, message.persona_avatar)


def test_chat_view_and_api_store_the_same_answer_the_same_way(engine: Engine) -> None:
    sid = engine.new_session(persona="poet")
    done = list(engine.service.send(sid, "Rhyme for me"))[-1]
    assert isinstance(done, Done) and done.stats.finish_reason == "stop"
    in_app = engine.store.messages(sid)[-1]

    with TestClient(create_app(lambda: engine)) as client:
        reply = client.post("/v1/chat/completions", json={
            "model": "poet", "messages": [{"role": "user", "content": "Rhyme for me"}], "inkstone_session": "new"})
        metrics = client.get("/metrics").text
    assert reply.status_code == 200, reply.text
    body = reply.json()
    via_api = engine.store.messages(body["inkstone_session"])[-1]
    assert engine.store.get_session(body["inkstone_session"]).persona == "poet"

    assert columns(via_api) == columns(in_app) == (
        "complete", REPLY, None, in_app.prompt_tokens, 5, "poet", "Poet", "🪶")
    assert in_app.prompt_tokens and body["usage"]["prompt_tokens"] == in_app.prompt_tokens
    assert body["usage"]["completion_tokens"] == 5 and body["choices"][0]["finish_reason"] == "stop"
    # Both from the backend's Finished: 2 s to the first token; 4 more tokens over 0.5 s (prefill excluded).
    for answer in (in_app, via_api):
        assert answer.ttft_ms == pytest.approx(2000, abs=1) and answer.tokens_per_s == pytest.approx(4 / 0.5)
    assert 'inkstone_tokens_per_second_sum{model="poet"} 8.0' in metrics  # /metrics: the same decode speed


def test_the_finish_reason_comes_from_the_backend_not_a_token_count(engine: Engine) -> None:
    ask = {"model": "fake", "messages": [{"role": "user", "content": "count"}]}
    with TestClient(create_app(lambda: engine)) as client:
        exact = client.post("/v1/chat/completions", json={**ask, "max_tokens": 5}).json()
        cut = client.post("/v1/chat/completions", json={**ask, "max_tokens": 4}).json()
    # 5 words within 5 tokens: the model ended the answer itself (a count alone would have said "length")
    assert (exact["usage"]["completion_tokens"], exact["choices"][0]["finish_reason"]) == (5, "stop")
    assert (cut["usage"]["completion_tokens"], cut["choices"][0]["finish_reason"]) == (4, "length")


def test_a_stream_without_finished_is_stored_alike_by_both(tmp_path: Path) -> None:
    engine = make_engine(tmp_path, NoFinish(["half an answer"] * 2))
    sid = engine.new_session()
    failed = list(engine.service.send(sid, "hi"))[-1]
    assert isinstance(failed, Failed) and failed.error == NO_FINISH
    with TestClient(create_app(lambda: engine), raise_server_exceptions=False) as client:
        reply = client.post("/v1/chat/completions", json={
            "model": "fake", "messages": [{"role": "user", "content": "hi"}], "inkstone_session": "new"})
    assert reply.status_code >= 500
    [api_sid] = [s.id for s in engine.store.list_sessions() if s.id != sid]
    in_app, via_api = engine.store.messages(sid)[-1], engine.store.messages(api_sid)[-1]
    assert columns(via_api) == columns(in_app) == (
        "error", "half an answer", NO_FINISH, None, None, None, None, None)
    engine.store.close()


def test_every_new_session_is_created_in_one_place(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[str | None] = []
    create = ChatService.create_session

    def counted(self, config, *, title=None):  # noqa: ANN001, ANN202
        made.append(config.persona_id)
        return create(self, config, title=title)

    monkeypatch.setattr(ChatService, "create_session", counted)
    engine.new_session(persona="poet")  # Engine (tests, tools)
    create_chat(engine, draft_config(engine, persona=""))  # the UI's new chat
    Target(engine, build_parser().parse_args(["--persona", "poet"])).for_message("hi")  # python -m core chat
    with TestClient(create_app(lambda: engine)) as client:  # the API's inkstone_session="new"
        client.post("/v1/chat/completions", json={
            "model": "poet", "messages": [{"role": "user", "content": "hi"}], "inkstone_session": "new"})
    assert made == ["poet", None, "poet", "poet"]
    assert len(engine.store.list_sessions()) == 4


def test_a_queue_wait_counts_in_the_time_to_first_token(clock: Clock) -> None:
    events = list(after_wait(Timed(clock, ["a b"]).stream([], GenerationSettings(), threading.Event()), 1.5))
    assert events[-1].ttft_s == pytest.approx(2.0 + 1.5) and events[-1].tokens_per_s == pytest.approx(1 / 0.2)
