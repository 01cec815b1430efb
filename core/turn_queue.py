"""A first-come, first-served line in front of one shared model: a waiter knows its place and can give up.

The backend's lock lets one answer generate at a time, but a caller blocked on a lock can neither say how many
answers are ahead of it nor stop waiting. Front ends that share one engine (the browser tabs of the app) join
this line first; the caller at the head generates, the others wait, each polling its own stop event, so a
Cancel ends the wait at once, before the chat service has created an answer row for it. Callers that skip the
line (API requests, which take turns in ``core.scheduler``'s fair queue) make the backend ``busy``: the head
counts them as one answer ahead and goes when the backend has room again.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

POLL_S = 0.2
"""How often a waiter re-checks its stop event, the backend and its place in the line."""


class GenerationQueue:
    """The line of callers waiting to generate on one backend (``busy``: whether that backend is generating)."""

    def __init__(self, busy: Callable[[], bool] = lambda: False, poll_s: float = POLL_S) -> None:
        self._busy = busy
        self._poll_s = poll_s
        self._cond = threading.Condition()
        self._line: list[object] = []
        """Tickets in arrival order; the first one holds the turn."""

    def __len__(self) -> int:
        """Callers in the line, the one generating included."""
        with self._cond:
            return len(self._line)

    def _ahead(self, ticket: object) -> int:
        place = self._line.index(ticket)
        return place if place else int(self._busy())

    @contextmanager
    def turn(self, stop: threading.Event, on_wait: Callable[[int], None] | None = None) -> Iterator[bool]:
        """Join the line and wait for this caller's turn; the block runs with True holding it, False if cancelled.

        While waiting, ``on_wait(ahead)`` is called on every poll with the number of answers ahead (an
        exception it raises ends the wait too). Setting ``stop`` gives up the wait. The place in the line is
        left when the block ends, however it ends.
        """
        ticket = object()
        with self._cond:
            self._line.append(ticket)
        try:
            yield self._wait(ticket, stop, on_wait)
        finally:
            with self._cond:
                self._line.remove(ticket)
                self._cond.notify_all()

    def _wait(self, ticket: object, stop: threading.Event, on_wait: Callable[[int], None] | None) -> bool:
        while True:
            if stop.is_set():
                return False
            with self._cond:
                ahead = self._ahead(ticket)
            if ahead == 0:
                return True
            if on_wait is not None:
                on_wait(ahead)
            with self._cond:
                self._cond.wait(self._poll_s)  # woken early when someone leaves the line
