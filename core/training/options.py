"""Typed options of one training run (the ``train`` command's flags), with their checks."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from core.errors import ConfigError
from core.personas.store import ID_PATTERN

CHATGLM3_TARGETS = ("query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h")
"""ChatGLM3's linear layers (fused QKV, attention output, MLP in and out), by their names in THUDM's checkpoint."""
CHATGLM3_NATIVE = {"query_key_value": ("q_proj", "k_proj", "v_proj"), "dense": ("o_proj",),
                   "dense_h_to_4h": ("gate_up_proj",), "dense_4h_to_h": ("down_proj",)}
"""The same layers in the native GLM layout Inkstone loads ChatGLM3 into (``core.chatglm3.weights``)."""
REPORT_TO = ("none", "tensorboard", "wandb")


@dataclass(frozen=True)
class TrainOptions:
    """Everything a LoRA/QLoRA persona run needs. None means "choose from the model and the data"
    (``core.training.defaults.plan`` fills it in before training; the record holds the chosen values)."""

    base: str
    """Model profile id or local model directory to train for."""
    data: Path
    """Alpaca JSON/JSONL or chat JSONL file."""
    persona: str
    """Persona id: the directory name under the adapters dir."""
    name: str | None = None
    """Display name (default: the id)."""
    system: str | None = None
    """System prompt of the persona, also used for examples without their own."""
    avatar: str | None = None
    language: str | None = None
    greeting: str | None = None
    steps: int | None = None
    """Optimizer steps; None: train ``epochs`` epochs."""
    epochs: float | None = None
    """Passes over the data when ``steps`` is not given (default: chosen from the data)."""
    lr: float | None = None
    """Learning rate (default: scaled to the model's size)."""
    rank: int | None = None
    alpha: int | None = None
    """LoRA alpha (default: twice the rank)."""
    dropout: float = 0.05
    target_modules: tuple[str, ...] | None = None
    """Module names to adapt, or ("all-linear",) (default: all linear layers; ChatGLM3: its four)."""
    max_length: int = 512
    """Longest example in tokens; longer ones are reported and skipped."""
    batch_size: int = 4
    grad_accum: int = 1
    save_steps: int | None = None
    """Write a resumable checkpoint every this many steps (and at the end); default: at each evaluation, or a
    quarter of the run without a held-out split."""
    warmup_steps: int | None = None
    """Default: 5% of the steps."""
    holdout: int | None = None
    """Examples kept out of training to measure held-out loss and to preview (default: 10% from 20 examples on;
    0: none)."""
    eval_steps: int | None = None
    """Measure the held-out loss every this many steps (default: ten times a run)."""
    keep_best: bool = True
    """End on the checkpoint with the lowest held-out loss (needs a held-out split)."""
    preview: int = 3
    """Prompts answered with and without the persona after training (0: no preview)."""
    seed: int = 42
    resume: bool = False
    qlora: bool = False
    report_to: str = "none"
    strict: bool = False
    overwrite: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def checked(self) -> TrainOptions:
        """Return self, or raise ConfigError naming the first bad value and what to use instead."""
        if not ID_PATTERN.match(self.persona) or self.persona == "none":
            raise ConfigError(f"--persona {self.persona!r} is not a valid persona id: use letters, digits, '.', '_' "
                              "or '-' (up to 64, starting with a letter or digit), and not 'none'.")
        if self.steps is not None and self.epochs is not None:
            raise ConfigError("Give either --steps or --epochs, not both.")
        checks = [
            ("--steps", self.steps is None or self.steps >= 1, "an integer >= 1"),
            ("--epochs", self.epochs is None or self.epochs > 0, "a number > 0"),
            ("--lr", self.lr is None or 0 < self.lr < 1, "a number in (0, 1), e.g. 2e-4"),
            ("--rank", self.rank is None or 1 <= self.rank <= 1024, "an integer between 1 and 1024"),
            ("--alpha", self.alpha is None or self.alpha >= 1, "an integer >= 1"),
            ("--max-length", 16 <= self.max_length <= 131072, "an integer between 16 and 131072"),
            ("--batch-size", self.batch_size >= 1, "an integer >= 1"),
            ("--grad-accum", self.grad_accum >= 1, "an integer >= 1"),
            ("--save-steps", self.save_steps is None or self.save_steps >= 1, "an integer >= 1"),
            ("--warmup-steps", self.warmup_steps is None or self.warmup_steps >= 0, "an integer >= 0"),
            ("--holdout", self.holdout is None or self.holdout >= 0, "an integer >= 0 (0: no held-out split)"),
            ("--eval-steps", self.eval_steps is None or self.eval_steps >= 1, "an integer >= 1"),
            ("--preview", 0 <= self.preview <= 20, "an integer between 0 and 20"),
            ("--dropout", 0 <= self.dropout < 1, "a number in [0, 1)"),
            ("--report-to", self.report_to in REPORT_TO, "one of " + ", ".join(REPORT_TO)),
            ("--target-modules", self.target_modules is None or bool(self.target_modules),
             "one or more module names, or all-linear"),
        ]
        for flag, ok, allowed in checks:
            if not ok:
                value = getattr(self, flag[2:].replace("-", "_"))
                raise ConfigError(f"{flag} {value!r} is not valid: use {allowed}.")
        return self

    def record(self) -> dict[str, Any]:
        """The settings part of the training record (what is needed to repeat the run)."""
        keys = ("lr", "rank", "alpha", "dropout", "max_length", "batch_size", "grad_accum", "save_steps",
                "warmup_steps", "holdout", "eval_steps", "keep_best", "seed", "qlora")
        data = {k: v for k, v in asdict(self).items() if k in keys and v is not None}
        if self.target_modules is not None:
            data["target_modules"] = list(self.target_modules)
        if self.epochs is not None:
            data["epochs"] = self.epochs
        return data
