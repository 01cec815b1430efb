"""ChatService turns with the scripted backend and the real SQLite store: durability at each step, stop,
errors, regenerate, and the omitted-turns count."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.backends.fake import FakeBackend
from core.chat.service import ChatService, Done, Failed, Started, Token
from core.config import GenerationSettings
from core.errors import GenerationError, InputError
from core.history.store import HistoryStore

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[HistoryStore]:
    s = HistoryStore.open(tmp_path / "inkstone.db")
    yield s
    s.close()


def new_session(store: HistoryStore, **settings: object) -> str:
    return store.create_session(model="fake", settings=GenerationSettings().with_updates(**settings).to_dict()).id


def test_turn_is_committed_before_generation_and_finalized_with_stats(store: HistoryStore, tmp_path: Path) -> None:
    service = ChatService(store, FakeBackend(["Paris is the capital."]))
    sid = new_session(store)
    events = service.send(sid, "What is the capital of France?")
    started = next(events)
    assert isinstance(started, Started)
    other = HistoryStore.open(tmp_path / "inkstone.db")  # a second connection sees committed rows only
    rows = other.messages(sid)
    assert [(m.role, m.status) for m in rows] == [("user", "complete"), ("assistant", "streaming")]
    rest = list(events)
    done = rest[-1]
    assert isinstance(done, Done) and done.stats.status == "complete"
    assert "".join(e.text for e in rest if isinstance(e, Token)) == "Paris is the capital."
    answer = other.messages(sid)[-1]
    assert answer.content == "Paris is the capital." and answer.status == "complete"
    assert answer.completion_tokens == 4 and answer.prompt_tokens and answer.ttft_ms is not None
    assert answer.tokens_per_s and answer.tokens_per_s > 0
    other.close()


def test_stop_event_keeps_partial_answer(store: HistoryStore) -> None:
    service = ChatService(store, FakeBackend(["one two three four five six"]))
    sid = new_session(store)
    stop = threading.Event()
    seen = []
    for event in service.send(sid, "count", stop):
        if isinstance(event, Token):
            seen.append(event.text)
            if len(seen) == 2:
                stop.set()
    answer = store.messages(sid)[-1]
    assert answer.status == "stopped" and answer.content == "one two"


def test_closing_the_iterator_mid_answer_keeps_partial_answer(store: HistoryStore) -> None:
    """What a Streamlit rerun (the Stop button) does to the page's loop."""
    service = ChatService(store, FakeBackend(["alpha beta gamma delta"]))
    sid = new_session(store)
    events = service.send(sid, "go")
    for event in events:
        if isinstance(event, Token) and event.text.strip() == "beta":
            break
    events.close()
    answer = store.messages(sid)[-1]
    assert (answer.status, answer.content) == ("stopped", "alpha beta")


def test_empty_and_oversized_messages_are_refused_before_storing(store: HistoryStore) -> None:
    service = ChatService(store, FakeBackend(context_window=100))
    sid = new_session(store, max_new_tokens=20)
    with pytest.raises(InputError, match="empty"):
        service.send(sid, "  \n\t ")
    with pytest.raises(InputError, match=r"needs 206 tokens.*leaves 80"):
        service.send(sid, "word " * 200)
    assert store.messages(sid) == []


class Exploding(FakeBackend):
    def stream(self, messages, settings, stop, adapter=None):  # noqa: ANN001, ANN201
        yield from list(super().stream(messages, settings, stop, adapter))[:2]
        raise GenerationError("The GPU ran out of memory during this answer: lower max_new_tokens.")


def test_generation_error_is_stored_and_reported(store: HistoryStore) -> None:
    service = ChatService(store, Exploding(["partial answer text here"]))
    sid = new_session(store)
    events = list(service.send(sid, "hi"))
    assert isinstance(events[-1], Failed) and "ran out of memory" in events[-1].error
    user, answer = store.messages(sid)
    assert user.content == "hi"
    assert (answer.status, answer.content) == ("error", "partial answer")
    assert "ran out of memory" in answer.error


def test_regenerate_replaces_last_answer(store: HistoryStore) -> None:
    service = ChatService(store, FakeBackend(["first", "second"]))
    sid = new_session(store)
    list(service.send(sid, "hi"))
    list(service.regenerate(sid))
    assert [(m.role, m.content) for m in store.messages(sid)] == [("user", "hi"), ("assistant", "second")]


def test_old_turns_are_left_out_of_prompt_but_kept(store: HistoryStore) -> None:
    backend = FakeBackend()
    service = ChatService(store, backend)
    sid = new_session(store, max_turns=2)
    for i in range(4):
        events = list(service.send(sid, f"message {i}"))
    started = events[0]
    assert isinstance(started, Started) and started.omitted_turns == 2
    assert [m["content"] for m in backend.prompts[-1] if m["role"] == "user"] == ["message 2", "message 3"]
    assert store.message_count(sid) == 8


def test_killed_process_leaves_question_and_partial_answer_on_disk(tmp_path: Path) -> None:
    db = tmp_path / "inkstone.db"
    script = textwrap.dedent(
        f"""
        import os
        from core.backends.fake import FakeBackend
        from core.chat.service import ChatService, Token
        from core.history.store import HistoryStore
        store = HistoryStore.open({str(db)!r})
        sid = store.create_session(model="fake").id
        print(sid, flush=True)
        service = ChatService(store, FakeBackend([" ".join(f"w{{i}}" for i in range(100))], delay_s=0.05))
        n = 0
        for event in service.send(sid, "tell me a long story"):
            if isinstance(event, Token):
                n += 1
                if n == 30:
                    os._exit(9)  # no cleanup at all, like kill -9
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 9, proc.stderr
    sid = proc.stdout.split()[0]
    store = HistoryStore.open(db)  # any open settles the answer of the killed process
    user, answer = store.messages(sid)
    assert user.content == "tell me a long story"
    assert answer.status == "stopped" and answer.content.startswith("w0 w1 w2")
    assert "Interrupted" in answer.error
    store.close()


def test_regenerate_that_cannot_start_keeps_the_old_answer(store: HistoryStore) -> None:
    service = ChatService(store, FakeBackend(["good answer"], context_window=60))
    sid = new_session(store, max_new_tokens=20)
    list(service.send(sid, "question"))
    store.update_session(sid, settings={**store.get_session(sid).settings, "max_new_tokens": 59})
    with pytest.raises(InputError):
        service.regenerate(sid)
    assert [(m.role, m.content) for m in store.messages(sid)] == [("user", "question"), ("assistant", "good answer")]


def test_regenerate_that_fails_or_stops_early_keeps_the_old_answer(store: HistoryStore) -> None:
    sid = new_session(store)
    list(ChatService(store, FakeBackend(["good answer"])).send(sid, "question"))
    good = store.messages(sid)[-1]
    events = list(ChatService(store, Exploding(["x"])).regenerate(sid))
    assert isinstance(events[-1], Failed)
    failed = store.messages(sid)[-1]  # the failed attempt is shown, with the good answer as its alternative
    assert failed.status == "error" and store.children(sid)[failed.parent_id] == [good.id, failed.id]
    store.delete_message(failed.id)  # dismiss the failed attempt
    events = ChatService(store, FakeBackend(["new answer"])).regenerate(sid)
    assert isinstance(next(events), Started)
    events.close()  # stopped before any text
    assert [(m.role, m.content, m.status) for m in store.messages(sid)] == [
        ("user", "question", "complete"), ("assistant", "good answer", "complete")]


def test_regenerate_refuses_while_an_answer_streams(store: HistoryStore) -> None:
    service = ChatService(store, FakeBackend(["one two three"]))
    sid = new_session(store)
    events = service.send(sid, "question")
    next(events), next(events)  # Started, first token: the answer row is streaming
    with pytest.raises(InputError, match="still being written"):
        ChatService(store, FakeBackend()).regenerate(sid)
    list(events)
    assert store.messages(sid)[-1].content == "one two three"


def test_events_closed_before_reading_leave_no_streaming_row(store: HistoryStore) -> None:
    service = ChatService(store, FakeBackend(["never"]))
    sid = new_session(store)
    service.send(sid, "first").close()
    events = service.send(sid, "second")
    next(events)
    events.close()
    assert [m.status for m in store.messages(sid)] == ["complete", "complete", "stopped"]


class Buggy(FakeBackend):
    def stream(self, messages, settings, stop, adapter=None):  # noqa: ANN001, ANN201
        yield from list(super().stream(messages, settings, stop, adapter))[:1]
        raise RuntimeError("index out of range in the sampler")


def test_unexpected_backend_failure_is_stored_as_error_and_surfaces(store: HistoryStore) -> None:
    sid = new_session(store)
    with pytest.raises(RuntimeError):
        list(ChatService(store, Buggy(["partial text"])).send(sid, "hi"))
    answer = store.messages(sid)[-1]
    assert (answer.status, answer.content) == ("error", "partial")
    assert "RuntimeError: index out of range in the sampler" in answer.error


def test_backend_reports_busy_while_an_answer_streams(store: HistoryStore) -> None:
    backend = FakeBackend(["one two"])
    service = ChatService(store, backend)
    events = service.send(new_session(store), "hi")
    assert not backend.busy
    next(events), next(events)
    assert backend.busy  # what the chat page tells a second tab
    list(events)
    assert not backend.busy
