"""The one protocol every model backend implements, and the events a backend streams.

A backend turns prompt messages (``[{"role": ..., "content": ...}]``) into streamed text. It counts
tokens with the model's own chat format so that the prompt builder can trim history exactly.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from core.config import GenerationSettings

ChatMessages = list[dict[str, str]]


@dataclass(frozen=True)
class TextDelta:
    """New text of the answer (may be several tokens' worth, or empty text for a held-back byte)."""

    text: str


@dataclass(frozen=True)
class Finished:
    """End of one generation. ``reason`` is ``complete`` (eos or length) or ``stopped`` (stop event)."""

    prompt_tokens: int
    completion_tokens: int
    reason: str


StreamEvent = TextDelta | Finished


@runtime_checkable
class Backend(Protocol):
    """A loaded model that can stream answers. One generation at a time per backend (it holds a lock)."""

    model_id: str
    context_window: int

    def count_prompt_tokens(self, messages: ChatMessages) -> int:
        """Tokens of the full prompt these messages render to, generation prompt included."""
        ...

    def stream(
        self, messages: ChatMessages, settings: GenerationSettings, stop: threading.Event
    ) -> Iterator[StreamEvent]:
        """Stream the answer to ``messages``: ``TextDelta`` events, then exactly one ``Finished``.

        Setting ``stop`` ends generation early (reason ``stopped``). Failures raise
        ``core.errors.GenerationError``; the backend stays usable afterwards.
        """
        ...
