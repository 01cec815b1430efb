"""A message's own controls on the chat page: the branch switcher ``‹ 2/3 ›`` under a message with siblings
(edits of a question, other answers), Edit for a user message (the edit is answered as a new branch), Good for an
answer (kept as training data), "New chat from here" (a fork), and Delete branch (asks first; the rest of the tree
stays).

Clicks only store what was asked in ``st.session_state`` or the history (callbacks run before the page draws);
the chat page then draws the path the store now holds, and answers a pending edit (``pending_edit``). A message
deleted meanwhile (another tab) gives a clear notice, never an exception.
"""

from __future__ import annotations

from collections.abc import Callable

import streamlit as st

from core.chat.service import ChatService
from core.errors import InkstoneError
from core.history.store import HistoryStore, Message
from ui import state

_EDITING = "inkstone_editing"
"""session_state key: the id of the user message whose edit box is open."""
_EDIT = "inkstone_edit"
"""session_state key: (session id, message id, new text) of an edit to answer on this run."""
_CONFIRM = "inkstone_confirm_branch"
"""session_state key: the message whose branch the user asked to delete (waiting for Yes)."""
_NOTICE = "inkstone_branch_notice"
"""session_state key: an error from a click (a message deleted in another tab), shown once."""


def pending_edit(session_id: str | None) -> tuple[str, str] | None:
    """The (message id, new text) of an edit sent for this chat, read once (None: none)."""
    edit = st.session_state.pop(_EDIT, None)
    if edit is None or edit[0] != session_id:
        return None
    return edit[1], edit[2]


def show_notice() -> None:
    """The error of the last click, if any (once)."""
    if text := st.session_state.pop(_NOTICE, None):
        st.error(text)


def _guarded(action: Callable[[], object]) -> None:
    try:
        action()
    except InkstoneError as exc:
        st.session_state[_NOTICE] = str(exc)


def _switch(store: HistoryStore, session_id: str, message_id: str) -> None:
    st.session_state.pop(_CONFIRM, None)
    _guarded(lambda: store.switch_branch(session_id, message_id))


def _fork(store: HistoryStore, message_id: str) -> None:
    try:
        fork = store.fork_session(message_id)
    except InkstoneError as exc:
        st.session_state[_NOTICE] = str(exc)
        return
    state.open_session(fork.id)


def _delete(store: HistoryStore, message_id: str) -> None:
    st.session_state.pop(_CONFIRM, None)
    _guarded(lambda: store.delete_branch(message_id))


def _mark(store: HistoryStore, message_id: str, good: bool) -> None:
    _guarded(lambda: store.mark_good(message_id, good))


def _send_edit(service: ChatService, session_id: str, message_id: str) -> None:
    """Answer the edit on this run, or keep the box open (with the text) and say why it cannot be sent."""
    text = st.session_state.get(f"edit-text-{message_id}", "")
    try:
        service.check_edit(session_id, message_id, text)
    except InkstoneError as exc:
        st.session_state[_NOTICE] = str(exc)
        return
    st.session_state.pop(_EDITING, None)
    st.session_state[_EDIT] = (session_id, message_id, text)


def controls(
    store: HistoryStore, service: ChatService, session_id: str, children: dict[str | None, list[str]]
) -> Callable[[Message], None]:
    """The function that draws one message's controls, given the chat's ``children`` (``HistoryStore.children``)."""

    def draw(message: Message) -> None:
        siblings = children.get(message.parent_id, [message.id])
        place = siblings.index(message.id) if message.id in siblings else 0
        with st.container(horizontal=True, vertical_alignment="center", gap="small"):
            if len(siblings) > 1:
                st.button("‹", key=f"prev-{message.id}", type="tertiary", disabled=place == 0,
                          help="Previous version", on_click=_switch,
                          args=(store, session_id, siblings[max(place - 1, 0)]))  # fmt: skip
                st.caption(f"{place + 1}/{len(siblings)}", width="content")
                st.button("›", key=f"next-{message.id}", type="tertiary", disabled=place == len(siblings) - 1,
                          help="Next version", on_click=_switch,
                          args=(store, session_id, siblings[min(place + 1, len(siblings) - 1)]))  # fmt: skip
            if message.role == "user":
                st.button("Edit", key=f"edit-{message.id}", icon=":material/edit:", type="tertiary",
                          help="Change this message and get a new answer; the old one stays as another branch",
                          on_click=st.session_state.__setitem__, args=(_EDITING, message.id))  # fmt: skip
            if message.role == "assistant" and message.status != "streaming":
                st.button("Good", key=f"good-{message.id}", icon=":material/thumb_up:",
                          type="secondary" if message.good else "tertiary",
                          help="Marked as good: in this chat's training data" if message.good
                          else "Mark as good: keep this answer as training data (Export training data)",
                          on_click=_mark, args=(store, message.id, not message.good))  # fmt: skip
            st.button("Fork", key=f"fork-{message.id}", icon=":material/call_split:", type="tertiary",
                      help="New chat from here: a copy of the conversation down to this message",
                      on_click=_fork, args=(store, message.id))  # fmt: skip
            if len(siblings) > 1:
                st.button("Delete branch", key=f"delete-{message.id}", icon=":material/delete:", type="tertiary",
                          help="Delete this version and everything below it; the other versions stay",
                          on_click=st.session_state.__setitem__, args=(_CONFIRM, message.id))  # fmt: skip
        if st.session_state.get(_CONFIRM) == message.id:
            st.warning("Delete this version and every message below it? The other versions stay. This cannot be "
                       "undone.")  # fmt: skip
            with st.container(horizontal=True):
                st.button("Yes, delete branch", key=f"delete-yes-{message.id}", type="primary", on_click=_delete,
                          args=(store, message.id))  # fmt: skip
                st.button("Cancel", key=f"delete-no-{message.id}", on_click=st.session_state.pop, args=(_CONFIRM, None))
        if message.role == "user" and st.session_state.get(_EDITING) == message.id:
            st.text_area("Edit your message", value=message.content, key=f"edit-text-{message.id}")
            with st.container(horizontal=True):
                st.button("Send edit", key=f"edit-send-{message.id}", type="primary", icon=":material/send:",
                          on_click=_send_edit, args=(service, session_id, message.id))  # fmt: skip
                st.button("Cancel", key=f"edit-cancel-{message.id}", on_click=st.session_state.pop,
                          args=(_EDITING, None))  # fmt: skip

    return draw
