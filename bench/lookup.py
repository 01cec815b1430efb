"""Prompt-lookup decoding (transformers' ``prompt_lookup_num_tokens``) on the CPU: tokens/s of a full Inkstone turn
with it on and off, on answers that quote their context (RAG passages, code edits) and on open questions with
nothing to copy, plus whether the greedy text is the same. Figures only.

Each model is loaded once; every prompt is answered with prompt lookup off and on, alternately (the order flips
each run), greedy, through ``ChatService.send`` (RAG prompts get their passages from a stub retriever, so the
context block is the real one) and the fair queue, with the continuous batcher bypassed: prompt lookup applies to
the backend's own ``generate`` only. Tokens/s = answer tokens / seconds of the whole turn, prefill included; the ratio
is on/off in the same run. Where the greedy texts differ, the top-2 logit gap of plain decoding at the first
differing token is printed (0: an exact tie, which prompt lookup's multi-token forward may break the other way).

    .venv/bin/python bench/lookup.py [--models qwen2.5-coder-0.5b smollm2-135m] [--runs 1] [--new-tokens 128]
                                     [--tokens 10] [--sampled] [--cpu-weights fp32]
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

WARRANTY = [
    {"n": 1, "source": "kettle-manual.pdf", "page": 14, "text": (
        "Warranty. The Aurora K2 electric kettle is covered by a limited warranty of 24 months from the date of "
        "purchase. The warranty covers defects in materials and workmanship under normal household use. It does "
        "not cover damage caused by limescale, by dropping the kettle, or by operating it without water. To make a "
        "claim, contact the retailer with the original receipt and the serial number printed under the base.")},
    {"n": 2, "source": "kettle-manual.pdf", "page": 9, "text": (
        "Descaling. In hard-water areas descale the kettle every four weeks. Fill it with equal parts of white "
        "vinegar and water, bring it to the boil, leave it to stand for one hour, then rinse it three times with "
        "clean water. Never use abrasive cleaners on the stainless steel body.")},
]
RETENTION = [
    {"n": 1, "source": "data-policy.docx", "page": 3, "text": (
        "Retention of customer records. Invoices and payment records are kept for seven years after the end of "
        "the financial year in which they were issued, as required by tax law. Support tickets are deleted two "
        "years after they were closed. Marketing consent records are kept for as long as the consent is valid and "
        "for one year after it has been withdrawn.")},
    {"n": 2, "source": "data-policy.docx", "page": 4, "text": (
        "Access requests. A customer may ask for a copy of the personal data we hold about them. We answer within "
        "thirty days of receiving the request, free of charge, and we send the data in a machine-readable format "
        "such as CSV or JSON.")},
]

AVERAGE = '''def moving_average(values, window):
    """Return the moving averages of values over a sliding window."""
    if window <= 0:
        raise ValueError("window must be positive")
    result = []
    total = 0.0
    for index, value in enumerate(values):
        total += value
        if index >= window:
            total -= values[index - window]
        if index >= window - 1:
            result.append(total / window)
    return result
'''
INVENTORY = '''class Inventory:
    def __init__(self):
        self.items = {}

    def add(self, name, count=1):
        if count < 1:
            raise ValueError("count must be at least 1")
        self.items[name] = self.items.get(name, 0) + count

    def remove(self, name, count=1):
        have = self.items.get(name, 0)
        if count > have:
            raise KeyError(f"only {have} of {name} in stock")
        self.items[name] = have - count

    def total(self):
        return sum(self.items.values())
'''

PROMPTS: dict[str, list[tuple[str, list[dict] | None]]] = {
    "rag quote": [
        ("How long is the warranty and what does it not cover? Quote the passage word for word and cite it.",
         WARRANTY),
        ("How long are invoices and support tickets kept? Quote the policy's sentences exactly, with the citation.",
         RETENTION),
    ],
    "code edit": [
        (f"Here is a Python function:\n```python\n{AVERAGE}```\nReturn the whole function with the variable "
         "`total` renamed to `running_sum`. Output only the code.", None),
        (f"```python\n{INVENTORY}```\nRewrite this class with the attribute `items` renamed to `stock`. Keep "
         "everything else the same and output only the code.", None),
    ],
    "open question": [
        ("What are the main advantages and disadvantages of working from home?", None),
        ("Explain how a refrigerator keeps food cold.", None),
    ],
}


def turn(engine, text: str, settings: dict) -> tuple[str, int, float]:  # noqa: ANN001
    """(answer text, answer tokens, seconds) of one ChatService turn in a fresh session."""
    from core.chat.service import Done, Failed

    sid = engine.new_session()
    engine.store.update_session(sid, settings=settings)
    start = time.perf_counter()
    for event in engine.service.send(sid, text):
        if isinstance(event, Failed):
            raise RuntimeError(event.error)
        if isinstance(event, Done):
            return event.stats.text, event.stats.completion_tokens, time.perf_counter() - start
    raise RuntimeError("the turn ended without Done")


def tie_gap(engine, text: str, sources: list[dict] | None, settings: dict) -> str:  # noqa: ANN001
    """Where greedy ids differ with lookup on/off: the token index and plain decoding's top-2 logit gap there."""
    import torch

    from core.chat.prompt import with_context
    from core.config import GenerationSettings

    backend = engine.backend
    system = with_context(None, sources, text)
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": text}]
    ids = {mode: backend.generate_ids(messages, GenerationSettings.from_dict({**settings, "prompt_lookup": mode}))
           for mode in ("off", "on")}
    first = next((i for i, (a, b) in enumerate(zip(ids["off"], ids["on"], strict=False)) if a != b), None)
    if first is None:
        return "same ids (text differs only in streaming)"
    from transformers import RepetitionPenaltyLogitsProcessor

    prompt = torch.tensor([backend.loaded.codec.prompt_ids(messages) + ids["off"][:first]])
    penalty = GenerationSettings.from_dict(settings).repetition_penalty
    with torch.inference_mode():
        logits = backend.loaded.model(prompt).logits[:, -1].float()
    logits = RepetitionPenaltyLogitsProcessor(penalty)(prompt, logits)[0]
    gap = float(logits[ids["off"][first]] - logits[ids["on"][first]])
    return f"first differing token {first}: off's token leads on's by {gap:.4f} (bf16 logit step here: " \
           f"{float(logits[ids['off'][first]].abs()) * 2 ** -8:.4f})"


def bench_model(model_id: str, runs: int, new_tokens: int, tokens: int, sampled: bool, weights: str | None) -> None:
    """Answer every prompt with prompt lookup off and on, interleaved; print tokens/s, ratios, identity."""
    from core.chat.prompt import with_context
    from core.config import GenerationSettings, load_settings
    from core.engine import build_engine
    from core.generation.lookup import prompt_lookup_tokens

    home = Path(os.environ.get("INKSTONE_BENCH_HOME", Path(tempfile.gettempdir()) / "inkstone-bench"))
    choice = {"home": str(home), "model": model_id, "device": "cpu", "cpu_weights": weights}
    engine = build_engine(load_settings(choice))
    if getattr(engine.backend, "batcher", None) is not None:  # one answer at a time runs through generate alone
        engine.backend.batcher = None
    current: dict[str, list[dict] | None] = {"sources": None}
    engine.service.retriever = lambda session, question: current["sources"]
    greedy = {"temperature": 0, "max_new_tokens": new_tokens, "prompt_lookup_tokens": tokens}
    arms = {"off": {**greedy, "prompt_lookup": "off"}, "on": {**greedy, "prompt_lookup": "on"}}
    if sampled:  # Inkstone's default sampling (temperature 0.7, top-p 0.9, top-k 40): texts differ run to run
        sample = {"max_new_tokens": new_tokens, "prompt_lookup_tokens": tokens}
        arms |= {"sampled off": {**sample, "prompt_lookup": "off"}, "sampled on": {**sample, "prompt_lookup": "on"}}
    loaded = engine.backend.loaded
    print(f"{model_id}: cpu_weights={loaded.cpu_weights or loaded.dtype}, {new_tokens} new tokens max, "
          f"prompt_lookup_tokens={tokens}, {runs} run(s), {os.cpu_count()} CPUs, "
          f"torch threads {__import__('torch').get_num_threads()}")
    current["sources"] = None
    turn(engine, "Say hello.", {**greedy, "max_new_tokens": 8})  # warm-up
    rows: dict[tuple[str, str], list[float]] = {}
    texts: dict[tuple[str, int, str], str] = {}
    for run in range(runs):
        for category, prompts in PROMPTS.items():
            for index, (text, sources) in enumerate(prompts):
                current["sources"] = sources
                order = list(arms) if run % 2 == 0 else list(reversed(arms))
                for arm in order:
                    answer, count, seconds = turn(engine, text, arms[arm])
                    rows.setdefault((category, arm), []).append(count / seconds)
                    texts[(category, index, arm)] = answer
    for category, prompts in PROMPTS.items():
        off, on = statistics.median(rows[(category, "off")]), statistics.median(rows[(category, "on")])
        auto = []
        for text, sources in prompts:
            system = with_context(None, sources, text)
            messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": text}]
            greedy_auto = GenerationSettings.from_dict({**greedy, "prompt_lookup": "auto"})
            auto.append("on" if prompt_lookup_tokens(greedy_auto, messages) else "off")
        same = sum(texts[(category, i, "off")] == texts[(category, i, "on")] for i in range(len(prompts)))
        line = (f"  {category:14s} greedy tokens/s  off {off:6.2f} | on {on:6.2f} | ratio {on / off:5.2f} | "
                f"greedy text identical {same}/{len(prompts)} | auto: {', '.join(auto)}")
        if sampled:
            s_off = statistics.median(rows[(category, "sampled off")])
            s_on = statistics.median(rows[(category, "sampled on")])
            line += f" | sampled off {s_off:6.2f} on {s_on:6.2f} ratio {s_on / s_off:5.2f}"
        print(line)
        for i, (text, sources) in enumerate(prompts):
            if texts[(category, i, "off")] != texts[(category, i, "on")]:
                print(f"    prompt {i + 1} differs: {tie_gap(engine, text, sources, arms['off'])}")
    engine.store.close()


def main() -> None:
    """Parse flags and run."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["qwen2.5-coder-0.5b", "smollm2-135m"])
    p.add_argument("--runs", type=int, default=1)
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument("--tokens", type=int, default=10, help="prompt_lookup_tokens (drafted per step)")
    p.add_argument("--sampled", action="store_true", help="also time Inkstone's default sampling, on vs off")
    p.add_argument("--cpu-weights", help="int8 (default), int4, bf16 or fp32 (exact greedy: same text expected)")
    args = p.parse_args()
    for model_id in args.models:
        bench_model(model_id, args.runs, args.new_tokens, args.tokens, args.sampled, args.cpu_weights)


if __name__ == "__main__":
    main()
