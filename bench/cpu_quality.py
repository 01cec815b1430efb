"""Quality of each ``cpu_weights`` setting against float32 on the same model. Figures only.

For each model, float32 is the reference. Each setting is scored on
- top-1 agreement: on 56 fixed prompts (English and Chinese, ``bench/quality_data/cpu_quality_prompts.jsonl``) the
  reference answer is teacher-forced after the chat-formatted prompt, and the next-token argmax of the setting
  is compared with float32's at every answer position;
- perplexity of a held text (``bench/quality_data/cpu_quality_heldout.txt``, English and Chinese prose) and its change
  against float32 (target for the default setting and for int4 in "auto": within 0.5%).

    .venv/bin/python bench/cpu_quality.py [--models smollm2-135m qwen2.5-coder-0.5b] [--settings int4 int8 bf16]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import core  # noqa: E402,F401 - first: offline, no telemetry, no hub kernels (core/offline.py)

DATA = Path(__file__).with_name("quality_data")


def load(model_id: str, weights: str):  # noqa: ANN201
    """The model loaded on the CPU with ``weights`` (cached conversions under the bench home)."""
    from core.config import load_settings
    from core.models.loader import load_model
    from core.models.registry import resolve

    home = Path(os.environ.get("INKSTONE_BENCH_HOME", Path(tempfile.gettempdir()) / "inkstone-bench"))
    settings = load_settings({"home": str(home), "model": model_id, "device": "cpu", "cpu_weights": weights})
    return load_model(resolve(model_id), settings)


def answer_argmax(loaded, pairs: list[dict[str, str]]) -> list[list[int]]:  # noqa: ANN001
    """Per prompt, the argmax next token at each teacher-forced answer position."""
    import torch

    out = []
    tok = loaded.codec.tokenizer
    for pair in pairs:
        prompt = loaded.codec.prompt_ids([{"role": "user", "content": pair["prompt"]}])
        answer = tok(pair["answer"], add_special_tokens=False)["input_ids"]
        ids = torch.tensor([prompt + answer])
        with torch.inference_mode():
            logits = loaded.model(ids).logits[0, len(prompt) - 1 : -1]
        out.append(logits.float().argmax(-1).tolist())
    return out


def perplexity(loaded, text: str, window: int = 512) -> float:  # noqa: ANN001
    """Perplexity of ``text`` in non-overlapping windows of ``window`` tokens."""
    import torch

    ids = loaded.codec.tokenizer(text, add_special_tokens=False)["input_ids"]
    nll, count = 0.0, 0
    for start in range(0, len(ids) - 1, window):
        chunk = torch.tensor([ids[start : start + window + 1]])
        if chunk.shape[1] < 2:
            break
        with torch.inference_mode():
            logits = loaded.model(chunk[:, :-1]).logits[0].float()
        nll += float(torch.nn.functional.cross_entropy(logits, chunk[0, 1:], reduction="sum"))
        count += chunk.shape[1] - 1
    return math.exp(nll / count)


def bench_model(model_id: str, settings: list[str]) -> None:
    """Score each setting of ``model_id`` against float32 and print one line per setting."""
    from core.config import Settings

    pairs = [json.loads(line) for line in (DATA / "cpu_quality_prompts.jsonl").read_text("utf-8").splitlines() if line]
    text = (DATA / "cpu_quality_heldout.txt").read_text(encoding="utf-8")
    ref = load(model_id, "fp32")
    ref_top, ref_ppl = answer_argmax(ref, pairs), perplexity(ref, text)
    del ref
    default = Settings().cpu_weights
    print(f"{model_id}: {len(pairs)} prompts, {sum(map(len, ref_top))} teacher-forced answer tokens; "
          f"held-text perplexity fp32 {ref_ppl:.3f}")
    for weights in settings:
        loaded = load(model_id, weights)
        used = loaded.cpu_weights or "fp32"
        top = answer_argmax(loaded, pairs)
        agree = sum(a == b for x, y in zip(top, ref_top, strict=True) for a, b in zip(x, y, strict=True))
        ppl = perplexity(loaded, text)
        change = (ppl / ref_ppl - 1) * 100
        mark = " (default; target within 0.5%)" if weights == default else ""
        print(f"  {weights:5s} (ran as {used:5s}) top-1 agreement {agree / sum(map(len, ref_top)):6.1%} | "
              f"perplexity {ppl:8.3f} ({change:+.2f}% vs fp32){mark}")
        del loaded


def main() -> None:
    """Parse flags and run."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["smollm2-135m", "qwen2.5-coder-0.5b"])
    p.add_argument("--settings", nargs="+", default=["int4", "int8", "bf16"])
    args = p.parse_args()
    for model_id in args.models:
        bench_model(model_id, args.settings)


if __name__ == "__main__":
    main()
