"""CPU decode speed: float32 weights vs the default ``cpu_weights`` setting, and a full Inkstone turn vs a bare
``model.generate`` on the default setting; plus time to first token of a 500-token prompt. Figures only.

Both models are loaded in one process and timed alternately (same prompt, greedy, 128 new tokens, same stop
ids), so the ratios come from the same run. Targets: default / fp32 >= 4 on qwen2.5-coder-0.5b; Inkstone turn /
bare generate >= 0.95; prefill of the default setting not slower than fp32.

    .venv/bin/python bench/decode.py [--models smollm2-135m qwen2.5-coder-0.5b] [--runs 3] [--weights int4]
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


def bench_model(model_id: str, runs: int, weights: str | None = None) -> None:
    """Load ``model_id`` with fp32 and with ``weights`` (default: the cpu_weights default); time decode, turns
    and prefill."""
    from core.config import Settings, load_settings
    from core.engine import build_engine

    home = Path(os.environ.get("INKSTONE_BENCH_HOME", Path(tempfile.gettempdir()) / "inkstone-bench"))
    default = weights or Settings().cpu_weights
    engines = {}
    for kind in ("fp32", default):
        settings = load_settings({"home": str(home), "model": model_id, "device": "cpu", "cpu_weights": kind})
        engines[kind] = build_engine(settings)
    messages = [{"role": "user", "content": PROMPT}]
    low = engines[default]
    used = low.backend.loaded.cpu_weights or "fp32"
    long_ids = long_prompt_ids(low.backend.loaded)
    for engine in engines.values():  # warm-up
        bare_generate(engine.backend, messages, 8)
    inkstone_turn(low)
    bare: dict[str, list[tuple[int, float, float]]] = {"fp32": [], default: []}
    prefill: dict[str, list[float]] = {"fp32": [], default: []}
    ours = []
    for _ in range(runs):
        for kind, engine in engines.items():
            bare[kind].append(bare_generate(engine.backend, messages))
            prefill[kind].append(bare_generate(engine.backend, messages, 1, long_ids)[1])
        ours.append(inkstone_turn(low))

    def tps(rows: list[tuple[int, float, float]]) -> float:
        return statistics.median(n / s for n, s, _ in rows)

    f_tps, d_tps, o_tps = tps(bare["fp32"]), tps(bare[default]), tps(ours)
    f_pre, d_pre = (statistics.median(prefill[w]) * 1000 for w in ("fp32", default))
    print(f"{model_id}: cpu_weights={default} (this CPU: {used}), {bare[default][-1][0]} new tokens "
          f"(fp32: {bare['fp32'][-1][0]}), median of {runs}, {os.cpu_count()} CPUs, torch threads "
          f"{__import__('torch').get_num_threads()}")
    print(f"  bare generate tokens/s   fp32 {f_tps:7.2f} | {used} {d_tps:7.2f} | ratio {d_tps / f_tps:.2f} "
          "(target >= 4 on qwen2.5-coder-0.5b)")
    print(f"  {used} tokens/s          Inkstone turn {o_tps:7.2f} | bare generate {d_tps:7.2f} | "
          f"ratio {o_tps / d_tps:.3f} (target >= 0.95)")
    print(f"  TTFT {LONG_PROMPT_TOKENS}-token prompt ms fp32 {f_pre:7.1f} | {used} {d_pre:7.1f} | "
          f"ratio {f_pre / d_pre:.2f} (>= 1: prefill not slower than fp32)")
    print(f"  TTFT short prompt ms     Inkstone turn {statistics.median(t for *_, t in ours) * 1000:7.1f} | "
          f"bare generate {statistics.median(t for *_, t in bare[default]) * 1000:7.1f}")
    for engine in engines.values():
        engine.store.close()


def main() -> None:
    """Parse flags and run."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["smollm2-135m", "qwen2.5-coder-0.5b"])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--weights", choices=("int4", "int8", "bf16"), help="the setting set against fp32 (default: the "
                   "cpu_weights default)")
    args = p.parse_args()
    for model_id in args.models:
        bench_model(model_id, args.runs, args.weights)


if __name__ == "__main__":
    main()
