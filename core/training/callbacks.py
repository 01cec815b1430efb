"""Training progress: a Trainer callback that writes ``metrics.csv``, prints a progress line (step, loss, ETA)
and hands each step's figures to an optional listener (the background job updates its SQLite row with them)."""

from __future__ import annotations

import csv
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FIELDS = ("step", "epoch", "loss", "learning_rate", "grad_norm", "elapsed_s", "eval_loss")
"""metrics.csv columns; a held-out evaluation is a row of its own with only ``eval_loss`` (and step, time) set."""


@dataclass(frozen=True)
class Progress:
    """Where a run is: step of max_steps, the last loss, seconds so far and the estimated seconds left."""

    step: int
    max_steps: int
    loss: float
    elapsed_s: float
    eta_s: float


def format_eta(seconds: float) -> str:
    """``h:mm:ss`` (or ``m:ss`` under an hour)."""
    s = int(round(max(0.0, seconds)))
    h, rest = divmod(s, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


def progress_line(p: Progress) -> str:
    """One human line: ``step 12/40 [####......] loss 1.2345 · ETA 0:28``."""
    done = int(20 * p.step / max(1, p.max_steps))
    bar = "#" * done + "." * (20 - done)
    return f"step {p.step}/{p.max_steps} [{bar}] loss {p.loss:.4f} · ETA {format_eta(p.eta_s)}"


class ProgressRecorder:
    """Per logged step: append a metrics.csv row, report progress; ETA from this run's own pace.

    ``trainer_callback()`` wraps it for ``Trainer`` (transformers is imported only then).
    """

    def __init__(self, csv_path: Path, say: Callable[[str], None],
                 listener: Callable[[Progress], None] | None = None, *, resumed: bool = False) -> None:
        self.csv_path = csv_path
        self.say = say
        self.listener = listener
        self.resumed = resumed
        self.last_loss = _last_logged_loss(csv_path) if resumed else float("nan")
        self._t0: float | None = None
        self._first_step = 0

    def trainer_callback(self) -> Any:
        """A ``transformers.TrainerCallback`` that feeds this recorder."""
        from transformers import TrainerCallback

        recorder = self

        class _Callback(TrainerCallback):
            def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
                recorder.step_begin(state)

            def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None,
                       **kwargs: Any) -> None:
                recorder.log(state, logs)

        return _Callback()

    def step_begin(self, state: Any) -> None:
        """Start the clock at the first step this process runs (a resumed run starts mid-way)."""
        if self._t0 is None:
            self._t0, self._first_step = time.perf_counter(), state.global_step

    def log(self, state: Any, logs: dict[str, Any] | None) -> None:
        """Record and report a training-loss or held-out-loss entry (others, like the final summary, are ignored;
        so is the evaluation of the base before training starts)."""
        if logs and "eval_loss" in logs and self._t0 is not None:
            self._eval(state, float(logs["eval_loss"]))
        if not logs or "loss" not in logs:
            return
        elapsed = time.perf_counter() - (self._t0 or time.perf_counter())
        done = max(1, state.global_step - self._first_step)
        progress = Progress(state.global_step, state.max_steps, float(logs["loss"]), elapsed,
                            elapsed / done * (state.max_steps - state.global_step))
        self.last_loss = progress.loss
        self._row([state.global_step, round(state.epoch or 0.0, 4), progress.loss, logs.get("learning_rate", ""),
                   logs.get("grad_norm", ""), round(elapsed, 3), ""])
        self.say(progress_line(progress))
        if self.listener is not None:
            self.listener(progress)

    def _eval(self, state: Any, eval_loss: float) -> None:
        elapsed = time.perf_counter() - (self._t0 or time.perf_counter())
        self._row([state.global_step, round(state.epoch or 0.0, 4), "", "", "", round(elapsed, 3), eval_loss])
        self.say(f"step {state.global_step}: held-out loss {eval_loss:.4f}")

    def _row(self, row: list[Any]) -> None:
        new = not self.csv_path.is_file()
        with open(self.csv_path, "a", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            if new:
                writer.writerow(FIELDS)
            writer.writerow(row)


def _last_logged_loss(csv_path: Path) -> float:
    """The loss of the last row of an existing metrics.csv (a resumed run that has no step left keeps it)."""
    try:
        with open(csv_path, encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        return float([r for r in rows if r.get("loss")][-1]["loss"])
    except (OSError, ValueError, KeyError, IndexError):
        return float("nan")
