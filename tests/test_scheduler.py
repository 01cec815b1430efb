"""``core.generation.scheduler``: the one line in front of the model. Browser tabs and API requests wait in it together,
each waiter sees its place (everything ahead of it, waiting or generating), and can give up waiting.

Real threads and a real backend (the scripted ``FakeBackend`` behind ``QueuedBackend``); no timing is asserted,
only order, places and outcomes, synchronized by polling for the state a user would see.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from core.backends.base import Finished, TextDelta
from core.backends.fake import FakeBackend
from core.config import GenerationSettings
from core.generation.scheduler import FairQueue, QueuedBackend, line


def wait_for(condition: Callable[[], object], timeout: float = 10) -> None:
    pause = threading.Event()
    for _ in range(int(timeout / 0.01)):
        if condition():
            return
        pause.wait(0.01)
    raise AssertionError("condition not reached")


def waiter(
    queue: FairQueue, stop: threading.Event, seen: list[int], result: list, hold: threading.Event | None = None,
    *, tab: bool = False, label: object = True,
) -> threading.Thread:
    """A caller in another thread (an API request, or with ``tab`` a browser tab that reserves its place first):
    records each place it is told, then ``label`` if it got the turn (False if not), holding it until ``hold``."""

    def run() -> None:
        if tab:
            with queue.reserve(stop, on_wait=seen.append) as ready:
                if not ready:
                    result.append(False)
                    return
                with queue.turn(stop) as granted:
                    result.append(label if granted else False)
                    if hold is not None:
                        hold.wait(10)
            return
        with queue.turn(stop, on_wait=seen.append) as granted:
            result.append(label if granted else False)
            if hold is not None:
                hold.wait(10)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_the_first_caller_goes_at_once_and_the_line_empties_after() -> None:
    queue = FairQueue()
    seen: list[int] = []
    stop = threading.Event()
    with queue.reserve(stop, on_wait=seen.append) as ready:
        assert ready
        with queue.turn(stop) as granted:
            assert granted and queue.active == 1 and queue.depth == 0
    assert seen == [] and queue.depth == 0 and queue.active == 0


def test_waiters_see_their_place_and_go_in_order() -> None:
    queue = FairQueue()
    second_seen: list[int] = []
    third_seen: list[int] = []
    results: list = []
    second_holds = threading.Event()
    with queue.turn(threading.Event()) as granted:
        assert granted
        second = waiter(queue, threading.Event(), second_seen, results, hold=second_holds, tab=True)
        wait_for(lambda: second_seen)
        third = waiter(queue, threading.Event(), third_seen, results, tab=True)
        wait_for(lambda: third_seen)
        assert second_seen[-1] == 1 and third_seen[-1] == 2  # the running answer, then the second tab
    wait_for(lambda: results == [True])  # the first answer ended: the second caller goes
    wait_for(lambda: third_seen[-1] == 1)  # and the third moves up one place
    assert results == [True]
    second_holds.set()
    second.join(10)
    third.join(10)
    assert results == [True, True] and queue.depth == 0 and queue.active == 0


def test_api_requests_ahead_all_count_and_position_reports_the_same() -> None:
    queue = FairQueue()
    holds = threading.Event()
    results: list = []
    with queue.turn(threading.Event()):  # one answer generating
        api = [waiter(queue, threading.Event(), [], results, hold=holds, label=f"api{i}") for i in range(2)]
        wait_for(lambda: queue.depth == 2)
        stop, seen = threading.Event(), []
        tab = waiter(queue, stop, seen, results, tab=True, label="tab")
        wait_for(lambda: seen)
        assert seen[-1] == 3  # two API requests waiting plus the running answer, not "1"
        assert queue.position(stop) == 3
    holds.set()
    for thread in [*api, tab]:
        thread.join(10)
    assert results == ["api0", "api1", "tab"]  # arrival order, the tab included
    assert queue.position(stop) is None


def test_cancel_ends_the_wait_and_leaves_the_line() -> None:
    queue = FairQueue()
    with queue.turn(threading.Event()):
        stop, seen, results = threading.Event(), [], []
        thread = waiter(queue, stop, seen, results, tab=True)
        wait_for(lambda: seen)
        stop.set()  # the user clicked Cancel while the first answer still runs
        thread.join(10)
        assert not thread.is_alive() and results == [False]
        assert queue.depth == 0 and queue.active == 1  # only the caller that is generating is left
        assert queue.position(stop) is None


def test_an_error_raised_while_waiting_leaves_the_line() -> None:
    queue = FairQueue()

    def closed_tab(_ahead: int) -> None:
        raise RuntimeError("the browser tab went away")

    with queue.turn(threading.Event()):
        try:
            with queue.reserve(threading.Event(), on_wait=closed_tab):
                raise AssertionError("must not get the turn")
        except RuntimeError:
            pass
        assert queue.depth == 0 and queue.active == 1


def test_a_reserved_place_is_kept_against_later_api_requests() -> None:
    queue = FairQueue()
    stop = threading.Event()
    results: list = []
    with queue.reserve(stop) as ready:  # a tab heads the line; its answer row is being created
        assert ready
        api = waiter(queue, threading.Event(), [], results, label="api")
        wait_for(lambda: queue.depth == 2)
        assert results == []  # the API request arrived later: it does not jump ahead of the reserved place
        with queue.turn(stop) as granted:
            assert granted and queue.depth == 1
            results.append("tab")
    api.join(10)
    assert results == ["tab", "api"]


def test_an_unused_reservation_is_given_up_when_its_block_ends() -> None:
    queue = FairQueue()
    with queue.reserve(threading.Event()) as ready:
        assert ready and queue.depth == 1
    assert queue.depth == 0
    with queue.turn(threading.Event()) as granted:  # the next caller is not blocked by it
        assert granted


def test_a_tab_joins_a_running_batch_instead_of_waiting() -> None:
    queue = FairQueue(capacity=2)
    seen: list[int] = []
    with queue.turn(threading.Event(), shared=True):  # a batched API answer is generating, one slot free
        stop = threading.Event()
        with queue.reserve(stop, on_wait=seen.append) as ready:
            assert ready and seen == []
            with queue.turn(stop, shared=True) as granted:
                assert granted and queue.active == 2


def test_a_tab_that_cannot_batch_is_told_its_place_while_a_batch_runs() -> None:
    """A tab whose answer will run alone (a LoRA persona) arrives while a batched answer generates with room to
    spare: it is told one answer is ahead and gets the model when that answer ends."""
    queue = FairQueue(capacity=4)
    seen: list[int] = []
    result: list = []
    batch_done = threading.Event()

    def batched() -> None:
        with queue.turn(threading.Event(), shared=True):
            batch_done.wait(10)

    running = threading.Thread(target=batched)
    running.start()
    wait_for(lambda: queue.active == 1)
    stop = threading.Event()

    def tab() -> None:
        with queue.reserve(stop, on_wait=seen.append, shared=False) as ready:
            with queue.turn(stop) as granted:
                result.append((ready, granted, queue.active))

    thread = threading.Thread(target=tab)
    thread.start()
    wait_for(lambda: seen)
    assert seen[-1] == 1 and result == []
    batch_done.set()
    for t in (running, thread):
        t.join(10)
    assert result == [(True, True, 1)] and queue.active == 0


def test_a_queued_backend_streams_a_waiting_tab_after_the_running_answer_and_stops_a_cancelled_one() -> None:
    backend = QueuedBackend(FakeBackend())
    queue = line(backend)
    running = backend.stream([{"role": "user", "content": "a b c"}], GenerationSettings(), threading.Event())
    assert isinstance(next(running), TextDelta)  # another answer holds the model
    cancelled, seen = threading.Event(), []
    events: list = []

    def cancelled_tab() -> None:
        with queue.reserve(cancelled, on_wait=seen.append) as ready:
            events.append(ready)

    thread = threading.Thread(target=cancelled_tab)
    thread.start()
    wait_for(lambda: seen)
    assert seen[-1] == 1
    cancelled.set()
    thread.join(10)
    assert events == [False]
    # A stop event set while an answer waits in ``stream`` ends it at once, empty and ``stopped``.
    stopped = threading.Event()
    stopped.set()
    waiting = list(backend.stream([{"role": "user", "content": "x"}], GenerationSettings(), stopped))
    assert len(waiting) == 1 and isinstance(waiting[0], Finished) and waiting[0].reason == "stopped"
    assert waiting[0].completion_tokens == 0
    rest = list(running)
    assert isinstance(rest[-1], Finished) and rest[-1].reason == "stop"
    stop = threading.Event()
    with queue.reserve(stop) as ready:
        assert ready
        answer = list(backend.stream([{"role": "user", "content": "after you"}], GenerationSettings(), stop))
    assert "".join(e.text for e in answer if isinstance(e, TextDelta)).strip().endswith("after you")
    assert queue.depth == 0 and queue.active == 0
