"""One chat turn as the chat page streams it, without Streamlit: token texts out, figures kept aside.

The page hands ``stream_turn`` the event iterator of ``ChatService.send`` / ``regenerate`` and a writer
(``st.write_stream``). When Streamlit stops the script mid-answer (the user clicked Stop, or anything
else that reruns it), the writer raises; ``stream_turn`` then closes the event iterator, which makes the
service stop generation and store the partial answer as ``stopped``.

With ``runner.fastReruns`` (Streamlit's default) the rerun starts at once in a new thread while the old
run is still inside a token; the new run therefore calls ``ActiveTurn.settle`` first: it sets the turn's
stop event and waits until the old run has stored the answer, so the history it shows is final.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.chat.service import ChatEvent, Done, Failed, Sources, Started, Token, ToolsOn, ToolUsed
from core.history.export import figures_line
from core.history.store import Message

SETTLE_TIMEOUT_S = 30.0
"""Longest a rerun waits for a stopped answer to be stored (one token, or a slow prompt prefill)."""


@dataclass
class ActiveTurn:
    """A turn a browser tab is streaming: its stop event, and ``done`` once its events are closed."""

    stop: threading.Event = field(default_factory=threading.Event)
    done: threading.Event = field(default_factory=threading.Event)

    def settle(self, timeout: float = SETTLE_TIMEOUT_S) -> bool:
        """Stop the turn if it still runs and wait until its answer is stored; False if that timed out."""
        if not self.done.is_set():
            self.stop.set()
        return self.done.wait(timeout)


@dataclass
class TurnOutcome:
    """What a streamed turn ended with (filled in as the events arrive)."""

    message_id: str | None = None
    omitted_turns: int = 0
    status: str | None = None
    """``complete``, ``stopped`` or ``error``; None while streaming or if the stream was cut off."""
    error: str | None = None
    notice: str | None = None
    """Why the answer went without the knowledge bases (RAG on but Chroma could not be searched)."""
    tools_notice: str | None = None
    """What the chat turned on but the answer could not offer, and why (an MCP server that failed)."""
    tool_steps: int = 0
    """Tool calls the answer made."""


def token_texts(
    events: Iterator[ChatEvent], outcome: TurnOutcome, on_step: Callable[[Any], None] | None = None
) -> Iterator[str]:
    """Yield the answer text of ``events`` piece by piece, recording the other events in ``outcome``; each tool
    call goes to ``on_step`` (a ``ToolStep``) as it happens."""
    for event in events:
        if isinstance(event, Started):
            outcome.message_id = event.assistant_message_id
            outcome.omitted_turns = event.omitted_turns
        elif isinstance(event, Token):
            if event.text:
                yield event.text
        elif isinstance(event, Sources):
            outcome.notice = event.notice
        elif isinstance(event, ToolsOn):
            outcome.tools_notice = event.notice
        elif isinstance(event, ToolUsed):
            outcome.tool_steps += 1
            if on_step is not None:
                on_step(event.step)
        elif isinstance(event, Done):
            outcome.status = event.stats.status
        elif isinstance(event, Failed):
            outcome.status, outcome.error = "error", event.error


def stream_turn(
    events: Iterator[ChatEvent], write: Callable[[Iterator[str]], Any], on_step: Callable[[Any], None] | None = None
) -> TurnOutcome:
    """Feed the answer text to ``write`` (tool calls to ``on_step``) and always close ``events`` (a cut-off answer
    is kept as stopped)."""
    outcome = TurnOutcome()
    texts = token_texts(events, outcome, on_step)
    try:
        write(texts)
    finally:
        texts.close()
        close = getattr(events, "close", None)
        if close is not None:
            close()
    return outcome


CAPTION_HELP = (
    "tokens/s: decoding speed once the answer has started. first token: time until its first token "
    "(mostly reading the prompt)."
)


def answer_caption(message: Message) -> str:
    """The figures line under an answer: status mark, tokens, decoding tokens/s, time to first token."""
    return figures_line(message, stopped=":material/stop_circle: stopped")


def omitted_notice(omitted_turns: int) -> str | None:
    """The info line shown when history was trimmed from the prompt, or None when nothing was left out."""
    if omitted_turns <= 0:
        return None
    turns = "turn was" if omitted_turns == 1 else "turns were"
    return f"{omitted_turns} earlier {turns} left out of the prompt; they stay in the history."


def answer_avatar(message: Message) -> str | None:
    """The avatar an answer is shown with: its persona's, as stored with it (None: the default assistant icon,
    also when the persona's image file is gone)."""
    avatar = message.persona_avatar
    if avatar and Path(avatar).is_absolute() and not Path(avatar).is_file():
        return None
    return avatar or None


def switch_notice(before: str | None, after: str | None, name: str | None) -> str | None:
    """The line shown where the persona changes between answers (None when it does not change)."""
    if before == after:
        return None
    return f"Persona switched to {name}" if after else "Persona switched off"
