"""``inkstone_session``: an API exchange stored in an Inkstone session, so it shows in the app's history.

The session is created (``"new"``: ``ChatService.create_session``, as every new chat) or found, the last user message
is stored, and the answer is written by the one answer recorder (``core.history.recorder``) like an answer
typed in the app:
signed by its persona, saved as it grows, settled with its status and the ``Finished`` event's figures.
"""

from __future__ import annotations

from typing import Any

from core.api.errors import ApiError
from core.errors import NotFoundError
from core.history.recorder import AnswerRecorder


def start_exchange(engine: Any, prep: Any) -> AnswerRecorder:
    """Create (``"new"``) or find the session of ``prep`` (a ``core.api.completions.Prepared``), store its user
    message, and start recording the answer; ApiError 404 for a session that does not exist."""
    store = engine.store
    if prep.session == "new":
        session = engine.service.create_session(prep.config)
    else:
        try:
            session = store.get_session(prep.session)
        except NotFoundError as exc:
            raise ApiError(404, f"{exc} Pass inkstone_session=\"new\" to start one.", code="session_not_found",
                           param="inkstone_session") from None
    # At the end of the session's current path, with the pictures of the request's last user message (the VLM
    # request preparation sets ``user_images``; a Prepared without it carries none).
    images = getattr(prep, "user_images", None) or []
    user = store.add_message(session.id, "user", prep.user_text, images=images)
    return AnswerRecorder.start(store, session, engine.backend.model_id, prep.persona, parent_id=user.id)
