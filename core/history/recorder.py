"""The one answer recorder: every stored answer, whoever asked (chat view, CLI, API), is written by an
``AnswerRecorder``.

The answer row is created ``streaming`` and signed by the persona that writes it; its text is saved as it grows
(at most every ``SAVE_EVERY_S``: the row's heartbeat); one final write settles it whatever ended the stream:

- the stream's ``Finished``: ``complete`` (reason ``stop`` / ``length``) or ``stopped``;
- an error: ``error`` with the message;
- a stream that ran out without ``Finished`` (a backend bug): ``error`` with ``NO_FINISH``;
- a consumer that went away before the end (browser rerun, client disconnect): ``stopped``.

The figures (token counts, time to first token, decode tokens/s) are the ``Finished`` event's, measured where the
tokens were produced (``core.backends.timing``): the recorder reads them and never measures, so the Stats page and
``/metrics`` see one meaning of each.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from core.backends.base import Finished
from core.errors import InkstoneError
from core.history.store import CURRENT_LEAF

if TYPE_CHECKING:
    from core.history.store import HistoryStore, Session
    from core.personas.store import Persona

SAVE_EVERY_S = 0.5
"""How often the growing answer is written to disk while it streams."""

NO_FINISH = (
    "The model backend ended this answer without saying it was finished (a backend bug); the text so far is "
    "kept: regenerate the answer, or report the backend's problem."
)

STATUS = {"stop": "complete", "length": "complete", "stopped": "stopped", "error": "error"}
"""The stored status of an answer by the reason its generation ended (``Finished.reason``)."""


def signature(persona: Persona | None) -> tuple[str, str, str | None] | None:
    """The (id, name, avatar) an answer written by ``persona`` is signed with (None: no persona)."""
    return (persona.id, persona.name, persona.avatar) if persona is not None else None


@dataclass(frozen=True)
class RecordedAnswer:
    """A settled answer: what its row holds at the end."""

    message_id: str
    status: str
    """``complete``, ``stopped`` or ``error``."""
    reason: str
    """Why it ended: ``stop``, ``length``, ``stopped`` or ``error`` (``Finished.reason``, or the recorder's rule)."""
    text: str
    error: str | None
    prompt_tokens: int | None
    """None when the stream ended without ``Finished`` (as the completion figures)."""
    completion_tokens: int | None
    ttft_ms: float | None
    tokens_per_s: float | None
    """Decode speed (``Finished.tokens_per_s``): tokens after the first over the time after the first."""

    def row(self) -> dict[str, Any]:
        """The columns of the final write (``HistoryStore.update_message`` keywords)."""
        return dict(content=self.text, status=self.status, error=self.error, prompt_tokens=self.prompt_tokens,
                    completion_tokens=self.completion_tokens, ttft_ms=self.ttft_ms, tokens_per_s=self.tokens_per_s)


class AnswerRecorder:
    """Writes one streaming answer row: ``add`` text, note ``finish``, then ``end`` and ``save`` once."""

    def __init__(self, store: HistoryStore, session_id: str, answer_id: str) -> None:
        self.store = store
        self.session_id = session_id
        self.answer_id = answer_id
        self.parts: list[str] = []
        self.finished: Finished | None = None
        """The stream's ``Finished`` event, once it came."""
        self.settled = False
        """True once the final write was made (or handed to ``settle_later``)."""
        self._ran_out = False
        self._saved = time.perf_counter()

    @classmethod
    def start(
        cls,
        store: HistoryStore,
        session: Session,
        model_id: str,
        persona: Persona | None,
        *,
        parent_id: str | None = CURRENT_LEAF,
    ) -> AnswerRecorder:
        """Create the empty ``streaming`` answer row in ``session`` under ``parent_id`` (the user message it
        answers; default: the session's current leaf), signed by ``persona``; the session notes ``model_id`` as
        the model it talks to. Callers pass the message they answer: the open branch may change meanwhile."""
        if session.model != model_id:
            store.update_session(session.id, model=model_id)
        answer = store.add_message(session.id, "assistant", "", status="streaming", persona=signature(persona),
                                   parent_id=parent_id)  # fmt: skip
        return cls(store, session.id, answer.id)

    @property
    def text(self) -> str:
        """The answer text so far."""
        return "".join(self.parts)

    def add(self, text: str) -> None:
        """Collect new answer text, saving the growing answer when ``SAVE_EVERY_S`` has passed (a store error
        raises: the caller ends the answer with it)."""
        self.parts.append(text)
        now = time.perf_counter()
        if now - self._saved >= SAVE_EVERY_S:
            self._saved = now
            self.store.update_message(self.answer_id, content=self.text)

    def finish(self, event: Finished) -> None:
        """Note the stream's ``Finished`` event (its reason and figures are what gets stored)."""
        self.finished = event

    def ran_out(self) -> None:
        """Note that the stream ran to its end (so an end without ``Finished`` is the backend's bug, not a consumer
        that went away)."""
        self._ran_out = True

    def end(self, error: str | None = None) -> RecordedAnswer:
        """The answer's final state: ``error`` if given, else by ``Finished``, else the rules for a stream without
        it (ran out: error ``NO_FINISH``; consumer gone: stopped). Writes nothing (see ``save``)."""
        finished = self.finished
        if error is not None:
            reason = "error"
        elif finished is not None:
            reason = finished.reason
            error = "Generation failed." if reason == "error" else None
        elif self._ran_out:
            reason, error = "error", NO_FINISH
        else:
            reason = "stopped"
        ttft = finished.ttft_s if finished is not None else None
        return RecordedAnswer(
            message_id=self.answer_id,
            status=STATUS.get(reason, "complete"),
            reason=reason,
            text=self.text,
            error=error,
            prompt_tokens=finished.prompt_tokens if finished is not None else None,
            completion_tokens=finished.completion_tokens if finished is not None else None,
            ttft_ms=ttft * 1000 if ttft is not None else None,
            tokens_per_s=finished.tokens_per_s if finished is not None else None,
        )

    def save(self, answer: RecordedAnswer, **extra: Any) -> None:
        """Write ``answer`` (and ``extra`` columns, such as ``sources``) to the row. When the store cannot be
        written (locked, disk full), the write is kept for the store's next write (``settle_later``) and the
        InkstoneError is raised."""
        changes = {**answer.row(), **extra}
        self.settled = True
        try:
            self.store.update_message(self.answer_id, **changes)
        except InkstoneError:
            self.store.settle_later(self.answer_id, **changes)
            raise
