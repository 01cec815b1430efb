"""Timings of one generation, measured where its tokens are produced, for the ``Finished`` that ends it.

Every producer of a stream (each backend, the continuous batch) starts a ``StreamTimer`` when it begins, notes
each produced token, and builds its ``Finished`` with ``finished``: one definition of time to first token (from
the start to the first token) and of decode time (from the first token to the end) for the chat view, the CLI,
the API and ``/metrics``. A queue in front of a backend adds its wait with ``after_wait``, so
the time to first token is the one a user waits.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from time import perf_counter

from core.backends.base import Finished, StreamEvent


class StreamTimer:
    """The clock of one generation: its start, its first token, and its end (when ``finished`` is called).

    It reads this module's ``perf_counter`` (a test can replace it to drive time)."""

    def __init__(self) -> None:
        self.started = perf_counter()
        self.first: float | None = None

    def token(self) -> None:
        """Note that a token was produced now (the first one sets the time to first token)."""
        if self.first is None:
            self.first = perf_counter()

    def finished(self, prompt_tokens: int, completion_tokens: int, reason: str) -> Finished:
        """The ``Finished`` that ends this generation now, with its timings."""
        if self.first is None:
            return Finished(prompt_tokens, completion_tokens, reason)
        return Finished(prompt_tokens, completion_tokens, reason, self.first - self.started,
                        perf_counter() - self.first)


def after_wait(events: Iterator[StreamEvent], waited_s: float) -> Iterator[StreamEvent]:
    """``events`` with ``waited_s`` (time spent waiting for the model before the backend began) added to the time
    to first token of their ``Finished``. Closing it closes ``events`` at once (the backend frees the model)."""
    try:
        for event in events:
            if isinstance(event, Finished) and event.ttft_s is not None and waited_s > 0:
                event = replace(event, ttft_s=event.ttft_s + waited_s)
            yield event
    finally:
        close = getattr(events, "close", None)
        if close is not None:
            close()
