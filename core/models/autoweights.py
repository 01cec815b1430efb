"""``cpu_weights = "auto"``: the fastest CPU weights on this CPU that keep the model's quality, measured once.

At the first start (and again when the CPU changes: its model name, feature flags, torch's kernel level, the
thread count or the torch version) each candidate (int8, int4, bf16, fp32) runs a few decode steps' worth of the
model's own Linear shapes on this CPU: one row through every layer, as one new token does, with random weights of
the candidate's kind, the candidates taking turns step by step. Decoding is memory-bound, so a candidate whose
layers pass a budget is timed on a prefix of them (well past the CPU caches) and scaled to all of them by bytes.
Attention and norms cost every candidate alike. A machine busy with other work at the first start skews the
figures (they are saved for inspection; delete the ``.auto.json`` file to time again).

The quality rule: int4 only where its perplexity change against fp32 is measured (``bench/cpu_quality.py``) and
declared below within ``INT4_MAX_PPL_DELTA``; a model without a figure keeps int4 off in "auto" (it can still be
chosen by hand). The choice, the figures and the reasons are saved as JSON next to the converted model.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

CANDIDATES = ("int8", "int4", "bf16", "fp32")
INT4_MAX_PPL_DELTA = 0.5
"""Largest perplexity change (percent, against fp32) for which "auto" may pick int4."""
DECLARED_PPL_DELTA: dict[tuple[str, str], float] = {
    # held-text perplexity change vs fp32 (bench/cpu_quality.py; int4 = the GGUF's own 4-bit blocks repacked,
    # the other layers int8). SmolLM2's GGUF is all Q4_1, so all of it is repacked; Qwen2.5's is mostly Q5_0 and
    # only 12 ffn_down layers are Q4_K: its int4 is int8 elsewhere, and the int8 rows cost what they cost.
    ("smollm2-135m", "int4"): 0.14,
    ("qwen2.5-coder-0.5b", "int4"): 1.16,
}
BUDGET_BYTES = 256 * 1024**2
"""Weight bytes timed per candidate at most (the rest is scaled by bytes): well past any CPU cache."""
BYTES = {"int4": 0.5 + 4 / 32, "int8": 1.0, "bf16": 2.0, "fp32": 4.0}

Shape = tuple[int, int, bool]
"""(out_features, in_features, is_output_head) of one Linear layer."""


@dataclass
class Choice:
    """What "auto" picked on this CPU and why (saved as JSON)."""

    choice: str
    ms_per_step: dict[str, float]
    """Timed Linear cost of one decode step per candidate (this CPU, this thread count)."""
    excluded: dict[str, str] = field(default_factory=dict)
    """Candidates left out, with the reason."""
    cpu: str = ""
    signature: str = ""
    threads: int = 0
    measured_at: float = 0.0

    def summary(self) -> str:
        """One line: the choice and every candidate's figure."""
        figures = ", ".join(f"{k} {v:.1f} ms" for k, v in sorted(self.ms_per_step.items(), key=lambda kv: kv[1]))
        left = "; ".join(f"{k} left out: {why}" for k, why in self.excluded.items())
        return f"auto chose {self.choice} on {self.cpu} ({self.threads} threads): {figures}" + (
            f"; {left}" if left else "")


def cpu_signature() -> tuple[str, str]:
    """(CPU model name, a hash of what decides kernel speed: model, flags, torch version and level, threads)."""
    import torch

    name, flags = platform.processor() or platform.machine(), ""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and name in ("", platform.processor() or platform.machine()):
                name = value.strip()
            elif key.strip() in ("flags", "Features") and not flags:
                flags = " ".join(sorted(value.split()))
    except OSError:
        pass
    text = "|".join([name, flags, torch.__version__, str(torch.backends.cpu.get_cpu_capability()),
                     str(torch.get_num_threads()), platform.machine()])
    return name, hashlib.sha256(text.encode()).hexdigest()[:16]


def quality_exclusions(model_key: str | None, candidates: Iterable[str]) -> dict[str, str]:
    """Candidates the quality rule leaves out for ``model_key`` (a bundled profile id, or None), with the reason."""
    out = {}
    if "int4" in candidates:
        delta = DECLARED_PPL_DELTA.get((model_key or "", "int4"))
        if delta is None:
            out["int4"] = ("no measured perplexity for int4 on this model (bench/cpu_quality.py); set "
                           'cpu_weights = "int4" to use it anyway')
        elif abs(delta) > INT4_MAX_PPL_DELTA:
            out["int4"] = f"perplexity {delta:+.2f}% vs fp32, above the {INT4_MAX_PPL_DELTA}% rule"
    return out


def memory_exclusions(shapes: list[Shape], candidates: Iterable[str], available: int | None = None
                      ) -> dict[str, str]:
    """Candidates whose Linear weights alone need more than the RAM available now (``available`` bytes, default
    psutil's figure), with the reason; never all of them. A busy CPU can time fp32 level with int8, and a 6B model
    in fp32 does not fit a 16 GB machine."""
    candidates = list(candidates)
    if available is None:
        try:
            import psutil

            available = int(psutil.virtual_memory().available)
        except (ImportError, OSError, RuntimeError):
            return {}
    weights = sum(out * inp for out, inp, _ in shapes)
    out = {kind: f"its weights need about {weights * BYTES[kind] / 1024**3:.1f} GiB, more than the "
                 f"{available / 1024**3:.1f} GiB of RAM available" for kind in candidates
           if weights * BYTES[kind] > available}
    return out if len(out) < len(candidates) else {}


def linear_shapes(model: Any) -> list[Shape]:
    """The Linear layers of ``model`` (real or on the meta device), the output head marked."""
    import torch

    head = model.get_output_embeddings()
    return [(m.out_features, m.in_features, m is head) for m in model.modules() if isinstance(m, torch.nn.Linear)]


def time_candidates(shapes: list[Shape], candidates: Iterable[str], steps: int = 6) -> dict[str, float]:
    """Milliseconds of one decode step's Linear layers per candidate on this CPU (median of ``steps``).

    The candidates take turns step by step, so a passing load on the machine slows them alike.
    """
    import torch

    built = {kind: _build_kind(shapes, kind) for kind in candidates}
    runs: dict[str, list[float]] = {kind: [] for kind in built}
    with torch.inference_mode():
        for step in range(steps + 1):
            for kind, (layers, xs, _) in built.items():
                start = time.perf_counter()
                for layer in layers:
                    layer(xs[layer.in_features])
                if step:  # the first pass warms up
                    runs[kind].append(time.perf_counter() - start)
    return {kind: statistics.median(runs[kind]) * 1000 * scale for kind, (_, _, scale) in built.items()}


def _build_kind(shapes: list[Shape], kind: str) -> tuple[list[Any], dict[int, Any], float]:
    """Layers of ``kind`` for a prefix of ``shapes`` within the budget, their inputs, and total / timed bytes."""
    import torch

    from core.models.lowbit_layers import GROUP_SIZE, build_layer

    gen = torch.Generator().manual_seed(0)
    layers, timed, total = [], 0.0, 0.0
    for out, inp, is_head in shapes:
        layer_kind = "int8" if kind == "int4" and (is_head or inp % GROUP_SIZE or out % 16) else kind
        nbytes = out * inp * BYTES[layer_kind]
        total += nbytes
        if timed >= BUDGET_BYTES:
            continue
        rows = out if timed + nbytes <= BUDGET_BYTES else max(16, int((BUDGET_BYTES - timed) / nbytes * out) // 16 * 16)
        rows = min(rows, out)
        timed += rows * inp * BYTES[layer_kind]
        layers.append(_random_layer(layer_kind, rows, inp, gen, build_layer))
    dtype = torch.float32 if kind == "fp32" else torch.bfloat16
    xs = {inp: torch.randn(1, inp, generator=gen).to(dtype) for _, inp, _ in shapes}
    return layers, xs, (total / timed if timed else 1.0)


def _random_layer(kind: str, rows: int, inp: int, gen: Any, build_layer: Callable[..., Any]) -> Any:
    """A layer of ``kind`` and shape; the values do not change a kernel's speed, so they are cheap to make."""
    import torch

    if kind in ("bf16", "fp32"):
        layer = torch.nn.Linear(inp, rows, bias=False, dtype=torch.bfloat16 if kind == "bf16" else torch.float32,
                                device="meta")
        layer.weight = torch.nn.Parameter(torch.full((rows, inp), 0.01, dtype=layer.weight.dtype), requires_grad=False)
        return layer
    if kind == "int8":
        codes = torch.randint(-127, 128, (rows, inp), generator=gen, dtype=torch.int8)
        return build_layer("int8", {"codes": codes, "scales": torch.full((rows,), 0.01, dtype=torch.bfloat16)}, None)
    codes = torch.randint(0, 256, (rows, inp // 2), generator=gen, dtype=torch.uint8)
    sz = torch.stack([torch.full((inp // 32, rows), 0.01), torch.zeros(inp // 32, rows)], -1).to(torch.bfloat16)
    return build_layer("int4", {"codes": codes, "scales_zeros": sz}, None)


def read_choice(path: Path) -> Choice | None:
    """The saved choice in ``path`` if it was measured on this CPU (same signature), else None."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        saved = Choice(**data)
    except (OSError, ValueError, TypeError):
        return None
    return saved if saved.signature == cpu_signature()[1] and saved.choice in CANDIDATES else None


def choose(path: Path, shapes: Callable[[], list[Shape]], model_key: str | None,
           supported: Callable[[str], bool], say: Callable[[str], None] | None = None) -> Choice:
    """The saved choice for this CPU, or a new one: time the supported candidates, apply the quality rule,
    save and return the fastest left."""
    saved = read_choice(path)
    if saved is not None:
        return saved
    say = say or (lambda _msg: None)
    cpu, signature = cpu_signature()
    excluded = {k: "no fast kernel on this CPU or torch build" for k in CANDIDATES if not supported(k)}
    for kind, why in quality_exclusions(model_key, CANDIDATES).items():
        excluded.setdefault(kind, why)
    say("Timing the CPU weight choices on this CPU (first start only, a few seconds)…")
    found = shapes()
    for kind, why in memory_exclusions(found, [k for k in CANDIDATES if k not in excluded]).items():
        excluded.setdefault(kind, why)
    figures = time_candidates(found, [k for k in CANDIDATES if k not in excluded])
    choice = min(figures, key=figures.__getitem__) if figures else "fp32"
    import torch

    made = Choice(choice, {k: round(v, 2) for k, v in figures.items()}, excluded, cpu, signature,
                  torch.get_num_threads(), time.time())
    try:
        save_choice(path, made)
    except OSError as exc:
        say(f"Could not save the CPU weight choice in {path} ({exc}); the next start times them again.")
    return made


def save_choice(path: Path, made: Choice) -> None:
    """Write ``made`` to ``path`` atomically (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(asdict(made), indent=1), encoding="utf-8")
    tmp.replace(path)


def pinned(choice: str) -> Choice:
    """A choice made without timing, valid on this CPU (a data dir prepared for ``choice``)."""
    import torch

    cpu, signature = cpu_signature()
    return Choice(choice, {}, {"timing": "pinned, not measured"}, cpu, signature, torch.get_num_threads(), time.time())


def config_shapes(model_dir: Path) -> list[Shape]:
    """The Linear shapes of the model in ``model_dir``, built from its config on the meta device (ChatGLM3 too)."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    from core.chatglm3 import glm_config_from_chatglm3
    from core.models.checkpoint import read_config

    raw = read_config(model_dir)
    config = glm_config_from_chatglm3(raw) if raw.get("model_type") == "chatglm" else AutoConfig.from_pretrained(
        str(model_dir))
    with torch.device("meta"):
        return linear_shapes(AutoModelForCausalLM.from_config(config))


def gguf_shapes(path: Path) -> list[Shape]:
    """The Linear shapes of a GGUF model from its tensor table (2-D weights but the embedding; the head is
    ``output.weight``, or the tied embedding)."""
    from gguf import GGUFReader

    tensors = {t.name: [int(s) for s in t.shape] for t in GGUFReader(str(path)).tensors if len(t.shape) == 2}
    shapes = [(dims[1], dims[0], False) for name, dims in tensors.items()
              if name.endswith(".weight") and name not in ("token_embd.weight", "output.weight")]
    head = tensors.get("output.weight") or tensors.get("token_embd.weight")
    return shapes + ([(head[1], head[0], True)] if head else [])
