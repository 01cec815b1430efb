"""The sidebar's "Import a chat": upload a chat's JSON export (from the chat page or ``sessions export``); it opens
as a new chat with its RAG switch and the knowledge bases it names that exist here
(``core.history.export.import_session``;
the missing ones are named in a warning, shown once).
"""

from __future__ import annotations

import streamlit as st

from core.engine import Engine
from core.errors import InkstoneError
from core.history.export import import_session, load_export
from ui import state

_IMPORTS, _NOTICE = "inkstone_imports", "inkstone_import_notice"
"""session_state keys: how many chats this tab imported (a fresh uploader after each), the last one's notice."""


def render(engine: Engine) -> None:
    """The "Import a chat" box (call inside ``st.sidebar``) and the last import's notice."""
    if notice := st.session_state.pop(_NOTICE, None):
        st.warning(notice, icon=":material/library_books:")
    with st.expander("Import a chat"):
        count = st.session_state.get(_IMPORTS, 0)
        upload = st.file_uploader("A chat's JSON export", type=["json"], key=f"import-{count}")
        if upload is not None and st.button("Import", key="import-chat", icon=":material/upload:"):
            try:
                data = load_export(upload.getvalue(), upload.name)
                result = import_session(engine.store, engine.knowledge.rows, data)
            except InkstoneError as exc:
                st.error(str(exc))
            else:
                st.session_state[_IMPORTS] = count + 1  # a fresh, empty uploader: nothing is imported twice
                st.session_state[_NOTICE] = result.notice
                state.open_session(result.session.id)
                st.switch_page("ui/chat_page.py")  # show it, from whichever page imported it
