"""Answers the Gradio page is writing, and the relay that streams one to the page.

Gradio runs a streaming handler step by step in worker threads; cancelling it (a closed tab) only stops asking for
the next step. So Stop does not cancel the handler: it sets the turn's stop event (``Turns.stop``), which the
backend reads between tokens (the batch drops the answer, or the queue lets go of a waiter); the chat service
then stores the partial answer as ``stopped`` and the stream ends by itself. A closed tab (``unload``) does the
same.

``relay`` runs the chat service's events in a thread of its own: it first takes its place in the engine's one
line (``FairQueue.reserve``, as the Streamlit page does), telling the page how many answers (other tabs', API
clients') are ahead, so the answer row is created only once the model has room.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass

from core.chat.service import ChatEvent
from core.errors import InputError
from core.generation.scheduler import FairQueue

_END = object()


@dataclass(frozen=True)
class Waiting:
    """Answers ahead of this one in the shared line."""

    ahead: int


@dataclass(frozen=True)
class Cancelled:
    """The wait was given up (Stop while waiting): the user's message stays stored, no answer row was made."""


class Turns:
    """One answer at a time per browser tab (Gradio session hash), each with its stop event."""

    def __init__(self) -> None:
        self._stops: dict[str, threading.Event] = {}
        self._lock = threading.Lock()

    def begin(self, tab: str) -> threading.Event:
        """The stop event of a new answer in ``tab``; InputError while the tab is still writing one."""
        with self._lock:
            if tab in self._stops:
                raise InputError("An answer is still being written in this tab: stop it or wait for it first.")
            stop = self._stops[tab] = threading.Event()
            return stop

    def end(self, tab: str, stop: threading.Event) -> None:
        """Forget ``tab``'s answer (once its stream is over)."""
        with self._lock:
            if self._stops.get(tab) is stop:
                del self._stops[tab]

    def stop(self, tab: str) -> bool:
        """Stop the answer ``tab`` is writing (or waiting for); False when there is none."""
        with self._lock:
            stop = self._stops.get(tab)
        if stop is None:
            return False
        stop.set()
        return True

    def active(self, tab: str) -> bool:
        """True while ``tab`` is writing an answer."""
        with self._lock:
            return tab in self._stops


def relay(events: Iterator[ChatEvent], stop: threading.Event, line: FairQueue,
          shared: bool | None = None) -> Iterator[ChatEvent | Waiting | Cancelled]:  # fmt: skip
    """Wait in ``line`` (yielding ``Waiting``), then yield the turn's events as they come; ``Cancelled`` when
    ``stop`` ended the wait. ``shared`` False: the answer cannot be batched (a LoRA persona). Whatever ends the
    relay, the events are closed in their thread and ``stop`` is set if the answer did not finish."""
    items: queue.Queue[object] = queue.Queue()
    finished = threading.Event()

    def work() -> None:
        try:
            with line.reserve(stop, on_wait=lambda ahead: items.put(Waiting(ahead)), shared=shared) as granted:
                if not granted:
                    items.put(Cancelled())
                    return
                for event in events:
                    items.put(event)
            finished.set()
        except BaseException as exc:  # handed to the page's thread, which re-raises it
            items.put(exc)
        finally:
            close = getattr(events, "close", None)
            if close is not None:
                close()  # a turn that never started: nothing to store; one cut off: stored as stopped
            items.put(_END)

    threading.Thread(target=work, name="inkstone-gradio-turn", daemon=True).start()
    try:
        while True:
            item = items.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item  # type: ignore[misc]
    finally:
        if not finished.is_set():
            stop.set()
