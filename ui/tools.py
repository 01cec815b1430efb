"""The chat view's tools: the picker above the message box (built-ins and the MCP servers of ``inkstone.toml``, each
off until turned on, with the limit of tool calls per answer), and each call of an answer folded under it as a step
(tool, arguments, result, time), while it streams and from the history after a restart.

The choice is stored with the chat (``core.tools.chat``: the session's settings), so a refresh, another tab or a
restart shows it; in a new chat (a draft) it waits in this tab's state until the first message creates the chat.
The tool loop itself runs in the chat service; nothing here runs a tool.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import streamlit as st

from core.engine import Engine
from core.errors import InkstoneError
from core.history.store import Message
from core.tools.chat import chosen_tools, max_steps, set_chosen_tools, tool_choices
from core.tools.history import steps_by_answer
from core.tools.loop import MAX_STEPS, ToolStep

_NOTICE = "inkstone_tools_notice"
_ANSWER_NOTICE = "inkstone_tools_answer_notice"
PREVIEW_CHARS = 60


def _key(session_id: str | None) -> str:
    return f"tools-{session_id or 'new'}"


def limit_text(limit: int) -> str:
    """How the limit of tool calls per answer is told to the user."""
    return f"At most {limit} tool call{'s' if limit != 1 else ''} per answer; then the model answers without tools."


def _changed(engine: Engine, session_id: str | None) -> None:
    if session_id is None:
        return  # a draft: stored with the chat (``apply_draft``)
    try:
        set_chosen_tools(engine.store, session_id, list(st.session_state.get(_key(session_id)) or []),
                         engine.settings)  # fmt: skip
    except InkstoneError as exc:
        st.session_state[_NOTICE] = str(exc)


def apply_draft(engine: Engine, session_id: str) -> None:
    """Give a chat just created from the draft the tools picked before its first message."""
    picked = list(st.session_state.pop(_key(None), None) or [])
    if picked:
        set_chosen_tools(engine.store, session_id, picked, engine.settings)


def render_controls(engine: Engine, session_id: str | None) -> None:
    """The tools picker, pinned above the message box (a popover: built-ins, then one entry per MCP server)."""
    choices = tool_choices(engine.settings)
    key = _key(session_id)
    session = engine.store.get_session(session_id) if session_id else None
    if key not in st.session_state:  # first draw for this chat: start from what is stored
        st.session_state[key] = [n for n in chosen_tools(session) if n in choices]
    on = st.session_state[key]
    limit = max_steps(session)
    with st.bottom, st.container(horizontal=True, vertical_alignment="center"):
        label = f"Tools ({len(on)} on)" if on else "Tools"
        with st.popover(label, icon=":material/build:", help="Let the model call tools for its answers"):
            st.multiselect("Tools the model may call", list(choices), format_func=choices.get, key=key,
                           on_change=_changed, args=(engine, session_id), placeholder="No tools: off",
                           help="Each call shows under the answer. MCP servers come from inkstone.toml; see "
                                "Settings for their tools.")  # fmt: skip
            st.caption(limit_text(limit))
        if on:
            st.caption(" · ".join(choices.get(n, n) for n in on) + f" · at most {limit} calls per answer")
    if notice := st.session_state.pop(_NOTICE, None):
        st.error(notice)
    answered = st.session_state.get(_ANSWER_NOTICE)
    if answered and answered[0] == session_id:  # shown once, after the answer that went without them
        st.session_state.pop(_ANSWER_NOTICE, None)
        st.warning(answered[1], icon=":material/build:")


def remember_notice(session_id: str | None, notice: str | None) -> None:
    """Keep what an answer's tools could not offer (shown after the rerun that follows the answer)."""
    if notice:
        st.session_state[_ANSWER_NOTICE] = (session_id, notice)


def stored_steps(engine: Engine, session_id: str | None, history: list[Message]) -> Callable[[Message], None]:
    """The function that draws an answer's stored tool calls (one query for the whole chat)."""
    steps = steps_by_answer(engine.store, [m.id for m in history if m.role == "assistant"])
    limit = max_steps(engine.store.get_session(session_id)) if session_id else MAX_STEPS

    def draw(message: Message) -> None:
        if found := steps.get(message.id):
            show_steps(found, limit)

    return draw


def _preview(arguments: dict[str, Any]) -> str:
    text = ", ".join(f"{k}={json.dumps(v, ensure_ascii=False)}" for k, v in arguments.items())
    return text if len(text) <= PREVIEW_CHARS else text[: PREVIEW_CHARS - 1] + "…"


def show_step(step: ToolStep) -> None:
    """One call folded: ``tool(arguments) · time`` as the label; arguments and result inside."""
    icon = ":material/error:" if step.error else ":material/build:"
    with st.expander(f"{step.name}({_preview(step.arguments)}) · {step.seconds:.2f} s", icon=icon):
        st.caption("Arguments")
        st.code(json.dumps(step.arguments, ensure_ascii=False, indent=2), language="json")
        st.caption("Result (failed)" if step.error else "Result")
        st.code(step.result, language=None, wrap_lines=True)


def show_steps(steps: list[ToolStep], limit: int) -> None:
    """An answer's tool calls in order, and a line when the loop stopped at its limit."""
    for step in steps:
        show_step(step)
    if limit and len(steps) >= limit:
        st.caption(f"Stopped after {len(steps)} tool calls (the limit per answer): the model answered without "
                   "more tools.")
