"""``ui.turn``: the helper the chat page streams every answer through, with a real ChatService.

The Stop path is driven the way Streamlit drives it: the writer (``st.write_stream`` in the app) raises
Streamlit's own ``RerunException`` mid-answer, as it does when the user clicks Stop and the script is
rerun. The helper must close the event iterator so the service keeps the partial answer as ``stopped``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from itertools import islice
from pathlib import Path

import pytest
from streamlit.runtime.scriptrunner_utils.exceptions import RerunException
from streamlit.runtime.scriptrunner_utils.script_requests import RerunData

from core.backends.fake import FakeBackend
from core.config import load_settings
from core.engine import Engine, build_engine
from core.errors import GenerationError
from core.history.store import Message
from ui.turn import ActiveTurn, answer_caption, omitted_notice, stream_turn


def make_engine(tmp_path: Path, backend: FakeBackend) -> Engine:
    settings = load_settings(
        {"home": str(tmp_path / "data"), "model": "fake"}, config_file=tmp_path / "none.toml"
    )
    return build_engine(settings, backend=backend)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    built = make_engine(tmp_path, FakeBackend())
    yield built
    built.store.close()


def test_a_full_answer_is_written_and_stored_complete(engine: Engine) -> None:
    session_id = engine.new_session()
    written: list[str] = []
    outcome = stream_turn(
        engine.service.send(session_id, "one two three"), lambda texts: written.extend(texts)
    )
    assert "".join(written) == "You said: one two three"
    assert outcome.status == "complete" and outcome.omitted_turns == 0 and outcome.error is None
    answer = engine.store.get_message(outcome.message_id)
    assert (answer.content, answer.status) == ("You said: one two three", "complete")


def test_a_rerun_mid_answer_keeps_the_partial_answer_as_stopped(engine: Engine) -> None:
    session_id = engine.new_session()
    events = engine.service.send(session_id, "one two three four five")

    def write_until_rerun(texts: Iterator[str]) -> None:
        list(islice(texts, 3))  # three words reach the browser, then the user clicks Stop
        raise RerunException(RerunData())

    with pytest.raises(RerunException):
        stream_turn(events, write_until_rerun)
    user, answer = engine.store.messages(session_id)
    assert (user.content, user.status) == ("one two three four five", "complete")
    assert (answer.content, answer.status) == ("You said: one", "stopped")
    assert ":material/stop_circle: stopped" in answer_caption(answer)
    # the backend was released: the next turn in the same session goes through
    outcome = stream_turn(engine.service.send(session_id, "next"), lambda texts: list(texts))
    assert outcome.status == "complete"


def test_settle_stops_a_turn_streaming_in_another_thread_and_waits_for_it(tmp_path: Path) -> None:
    """Streamlit's fast rerun: the new run settles the old run's turn before it reads the history."""
    engine = make_engine(tmp_path, FakeBackend(delay_s=0.05))
    session_id = engine.new_session()
    turn, first_words = ActiveTurn(), threading.Event()

    def write(texts: Iterator[str]) -> None:
        for i, _ in enumerate(texts):
            if i == 2:
                first_words.set()

    def old_run() -> None:
        try:
            stream_turn(engine.service.send(session_id, " ".join(["word"] * 200), turn.stop), write)
        finally:
            turn.done.set()

    thread = threading.Thread(target=old_run)
    thread.start()
    assert first_words.wait(10)
    assert turn.settle(timeout=10)
    answer = engine.store.messages(session_id)[-1]
    assert answer.status == "stopped" and answer.content.startswith("You said: word")
    assert len(answer.content.split()) < 202
    thread.join(10)
    assert turn.settle(timeout=0)  # a finished turn settles at once
    engine.store.close()


def test_a_failed_generation_reports_the_error(tmp_path: Path) -> None:
    def boom(_messages: list[dict[str, str]]) -> str:
        raise GenerationError("The GPU ran out of memory during this answer: lower max_new_tokens.")

    engine = make_engine(tmp_path, FakeBackend(replies=boom))
    session_id = engine.new_session()
    outcome = stream_turn(engine.service.send(session_id, "hi"), lambda texts: list(texts))
    assert outcome.status == "error" and "ran out of memory" in (outcome.error or "")
    answer = engine.store.get_message(outcome.message_id)
    assert answer.status == "error" and answer.error == outcome.error
    engine.store.close()


def test_caption_and_notice_texts() -> None:
    done = Message("m", "s", "assistant", "hi", "complete", "t", 12, 42, 410.4, 18.34)
    assert answer_caption(done) == "42 tokens · 18.3 tokens/s · first token 0.41 s"
    assert (
        answer_caption(Message("m", "s", "assistant", "h", "stopped", "t"))
        == ":material/stop_circle: stopped"
    )
    assert omitted_notice(0) is None
    assert omitted_notice(3) == "3 earlier turns were left out of the prompt; they stay in the history."
