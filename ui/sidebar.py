"""The sidebar session list: new chat, search (a chat found by a message on another branch opens on that
branch), open, rename and delete (with a confirmation step), and import of a chat exported as JSON.

"New chat" opens a draft, not a session: the session is created with its first message, so the list holds
only chats that have messages (an empty one shows only while it is the open chat, e.g. from its URL).
The chat page adds the persona picker (``pick_persona``): the open chat's persona, or the draft's.
"""

from __future__ import annotations

from contextlib import suppress

import streamlit as st

from core.chat.config import ChatConfig
from core.chat.defaults import draft_config, load_chat_defaults
from core.engine import Engine
from core.errors import InkstoneError, NotFoundError
from core.history.store import HistoryStore, Session
from core.personas.store import Persona
from ui import chat_import, state

LIST_LIMIT = 200
_CONFIRM = "inkstone_confirm_delete"
_DRAFT_PERSONA = "inkstone_draft_persona"
"""session_state key: the persona picked for the draft (None: the saved new-chat defaults)."""


def render(engine: Engine) -> None:
    """Draw the session list in the sidebar; clicks open, create, rename or delete sessions."""
    store = engine.store
    current = state.current_session_id()
    with st.sidebar:
        st.button(
            "New chat",
            icon=":material/add:",
            type="primary" if current is None else "secondary",  # marked while the draft is the open chat
            width="stretch",
            on_click=state.close_session,
        )
        query = st.text_input("Search chats", key="inkstone_search", placeholder="Title or message text")
        sessions = store.search_sessions(query) if query.strip() else store.list_sessions(limit=LIST_LIMIT)
        if query.strip() and not sessions:
            st.caption("No chat matches this search.")
        hits: dict[str, str] = {}  # session -> its newest matching message: the chat opens on that branch
        for hit in store.search_messages(query, limit=LIST_LIMIT) if query.strip() else []:
            hits.setdefault(hit.session_id, hit.message_id)
        for session in sessions:
            if session.id != current and store.message_count(session.id) == 0:
                continue  # an empty chat (created by an older version, or its messages are being sent)
            st.button(
                session.title,
                key=f"open-{session.id}",
                type="primary" if session.id == current else "tertiary",
                width="stretch",
                on_click=_open,
                args=(store, session.id, hits.get(session.id)),
            )
        if current is not None:
            _manage(store, store.get_session(current))
        chat_import.render(engine)


def _open(store: HistoryStore, session_id: str, message_id: str | None) -> None:
    """Open a chat; from a search, on the branch of the message that matched (unless it is on the open path)."""
    state.open_session(session_id)
    if message_id is not None and message_id not in {m.id for m in store.messages(session_id)}:
        with suppress(InkstoneError):  # deleted meanwhile: the chat opens as it is
            store.switch_branch(session_id, message_id)


def _manage(store: HistoryStore, session: Session) -> None:
    """Rename and delete the open session."""
    with st.expander("Rename or delete this chat"):
        title = st.text_input("Title", value=session.title, key=f"title-{session.id}-{session.title}")
        if st.button("Save title", key=f"rename-{session.id}"):
            try:
                store.rename_session(session.id, title)
            except InkstoneError as exc:
                st.error(str(exc))
            else:
                st.rerun()
        if st.session_state.get(_CONFIRM) == session.id:
            st.warning(f"Delete “{session.title}” and all its messages? This cannot be undone.")
            yes, no = st.columns(2)
            yes.button(
                "Yes, delete", key="delete-yes", type="primary", on_click=_delete, args=(store, session.id)
            )
            no.button("Cancel", key="delete-no", on_click=_cancel_delete)
        else:
            st.button(
                "Delete chat",
                key=f"delete-{session.id}",
                icon=":material/delete:",
                on_click=_ask_delete,
                args=(session.id,),
            )


def _ask_delete(session_id: str) -> None:
    st.session_state[_CONFIRM] = session_id


def _cancel_delete() -> None:
    st.session_state.pop(_CONFIRM, None)


def _delete(store: HistoryStore, session_id: str) -> None:
    st.session_state.pop(_CONFIRM, None)
    try:
        store.delete_session(session_id)
    except NotFoundError:
        pass  # already deleted (for example in another tab)
    state.close_session()


def draft_chat(engine: Engine) -> ChatConfig:
    """What the new chat starts with: the persona picked before its first message, else the saved defaults."""
    return draft_config(engine, persona=st.session_state.get(_DRAFT_PERSONA))


def pick_persona(engine: Engine, session_id: str | None) -> Persona | None:
    """The sidebar's persona picker (avatar + name): sets the open chat's persona, checked like the settings page
    does (it writes from the next answer), or the draft's. Returns the persona now in effect."""
    if session_id is not None:
        st.session_state.pop(_DRAFT_PERSONA, None)  # the draft became this chat: the next one starts afresh
        current = engine.store.get_session(session_id).persona or ""
    else:
        current = st.session_state.get(_DRAFT_PERSONA)
        current = load_chat_defaults(engine.settings).persona or "" if current is None else current
    labels = {"": "No persona", **{p.id: p.label for p in engine.personas()[0]}}  # broken: on the Personas page
    labels.setdefault(current, f"{current} (unavailable)")
    picked = st.sidebar.selectbox(
        "Persona", list(labels), index=list(labels).index(current), format_func=labels.__getitem__,
        key=f"chat-persona-{session_id}-{current}", help="Who answers: applies from the next answer",
    )  # fmt: skip
    if session_id is None:
        if picked != current:
            st.session_state[_DRAFT_PERSONA] = picked
        return draft_chat(engine).persona
    if picked != current:
        config = engine.service.config(session_id, persona=picked)
        engine.store.update_session(session_id, persona=config.persona_id or "")
    return engine.service.persona_of(engine.store.get_session(session_id))
