"""API benchmark: streaming overhead of the OpenAI-compatible server, throughput under concurrent clients, and the
same through the remote backend pointed at an Inkstone server (one extra HTTP hop).

Prints figures measured in the same run; never asserts. On the shared CPU, keep it short:

    python bench/api.py --model smollm2-135m --tokens 48 --levels 1,4,8

1. Overhead: tokens/s of one streamed answer through the API (its client in a separate process, as below) vs
   the same answer as an in-process turn (``ChatService.send``), alternating, median of ``--repeat`` runs each
   (target ratio >= 0.95).
2. Load: 1, 4, 8 concurrent streaming clients (openai client, SSE): aggregate tokens/s relative to one client
   (target >= 3x at 8) and time to first token p50/p95. The clients run in a separate process, as real clients
   do (in the server's process their SSE parsing would compete with decoding for the GIL); the levels are run
   in ``--repeat`` interleaved rounds and the median round of each is printed (the machine is shared), with the
   decode loop's mean batch size and step time.
3. Remote: 1 and ``max(levels)`` concurrent chat turns of a second Inkstone whose model is a remote profile
   pointing at the server.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import core  # noqa: E402,F401 - first: offline, no telemetry, no hub kernels (core/offline.py)

PROMPT = "Write a long story about a lighthouse keeper and a cat. Story number {i}."


def pct(values: list[float], q: float) -> float:
    """The q-quantile (0..1) by nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def in_process_turn(engine, i: int) -> tuple[int, float, float]:  # noqa: ANN001
    """One stored chat turn; (answer tokens, seconds from send to the end, seconds to the first text)."""
    from core.chat.service import Done

    sid = engine.new_session()
    started = time.perf_counter()
    events = list(engine.service.send(sid, PROMPT.format(i=i)))
    done = events[-1]
    assert isinstance(done, Done), done
    return done.stats.completion_tokens, time.perf_counter() - started, (done.stats.ttft_ms or 0) / 1000


def api_stream(client, model: str, tokens: int, i: int) -> tuple[int, float, float]:  # noqa: ANN001
    """One streamed API answer; (answer tokens, seconds to the end, seconds to the first text)."""
    started = time.perf_counter()
    first = None
    usage = 0
    stream = client.chat.completions.create(model=model, messages=[{"role": "user", "content": PROMPT.format(i=i)}],
                                            max_tokens=tokens, temperature=0, stream=True)
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content and first is None:
            first = time.perf_counter() - started
        if chunk.usage is not None:
            usage = chunk.usage.completion_tokens
    return usage, time.perf_counter() - started, first or 0.0


def load(run_one, clients: int) -> tuple[float, list[float]]:  # noqa: ANN001
    """Run ``clients`` answers at once; aggregate tokens/s and each client's time to first token."""
    results: list[tuple[int, float, float]] = []
    lock = threading.Lock()

    def work(i: int) -> None:
        result = run_one(i)
        with lock:
            results.append(result)

    started = time.perf_counter()
    threads = [threading.Thread(target=work, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    return sum(r[0] for r in results) / wall, [r[2] for r in results]


def api_load(url: str, model: str, tokens: int, clients: int) -> tuple[float, list[float]]:
    """``clients`` concurrent streamed API answers (run in the client process); aggregate tokens/s and TTFTs."""
    from openai import OpenAI

    client = OpenAI(base_url=url, api_key="none", max_retries=0)
    return load(lambda i: api_stream(client, model, tokens, i), clients)


def main() -> None:
    """Run the three measurements and print their figures."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--tokens", type=int, default=48)
    parser.add_argument("--levels", default="1,4,8")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--cpu-weights", help="int4 / int8 / bf16 / fp32 (default: the setting's)")
    parser.add_argument("--home", help="data dir (default: a temporary one; reuse one to skip the GGUF conversion)")
    args = parser.parse_args()
    from openai import OpenAI

    from core.api.server import ApiServer, free_port
    from core.config import load_settings
    from core.engine import build_engine

    home = Path(args.home or tempfile.mkdtemp(prefix="inkstone-bench-"))
    gen = {"temperature": 0, "repetition_penalty": 1.0, "max_new_tokens": args.tokens, "max_turns": 1}
    weights = {"cpu_weights": args.cpu_weights} if args.cpu_weights else {}
    engine = build_engine(load_settings({"model": args.model, "home": str(home), **gen, **weights},
                                        config_file=home / "absent.toml"))
    server = ApiServer(lambda: engine, port=free_port()).start()
    client = OpenAI(base_url=server.url, api_key="none", max_retries=0)
    model = engine.backend.model_id
    batching = "continuous batching" if getattr(engine.backend, "batcher", None) else "fair queue (no batching)"
    loaded = engine.backend.loaded
    weights_used = (loaded.cpu_weights or loaded.dtype) if loaded else "?"
    print(f"model {model} ({weights_used} weights) | {args.tokens} tokens per answer | {batching} | "
          f"threads {os.cpu_count()} | OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', '-')} "
          f"MKL_NUM_THREADS={os.environ.get('MKL_NUM_THREADS', '-')}")

    api_stream(client, model, 8, 0)  # warm-up: the batch loop starts on first use
    levels = [int(x) for x in args.levels.split(",")]
    batcher = getattr(engine.backend, "batcher", None)
    rounds: dict[int, list[tuple[float, list[float], str]]] = {n: [] for n in levels}
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as clients:
        clients.submit(api_load, server.url, model, 4, 1).result()  # the client process is up and warm
        inproc, api = [], []
        for r in range(args.repeat):
            n, s, _ = in_process_turn(engine, r)
            inproc.append(n / s)
            api.append(clients.submit(api_load, server.url, model, args.tokens, 1).result()[0])
        a, b = statistics.median(api), statistics.median(inproc)
        print(f"1. streaming overhead: API {a:.1f} tok/s vs in-process turn {b:.1f} tok/s -> ratio {a / b:.2f} "
              f"(target >= 0.95)")
        for _ in range(args.repeat):
            for n in levels:
                before = dict(batcher.stats) if batcher else {}
                rate, ttfts = clients.submit(api_load, server.url, model, args.tokens, n).result()
                steps = batcher.stats["steps"] - before["steps"] if batcher else 0
                occupancy = (f"; batch {(batcher.stats['rows'] - before['rows']) / steps:.1f} rows, "
                             f"{1000 * (batcher.stats['step_s'] - before['step_s']) / steps:.0f} ms/step"
                             if steps else "")
                rounds[n].append((rate, ttfts, occupancy))
    print(f"2. concurrent streaming clients through the API (median of {args.repeat} interleaved rounds):")
    base = None
    for n in levels:
        rate, ttfts, occupancy = sorted(rounds[n], key=lambda r: r[0])[len(rounds[n]) // 2]
        base = base or rate
        print(f"   {n} clients: {rate:.1f} tok/s aggregate = {rate / base:.2f}x one client; TTFT p50 "
              f"{pct(ttfts, 0.5):.2f} s, p95 {pct(ttfts, 0.95):.2f} s{occupancy}")

    config = home / "remote.toml"
    config.write_text(f'[models.remote]\nbackend = "openai"\nbase_url = "{server.url}"\nmodel = "{model}"\n'
                      f"context_window = {engine.backend.context_window}\n", encoding="utf-8")
    os.environ["INKSTONE_CONFIG"] = str(config)
    remote = build_engine(load_settings({"model": "remote", "home": str(home / "remote"), **gen}))
    print("3. the same through the remote backend (a second Inkstone -> HTTP -> this server):")
    samples = [in_process_turn(remote, r) for r in range(args.repeat)]
    c = statistics.median(n / s for n, s, _ in samples)
    print(f"   one turn: {c:.1f} tok/s vs {a:.1f} direct API -> ratio {c / a:.2f}")
    remote_base = None
    for n in (1, max(levels)):
        rate, ttfts = load(lambda i: in_process_turn(remote, i), n)
        remote_base = remote_base or rate
        print(f"   {n} concurrent turns: {rate:.1f} tok/s aggregate = {rate / remote_base:.2f}x one; TTFT p50 "
              f"{pct(ttfts, 0.5):.2f} s, p95 {pct(ttfts, 0.95):.2f} s")
    server.stop()


if __name__ == "__main__":
    main()
