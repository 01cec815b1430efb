"""``inkstone_session``: an API exchange stored in an Inkstone session, so it shows in the app's history.

The last user message is stored, then the answer row (``streaming``), its text saved as it grows, and its
final status and figures (``complete`` / ``stopped`` / ``error``) like an answer typed in the app.
"""

from __future__ import annotations

import time
from typing import Any

from core.api.errors import ApiError
from core.errors import NotFoundError

SAVE_EVERY_S = 0.5


class SessionRecord:
    """The stored rows of one API exchange."""

    def __init__(self, store: Any, session_id: str, answer_id: str) -> None:
        self.store = store
        self.session_id = session_id
        self.answer_id = answer_id
        self.parts: list[str] = []
        self.settled = False
        self._saved = time.perf_counter()

    @classmethod
    def start(cls, engine: Any, prep: Any) -> SessionRecord:
        """Create (``"new"``) or find the session, store the user message and an empty ``streaming`` answer."""
        store = engine.store
        model = engine.backend.model_id
        persona = prep.persona.id if prep.persona is not None else None
        if prep.session == "new":
            session = store.create_session(model=model, persona=persona, settings=prep.settings.to_dict())
        else:
            try:
                session = store.get_session(prep.session)
            except NotFoundError as exc:
                raise ApiError(404, f"{exc} Pass inkstone_session=\"new\" to start one.", code="session_not_found",
                               param="inkstone_session") from None
            if session.model != model:
                store.update_session(session.id, model=model)
        store.add_message(session.id, "user", prep.user_text)
        answer = store.add_message(session.id, "assistant", "", status="streaming")
        return cls(store, session.id, answer.id)

    def grow(self, text: str) -> None:
        """Add answer text; saved to disk at most every half second."""
        self.parts.append(text)
        now = time.perf_counter()
        if now - self._saved >= SAVE_EVERY_S:
            self.store.update_message(self.answer_id, content="".join(self.parts))
            self._saved = now

    def finish(self, status: str, prompt: int, completion: int, ttft_s: float | None, rate: float | None) -> str:
        """Store the final text, status and figures; return the session id."""
        self.store.update_message(
            self.answer_id, content="".join(self.parts), status=status, prompt_tokens=prompt,
            completion_tokens=completion, ttft_ms=ttft_s * 1000 if ttft_s is not None else None, tokens_per_s=rate,
        )
        self.settled = True
        return self.session_id

    def fail(self, error: str) -> None:
        """Keep the partial answer with status ``error`` and the message."""
        self.store.update_message(self.answer_id, content="".join(self.parts), status="error", error=error)
        self.settled = True

    def stop(self) -> None:
        """The client went away: keep the partial answer as ``stopped``."""
        self.store.update_message(self.answer_id, content="".join(self.parts), status="stopped")
        self.settled = True
