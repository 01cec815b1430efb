"""Typed options of one training run (the ``train`` command's flags), with their checks."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from core.errors import ConfigError
from core.personas.store import ID_PATTERN

DEFAULT_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")
REPORT_TO = ("none", "tensorboard", "wandb")


@dataclass(frozen=True)
class TrainOptions:
    """Everything a LoRA/QLoRA persona run needs; defaults suit a small persona dataset on CPU."""

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
    """Passes over the data when ``steps`` is not given (default 3)."""
    lr: float = 2e-4
    rank: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: tuple[str, ...] = DEFAULT_TARGETS
    """Module names to adapt, or ("all-linear",)."""
    max_length: int = 512
    """Longest example in tokens; longer ones are reported and skipped."""
    batch_size: int = 4
    grad_accum: int = 1
    save_steps: int = 50
    """Write a resumable checkpoint every this many steps (and at the end)."""
    warmup_steps: int = 0
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
            ("--lr", 0 < self.lr < 1, "a number in (0, 1), e.g. 2e-4"),
            ("--rank", 1 <= self.rank <= 1024, "an integer between 1 and 1024"),
            ("--alpha", self.alpha >= 1, "an integer >= 1"),
            ("--max-length", 16 <= self.max_length <= 131072, "an integer between 16 and 131072"),
            ("--batch-size", self.batch_size >= 1, "an integer >= 1"),
            ("--grad-accum", self.grad_accum >= 1, "an integer >= 1"),
            ("--save-steps", self.save_steps >= 1, "an integer >= 1"),
            ("--dropout", 0 <= self.dropout < 1, "a number in [0, 1)"),
            ("--report-to", self.report_to in REPORT_TO, "one of " + ", ".join(REPORT_TO)),
            ("--target-modules", bool(self.target_modules), "one or more module names, or all-linear"),
        ]
        for flag, ok, allowed in checks:
            if not ok:
                value = getattr(self, flag[2:].replace("-", "_"))
                raise ConfigError(f"{flag} {value!r} is not valid: use {allowed}.")
        return self

    def record(self) -> dict[str, Any]:
        """The settings part of the training record (what is needed to repeat the run)."""
        keys = ("lr", "rank", "alpha", "dropout", "max_length", "batch_size", "grad_accum", "save_steps",
                "warmup_steps", "seed", "qlora")
        data = {k: v for k, v in asdict(self).items() if k in keys}
        data["target_modules"] = list(self.target_modules)
        if self.epochs is not None:
            data["epochs"] = self.epochs
        return data
