"""Settings a run did not set, chosen from the model's size and the data (number and length of examples).

Why these rules (measured in ``bench/personas.py`` on personas of 30, 100 and 1,000 examples):

- **All linear layers.** Adapting only the attention projections needs a rate so high that facts break before the
  style shows; adapting every linear layer (current LoRA practice) takes at a rate that keeps them. ChatGLM3 names
  its layers differently: ``query_key_value``, ``dense``, ``dense_h_to_4h``, ``dense_4h_to_h``.
- **A learning rate scaled to the model.** Small models need a larger step: 1e-3 at 135M, falling with the square
  root of the parameter count (about 5e-4 at 0.5B, 1.5e-4 at 6B), decayed linearly to zero after a short warmup.
- **A floor on total steps.** Three epochs of 30 examples are 23 steps, too few for anything to show; small data
  gets more passes (at least ``MIN_STEPS`` steps, at most ``MAX_EPOCHS`` epochs); large data gets fewer epochs.
- **Rank** 8 for small data, 16 from 500 examples on (alpha twice the rank).
- **A held-out split** once there are ``HOLDOUT_FROM`` examples: its loss is measured every ``eval_steps`` and the
  best checkpoint is kept, so a run that starts to overfit (and forget) ends at its best point.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from core.training.options import CHATGLM3_TARGETS, TrainOptions

REFERENCE_PARAMS = 135e6
"""The model size the reference learning rate was measured on (SmolLM2-135M)."""
REFERENCE_LR = 1e-3
MIN_LR, MAX_LR = 5e-5, 1e-3
MIN_STEPS = 80
MAX_EPOCHS = 20.0
MAX_AUTO_STEPS = 1500
HOLDOUT_FROM = 20
"""Fewest examples that get a held-out split (below it every example is needed for training)."""
MAX_HOLDOUT = 50


@dataclass(frozen=True)
class DataShape:
    """What the defaults depend on: the model's parameter count and the examples left for training."""

    params: int
    examples: int
    mean_tokens: float
    chatglm3: bool = False


@dataclass(frozen=True)
class Plan:
    """The settings a run will use (every choice filled in) and one line per choice saying why."""

    options: TrainOptions
    reasons: list[str]
    steps: int
    """Optimizer steps the run is planned for (from --steps, --epochs or the default)."""
    auto_steps: int
    """The steps the defaults would choose for this data (what "train longer" suggests at least)."""

    def summary(self) -> str:
        """What was chosen, for the start of training."""
        o = self.options
        targets = "all linear layers" if list(o.target_modules) == ["all-linear"] else ", ".join(o.target_modules)
        head = (f"Settings: {self.steps} steps, lr {o.lr:.1e}, LoRA rank {o.rank} (alpha {o.alpha}) on {targets}, "
                f"batch {o.batch_size}x{o.grad_accum}, warmup {o.warmup_steps} steps.")
        return "\n".join([head, *[f"  - {r}" for r in self.reasons]])


def holdout_size(examples: int, requested: int | None) -> int:
    """How many examples to hold out: ``requested`` if given, else 10% (3 to ``MAX_HOLDOUT``) from
    ``HOLDOUT_FROM`` examples on, else none."""
    if requested is not None:
        return max(0, min(requested, examples - 1))
    if examples < HOLDOUT_FROM:
        return 0
    return max(3, min(MAX_HOLDOUT, round(examples * 0.1)))


def scaled_lr(params: int) -> float:
    """The reference rate scaled by ``sqrt(REFERENCE_PARAMS / params)``, kept within [MIN_LR, MAX_LR]."""
    lr = REFERENCE_LR * math.sqrt(REFERENCE_PARAMS / max(1, params))
    return float(f"{min(MAX_LR, max(MIN_LR, lr)):.1e}")


def default_epochs(examples: int) -> float:
    """Passes over the data before the step floor: 3 for most data, 2 from 500 examples, 1 from 5,000."""
    return 1.0 if examples >= 5000 else 2.0 if examples >= 500 else 3.0


def plan(options: TrainOptions, shape: DataShape) -> Plan:
    """Fill every setting ``options`` leaves as None (auto) from ``shape``; explicit settings are kept."""
    reasons: list[str] = []
    size = f"{shape.params / 1e9:.2f}B" if shape.params >= 1e9 else f"{shape.params / 1e6:.0f}M"
    changes: dict = {}
    batch, accum = options.batch_size, options.grad_accum
    per_step = batch * accum
    per_epoch = max(1, math.ceil(shape.examples / per_step))
    auto, auto_reason = auto_steps(shape.examples, per_epoch)
    if options.steps is not None:
        steps = options.steps
        reasons.append(f"{steps} steps as asked (--steps), {steps / per_epoch:.1f} epochs of {shape.examples} "
                       "examples.")
    elif options.epochs is not None:
        steps = max(1, math.ceil(options.epochs * per_epoch))
        reasons.append(f"{options.epochs:g} epochs as asked (--epochs): {steps} steps.")
    else:
        steps = changes["steps"] = auto
        reasons.append(auto_reason)
    if options.lr is None:
        changes["lr"] = scaled_lr(shape.params)
        reasons.append(f"lr {changes['lr']:.1e}: scaled to a {size}-parameter model ({REFERENCE_LR:.0e} at 135M, "
                       "falling with the square root of the size).")
    if options.target_modules is None:
        changes["target_modules"] = CHATGLM3_TARGETS if shape.chatglm3 else ("all-linear",)
        reasons.append("LoRA on " + ("ChatGLM3's linear layers query_key_value, dense, dense_h_to_4h, "
                                     "dense_4h_to_h (q/k/v_proj, o_proj, gate_up_proj, down_proj as Inkstone loads "
                                     "it)" if shape.chatglm3 else "all linear layers")
                       + ": style takes at a rate that keeps the model's knowledge.")
    if options.rank is None:
        changes["rank"] = 16 if shape.examples >= 500 else 8
        reasons.append(f"rank {changes['rank']}: {'enough data for a larger' if changes['rank'] == 16 else 'small'} "
                       "adapter.")
    if options.alpha is None:
        changes["alpha"] = 2 * (changes.get("rank") or options.rank or 8)
    if options.warmup_steps is None:
        changes["warmup_steps"] = max(0, round(0.05 * steps)) if steps >= 10 else 0
    chosen = replace(options, **changes)
    reasons.append(f"data: {shape.examples} training examples of {shape.mean_tokens:.0f} tokens on average.")
    return Plan(chosen, reasons, steps, auto)


def auto_steps(examples: int, per_epoch: int) -> tuple[int, str]:
    """Default steps for ``examples`` in ``per_epoch`` batches, and why."""
    epochs = default_epochs(examples)
    steps = math.ceil(epochs * per_epoch)
    if steps < MIN_STEPS:
        floor = min(MIN_STEPS, math.ceil(MAX_EPOCHS * per_epoch))
        return floor, (f"{floor} steps ({floor / per_epoch:.1f} epochs): {examples} examples are few, and "
                       f"{epochs:g} epochs ({steps} steps) are too short for a persona to show; small data gets at "
                       f"least {MIN_STEPS} steps (at most {MAX_EPOCHS:g} epochs).")
    if steps > MAX_AUTO_STEPS:
        return MAX_AUTO_STEPS, (f"{MAX_AUTO_STEPS} steps ({MAX_AUTO_STEPS / per_epoch:.2f} epochs): a cap on "
                                "automatic runs; give --epochs to see all the data more often.")
    return steps, f"{steps} steps: {epochs:g} epochs of {examples} examples."
