"""The llama.cpp engine against llama.cpp itself, in one run: an Inkstone turn, the bare server, ``llama-bench``;
and 8 clients against one. Figures only.

For each bundled model the default engine is started (``engine = "llama.cpp"``) and, taking turns, measured:
- an Inkstone turn (``ChatService.send``: prompt built, answer streamed and stored), greedy, up to 128 new tokens:
  decode tokens/s from its own stats, and the time to first token of a ~500-token prompt (a fresh prefix each time,
  so no cached prompt helps);
- the bare engine: the same prompt ids straight to the server's ``/completion``, its own timings;
- ``llama-bench -p 500 -n 128`` on the same GGUF with the same threads.
Then 1 and 8 clients at once through the fair queue (64 new tokens each): total tokens/s and the ratio; and the
time from nothing loaded to the first token of an answer, on a first start (fresh data dir) and a cached one.
Targets (issue 19): Inkstone / llama.cpp decode >= 0.9 and prefill >= 1.0; turn / bare >= 0.95; 8 clients >= 4x.

    .venv/bin/python bench/engine.py [--models smollm2-135m qwen2.5-coder-0.5b] [--runs 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import core  # noqa: E402,F401 - first: offline, no telemetry, no hub kernels (core/offline.py)
from bench.llamacpp import ensure_binary, run_bench  # noqa: E402

STORY = "Write a long, detailed story about a lighthouse keeper who finds a map. Use many paragraphs."
FILLER = ("The harbour office keeps records of every ship, its cargo, its crew and the weather on the day it "
          "arrived. ")


def long_prompt(backend, run: int, tokens: int = 500) -> str:  # noqa: ANN001
    """A question of about ``tokens`` tokens that starts differently in each run (no cached prefix)."""
    text = f"Record {run}. "
    while backend.count_prompt_tokens([{"role": "user", "content": text + FILLER}]) < tokens:
        text += FILLER
    return text + "Summarise the records in one sentence."


def bare(engine, text: str, new: int) -> tuple[float, float]:  # noqa: ANN001
    """(decode tok/s, prefill s) of the same prompt sent straight to the server (its own timings)."""
    inner = engine.backend.inner
    ids = inner.codec.prompt_ids([{"role": "user", "content": text}])
    body = {"prompt": ids, "n_predict": new, "temperature": 0, "cache_prompt": False, "stream": False}
    timings = inner.server._client.post("/completion", json=body, timeout=600).json()["timings"]
    return timings["predicted_per_second"], timings["prompt_ms"] / 1000


def turn(engine, text: str, new: int) -> tuple[float, float]:  # noqa: ANN001
    """(decode tok/s, time to first token s) of one Inkstone turn in a new session."""
    sid = engine.new_session(overrides={"max_new_tokens": new, "temperature": 0})
    done = list(engine.service.send(sid, text))[-1]
    return done.stats.tokens_per_s or float("nan"), (done.stats.ttft_ms or float("nan")) / 1000


def clients(engine, n: int, new: int = 64) -> float:  # noqa: ANN001
    """Total tokens/s of ``n`` answers streamed at once through the fair queue."""
    from core.config import GenerationSettings

    settings = GenerationSettings(temperature=0, max_new_tokens=new)
    counts = [0] * n

    def ask(i: int) -> None:
        messages = [{"role": "user", "content": f"Client {i}: {STORY}"}]
        for event in engine.backend.stream(messages, settings, threading.Event()):
            counts[i] = getattr(event, "completion_tokens", counts[i])

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(n)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return sum(counts) / (time.perf_counter() - started)


def start_to_first_token(model_id: str, home: Path):  # noqa: ANN201
    """(seconds from nothing loaded to the first token of a short answer, the engine)."""
    from core.config import Settings
    from core.engine import build_engine

    started = time.perf_counter()
    engine = build_engine(Settings(home=home, model=model_id, engine="llama.cpp"))
    sid = engine.new_session(overrides={"max_new_tokens": 4, "temperature": 0})
    for event in engine.service.send(sid, "Hi"):
        if getattr(event, "text", None):
            break
    return time.perf_counter() - started, engine


def bench_model(model_id: str, runs: int, home: Path) -> None:
    """Print the figures of one model."""
    from core.llamacpp.server import default_threads

    with tempfile.TemporaryDirectory() as cold:
        first, engine = start_to_first_token(model_id, Path(cold))
        engine.backend.inner.server.stop()
        cached, engine = start_to_first_token(model_id, Path(cold))
        engine.backend.inner.server.stop()
        engine.store.close()
    print(f"{model_id}: start to first token: first start {first:.1f} s, cached start {cached:.1f} s")
    _, engine = start_to_first_token(model_id, home)
    print(f"{model_id}: {engine.backend.info().engine_note}")
    threads = default_threads()
    binary = ensure_binary()
    ours, raw, theirs = [], [], []
    for run in range(runs):
        prompt = long_prompt(engine.backend, run)
        ours.append((turn(engine, STORY + f" ({run})", 128)[0], turn(engine, prompt, 8)[1]))
        raw.append((bare(engine, STORY + f" [{run}]", 128)[0], bare(engine, long_prompt(engine.backend, run + 100),
                                                                     1)[1]))
        if binary is not None:
            theirs.append(run_bench(binary, engine.backend.inner.server.gguf, threads, 500, 128, reps=1))
    med = statistics.median
    o_dec, o_pre = med(d for d, _ in ours), med(p for _, p in ours)
    b_dec, b_pre = med(d for d, _ in raw), med(p for _, p in raw)
    print(f"  Inkstone turn: decode {o_dec:.1f} tok/s, first token of a 500-token prompt {o_pre:.2f} s")
    print(f"  bare server:   decode {b_dec:.1f} tok/s, prefill of 500 tokens {b_pre:.2f} s")
    print(f"  turn / bare: decode {o_dec / b_dec:.2f} (target >= 0.95)")
    if theirs:
        t_dec = med(t["decode_tps"] for t in theirs)
        t_pre = med(t["prefill_s"] for t in theirs)
        print(f"  llama-bench -t {threads} -p 500 -n 128: decode {t_dec:.1f} tok/s, prefill {t_pre:.2f} s")
        print(f"  Inkstone / llama.cpp: decode {o_dec / t_dec:.2f} (target >= 0.9), prefill {t_pre / o_pre:.2f} "
              "(target >= 1.0; the turn's first token includes building the prompt and the queue)")
    one = clients(engine, 1)
    eight = clients(engine, 8)
    print(f"  clients: 1 -> {one:.1f} tok/s, 8 -> {eight:.1f} tok/s total = {eight / one:.2f}x (target >= 4x)")
    engine.backend.inner.server.stop()
    engine.store.close()


def main() -> None:
    """Parse flags and run."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["smollm2-135m", "qwen2.5-coder-0.5b"])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--home", type=Path, help="a data dir to reuse (default: a throwaway one)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for model_id in args.models:
            bench_model(model_id, args.runs, args.home or Path(tmp))


if __name__ == "__main__":
    main()
