"""The one line in front of a backend, shared by the UI's answers and the API's requests.

Callers get the model in arrival order (first come, first served): a plain lock lets any waiter win, so a busy
API client could starve a browser tab. Where the backend supports continuous batching (``core.generation.batching``),
answers that can be batched are admitted together, up to the batch's capacity; an answer that cannot (a LoRA
adapter, a seed, a repetition penalty) waits for the batch to drain and then runs alone, and those behind it wait
for it: order is kept across both kinds. A caller whose stop event is set while it waits (Stop or Cancel button,
API client gone) leaves the line at once with an empty ``stopped`` answer.

A waiter can be told its place: ``on_wait(ahead)`` is called from the waiting thread with the number of answers
ahead of it (those waiting before it plus those generating), and ``position(stop)`` answers the same from any
thread. A browser tab ``reserve``s its place before the chat service creates the answer row: it waits (showing
its place, with Cancel) until it is at the head of the line and the model has room, and the answer's
``stream`` then takes that reserved place instead of queueing again. The queue reports its depth and the
number of active generations for monitoring.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from core.backends.base import AdapterSpec, Backend, Capabilities, ChatMessages, Finished, ModelInfo, StreamEvent
from core.backends.timing import after_wait
from core.config import GenerationSettings

if TYPE_CHECKING:  # pragma: no cover
    from core.models.loader import LoadedModel

POLL_S = 0.05
"""How often a waiting caller checks its stop event."""
TELL_S = 0.2
"""How often ``on_wait`` is called while the place stays the same (a UI redraw; a closed tab raises there)."""


class _Ticket:
    """A place in line: ``shared`` (batched) or not, None while reserved and its kind is not yet known."""

    __slots__ = ("shared",)

    def __init__(self, shared: bool | None) -> None:
        self.shared = shared


class FairQueue:
    """First-come, first-served admission: ``capacity`` shared holders at once, or one exclusive holder.

    ``on_shared(True)`` is called when the first shared holder is admitted, ``on_shared(False)`` when the last
    one leaves (the batcher uses it to turn LoRA layers off while the batch runs on the shared weights).
    """

    def __init__(self, capacity: int = 1, on_shared: Callable[[bool], None] | None = None) -> None:
        self.capacity = capacity
        self._on_shared = on_shared
        self._cond = threading.Condition()
        self._waiting: deque[_Ticket] = deque()
        self._by_stop: dict[threading.Event, _Ticket] = {}
        self._reserved: dict[threading.Event, _Ticket] = {}
        self._shared = 0
        self._exclusive = 0

    @property
    def depth(self) -> int:
        """Callers waiting for their turn (a reserved place not yet generating included)."""
        return len(self._waiting)

    @property
    def active(self) -> int:
        """Callers holding a turn (generating)."""
        return self._shared + self._exclusive

    @property
    def full(self) -> bool:
        """True when a new caller would have to wait."""
        return bool(self._waiting) or self._exclusive > 0 or self._shared >= self.capacity

    def position(self, stop: threading.Event) -> int | None:
        """Answers ahead of the waiter whose stop event is ``stop`` (waiting before it, plus generating); None
        when it is not waiting (admitted, gone, or never queued)."""
        with self._cond:
            ticket = self._by_stop.get(stop)
            return None if ticket is None or ticket not in self._waiting else self._ahead(ticket)

    def _ahead(self, ticket: _Ticket) -> int:
        return self._waiting.index(ticket) + self.active

    def _admissible(self, shared: bool) -> bool:
        if shared:
            return self._exclusive == 0 and self._shared < self.capacity
        return self._exclusive == 0 and self._shared == 0

    def _leave(self, stop: threading.Event, ticket: _Ticket) -> None:
        """Drop ``ticket`` from the line (lock held)."""
        if ticket in self._waiting:
            self._waiting.remove(ticket)
        if self._by_stop.get(stop) is ticket:
            del self._by_stop[stop]
        self._cond.notify_all()

    def _wait(
        self, ticket: _Ticket, stop: threading.Event, on_wait: Callable[[int], None] | None, admit: bool
    ) -> bool:
        """Wait until ``ticket`` heads the line and the model has room (True; admitted if ``admit``), or until
        ``stop`` is set (False). The ticket leaves the line on False or on an exception from ``on_wait``."""
        told, told_at = -1, 0.0
        try:
            while True:
                with self._cond:
                    shared = True if ticket.shared is None else ticket.shared
                    if self._waiting[0] is ticket and self._admissible(shared):
                        if admit:
                            self._admit(stop, ticket)
                        return True
                    if stop.is_set():
                        self._leave(stop, ticket)
                        return False
                    ahead = self._ahead(ticket)
                    if on_wait is None or (ahead == told and time.monotonic() - told_at < TELL_S):
                        self._cond.wait(POLL_S)
                        continue
                told, told_at = ahead, time.monotonic()
                on_wait(ahead)  # outside the lock: it draws the UI, and may raise (a closed tab)
        except BaseException:
            with self._cond:
                self._leave(stop, ticket)
            raise

    def _admit(self, stop: threading.Event, ticket: _Ticket) -> None:
        """Move the head ticket from the line to the holders (lock held)."""
        self._waiting.popleft()
        if self._by_stop.get(stop) is ticket:
            del self._by_stop[stop]
        if ticket.shared:
            self._shared += 1
            if self._shared == 1 and self._on_shared is not None:
                self._on_shared(True)
        else:
            self._exclusive += 1
        self._cond.notify_all()  # the next in line may be admitted too (another batched answer)

    @contextmanager
    def reserve(
        self, stop: threading.Event, on_wait: Callable[[int], None] | None = None, shared: bool | None = None
    ) -> Iterator[bool]:
        """Take a place in line before the answer is prepared; yields True once it heads the line and the model
        has room, False when ``stop`` was set while waiting (``on_wait(ahead)`` is told the place meanwhile).

        ``shared``: whether the answer will be batched, when the caller knows (an answer with a LoRA adapter will
        not: it then waits here, told its place, while a batch runs); None counts as batched.
        Inside the block, a ``turn`` with the same ``stop`` takes this place instead of queueing again; a place
        never taken is given up when the block ends, however it ends.
        """
        ticket = _Ticket(shared)
        with self._cond:
            self._waiting.append(ticket)
            self._by_stop[stop] = ticket
        ready = self._wait(ticket, stop, on_wait, admit=False)
        if ready:
            with self._cond:
                self._reserved[stop] = ticket
        try:
            yield ready
        finally:
            with self._cond:
                if self._reserved.get(stop) is ticket:  # the answer never got as far as generating
                    del self._reserved[stop]
                    self._leave(stop, ticket)

    @contextmanager
    def turn(
        self, stop: threading.Event, shared: bool = False, on_wait: Callable[[int], None] | None = None
    ) -> Iterator[bool]:
        """Wait for this caller's turn; yields True when admitted, False when ``stop`` was set while waiting.

        A place reserved with the same ``stop`` is taken (the caller keeps it); otherwise the caller joins the
        end of the line. ``on_wait(ahead)`` is told the place while waiting.
        """
        with self._cond:
            ticket = self._reserved.pop(stop, None)
            if ticket is None:
                ticket = _Ticket(shared)
                self._waiting.append(ticket)
            ticket.shared = shared
            self._by_stop[stop] = ticket
        if not self._wait(ticket, stop, on_wait, admit=True):
            yield False
            return
        try:
            yield True
        finally:
            with self._cond:
                if shared:
                    self._shared -= 1
                    if self._shared == 0 and self._on_shared is not None:
                        self._on_shared(False)
                else:
                    self._exclusive -= 1
                self._cond.notify_all()


class QueuedBackend:
    """A backend behind a ``FairQueue``: the same protocol, with answers admitted in arrival order, batched
    where the backend supports it.

    It declares what it can do from what the wrapped backend declares (``capabilities``), and exposes what callers
    need explicitly: ``queue`` (its figures: ``depth``, ``active``), ``inner`` (the wrapped backend), ``batcher``.
    ``stream`` takes ``seed`` where the wrapped backend does: a seeded answer never joins the batch, so it holds
    the model alone and samples the same answer whatever else is queued.
    """

    def __init__(self, inner: Backend, *, batch: int = 8) -> None:
        from core.generation.batching import ContinuousBatcher

        self.inner = inner
        self.batcher = ContinuousBatcher(inner, capacity=batch) if batch > 1 and ContinuousBatcher.supported(inner) \
            else None
        declared = inner.capabilities
        self.remote = declared.max_concurrent if declared.max_concurrent > 1 else 0
        """A backend that runs many answers itself (a remote server batches them): this many are sent to it at once
        (0: one at a time)."""
        if self.batcher is not None:
            weakref.finalize(self, self.batcher.close)  # a replaced engine's batch loop stops with it
        capacity = self.remote or (batch if self.batcher else 1)
        self.queue = FairQueue(capacity, on_shared=self._adapters_off if self.batcher else None)
        self.capabilities = Capabilities(seed=declared.seed, max_concurrent=capacity, adapters=declared.adapters,
                                         grammar=declared.grammar, images=declared.images, tools=declared.tools)
        """The wrapped backend's, with as many answers at once as the queue admits."""

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
        """True when a new answer would have to wait (the model is taken, or others are waiting)."""
        return self.queue.full

    @property
    def codec(self) -> Any:
        """The wrapped backend's chat codec (None for remote or scripted backends)."""
        return self.inner.codec

    @property
    def loaded(self) -> LoadedModel | None:
        """The wrapped backend's in-process model (None for remote or scripted backends)."""
        return self.inner.loaded

    def info(self) -> ModelInfo:
        """The wrapped backend's model info."""
        return self.inner.info()

    def count_prompt_tokens(self, messages: ChatMessages) -> int:
        """Prompt tokens as the wrapped backend counts them."""
        return self.inner.count_prompt_tokens(messages)

    def set_adapters_enabled(self, enabled: bool) -> None:
        """The wrapped backend's switch (the queue itself turns adapters off while a batch runs)."""
        self.inner.set_adapters_enabled(enabled)

    def generate_ids(self, messages: ChatMessages, settings: GenerationSettings) -> list[int]:
        """The wrapped backend's ``generate_ids``, run in a turn of its own (no batch runs on the weights meanwhile)."""
        with self.queue.turn(threading.Event()):
            return self.inner.generate_ids(messages, settings)

    def _adapters_off(self, off: bool) -> None:
        """While batched answers run, LoRA layers injected into the shared weights must not apply; when the last
        one leaves, the batch loop must be idle before an answer that runs alone starts."""
        if not off and self.batcher is not None:
            self.batcher.wait_idle()
        self.inner.set_adapters_enabled(not off)

    def stream(
        self,
        messages: ChatMessages,
        settings: GenerationSettings,
        stop: threading.Event,
        adapter: AdapterSpec | None = None,
        seed: int | None = None,
        constraint: Any = None,
        tools: dict[str, Any] | None = None,
    ) -> Iterator[StreamEvent]:
        """Wait for a turn (in arrival order), then stream, batched or alone (see ``Backend.stream``); a
        ``constraint`` (grammar) goes to the batch or to the backend, both sample under it; ``tools`` (OpenAI
        fields to forward) go to a backend that declares ``capabilities.tools``."""
        seeded: dict[str, Any] = {"seed": seed} if seed is not None and self.inner.capabilities.seed else {}
        if constraint is not None and self.inner.capabilities.grammar:
            seeded["constraint"] = constraint
        if tools and self.inner.capabilities.tools:
            seeded["tools"] = tools
        batched = self.batcher is not None and adapter is None and self.batcher.fits(messages, settings, seed)
        asked = time.perf_counter()
        with self.queue.turn(stop, shared=batched or bool(self.remote)) as admitted:
            if not admitted:
                yield Finished(self.inner.count_prompt_tokens(messages), 0, "stopped")
                return
            waited = time.perf_counter() - asked  # part of the time to first token the backend measures
            if self.remote:
                remote = self.inner.stream(messages, settings, stop, adapter, **seeded)
                yield from after_wait(remote, waited)
                return
            if batched:
                batch = self.batcher.stream(messages, settings, stop, constraint)  # type: ignore[union-attr]
                yield from after_wait(batch, waited)
                return
            yield from after_wait(self.inner.stream(messages, settings, stop, adapter, **seeded), waited)


def line(backend: Backend) -> FairQueue:
    """The line in front of ``backend`` (a backend that is not queued gets a line of its own, for tests)."""
    return backend.queue if isinstance(backend, QueuedBackend) else FairQueue()


def queued(backend: Backend) -> QueuedBackend:
    """``backend`` behind a fair queue (an already queued backend is returned as is)."""
    return backend if isinstance(backend, QueuedBackend) else QueuedBackend(backend)
