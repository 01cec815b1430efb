"""Scripted backends for the answer-recorder tests: one whose decoding steps drive a fake clock (2 s to the first
token, then 0.1 s a token), and one whose stream ends without ``Finished``."""

from __future__ import annotations

from collections.abc import Iterator

from core.backends.base import StreamEvent, TextDelta
from core.backends.fake import FakeBackend


class Clock:
    """A perf_counter that only the backend's decoding steps advance."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Timed(FakeBackend):
    """The scripted backend, each answer taking 2 s to its first token, then 0.1 s a token."""

    def __init__(self, clock: Clock, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.clock = clock
        self.steps = 0

    def stream(self, messages, settings, stop, adapter=None) -> Iterator[StreamEvent]:  # noqa: ANN001
        self.steps = 0
        yield from super().stream(messages, settings, stop, adapter)

    def _step(self) -> None:
        self.clock.now += 2.0 if self.steps == 0 else 0.1
        self.steps += 1


class NoFinish(FakeBackend):
    """A backend that streams text and then just stops, without ``Finished``."""

    def stream(self, messages, settings, stop, adapter=None) -> Iterator[StreamEvent]:  # noqa: ANN001
        for event in super().stream(messages, settings, stop, adapter):
            if isinstance(event, TextDelta):
                yield event
