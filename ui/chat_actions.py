"""The row under a chat: Regenerate, and the exports (Markdown, JSON with every branch, and the answers marked
Good as training JSONL). Kept apart so the chat page stays a thin script.

A chat with pictures builds its JSON (every picture as a data URL) only when the button is clicked."""

from __future__ import annotations

import json

import streamlit as st

from core.engine import Engine
from core.history.export import session_to_json, session_to_markdown
from core.history.steps import steps_of
from core.history.store import Message
from core.history.training_data import training_jsonl


def action_row(engine: Engine, session_id: str, history: list[Message], *, regenerate_key: str) -> None:
    """Draw Regenerate (which sets ``regenerate_key`` for the next run) and the export buttons of ``session_id``."""
    store = engine.store
    session = store.get_session(session_id)
    rag_on, kbs = engine.knowledge.session_knowledge(session_id)  # the exports carry the chat's RAG choice
    knowledge = {"rag": rag_on, "knowledge_bases": [kb.name for kb in kbs]}
    tree = store.all_messages(session_id)  # the JSON holds every branch; ``messages`` is the current path
    steps = steps_of(store, [m.id for m in tree if m.role == "assistant"])  # the answers' tool calls
    with st.container(horizontal=True):
        st.button(
            "Regenerate",
            icon=":material/refresh:",
            help="Answer again; the old answer stays as another version (‹ 1/2 ›)",
            on_click=st.session_state.__setitem__,
            args=(regenerate_key, session_id),
        )
        pictures = store.images_for(m.id for m in tree if m.role == "user")
        st.download_button(
            "Export Markdown",
            session_to_markdown(session, history, **knowledge, images=pictures, steps=steps),
            on_click="ignore",
            file_name=f"inkstone-{session_id}.md",
            mime="text/markdown",
        )

        def exported() -> str:
            data = session_to_json(session, history, **knowledge, tree=tree, images=pictures, steps=steps)
            return json.dumps(data, ensure_ascii=False, indent=2)

        st.download_button(
            "Export JSON",
            exported if pictures else exported(),
            on_click="ignore",
            file_name=f"inkstone-{session_id}.json",
            mime="application/json",
        )
        if store.good_answers(session_id=session_id):  # answers marked Good: JSONL for `python -m core train`
            st.download_button(
                "Export training data",
                training_jsonl(store, session_id=session_id),
                on_click="ignore",
                file_name=f"inkstone-{session_id}-training.jsonl",
                mime="application/jsonl",
                help="The answers marked Good with their questions, as chat JSONL for `python -m core train`",
            )
