"""One answer as the chat page shows it while it is produced: its place in line, Cancel, Stop and the text.

All tabs and API clients share one model and one line, the engine's scheduler (``core.generation.scheduler``), so a turn
first reserves its place there. While other answers (other tabs' or API requests', waiting or generating) are
ahead it shows how many, with a Cancel button: a click reruns the page, whose ``ActiveTurn.settle`` sets the
turn's stop event, and the wait ends at once (the user's message stays stored; Regenerate answers it later).
Once the turn heads the line and the model has room, Stop replaces Cancel and the answer streams (batched
with others where the backend batches).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from threading import Event

import streamlit as st

from core.chat.service import ChatEvent
from core.generation.scheduler import FairQueue
from core.history.store import Message, StoredImage
from ui import attachments, rag, tools
from ui.markup import latex_to_markdown, show_text, write_rendered
from ui.turn import CAPTION_HELP, ActiveTurn, TurnOutcome, answer_avatar, answer_caption, stream_turn

CANCELLED = "inkstone_wait_cancelled"
"""session_state key: the session whose wait the user cancelled (read once by the chat page)."""


def waiting_text(ahead: int) -> str:
    """The line shown while other answers are ahead of this one."""
    return f"Waiting for another answer to finish ({ahead} ahead)…"


def stream_answer(
    line: FairQueue, turn: ActiveTurn, session_id: str, start: Callable[[Event], Iterator[ChatEvent]],
    alone: bool = False,
) -> TurnOutcome | None:
    """Wait for the model (with place and Cancel), then stream the answer; None if the wait was cancelled.

    ``alone``: the answer cannot join a batch (a persona with a LoRA adapter), so it waits, told its place,
    while batched answers run.

    ``start`` stores what must be stored (the user's message) and returns the turn's events; their first step
    (creating the answer row) runs only once the turn is at the head of the line. Raises InkstoneError from
    ``start`` before anything is waited for.
    """
    events = start(turn.stop)
    controls, status = st.empty(), st.empty()
    shown: list[bool] = []

    def show_place(ahead: int) -> None:
        if not shown:
            shown.append(True)
            controls.button(
                "Cancel", icon=":material/cancel:", key="cancel-wait", help="Stop waiting; your message is kept",
                on_click=st.session_state.__setitem__, args=(CANCELLED, session_id),
            )  # fmt: skip
        status.caption(waiting_text(ahead))  # redrawn while waiting: a closed tab ends the wait here

    with line.reserve(turn.stop, on_wait=show_place, shared=False if alone else None) as granted:
        if not granted:
            getattr(events, "close", lambda: None)()
            st.session_state[CANCELLED] = session_id
            return None
        status.empty()
        controls.button("Stop", icon=":material/stop_circle:", key="stop", help="Stop and keep the answer so far")
        steps = st.container()  # tool calls fold in above the answer, as they are drawn once stored

        def show_step(step: tools.ToolStep) -> None:
            with steps:
                tools.show_step(step)

        outcome = stream_turn(events, write_rendered, show_step)  # drawn as the stored answer will be (LaTeX, thinking)
        tools.remember_notice(session_id, outcome.tools_notice)
        return outcome


def show_message(
    message: Message,
    controls: Callable[[Message], None] | None = None,
    pictures: Sequence[StoredImage] = (),
    steps: Callable[[Message], None] | None = None,
) -> None:
    """One stored message; an answer with the avatar and name of the persona that wrote it and its figures line;
    a user message with its ``pictures`` as thumbnails. ``controls`` draws the message's own buttons (branch
    switcher, edit, fork, delete branch) under it; ``steps`` an answer's tool calls (``ui.tools.stored_steps``)
    above its text."""
    avatar = answer_avatar(message) if message.role == "assistant" else None
    with st.chat_message(message.role, avatar=avatar):
        if message.role == "assistant" and message.persona_name:
            st.caption(f"**{message.persona_name}**")
        if steps is not None and message.role == "assistant":
            steps(message)
        if message.content and message.role == "assistant":
            show_text(message.content)  # thinking folded, LaTeX rendered: as it was drawn while streaming
        elif message.content:
            st.markdown(latex_to_markdown(message.content))
        attachments.thumbnails(pictures)
        if message.status == "error":
            st.error(message.error or "Generation failed.")
        rag.show_sources(message.sources)  # file, page, snippet: stored with the answer
        if message.role == "assistant" and (caption := answer_caption(message)):
            st.caption(caption, help=CAPTION_HELP)
        if controls is not None:
            controls(message)
