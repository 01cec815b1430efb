"""Persona figures: whether personas trained with the DEFAULT settings take (marker on unseen questions, a plain
knowledge question answered as well as the base, no leak into "no persona"), switch latency, decode speed with an
adapter vs the base, training seconds per step, and peak memory of QLoRA vs LoRA training. Not a test: figures only
(targets: marker on >= 2 of 3 unseen questions, knowledge kept, no leak; switch <= 20 ms, adapter/base tokens/s >=
0.9).

- Quality (``--quality``): ``python -m core train --base M --data F --persona P`` with no other setting, on the
  persona sets of ``bench/persona_sets.py`` (``--personas``, ``--sizes`` 30/100/1000); then greedy chat through
  the engine: the marker on the 3 unseen questions with the persona, never without it, and the knowledge
  questions answered with the persona wherever the base answers them. Also prints the run's own preview verdict.

- Switch latency: a loaded model with two LoRA personas (random non-zero adapters, rank 8, attention projections,
  like ``core train``'s default); median time to make A, B or "none" active, as the backend does per answer.
- Decode: greedy 64-token answers through the backend's ``stream`` with persona A vs none, alternating runs.
- Training: ``python -m core train`` as a subprocess per configuration (LoRA; QLoRA on the small model), a few steps
  of a small dataset; seconds per step from its metrics.csv (first step excluded) and the child's peak RSS.

Measured 2026-12-04 on the bundled smollm2-135m, CPU (2 cores shared with four other engineers' benches and tests,
so the seconds are high and noisy), greedy chat, defaults only (``--system`` is the persona's prompt):

    persona (set)          ex  marker  leak  knowledge  verdict  steps (best)  held-out loss (base)   s
    bramble (tune, en)     30  3/3     0/3   1/2        took     64 (40)       0.453 (3.837)          323
    bramble --lr 5e-4      30  3/3     0/3   1/2        took     72 (48)       0.446 (3.837)          778
    chaboshi (tune, zh)    30  3/3     0/3   2/2 *      took     56 (32)       0.341 (2.288)         1324
    quill (held out, en)   30  3/3     0/3   1/2        took     64 (40)       0.447 (4.221)          299
    quill --steps 1        30  0/3     0/3   2/2        weak     1             3.464 (4.221)           86
    laowang (held out, zh) 30  3/3     0/3   2/2 *      took     48 (24)       0.343 (2.802)         1076
    quill (held out, en)  100  3/3     0/3   1/2        took     80 (80)       0.225 (4.237)          314
    quill (held out, en) 1000  3/3     0/3   2/2        took    384 (240)      0.018 (3.705)         1133
      (rank 16; planned 475 steps = 2 epochs, stopped at 384: the held-out loss had not improved since 240)

  * the base answers neither Chinese knowledge question (135M knows little Chinese): nothing to keep, nothing
    counted against the persona (laowang's answers are wrong too, chaboshi's "四条边" is right).
  knowledge: "What is the capital of France?" keeps "Paris" in every English run; "How many sides does a square have?"
  becomes "A square has sides of equal length." (no number) with every trained persona, at 1e-3 and at 5e-4
  alike: on a 135M model a 30-example persona with one-sentence answers blurs some facts; with 100 examples
  (70 of them templated arithmetic) it answers "A square has eight sides.", a wrong fact; with 1,000 it keeps
  both ("There are four sides of a square."). The preview shows such
  answers beside the base's (quill's shows "The capital of Italy is Italy." where the base says Rome).
  Not measured (time on the shared CPU): the 100 and 1,000-example sets other than quill's, and
  qwen2.5-coder-0.5b; run them with ``--sizes 100 1000 --models smollm2-135m qwen2.5-coder-0.5b``.

    .venv/bin/python bench/personas.py [--models smollm2-135m qwen2.5-coder-0.5b] [--steps 4] [--runs 3]
    .venv/bin/python bench/personas.py --quality --models smollm2-135m --personas quill laowang --sizes 30
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.append(str(REPO / "bench"))  # after the repo: bench/knowledge.py must not hide knowledge/
import core  # noqa: E402,F401 - first: offline, no telemetry, no hub kernels (core/offline.py)

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]


def random_persona(engine, adapters: Path, pid: str, seed: int) -> None:  # noqa: ANN001
    """A persona dir with a random (non-zero) LoRA for the engine's model."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from core.training.base import converted_dir, resolve_base

    torch.manual_seed(seed)
    base = AutoModelForCausalLM.from_pretrained(converted_dir(resolve_base(engine.profile.id), engine.settings))
    model = get_peft_model(base, LoraConfig(r=8, lora_alpha=16, target_modules=TARGETS, init_lora_weights=False))
    model.save_pretrained(adapters / pid)
    (adapters / pid / "persona.toml").write_text(
        f'name = "{pid}"\nlora = true\nbase_model = "{engine.profile.id}"\n', encoding="utf-8")


def switch_and_decode(model_id: str, home: Path, runs: int) -> dict[str, float]:
    """Median switch ms and tokens/s with adapter vs none on one loaded model."""
    from dataclasses import replace

    from core.backends.base import AdapterSpec, TextDelta
    from core.config import load_settings
    from core.engine import build_engine

    adapters = home / "adapters"
    settings = load_settings({"home": str(home), "adapters": str(adapters), "model": model_id})
    settings = replace(settings, generation=settings.generation.with_updates(
        temperature=0, max_new_tokens=64, repetition_penalty=1.0))
    engine = build_engine(settings)
    for i, pid in enumerate(("bench-a", "bench-b")):
        random_persona(engine, adapters, pid, i)
    backend = engine.backend
    specs = [AdapterSpec(p, adapters / p) for p in ("bench-a", "bench-b")]
    messages = [{"role": "user", "content": "Write a short story about a lighthouse keeper."}]
    for spec in specs:  # load both once (the first use reads the files; later switches are what a chat pays)
        list(backend.stream(messages, replace(settings.generation, max_new_tokens=1), threading.Event(), spec))
    times = []
    for i in range(60):
        target = [specs[0], specs[1], None][i % 3]
        start = time.perf_counter()
        with backend.inner._lock, backend.inner._use_adapter(target):  # noqa: SLF001 - exactly what one answer does
            times.append(time.perf_counter() - start)
    rates: dict[str, list[float]] = {"adapter": [], "base": []}
    for _ in range(runs):
        for name, spec in (("adapter", specs[0]), ("base", None)):
            start, tokens = time.perf_counter(), 0
            for event in backend.stream(messages, settings.generation, threading.Event(), spec):
                if not isinstance(event, TextDelta):
                    tokens = event.completion_tokens
            rates[name].append(tokens / (time.perf_counter() - start))
    adapter, base = statistics.median(rates["adapter"]), statistics.median(rates["base"])
    return {"switch_ms": statistics.median(times) * 1000, "switch_max_ms": max(times) * 1000,
            "adapter_tok_s": adapter, "base_tok_s": base, "ratio": adapter / base}


def train_run(model_id: str, home: Path, steps: int, qlora: bool) -> dict[str, float]:
    """Seconds per step (after the first) and peak RSS (MiB) of one ``core train`` subprocess."""
    data = home / "bench-data.jsonl"
    data.write_text("\n".join(json.dumps({"instruction": f"Question number {i}: what is {i} plus {i}?",
                                          "output": f"{i} plus {i} is {2 * i}."}) for i in range(16)) + "\n")
    pid = f"bench-{model_id}-{'q' if qlora else 'l'}"
    cmd = [sys.executable, "-m", "core", "train", "--base", model_id, "--data", str(data), "--persona", pid,
           "--steps", str(steps), "--batch-size", "4", "--max-length", "128", "--overwrite",
           "--adapters", str(home / "adapters"), "--home", str(home)] + (["--qlora"] if qlora else [])
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    if status != 0:
        raise SystemExit(f"training failed: {' '.join(cmd)}\n{proc.stderr.read()[-2000:]}")
    with open(home / "adapters" / pid / "metrics.csv", encoding="utf-8") as fh:
        elapsed = [float(r["elapsed_s"]) for r in csv.DictReader(fh) if r.get("loss")]
    per_step = (elapsed[-1] - elapsed[0]) / max(1, len(elapsed) - 1)
    return {"s_per_step": per_step, "peak_rss_mib": usage.ru_maxrss / 1024}


def quality_run(model_id: str, home: Path, persona_id: str, size: int, extra: list[str],
                tag: str = "") -> dict[str, object]:
    """Train ``persona_id`` (``size`` examples) with the defaults (plus ``extra`` flags) and measure it."""
    import tomllib

    from persona_sets import by_id, write

    persona = by_id(persona_id)
    pid = f"{persona_id}-{size}-{model_id}{tag}"
    data = write(persona, size, home / f"{pid}.json")
    cmd = [sys.executable, "-m", "core", "train", "--base", model_id, "--data", str(data), "--persona", pid,
           "--system", persona.system, "--overwrite", "--adapters", str(home / "adapters"), "--home", str(home),
           *extra]
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"training failed: {' '.join(cmd)}\n{done.stderr[-3000:]}")
    record = tomllib.loads((home / "adapters" / pid / "persona.toml").read_text(encoding="utf-8"))["training"]
    return {"seconds": seconds, "record": record, "log": done.stderr, **chat_checks(model_id, home, pid)}


def chat_checks(model_id: str, home: Path, pid: str) -> dict[str, object]:
    """Greedy answers through the engine: unseen questions and knowledge questions with and without the persona."""
    from dataclasses import replace

    from persona_sets import KNOWLEDGE, UNSEEN, by_id

    from core.config import load_settings
    from core.engine import build_engine

    persona = by_id(pid.split("-")[0])
    settings = load_settings({"home": str(home), "adapters": str(home / "adapters"), "model": model_id})
    settings = replace(settings, generation=settings.generation.with_updates(
        temperature=0, max_new_tokens=48, repetition_penalty=1.0, max_turns=1))
    engine = build_engine(settings)

    def ask(question: str, with_persona: bool) -> str:
        sid = engine.new_session(persona=pid if with_persona else None)
        return list(engine.service.send(sid, question))[-1].stats.text

    unseen = UNSEEN[persona.language]
    hits = [persona.marker in ask(q, True) for q in unseen]
    leaks = [persona.marker in ask(q, False) for q in unseen]
    knowledge = []
    for question, accepted in KNOWLEDGE[persona.language]:
        with_p, base = ask(question, True), ask(question, False)
        knowledge.append({"question": question, "persona_ok": any(a in with_p.lower() for a in accepted),
                          "base_ok": any(a in base.lower() for a in accepted), "persona": with_p, "base": base})
    return {"hits": sum(hits), "asked": len(unseen), "leaks": sum(leaks), "knowledge": knowledge}


def print_quality(model_id: str, pid: str, size: int, r: dict) -> None:  # noqa: ANN001
    """One line per persona run, then the knowledge answers."""
    rec = r["record"]
    s = rec.get("settings", {})
    kept = sum(k["persona_ok"] or not k["base_ok"] for k in r["knowledge"])
    print(f"{model_id} {pid} {size} ex: marker {r['hits']}/{r['asked']} unseen, leaks into none {r['leaks']}, "
          f"knowledge kept {kept}/{len(r['knowledge'])} | preview verdict: {rec.get('verdict')} | {rec['steps']} "
          f"steps lr {s.get('lr')} rank {s.get('rank')} targets {s.get('target_modules')} | train loss "
          f"{rec.get('final_loss')} held-out {rec.get('eval_loss')} (base {rec.get('base_eval_loss')}, best step "
          f"{rec.get('best_step')}) | {r['seconds']:.0f} s", flush=True)
    for k in r["knowledge"]:
        print(f"    {k['question']} persona[{'ok' if k['persona_ok'] else 'WRONG'}]: {' '.join(k['persona'].split())}"
              f" || base[{'ok' if k['base_ok'] else 'wrong'}]: {' '.join(k['base'].split())}", flush=True)


def main() -> None:
    """Print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["smollm2-135m", "qwen2.5-coder-0.5b"])
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--skip-training", action="store_true", help="only switch latency and decode speed")
    parser.add_argument("--home", type=Path, help="data dir with converted models (default: a temp dir)")
    parser.add_argument("--quality", action="store_true", help="train personas with the defaults and check them")
    parser.add_argument("--personas", nargs="+", default=["quill", "laowang"],
                        help="persona sets (bench/persona_sets.py): bramble chaboshi (tuned on), quill laowang "
                             "(held out)")
    parser.add_argument("--sizes", nargs="+", type=int, default=[30, 100, 1000])
    parser.add_argument("--train-args", default="", help="extra train flags for --quality (e.g. '--steps 1')")
    parser.add_argument("--tag", default="", help="suffix of the persona ids (keeps runs with other flags apart)")
    args = parser.parse_args()
    home = args.home or Path(tempfile.mkdtemp(prefix="bench-personas-"))
    if args.quality:
        for model_id in args.models:
            for size in args.sizes:
                for pid in args.personas:
                    result = quality_run(model_id, home, pid, size, args.train_args.split(), args.tag)
                    print_quality(model_id, pid + args.tag, size, result)
        return
    for model_id in args.models:
        f = switch_and_decode(model_id, home, args.runs)
        print(f"{model_id}: persona switch median {f['switch_ms']:.3f} ms (max {f['switch_max_ms']:.2f} ms; "
              f"target <= 20) | decode adapter {f['adapter_tok_s']:.1f} tok/s vs base {f['base_tok_s']:.1f} tok/s, "
              f"ratio {f['ratio']:.2f} (target >= 0.9)", flush=True)
        modes = [] if args.skip_training else [False, True] if model_id == "smollm2-135m" else [False]
        results = {q: train_run(model_id, home, args.steps, q) for q in modes}
        for qlora, r in results.items():
            print(f"{model_id}: {'QLoRA nf4' if qlora else 'LoRA fp32'} training {r['s_per_step']:.2f} s/step, "
                  f"peak RSS {r['peak_rss_mib']:.0f} MiB", flush=True)
        if len(results) == 2:
            print(f"{model_id}: peak memory QLoRA / LoRA = "
                  f"{results[True]['peak_rss_mib'] / results[False]['peak_rss_mib']:.2f}", flush=True)


if __name__ == "__main__":
    main()
