"""Per-browser-tab state the pages share: the engine handed over by ``app.py`` and the open session.

The open session id lives in ``st.query_params["session"]`` (so a browser refresh or an app restart
reopens it) and in ``st.session_state`` (so it survives page switches, which drop query params).
The model the user picked on the settings page is process-wide: every tab shares one loaded engine.
"""

from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

from core.engine import Engine
from core.errors import NotFoundError
from core.generation.scheduler import FairQueue, line

_ENGINE = "inkstone_engine"
_SESSION = "inkstone_session"
_PARAM = "session"


@dataclass(frozen=True)
class ModelChoice:
    """A model picked in the UI: profile id or local directory, plus quantization ("none", "4bit", "8bit")."""

    model: str
    quantize: str = "none"


@st.cache_resource
def _shared_choice() -> dict[str, ModelChoice]:
    """Process-wide holder of the model picked on the settings page (empty: use the configured one)."""
    return {}


def model_choice() -> ModelChoice | None:
    """The model picked in the UI for every tab, or None to use the configured settings."""
    return _shared_choice().get("choice")


def choose_model(choice: ModelChoice) -> None:
    """Make ``choice`` the model of every tab; ``app.py`` loads it on the next rerun."""
    _shared_choice()["choice"] = choice


def forget_model_choice() -> None:
    """Go back to the configured model (for example after the picked one failed to load)."""
    _shared_choice().pop("choice", None)


def set_engine(engine: Engine) -> None:
    """Called by ``app.py`` on every run with the cached engine."""
    st.session_state[_ENGINE] = engine


def engine() -> Engine:
    """The engine ``app.py`` built; pages never build it themselves."""
    return st.session_state[_ENGINE]


def queue() -> FairQueue:
    """The one line every tab and API request joins before generating with the shared model."""
    return line(engine().backend)


def current_session_id() -> str | None:
    """The open session (query param first, then this tab's state); None if none or it no longer exists."""
    session_id = st.query_params.get(_PARAM) or st.session_state.get(_SESSION)
    if not session_id:
        return None
    try:
        engine().store.get_session(session_id)
    except NotFoundError:
        close_session()
        return None
    open_session(session_id)
    return session_id


def open_session(session_id: str) -> None:
    """Make ``session_id`` the open session of this tab (and of its URL)."""
    st.session_state[_SESSION] = session_id
    if st.query_params.get(_PARAM) != session_id:
        st.query_params[_PARAM] = session_id


def close_session() -> None:
    """Open no session: a draft chat, created with its first message (``New chat``, or after a delete)."""
    st.session_state.pop(_SESSION, None)
    if _PARAM in st.query_params:
        del st.query_params[_PARAM]
