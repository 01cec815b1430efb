"""Decode speed of a full Inkstone turn vs a bare ``model.generate`` on the same loaded model.

Same prompt, greedy, up to 128 new tokens, same stop ids (so both produce the same tokens). Prints tokens/s
and time to first token of both and their ratio (target: Inkstone / bare >= 0.95). Not a test: figures only.

    .venv/bin/python bench/decode.py [--models smollm2-135m qwen2.5-coder-0.5b] [--runs 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

PROMPT = "Write a long, detailed story about a lighthouse keeper who finds a map. Use many paragraphs."
NEW_TOKENS = 128


def bare_generate(backend, messages) -> tuple[int, float, float]:  # noqa: ANN001
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

    codec, model = backend.codec, backend.model
    ids = torch.tensor([codec.prompt_ids(messages)])
    streamer = FirstToken()
    start = time.perf_counter()
    with torch.inference_mode():
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=NEW_TOKENS,
                             do_sample=False, eos_token_id=codec.stop_ids, pad_token_id=codec.stop_ids[0],
                             streamer=streamer)
    elapsed = time.perf_counter() - start
    new = out.shape[1] - ids.shape[1]
    if int(out[0, -1]) in codec.stop_ids:
        new -= 1
    return new, elapsed, (streamer.first or start) - start


def inkstone_turn(engine) -> tuple[int, float, float]:  # noqa: ANN001
    """(new tokens, seconds, ttft seconds) of one ChatService turn in a fresh session."""
    from core.chat import Done, Token

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


def bench_model(model_id: str, runs: int) -> None:
    """Load ``model_id`` once and time both paths ``runs`` times, alternating."""
    from core.config import load_settings
    from core.engine import build_engine

    home = Path(os.environ.get("INKSTONE_BENCH_HOME", Path(tempfile.gettempdir()) / "inkstone-bench"))
    settings = load_settings({"home": str(home), "model": model_id, "device": "cpu"})
    engine = build_engine(settings)
    messages = [{"role": "user", "content": PROMPT}]
    inkstone_turn(engine)  # warm-up
    bare_generate(engine.backend, messages)
    ours, bare = [], []
    for _ in range(runs):
        ours.append(inkstone_turn(engine))
        bare.append(bare_generate(engine.backend, messages))
    o_tps = statistics.median(n / s for n, s, _ in ours)
    b_tps = statistics.median(n / s for n, s, _ in bare)
    o_ttft = statistics.median(t for _, _, t in ours) * 1000
    b_ttft = statistics.median(t for _, _, t in bare) * 1000
    print(f"{model_id}: {ours[-1][0]} new tokens (bare: {bare[-1][0]}), median of {runs}")
    print(f"  tokens/s   Inkstone turn {o_tps:7.2f} | bare generate {b_tps:7.2f} | "
          f"ratio {o_tps / b_tps:.3f} (target >= 0.95)")
    print(f"  TTFT ms    Inkstone turn {o_ttft:7.1f} | bare generate {b_ttft:7.1f}")
    engine.store.close()


def main() -> None:
    """Parse flags and run."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["smollm2-135m", "qwen2.5-coder-0.5b"])
    p.add_argument("--runs", type=int, default=3)
    args = p.parse_args()
    for model_id in args.models:
        bench_model(model_id, args.runs)


if __name__ == "__main__":
    main()
