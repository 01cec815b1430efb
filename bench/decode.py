"""CPU decode speed: float32 weights vs ``cpu_weights`` settings vs llama.cpp on the same GGUF, and a full Inkstone
turn vs a bare ``model.generate``; plus time to first token of a 500-token prompt. Figures only.

All settings are loaded in one process and timed alternately (same prompt, greedy, 128 new tokens, same stop
ids), so the ratios come from the same run. Then llama.cpp's own ``llama-bench`` runs on the same GGUF file
(``bench/llamacpp.py``: built once from PyPI source, skipped with a message without a compiler) and each setting
is printed as Inkstone / llama.cpp for decode and prefill. Targets: Inkstone / llama.cpp >= 0.9 decode and >= 1.0
prefill on qwen2.5-coder-0.5b; Inkstone turn / bare generate >= 0.95; prefill not slower than fp32.

    .venv/bin/python bench/decode.py [--models smollm2-135m qwen2.5-coder-0.5b] [--runs 3] [--weights int4 int8]
        [--no-llamacpp]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import core  # noqa: E402,F401 - first: offline, no telemetry, no hub kernels (core/offline.py)

PROMPT = "Write a long, detailed story about a lighthouse keeper who finds a map. Use many paragraphs."
NEW_TOKENS = 128
LONG_PROMPT_TOKENS = 500


def bare_generate(backend, messages, new_tokens: int = NEW_TOKENS, ids=None) -> tuple[int, float, float]:  # noqa: ANN001
    """(new tokens, seconds, ttft seconds) of model.generate with a streamer that only timestamps."""
    import torch
    from transformers.generation.streamers import BaseStreamer

    class FirstToken(BaseStreamer):
        def __init__(self) -> None:
            self.calls, self.first = 0, None

        def put(self, value) -> None:  # noqa: ANN001
            self.calls += 1
            if self.calls == 2 and self.first is None:
                self.first = time.perf_counter()

        def end(self) -> None:
            pass

    loaded = getattr(backend, "loaded", None) or backend
    codec, model = loaded.codec, loaded.model
    if ids is None:
        ids = torch.tensor([codec.prompt_ids(messages)])
    streamer = FirstToken()
    start = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=new_tokens,
                             do_sample=False, eos_token_id=codec.stop_ids, pad_token_id=codec.stop_ids[0],
                             streamer=streamer)
    elapsed = time.perf_counter() - start
    new = out.shape[1] - ids.shape[1]
    if int(out[0, -1]) in codec.stop_ids:
        new -= 1
    return new, elapsed, (streamer.first or start) - start


def inkstone_turn(engine) -> tuple[int, float, float]:  # noqa: ANN001
    """(new tokens, seconds, ttft seconds) of one ChatService turn in a fresh session."""
    from core.chat.service import Done, Token

    sid = engine.new_session()
    greedy = {"temperature": 0, "max_new_tokens": NEW_TOKENS, "repetition_penalty": 1.0}
    engine.store.update_session(sid, settings=greedy)
    start = time.perf_counter()
    first = None
    tokens = 0
    for event in engine.service.send(sid, PROMPT):
        if isinstance(event, Token) and first is None:
            first = time.perf_counter()
        if isinstance(event, Done):
            tokens = event.stats.completion_tokens
    return tokens, time.perf_counter() - start, (first or start) - start


def long_prompt_ids(loaded) -> object:  # noqa: ANN001
    """Exactly LONG_PROMPT_TOKENS ids of English + Chinese prose in the model's chat format."""
    import torch

    text = (Path(__file__).with_name("quality_data") / "cpu_quality_heldout.txt").read_text(encoding="utf-8")
    ids = loaded.codec.prompt_ids([{"role": "user", "content": "Summarize:\n" + text}])
    return torch.tensor([ids[:LONG_PROMPT_TOKENS]])


def bench_model(model_id: str, runs: int, weights: list[str] | None = None) -> dict[str, dict[str, float]]:
    """Load ``model_id`` with fp32 and with each of ``weights`` (default: the cpu_weights default); time decode,
    turns and prefill; return tokens/s of bare decode and prefill seconds per setting."""
    from core.config import Settings, load_settings
    from core.engine import build_engine

    home = Path(os.environ.get("INKSTONE_BENCH_HOME", Path(tempfile.gettempdir()) / "inkstone-bench"))
    kinds = ["fp32", *[w for w in (weights or [Settings().cpu_weights]) if w != "fp32"]]
    default = kinds[1] if len(kinds) > 1 else "fp32"
    engines = {}
    for kind in kinds:
        settings = load_settings({"home": str(home), "model": model_id, "device": "cpu", "cpu_weights": kind})
        engines[kind] = build_engine(settings)
    messages = [{"role": "user", "content": PROMPT}]
    low = engines[default]
    used = {k: e.backend.loaded.cpu_weights or "fp32" for k, e in engines.items()}
    long_ids = long_prompt_ids(low.backend.loaded)
    for engine in engines.values():  # warm-up
        bare_generate(engine.backend, messages, 8)
    inkstone_turn(low)
    bare: dict[str, list[tuple[int, float, float]]] = {k: [] for k in kinds}
    prefill: dict[str, list[float]] = {k: [] for k in kinds}
    ours = []
    for _ in range(runs):
        for kind, engine in engines.items():
            bare[kind].append(bare_generate(engine.backend, messages))
            prefill[kind].append(bare_generate(engine.backend, messages, 1, long_ids)[1])
        ours.append(inkstone_turn(low))

    def tps(rows: list[tuple[int, float, float]]) -> float:
        return statistics.median(n / s for n, s, _ in rows)

    f_tps, o_tps = tps(bare["fp32"]), tps(ours)
    f_pre = statistics.median(prefill["fp32"]) * 1000
    print(f"{model_id}: cpu_weights {', '.join(f'{k} (ran as {used[k]})' for k in kinds[1:])}, "
          f"{bare[default][-1][0]} new tokens (fp32: {bare['fp32'][-1][0]}), median of {runs}, {os.cpu_count()} CPUs, "
          f"torch threads {__import__('torch').get_num_threads()}")
    auto = low.backend.loaded.cpu_weights_auto
    if auto:
        print(f"  {auto['summary']}")
    for kind in kinds[1:]:
        d_tps, d_pre = tps(bare[kind]), statistics.median(prefill[kind]) * 1000
        print(f"  bare generate tokens/s   fp32 {f_tps:7.2f} | {kind}={used[kind]} {d_tps:7.2f} | ratio "
              f"{d_tps / f_tps:.2f}")
        print(f"  TTFT {LONG_PROMPT_TOKENS}-token prompt ms fp32 {f_pre:7.1f} | {kind}={used[kind]} {d_pre:7.1f} | "
              f"ratio {f_pre / d_pre:.2f} (>= 1: prefill not slower than fp32)")
    d_tps = tps(bare[default])
    print(f"  {used[default]} tokens/s          Inkstone turn {o_tps:7.2f} | bare generate {d_tps:7.2f} | "
          f"ratio {o_tps / d_tps:.3f} (target >= 0.95)")
    print(f"  TTFT short prompt ms     Inkstone turn {statistics.median(t for *_, t in ours) * 1000:7.1f} | "
          f"bare generate {statistics.median(t for *_, t in bare[default]) * 1000:7.1f}")
    for engine in engines.values():
        engine.store.close()
    return {f"{k}={used[k]}": {"decode_tps": tps(bare[k]), "prefill_s": statistics.median(prefill[k])} for k in kinds}


def compare_llamacpp(model_id: str, ours: dict[str, dict[str, float]], threads: int) -> None:
    """Run llama.cpp's ``llama-bench`` on the same GGUF now and print Inkstone / llama.cpp per setting."""
    from bench import llamacpp

    binary = llamacpp.ensure_binary()
    if binary is None:
        return
    theirs = llamacpp.run_bench(binary, llamacpp.bundled_gguf(model_id, llamacpp.CACHE / "gguf"), threads,
                                LONG_PROMPT_TOKENS, NEW_TOKENS)
    print(f"  llama.cpp (llama-bench -t {threads} -p {LONG_PROMPT_TOKENS} -n {NEW_TOKENS}, same GGUF, same run): "
          f"decode {theirs['decode_tps']:.1f} tok/s, prefill {theirs['prefill_tps']:.1f} tok/s "
          f"({theirs['prefill_s']:.2f} s)")
    for kind, fig in ours.items():
        print(f"  Inkstone {kind:10s} / llama.cpp: decode {fig['decode_tps'] / theirs['decode_tps']:.2f} "
              f"(target >= 0.9) | prefill {theirs['prefill_s'] / fig['prefill_s']:.2f} (target >= 1.0)")


def main() -> None:
    """Parse flags and run."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["smollm2-135m", "qwen2.5-coder-0.5b"])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--weights", nargs="+", choices=("auto", "int4", "int8", "bf16"),
                   help="the settings set against fp32 (default: the cpu_weights default)")
    p.add_argument("--no-llamacpp", action="store_true", help="skip llama.cpp's llama-bench on the same GGUF")
    args = p.parse_args()
    for model_id in args.models:
        ours = bench_model(model_id, args.runs, args.weights)
        if not args.no_llamacpp:
            compare_llamacpp(model_id, ours, __import__("torch").get_num_threads())


if __name__ == "__main__":
    main()
