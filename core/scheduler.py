"""A fair queue in front of one backend, shared by the UI's answers and the API's requests.

Callers get the model in arrival order (first come, first served), one at a time: a plain lock lets any
waiter win, so a busy API client could starve a browser tab. A caller whose stop event is set while it
waits (Stop button, API client gone) leaves the queue at once with an empty ``stopped`` answer. The queue
reports its depth and the number of active generations for monitoring.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from core.backends.base import AdapterSpec, Backend, ChatMessages, Finished, ModelInfo, StreamEvent
from core.config import GenerationSettings

POLL_S = 0.05
"""How often a waiting caller checks its stop event."""


class FairQueue:
    """First-come, first-served admission for ``capacity`` concurrent holders."""

    def __init__(self, capacity: int = 1) -> None:
        self.capacity = capacity
        self._cond = threading.Condition()
        self._waiting: deque[object] = deque()
        self._active = 0

    @property
    def depth(self) -> int:
        """Callers waiting for their turn."""
        return len(self._waiting)

    @property
    def active(self) -> int:
        """Callers holding a turn (generating)."""
        return self._active

    @contextmanager
    def turn(self, stop: threading.Event) -> Iterator[bool]:
        """Wait for this caller's turn; yields True when admitted, False when ``stop`` was set while waiting."""
        ticket = object()
        admitted = False
        with self._cond:
            self._waiting.append(ticket)
            while True:
                if self._waiting[0] is ticket and self._active < self.capacity:
                    self._waiting.popleft()
                    self._active += 1
                    admitted = True
                    break
                if stop.is_set():
                    self._waiting.remove(ticket)
                    self._cond.notify_all()
                    break
                self._cond.wait(POLL_S)
        if not admitted:
            yield False
            return
        try:
            yield True
        finally:
            with self._cond:
                self._active -= 1
                self._cond.notify_all()


class QueuedBackend:
    """A backend behind a ``FairQueue``: the same protocol, with answers admitted in arrival order.

    ``stream`` also takes an optional ``seed``: the torch generator is seeded once the answer holds the model,
    so a seeded request samples the same answer whatever else is queued.
    """

    def __init__(self, inner: Backend, queue: FairQueue | None = None) -> None:
        self.inner = inner
        self.queue = queue or FairQueue()

    @property
    def model_id(self) -> str:  # type: ignore[override]
        """The wrapped backend's model id."""
        return self.inner.model_id

    @property
    def context_window(self) -> int:  # type: ignore[override]
        """The wrapped backend's context window."""
        return self.inner.context_window

    @property
    def busy(self) -> bool:
        """True while an answer is generated or waiting."""
        return self.queue.active > 0 or self.queue.depth > 0

    @property
    def loaded(self) -> Any | None:
        """The wrapped backend's in-process model (None for remote or scripted backends)."""
        return self.inner.loaded

    def info(self) -> ModelInfo:
        """The wrapped backend's model info."""
        return self.inner.info()

    def count_prompt_tokens(self, messages: ChatMessages) -> int:
        """Prompt tokens as the wrapped backend counts them."""
        return self.inner.count_prompt_tokens(messages)

    def __getattr__(self, name: str) -> Any:
        # Backend-specific extras (``codec``, ``generate_ids``) stay reachable for the debugging commands.
        return getattr(self.inner, name)

    def stream(
        self,
        messages: ChatMessages,
        settings: GenerationSettings,
        stop: threading.Event,
        adapter: AdapterSpec | None = None,
        seed: int | None = None,
    ) -> Iterator[StreamEvent]:
        """Wait for a turn (in arrival order), then stream from the wrapped backend (see ``Backend.stream``)."""
        with self.queue.turn(stop) as admitted:
            if not admitted:
                yield Finished(self.inner.count_prompt_tokens(messages), 0, "stopped")
                return
            if seed is not None and self.inner.loaded is not None:
                import torch

                torch.manual_seed(seed)
            yield from self.inner.stream(messages, settings, stop, adapter)


def queued(backend: Backend) -> QueuedBackend:
    """``backend`` behind a fair queue (an already queued backend is returned as is)."""
    return backend if isinstance(backend, QueuedBackend) else QueuedBackend(backend)
