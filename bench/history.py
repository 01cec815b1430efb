"""Benchmark of the history store: read a 5,000-message session and list 1,000 sessions.

Builds a throwaway database in a temp dir (one session of 5,000 messages plus 1,000 more sessions),
then prints the median of several timed runs of ``messages(session_id)`` and ``list_sessions()`` next
to their targets (100 ms and 50 ms). Prints figures only; it asserts nothing.

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

TARGETS_MS = {"messages(session_id), 5,000 messages": 100.0, "list_sessions(), 1,000 sessions": 50.0}


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


def main(argv: list[str] | None = None) -> int:
    """Build the database, time the reads, print figures and targets."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=9, help="timed runs per figure (median reported)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        store = HistoryStore.open(Path(tmp) / "inkstone.db")
        start = time.perf_counter()
        long_id = build(store, messages=5000, sessions=1000)
        print(f"built 1 session x 5,000 messages + 1,000 sessions in {time.perf_counter() - start:.1f} s")
        counts = (len(store.messages(long_id)), len(store.list_sessions()))
        print(f"rows read: {counts[0]} messages, {counts[1]} sessions")
        figures = {
            "messages(session_id), 5,000 messages": median_ms(lambda: store.messages(long_id), args.runs),
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
