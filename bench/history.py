"""Benchmark of the history store: open a 5,000-message session, open a session with 200 branches, list 1,000
sessions.

Builds a throwaway database in a temp dir (one session of 5,000 messages on one path, one of 200 branches, plus
1,000 more sessions), then prints the median of several timed runs next to their targets. Opening a chat is what
the chat page reads: its current path (``messages``) and the versions of each message (``children``). Prints
figures only; it asserts nothing.

    .venv/bin/python bench/history.py [--runs 9]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import core  # noqa: E402,F401 - first: offline, no telemetry, no hub kernels (core/offline.py)
from core.history.store import HistoryStore  # noqa: E402

OPEN_LONG = "open a 5,000-message chat (one path)"
OPEN_BRANCHED = "open a chat with 200 branches"
SWITCH = "switch branch (‹ n/m ›) in it"
TARGETS_MS = {OPEN_LONG: 100.0, OPEN_BRANCHED: 150.0, SWITCH: 50.0, "list_sessions(), 1,000 sessions": 50.0}


def median_ms(fn: Callable[[], object], runs: int) -> float:
    """Median wall time of ``runs`` calls of ``fn``, in milliseconds (after one warm-up call)."""
    fn()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def build(store: HistoryStore, messages: int, sessions: int) -> str:
    """Fill ``store``; return the long session's id. Answers carry stats and a source, as real ones do."""
    long = store.create_session(model="bench-model", settings={"temperature": 0.7})
    for i in range(messages // 2):
        store.add_message(long.id, "user", f"Question {i}: what does paragraph {i} of the report say?")
        answer = store.add_message(long.id, "assistant", f"Paragraph {i} says revenue grew. " * 8)
        store.update_message(answer.id, prompt_tokens=900, completion_tokens=64, ttft_ms=40.0,
                             tokens_per_s=35.0, sources=[{"file": "report.pdf", "page": i % 40}])  # fmt: skip
    for i in range(sessions):
        s = store.create_session(model="bench-model", settings={"temperature": 0.7, "top_p": 0.9})
        store.add_message(s.id, "user", f"Short chat number {i}")
    return long.id


def build_branched(store: HistoryStore, turns: int = 50, branches: int = 200, branch_turns: int = 5) -> str:
    """A chat of ``turns`` turns, then ``branches`` edits of its questions (spread over all of them), each edit
    followed by ``branch_turns`` more turns: the shape many edits and regenerations leave behind."""
    chat = store.create_session(model="bench-model")
    questions = []
    for i in range(turns):
        questions.append(store.add_message(chat.id, "user", f"Question {i} about the report"))
        store.add_message(chat.id, "assistant", f"Answer {i}: revenue grew. " * 8)
    for b in range(branches):
        edited = questions[(b * 7) % turns]
        store.add_message(chat.id, "user", f"Edited question {b}", parent_id=edited.parent_id)
        store.add_message(chat.id, "assistant", f"Answer to edit {b}. " * 8)
        for t in range(branch_turns - 1):
            store.add_message(chat.id, "user", f"Follow-up {t} on edit {b}")
            store.add_message(chat.id, "assistant", f"Follow-up answer {t}. " * 8)
    return chat.id


def open_chat(store: HistoryStore, session_id: str) -> tuple[int, int]:
    """What the chat page reads to draw a chat: its current path and each message's versions."""
    return len(store.messages(session_id)), len(store.children(session_id))


def main(argv: list[str] | None = None) -> int:
    """Build the database, time the reads, print figures and targets."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9, help="timed runs per figure (median reported)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        store = HistoryStore.open(Path(tmp) / "inkstone.db")
        start = time.perf_counter()
        long_id = build(store, messages=5000, sessions=1000)
        branched = build_branched(store)
        print(f"built 1 session x 5,000 messages, 1 with 200 branches ({store.message_count(branched)} messages) "
              f"+ 1,000 sessions in {time.perf_counter() - start:.1f} s")
        counts = (len(store.messages(long_id)), len(store.messages(branched)), len(store.list_sessions()))
        print(f"rows read: {counts[0]} messages (long path), {counts[1]} (branched path), {counts[2]} sessions")
        roots = store.children(branched)
        versions = roots[store.messages(branched)[2].parent_id]
        flip = iter(versions * (args.runs + 2))
        figures = {
            OPEN_LONG: median_ms(lambda: open_chat(store, long_id), args.runs),
            OPEN_BRANCHED: median_ms(lambda: open_chat(store, branched), args.runs),
            SWITCH: median_ms(lambda: store.switch_branch(branched, next(flip)), args.runs),
            "list_sessions(), 1,000 sessions": median_ms(store.list_sessions, args.runs),
        }
        store.close()
    for name, ms in figures.items():
        target = TARGETS_MS[name]
        verdict = "ok" if ms <= target else "OVER TARGET"
        print(f"{name:<40} median {ms:7.2f} ms   target <= {target:.0f} ms   {verdict}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
