"""Train a LoRA (or QLoRA) persona with transformers' ``Trainer`` and write the persona directory.

Why ``Trainer`` and not TRL's ``SFTTrainer`` or a hand-written loop: the examples are already tokenized through
Inkstone's own chat codec (so ChatGLM3, which has no Hugging Face chat template, trains the same way as every other
model), which is the part SFTTrainer would add; TRL is not installed. ``Trainer`` gives, well tested, what a loop
would re-implement: gradient accumulation, bf16 on CUDA, checkpoints with optimizer/scheduler/RNG state that resume
the step count exactly (loaded with ``weights_only``), TensorBoard/WandB reporting, and callbacks for progress.

Run state lives in ``<home>/training/<persona>/`` (checkpoints, ``metrics.csv``, log); the finished persona
(``persona.toml`` with a ``[training]`` record, ``adapter_config.json``, ``adapter_model.safetensors``,
``metrics.csv``) is swapped into ``<adapters>/<persona>/`` only when training has finished.
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core.config import Settings
from core.errors import ConfigError, InputError, ModelError
from core.training.base import BaseRef, load_base, resolve_base
from core.training.callbacks import Progress, ProgressRecorder
from core.training.data import DataReport, file_sha256, load_data
from core.training.defaults import DataShape, Plan, holdout_size, plan
from core.training.formatting import IGNORE, Encoded, encode_report, split_holdout
from core.training.options import CHATGLM3_NATIVE, TrainOptions
from core.training.preview import Preview, resume_command, run_preview
from core.training.record import install_persona, to_toml

Say = Callable[[str], None]
PATIENCE = 3
"""With --keep-best, training stops once the held-out loss has not improved for this many evaluations."""


@dataclass(frozen=True)
class TrainResult:
    """What a finished run produced."""

    persona_dir: Path
    steps: int
    final_loss: float
    seconds: float
    examples: int
    skipped: int
    plan: Plan | None = None
    heldout: int = 0
    eval_loss: float | None = None
    """Held-out loss of the persona as written (the best checkpoint's when one was kept)."""
    base_eval_loss: float | None = None
    best_step: int | None = None
    preview: Preview | None = None


def work_dir(settings: Settings, persona_id: str) -> Path:
    """Where checkpoints, metrics and the log of a persona's training run are kept (for ``--resume``)."""
    return settings.home / "training" / persona_id


def last_checkpoint(work: Path) -> Path | None:
    """The newest ``checkpoint-N`` directory of a run, or None."""
    found = [p for p in (work / "checkpoints").glob("checkpoint-*") if p.name.split("-")[-1].isdigit()]
    return max(found, key=lambda p: int(p.name.split("-")[-1]), default=None)


def check_destination(options: TrainOptions, settings: Settings) -> Path | None:
    """Refuse to replace an existing persona without --overwrite; return the checkpoint to resume, if any."""
    dest = settings.adapters / options.persona
    if options.resume:
        checkpoint = last_checkpoint(work_dir(settings, options.persona))
        if checkpoint is None:
            raise ConfigError(f"--resume: persona {options.persona!r} has no checkpoint in "
                              f"{work_dir(settings, options.persona) / 'checkpoints'}; train without --resume.")
        return checkpoint
    if dest.exists() and not options.overwrite:
        raise ConfigError(f"Persona {options.persona!r} already exists in {dest}: pass --overwrite to replace it, "
                          "--resume to continue its training, or choose another --persona id.")
    return None


def prepare_data(options: TrainOptions, report: DataReport, codec: Any, say: Say) -> list[Encoded]:
    """Encode the loaded data; InputError under --strict with any bad record, or when nothing is usable."""
    encoded = encode_report(codec, report, options.max_length)
    if report.problems:
        say(report.summary())
        if options.strict:
            raise InputError(f"--strict: {report.skipped} bad records in {options.data}:\n"
                             f"{report.summary()}\nFix them, or drop --strict to skip them.")
    if not encoded:
        raise InputError(f"No usable training examples in {options.data}:\n{report.summary()}")
    return encoded


def trim_metrics(csv_path: Path, step: int) -> None:
    """Drop metrics rows after ``step`` (steps a killed run logged past its last checkpoint are redone)."""
    import csv

    if not csv_path.is_file():
        return
    with open(csv_path, encoding="utf-8", newline="") as fh:
        rows = list(csv.reader(fh))
    kept = rows[:1] + [r for r in rows[1:] if r and r[0].isdigit() and int(r[0]) <= step]
    with open(csv_path, "w", encoding="utf-8", newline="") as fh:
        csv.writer(fh).writerows(kept)


class Collator:
    """Pads a batch to its longest example (pad id, attention mask 0, labels -100)."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, items: list[dict[str, list[int]]]) -> dict[str, Any]:
        import torch

        width = max(len(i["input_ids"]) for i in items)
        ids = [i["input_ids"] + [self.pad_id] * (width - len(i["input_ids"])) for i in items]
        labels = [i["labels"] + [IGNORE] * (width - len(i["labels"])) for i in items]
        mask = [[1] * len(i["input_ids"]) + [0] * (width - len(i["input_ids"])) for i in items]
        return {"input_ids": torch.tensor(ids), "labels": torch.tensor(labels), "attention_mask": torch.tensor(mask)}


def lora_targets(options: TrainOptions, chatglm3: bool) -> Any:
    """PEFT's ``target_modules``: "all-linear", or the names given (ChatGLM3's checkpoint names mapped to the
    native GLM layers they were converted into)."""
    assert options.target_modules is not None, "plan() fills the target modules"
    if list(options.target_modules) == ["all-linear"]:
        return "all-linear"
    if not chatglm3:
        return list(options.target_modules)
    return list(dict.fromkeys(n for t in options.target_modules for n in CHATGLM3_NATIVE.get(t, (t,))))


def wrap_lora(model: Any, options: TrainOptions, device: str, chatglm3: bool = False) -> Any:
    """The base with fresh LoRA layers (QLoRA: prepared for k-bit training first)."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if options.qlora:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=device == "cuda")
    targets = lora_targets(options, chatglm3)
    from core.models.vision import is_vision_model, language_lora_targets

    if is_vision_model(model):  # a vision-language base: LoRA on its language model only, never the vision tower
        targets = language_lora_targets(model, targets)
    config = LoraConfig(r=options.rank, lora_alpha=options.alpha, lora_dropout=options.dropout,
                        target_modules=targets, task_type="CAUSAL_LM")
    try:
        return get_peft_model(model, config)
    except ValueError as exc:
        raise ConfigError(f"--target-modules {','.join(options.target_modules)} does not fit this model ({exc}): "
                          "name its linear layers (e.g. q_proj,v_proj) or use all-linear.") from None


def training_arguments(options: TrainOptions, work: Path, device: str, *, evaluate: bool = False) -> Any:
    """Trainer settings: per-step logging, checkpoints every --save-steps, reporting only when asked; with a held-out
    split, its loss every --eval-steps, a checkpoint at each, and (--keep-best) the best one loaded at the end."""
    import os

    from transformers import TrainingArguments

    if options.report_to == "wandb":
        os.environ.setdefault("WANDB_MODE", "offline")  # never reach the network
        os.environ.setdefault("WANDB_DIR", str(work))
    if options.report_to == "tensorboard":
        os.environ.setdefault("TENSORBOARD_LOGGING_DIR", str(work / "runs"))
    return TrainingArguments(
        output_dir=str(work / "checkpoints"),
        max_steps=options.steps or -1,
        num_train_epochs=options.epochs or 3.0,
        per_device_train_batch_size=options.batch_size,
        gradient_accumulation_steps=options.grad_accum,
        learning_rate=options.lr,
        warmup_steps=options.warmup_steps,
        logging_steps=1,
        save_strategy="steps",
        save_steps=options.save_steps,
        save_total_limit=2,
        eval_strategy="steps" if evaluate else "no",
        eval_steps=options.eval_steps if evaluate else None,
        per_device_eval_batch_size=options.batch_size,
        load_best_model_at_end=evaluate and options.keep_best,
        metric_for_best_model="eval_loss" if evaluate else None,
        greater_is_better=False if evaluate else None,
        report_to=[] if options.report_to == "none" else [options.report_to],
        use_cpu=device == "cpu",
        bf16=device == "cuda" and not options.qlora,
        seed=options.seed,
        remove_unused_columns=False,
        disable_tqdm=True,
        dataloader_pin_memory=False,
    )


def _check_reporter(report_to: str) -> None:
    if report_to == "none":
        return
    import importlib.util

    module = {"tensorboard": "tensorboard", "wandb": "wandb"}[report_to]
    if importlib.util.find_spec(module) is None and not (report_to == "tensorboard"
                                                        and importlib.util.find_spec("tensorboardX")):
        raise ConfigError(f"--report-to {report_to} needs the {module} package, which is not installed: "
                          f"pip install {module}, or use --report-to none (metrics.csv is always written).")


def settle(options: TrainOptions, model: Any, encoded: list[Encoded], chatglm3: bool) -> tuple[Plan, list[Encoded],
                                                                                          list[Encoded]]:
    """Split off the held-out examples and fill every automatic setting (see ``core.training.defaults``)."""
    train, held = split_holdout(encoded, holdout_size(len(encoded), options.holdout), options.seed)
    count = getattr(model, "num_parameters", None)
    params = count() if callable(count) else sum(p.numel() for p in model.parameters())
    mean = sum(len(e.input_ids) for e in train) / max(1, len(train))
    chosen = plan(options, DataShape(params, len(train), mean, chatglm3))
    steps = chosen.steps
    extra: dict[str, Any] = {"holdout": len(held)}
    if held:
        extra["eval_steps"] = options.eval_steps or max(1, math.ceil(steps / 10))
        # --keep-best needs a checkpoint at each evaluation; otherwise every --save-steps
        extra["save_steps"] = extra["eval_steps"] if options.keep_best else (options.save_steps or extra["eval_steps"])
        chosen.reasons.append(f"{len(held)} examples held out: their loss is measured every {extra['eval_steps']} "
                              "steps" + (", and the best checkpoint is kept." if options.keep_best else "."))
    else:
        extra["save_steps"] = options.save_steps or max(10, math.ceil(steps / 4))
        chosen.reasons.append("no held-out split (fewer than 20 examples, or --holdout 0): the preview uses "
                              "examples from the data.")
    return replace(chosen, options=replace(chosen.options, **extra)), train, held


def train_persona(options: TrainOptions, settings: Settings, *, say: Say = print,
                  on_progress: Callable[[Progress], None] | None = None) -> TrainResult:
    """Train ``options.persona`` for ``options.base`` and install the persona directory; see the module doc."""
    given = options = options.checked()
    checkpoint = check_destination(options, settings)
    _check_reporter(options.report_to)
    ref = resolve_base(options.base)
    report = load_data(options.data, options.system)  # a missing or unreadable file fails before the model loads
    say(f"Loading {ref.persona_id}{' in 4-bit (QLoRA)' if options.qlora else ''}…")
    model, codec, device = load_base(ref, settings, qlora=options.qlora)
    encoded = prepare_data(options, report, codec, say)
    chosen, train, held = settle(options, model, encoded, ref.chatglm3)
    options = chosen.options
    work = work_dir(settings, options.persona)
    if checkpoint is None:
        shutil.rmtree(work, ignore_errors=True)
    else:
        trim_metrics(work / "metrics.csv", int(checkpoint.name.split("-")[-1]))
    work.mkdir(parents=True, exist_ok=True)
    used = report.records - report.skipped
    say(f"Training on {len(train)} examples from {used} records, {len(held)} held out "
        f"({device}{', QLoRA nf4' if options.qlora else ''}).")
    say(chosen.summary())
    peft_model = wrap_lora(model, options, device, ref.chatglm3)
    started = time.perf_counter()
    callback = ProgressRecorder(work / "metrics.csv", say, on_progress, resumed=checkpoint is not None)
    trainer = _trainer(peft_model, options, work, device, train, held, codec, callback)
    base_eval = float(trainer.evaluate()["eval_loss"]) if held else None  # LoRA starts at zero: the base's loss
    if base_eval is not None:
        say(f"Held-out loss of the base model: {base_eval:.4f}")
    try:
        trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    except (MemoryError, RuntimeError) as exc:
        if isinstance(exc, RuntimeError) and "out of memory" not in str(exc).lower():
            raise
        kept = last_checkpoint(work)
        where = f"the last checkpoint is kept in {kept} (continue with --resume)" if kept else "no checkpoint yet"
        raise ModelError(f"Training ran out of memory at step {trainer.state.global_step}; {where}. Lower "
                         "--batch-size or --max-length, raise --grad-accum, or use --qlora.") from None
    steps, loss = trainer.state.global_step, callback.last_loss
    seconds = time.perf_counter() - started
    eval_loss, best_step = _kept(trainer, options, say, chosen.steps) if held else (None, None)
    preview = None
    if options.preview:
        chosen_examples = _preview_examples(report, held or train, options.preview)
        preview = run_preview(peft_model, codec, chosen_examples, "held-out" if held else "training",
                              eval_loss=eval_loss, base_eval_loss=base_eval,
                              resume_command=resume_command(given, max(2 * steps, chosen.auto_steps)))
        say(preview.text())
    result = TrainResult(settings.adapters / options.persona, steps, loss, seconds, len(train), report.skipped,
                         chosen, len(held), eval_loss, base_eval, best_step, preview)
    dest = _install(peft_model, options, settings, ref, report, work, result)
    return replace(result, persona_dir=dest)


def _kept(trainer: Any, options: TrainOptions, say: Say, planned: int) -> tuple[float | None, int | None]:
    """Held-out loss of the adapter being written, and the step it is from; says which checkpoint was kept."""
    evals = [(e["step"], e["eval_loss"]) for e in trainer.state.log_history if "eval_loss" in e and e["step"] > 0]
    if not evals:
        return None, None
    last_step, last_loss = evals[-1]
    if not options.keep_best:
        return last_loss, last_step
    best_step, best_loss = min(evals, key=lambda e: e[1])
    if best_step == last_step:
        say(f"Held-out loss {last_loss:.4f} at the last step ({last_step}) is the best: keeping it.")
    else:
        stopped = (f"; stopped at step {last_step} of {planned}, as it had not improved for {PATIENCE} evaluations"
                   if last_step < planned else "")
        say(f"Kept the best checkpoint: step {best_step} (held-out loss {best_loss:.4f}); the last step "
            f"({last_step}) had {last_loss:.4f}, so training past step {best_step} overfit{stopped}.")
    return best_loss, best_step


def _preview_examples(report: DataReport, pool: list[Encoded], count: int) -> list[Any]:
    """The examples behind the first ``count`` records of ``pool`` (one example per record: its last turn)."""
    by_key = {(e.line, e.record): e for e in report.examples}
    keys = list(dict.fromkeys((e.line, e.record) for e in pool))[:count]
    return [by_key[k] for k in keys if k in by_key]


def _trainer(model: Any, options: TrainOptions, work: Path, device: str, train: list[Encoded], held: list[Encoded],
             codec: Any, callback: Any) -> Any:
    from transformers import Trainer

    def rows(items: list[Encoded]) -> list[dict[str, list[int]]]:
        return [{"input_ids": e.input_ids, "labels": e.labels} for e in items]

    from transformers import EarlyStoppingCallback
    from transformers.trainer_callback import PrinterCallback

    pad = getattr(codec, "pad_id", None)
    callbacks = [callback.trainer_callback()]
    if held and options.keep_best:  # held-out loss up PATIENCE evaluations in a row: overfitting, stop there
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=PATIENCE))
    trainer = Trainer(model=model, args=training_arguments(options, work, device, evaluate=bool(held)),
                      train_dataset=rows(train), eval_dataset=rows(held) or None,
                      data_collator=Collator(pad if pad is not None else codec.stop_ids[0]),
                      callbacks=callbacks)
    trainer.remove_callback(PrinterCallback)  # the recorder reports progress; stdout is for the summary
    return trainer


def _round(value: float | None) -> float | None:
    return None if value is None or value != value else round(value, 6)


def _install(peft_model: Any, options: TrainOptions, settings: Settings, ref: BaseRef, report: DataReport,
             work: Path, result: TrainResult) -> Path:
    record = {
        "data_file": options.data.name,
        "data_sha256": file_sha256(options.data),
        "base_model": ref.persona_id,
        "base_path": str(ref.profile.path) if ref.profile.path is not None else None,
        "steps": result.steps,
        "final_loss": _round(result.final_loss),
        "eval_loss": _round(result.eval_loss),
        "base_eval_loss": _round(result.base_eval_loss),
        "best_step": result.best_step,
        "examples": len(report.examples),
        "heldout_examples": result.heldout,
        "skipped_records": report.skipped,
        "seconds": round(result.seconds, 1),
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "verdict": result.preview.verdict if result.preview else None,
        "settings": options.record(),
        "preview": result.preview.record() if result.preview else None,
    }
    persona = {
        "name": options.name or options.persona,
        "avatar": options.avatar,
        "language": options.language,
        "system_prompt": options.system,
        "greeting": options.greeting,
        "base_model": ref.persona_id,
        "lora": True,
        "training": record,
    }

    def build(tmp: Path) -> None:
        for config in peft_model.peft_config.values():
            config.base_model_name_or_path = ref.persona_id
        peft_model.save_pretrained(str(tmp), safe_serialization=True)
        (tmp / "README.md").unlink(missing_ok=True)  # PEFT's empty model card; persona.toml describes the persona
        (tmp / "persona.toml").write_text(to_toml(persona), encoding="utf-8")
        if (work / "metrics.csv").is_file():
            shutil.copy2(work / "metrics.csv", tmp / "metrics.csv")

    return install_persona(settings.adapters, options.persona, build)
