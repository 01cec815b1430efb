"""``core.turn_queue``: browser tabs sharing one model wait in line, see their place, and can give up waiting.

Real threads and a real backend (the scripted ``FakeBackend``, holding its own lock while it streams); no
timing is asserted, only order, places and outcomes, synchronized with events.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

from core.backends.fake import FakeBackend
from core.config import GenerationSettings
from core.turn_queue import GenerationQueue


def waiter(
    queue: GenerationQueue, stop: threading.Event, seen: list[int], result: list, hold: threading.Event | None = None
) -> threading.Thread:
    """A caller in another thread: records each place it is told, then whether it got the turn (and keeps the
    turn until ``hold`` is set)."""

    def run() -> None:
        with queue.turn(stop, on_wait=seen.append) as granted:
            result.append(granted)
            if hold is not None:
                hold.wait(10)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def wait_for(condition, timeout: float = 10) -> None:
    done = threading.Event()
    for _ in range(int(timeout / 0.01)):
        if condition():
            return
        done.wait(0.01)
    raise AssertionError("condition not reached")


def test_the_first_caller_goes_at_once_and_the_line_empties_after() -> None:
    queue = GenerationQueue(poll_s=0.01)
    seen: list[int] = []
    with queue.turn(threading.Event(), on_wait=seen.append) as granted:
        assert granted and len(queue) == 1
    assert seen == [] and len(queue) == 0


def test_waiters_see_their_place_and_go_in_order() -> None:
    queue = GenerationQueue(poll_s=0.01)
    second_seen, third_seen, results = [], [], []
    second_holds = threading.Event()
    with queue.turn(threading.Event()) as granted:
        assert granted
        second = waiter(queue, threading.Event(), second_seen, results, hold=second_holds)
        wait_for(lambda: second_seen)
        third = waiter(queue, threading.Event(), third_seen, results)
        wait_for(lambda: third_seen)
        assert second_seen[-1] == 1 and third_seen[-1] == 2
    wait_for(lambda: results == [True])  # the first answer ended: the second caller goes
    wait_for(lambda: third_seen[-1] == 1)  # and the third moves up one place
    assert results == [True]
    second_holds.set()
    second.join(10)
    third.join(10)
    assert results == [True, True] and len(queue) == 0


def test_cancel_ends_the_wait_and_leaves_the_line() -> None:
    queue = GenerationQueue(poll_s=0.01)
    with queue.turn(threading.Event()):
        stop, seen, results = threading.Event(), [], []
        thread = waiter(queue, stop, seen, results)
        wait_for(lambda: seen)
        stop.set()  # the user clicked Cancel while the first answer still runs
        thread.join(10)
        assert not thread.is_alive() and results == [False]
        assert len(queue) == 1  # only the caller that is generating is left


def test_an_error_raised_while_waiting_leaves_the_line() -> None:
    queue = GenerationQueue(poll_s=0.01)

    def closed_tab(_ahead: int) -> None:
        raise RuntimeError("the browser tab went away")

    with queue.turn(threading.Event()):
        try:
            with queue.turn(threading.Event(), on_wait=closed_tab):
                raise AssertionError("must not get the turn")
        except RuntimeError:
            pass
        assert len(queue) == 1


def test_a_backend_busy_outside_the_line_counts_as_one_ahead() -> None:
    backend = FakeBackend()
    queue = GenerationQueue(busy=lambda: backend.busy, poll_s=0.01)
    stream: Iterator = backend.stream([{"role": "user", "content": "a b c"}], GenerationSettings(), threading.Event())
    next(stream)  # another caller is generating: the backend holds its lock
    stop, seen, results = threading.Event(), [], []
    thread = waiter(queue, stop, seen, results)
    wait_for(lambda: seen)
    assert seen[-1] == 1
    list(stream)  # that answer ends and releases the backend
    thread.join(10)
    assert results == [True]
