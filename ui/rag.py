"""The chat view's knowledge controls: a RAG switch and the knowledge-base picker right above the message box,
the sources listed under an answer (from the stored message, so they survive reruns and restarts), and the
notice when an answer had to go without the knowledge bases.

The switch and the picker are stored with the chat (``engine.knowledge``), so a refresh, another tab or a
restart shows the same choice; in a new chat (a draft) they are stored with its first message.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from core.engine import Engine
from core.errors import InkstoneError
from core.history.export import source_label

_NOTICE = "inkstone_rag_notice"
SNIPPET_CHARS = 240


def _keys(session_id: str | None) -> tuple[str, str]:
    suffix = session_id or "new"
    return f"rag-{suffix}", f"rag-kbs-{suffix}"


def _changed(engine: Engine, session_id: str | None, names: list[str]) -> None:
    """Store the switch and the picked knowledge bases (all of them when RAG is turned on with none picked).

    A new chat is a draft until its first message: its choice waits in this tab's state (``apply_draft``).
    """
    toggle, picker = _keys(session_id)
    rag, picked = bool(st.session_state.get(toggle)), list(st.session_state.get(picker) or [])
    if rag and not picked:
        st.session_state[picker] = picked = list(names)
    if session_id is None:
        return
    try:
        engine.knowledge.set_session_knowledge(session_id, rag, picked)
    except InkstoneError as exc:
        st.session_state[_NOTICE] = (session_id, str(exc))


def apply_draft(engine: Engine, session_id: str) -> None:
    """Give a chat just created from the draft the RAG choice made before its first message."""
    toggle, picker = _keys(None)
    rag, picked = bool(st.session_state.pop(toggle, False)), list(st.session_state.pop(picker, None) or [])
    if rag:
        engine.knowledge.set_session_knowledge(session_id, True, picked)


def render_controls(engine: Engine, session_id: str | None) -> None:
    """The RAG switch and knowledge-base picker, pinned above the message box."""
    names = [s.kb.name for s in engine.knowledge.summaries()]
    toggle, picker = _keys(session_id)
    if toggle not in st.session_state:  # first draw for this chat: start from what is stored
        rag, kbs = engine.knowledge.session_knowledge(session_id) if session_id else (False, [])
        st.session_state[toggle], st.session_state[picker] = rag, [kb.name for kb in kbs]
    st.session_state[picker] = [n for n in st.session_state.get(picker) or [] if n in names]  # dropped since
    with st.bottom, st.container(horizontal=True, vertical_alignment="center"):
        if not names:
            st.toggle("Answer from my documents", key=toggle, disabled=True,
                      help="Create a knowledge base on the Knowledge page first.")  # fmt: skip
            st.page_link("ui/knowledge_page.py", label="Add documents", icon=":material/library_books:")
            return
        args = (engine, session_id, names)
        st.toggle("Answer from my documents", key=toggle, on_change=_changed, args=args,
                  help="RAG: search the chosen knowledge bases and cite them as [n]")  # fmt: skip
        st.multiselect("Knowledge bases", names, key=picker, on_change=_changed, args=args,
                       placeholder="Knowledge bases", label_visibility="collapsed")  # fmt: skip


def remember_notice(session_id: str | None, notice: str | None) -> None:
    """Keep an answer's RAG notice (shown after the rerun that follows the answer)."""
    if notice:
        st.session_state[_NOTICE] = (session_id, notice)


def show_notice(session_id: str | None) -> None:
    """Show (once) the notice of this chat's last answer, e.g. that Chroma could not be reached."""
    notice = st.session_state.get(_NOTICE)
    if notice and notice[0] == session_id:
        st.session_state.pop(_NOTICE, None)
        st.warning(notice[1], icon=":material/library_books:")


def snippet(text: str) -> str:
    """A source's text on one line, cut to about ``SNIPPET_CHARS`` characters."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= SNIPPET_CHARS else flat[: SNIPPET_CHARS - 1].rstrip() + "…"


def show_sources(sources: list[dict[str, Any]]) -> None:
    """Under an answer: each source it could cite (``[n] file, p. X``), then their snippets and scores."""
    if not sources:
        return
    labels = [source_label(s, s.get("n", i)) for i, s in enumerate(sources, start=1)]
    st.caption("Sources: " + " · ".join(labels))
    with st.expander(f"Source passages ({len(sources)})"):
        if sources[0].get("query"):
            st.caption(f"Searched for: {snippet(sources[0]['query'])}")
        for label, source in zip(labels, sources, strict=True):
            score = source.get("score")
            dated = f" · dated {source['date']}" if source.get("date") else ""
            st.markdown(f"**{label}**{dated}" + (f" · score {score:.2f}" if isinstance(score, int | float) else ""))
            if source.get("text"):
                st.caption(snippet(source["text"]))
