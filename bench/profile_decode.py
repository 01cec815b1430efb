"""Where one CPU decode step's time goes: ``torch.profiler`` over a few greedy steps of a bundled model. Figures only.

Loads the model with a ``cpu_weights`` setting, prefills a short prompt, then profiles ``--steps`` single-token
forward passes with a KV cache (what ``generate`` does per new token) and prints the operators by self CPU time,
grouped as Linear kernels (int4/int8/bf16 matmuls), attention, and the rest (norms, rotary, casts, Python and
module overhead: wall time minus operator time).

    .venv/bin/python bench/profile_decode.py [--model smollm2-135m] [--weights int8] [--steps 16] [--threads 1]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import core  # noqa: E402,F401 - first: offline, no telemetry, no hub kernels (core/offline.py)

MATMUL = ("_weight_int4pack_mm", "_weight_int8pack_mm", "aten::mm", "aten::addmm", "aten::linear", "aten::matmul")
ATTENTION = ("scaled_dot_product", "_flash_attention", "aten::bmm", "aten::softmax")


def main() -> None:
    """Profile and print."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    from core.config import load_settings
    from core.models.loader import load_model
    from core.models.registry import resolve

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="smollm2-135m")
    p.add_argument("--weights", default="int8")
    p.add_argument("--steps", type=int, default=16)
    p.add_argument("--threads", type=int, help="torch threads (1: no OpenMP waits, robust on a busy machine)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    home = Path(os.environ.get("INKSTONE_BENCH_HOME", Path(tempfile.gettempdir()) / "inkstone-bench"))
    loaded = load_model(resolve(args.model), load_settings(
        {"home": str(home), "model": args.model, "device": "cpu", "cpu_weights": args.weights}))
    model = loaded.model
    ids = torch.tensor([loaded.codec.prompt_ids([{"role": "user", "content": "Tell me a story."}])])
    with torch.inference_mode():
        out = model(ids, use_cache=True)
        cache, token = out.past_key_values, out.logits[:, -1:].argmax(-1)

        def step() -> None:
            nonlocal cache, token
            out = model(token, past_key_values=cache, use_cache=True)
            cache, token = out.past_key_values, out.logits[:, -1:].argmax(-1)

        for _ in range(4):  # warm-up
            step()
        start = time.perf_counter()
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            for _ in range(args.steps):
                step()
        wall = (time.perf_counter() - start) / args.steps * 1000
    events = prof.key_averages()
    groups = {"linear kernels": 0.0, "attention": 0.0, "other operators": 0.0}
    for e in events:
        ms = e.self_cpu_time_total / 1000 / args.steps
        if any(k in e.key for k in MATMUL):
            groups["linear kernels"] += ms
        elif any(k in e.key for k in ATTENTION):
            groups["attention"] += ms
        else:
            groups["other operators"] += ms
    ops = sum(groups.values())
    layers = sum(1 for m in model.modules() if isinstance(m, torch.nn.Linear))
    print(f"{args.model} {loaded.cpu_weights or 'fp32'}: {wall:.1f} ms per decode step under the profiler "
          f"({layers} Linear layers, {torch.get_num_threads()} threads)")
    for name, ms in groups.items():
        print(f"  {name:18s} {ms:7.2f} ms ({ms / wall:5.1%})")
    print(f"  {'outside operators':18s} {wall - ops:7.2f} ms ({(wall - ops) / wall:5.1%}) Python, module calls, "
          "profiler")
    calls = sum(e.count for e in events) / args.steps
    print(f"  {calls:.0f} operator calls per step; top operators by self CPU time:")
    print(events.table(sort_by="self_cpu_time_total", row_limit=12))


if __name__ == "__main__":
    main()
