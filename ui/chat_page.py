"""The chat page: replay the open session's current path, send a message, stream the answer (with Stop),
regenerate (the old answer stays as an alternative), edit a message, switch branches (``‹ 2/3 ›``), fork, export.

Thin by design: the turn itself is ``ChatService`` (``core/chat/service.py``); ``ui.turn`` turns its events into
streamed text. Stop reruns the script, which closes the event iterator; the service keeps the partial
answer as ``stopped``, and the rerun (after ``ActiveTurn.settle``) shows it from the history.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from threading import Event

import streamlit as st

from core.chat.defaults import create_chat
from core.chat.service import ChatEvent
from core.errors import InkstoneError
from core.history.store import Message
from core.personas.store import Persona
from ui import attachments, branches, chat_actions, rag, state, tools
from ui.answer import CANCELLED, show_message, stream_answer
from ui.sidebar import draft_chat, pick_persona
from ui.turn import ActiveTurn, omitted_notice, switch_notice

_REGENERATE = "inkstone_regenerate"
_NOTICE = "inkstone_notice"
_ACTIVE = "inkstone_active_turn"

if (active := st.session_state.get(_ACTIVE)) is not None:
    active.settle()  # a rerun mid-answer (Stop): let the interrupted run store the answer first

engine = state.engine()
store, service = engine.store, engine.service
session_id = state.current_session_id()
title = store.get_session(session_id).title if session_id else "New chat"
st.set_page_config(page_title=f"{title} · Inkstone")
history = store.messages(session_id) if session_id else []  # the current path of the chat's tree
regenerating = st.session_state.pop(_REGENERATE, None) == session_id and session_id is not None
if regenerating and history and history[-1].role == "assistant":
    history = history[:-1]  # the answer being answered again (it stays, as the other version)
edit = branches.pending_edit(session_id)
if edit is not None and edit[0] in (ids := [m.id for m in history]):
    history = history[: ids.index(edit[0])]  # the edited question and what followed stay as the other branch


def run_turn(start: Callable[[Event], Iterator[ChatEvent]], question: str | None = None, pictures: Sequence = ()
             ) -> None:  # fmt: skip
    """Draw ``question`` (the message being answered, if new, with its ``pictures``), wait for the model (place in
    line, Cancel), stream one answer with Stop, then rerun to show it stored."""
    if question is not None:
        with live, st.chat_message("user"):
            st.markdown(question)
            attachments.thumbnails(pictures)
    turn = st.session_state[_ACTIVE] = ActiveTurn()
    with live, st.chat_message("assistant", avatar=persona.avatar if persona else None):
        if persona is not None:
            st.caption(f"**{persona.name}**")
        try:
            outcome = stream_answer(state.queue(), turn, session_id, start, alone=bool(persona and persona.lora))
        except InkstoneError as exc:
            st.error(str(exc))
            return
        finally:
            turn.done.set()
    if outcome is not None:
        st.session_state[_NOTICE] = (session_id, outcome.omitted_turns)
        rag.remember_notice(session_id, outcome.notice)
    st.rerun()


persona: Persona | None = None
try:  # a draft's chat is created with its first message, from the persona picked here or the new-chat defaults
    persona = pick_persona(engine, session_id)
    persona_ok = True
except InkstoneError as exc:
    st.error(str(exc))
    persona_ok = False
if not history:
    st.caption("Start a conversation: type a message below. Everything stays on this machine.")
    if persona is not None and persona.greeting:
        st.chat_message("assistant", avatar=persona.avatar).markdown(persona.greeting)
branches.show_notice()
draw_controls = branches.controls(store, service, session_id, store.children(session_id)) if session_id else None
previous: Message | None = None
pictures = attachments.stored(store, history)
draw_steps = tools.stored_steps(engine, session_id, history)  # each answer's tool calls, folded
for message in history:
    if message.role == "assistant":
        if previous is not None and (text := switch_notice(previous.persona_id, message.persona_id,
                                                           message.persona_name)):  # fmt: skip
            st.caption(text)
        previous = message
    show_message(message, draw_controls, pictures.get(message.id, ()), draw_steps)
if previous is not None and persona_ok and (
    text := switch_notice(previous.persona_id, persona.id if persona else None, persona.name if persona else None)
):
    st.caption(f"{text}; it writes the next answer.")
# The turn being written goes here, where the rerun draws it from the history: drawn after the controls below,
# the streamed copy would stay on screen next to the stored one until the rerun finished.
live = st.container()

rag.render_controls(engine, session_id)  # the RAG switch and knowledge-base picker above the message box
tools.render_controls(engine, session_id)  # the tools the model may call (built-ins, MCP servers), with the limit
if (sent := attachments.chat_input()) is not None:
    prompt = sent.text
    if not prompt.strip() and not sent.files:
        st.warning("The message is empty: type something before sending.")
    else:
        try:
            images = attachments.read(sent.files)  # a refused picture: its error below, nothing stored
            if session_id is None:
                new = draft_chat(engine)
                service.check_message(None, prompt, config=new, images=images)
                session_id = create_chat(engine, new)
                rag.apply_draft(engine, session_id)
                tools.apply_draft(engine, session_id)
                state.open_session(session_id)
            else:
                service.check_message(session_id, prompt, images=images)
        except InkstoneError as exc:
            st.error(str(exc))
        else:
            run_turn(lambda stop: service.send(session_id, prompt, stop, images), question=prompt, pictures=images)
elif edit is not None and session_id is not None:
    message_id, text = edit
    try:
        service.check_edit(session_id, message_id, text)  # an edit keeps its pictures
    except InkstoneError as exc:
        st.error(str(exc))
    else:
        run_turn(lambda stop: service.edit(session_id, message_id, text, stop), question=text,
                 pictures=store.images_of(message_id))
elif regenerating:
    run_turn(lambda stop: service.regenerate(session_id, stop))
elif session_id is not None and history:
    rag.show_notice(session_id)
    notice = st.session_state.get(_NOTICE)
    if notice and notice[0] == session_id and (text := omitted_notice(notice[1])):
        st.info(text)
    if st.session_state.pop(CANCELLED, None) == session_id:
        st.info("You stopped waiting: your message is kept. Regenerate answers it when the model is free.")
    chat_actions.action_row(engine, session_id, history, regenerate_key=_REGENERATE)
