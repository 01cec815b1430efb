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

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from core.config import Settings
from core.errors import ConfigError, InputError, ModelError
from core.training.base import BaseRef, load_base, resolve_base
from core.training.callbacks import Progress, ProgressRecorder
from core.training.data import DataReport, file_sha256, load_data
from core.training.formatting import IGNORE, Encoded, encode_report
from core.training.options import TrainOptions
from core.training.record import install_persona, to_toml

Say = Callable[[str], None]


@dataclass(frozen=True)
class TrainResult:
    """What a finished run produced."""

    persona_dir: Path
    steps: int
    final_loss: float
    seconds: float
    examples: int
    skipped: int


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


def wrap_lora(model: Any, options: TrainOptions, device: str) -> Any:
    """The base with fresh LoRA layers (QLoRA: prepared for k-bit training first)."""
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if options.qlora:
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=device == "cuda")
    targets: Any = "all-linear" if list(options.target_modules) == ["all-linear"] else list(options.target_modules)
    config = LoraConfig(r=options.rank, lora_alpha=options.alpha, lora_dropout=options.dropout,
                        target_modules=targets, task_type="CAUSAL_LM")
    try:
        return get_peft_model(model, config)
    except ValueError as exc:
        raise ConfigError(f"--target-modules {','.join(options.target_modules)} does not fit this model ({exc}): "
                          "name its linear layers (e.g. q_proj,v_proj) or use all-linear.") from None


def training_arguments(options: TrainOptions, work: Path, device: str) -> Any:
    """Trainer settings: per-step logging, checkpoints every --save-steps, reporting only when asked."""
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


def train_persona(options: TrainOptions, settings: Settings, *, say: Say = print,
                  on_progress: Callable[[Progress], None] | None = None) -> TrainResult:
    """Train ``options.persona`` for ``options.base`` and install the persona directory; see the module doc."""
    options = options.checked()
    checkpoint = check_destination(options, settings)
    _check_reporter(options.report_to)
    ref = resolve_base(options.base)
    report = load_data(options.data, options.system)  # a missing or unreadable file fails before the model loads
    say(f"Loading {ref.persona_id}{' in 4-bit (QLoRA)' if options.qlora else ''}…")
    model, codec, device = load_base(ref, settings, qlora=options.qlora)
    encoded = prepare_data(options, report, codec, say)
    work = work_dir(settings, options.persona)
    if checkpoint is None:
        shutil.rmtree(work, ignore_errors=True)
    else:
        trim_metrics(work / "metrics.csv", int(checkpoint.name.split("-")[-1]))
    work.mkdir(parents=True, exist_ok=True)
    used = report.records - report.skipped
    say(f"Training on {len(encoded)} examples from {used} records ({device}{', QLoRA nf4' if options.qlora else ''}).")
    peft_model = wrap_lora(model, options, device)
    started = time.perf_counter()
    callback = ProgressRecorder(work / "metrics.csv", say, on_progress, resumed=checkpoint is not None)
    trainer = _trainer(peft_model, options, work, device, encoded, codec, callback)
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
    dest = _install(peft_model, options, settings, ref, report, work, steps, loss, seconds)
    return TrainResult(dest, steps, loss, seconds, len(encoded), report.skipped)


def _trainer(model: Any, options: TrainOptions, work: Path, device: str, encoded: list[Encoded], codec: Any,
             callback: Any) -> Any:
    from transformers import Trainer

    data = [{"input_ids": e.input_ids, "labels": e.labels} for e in encoded]
    pad = getattr(codec, "pad_id", None)
    return Trainer(model=model, args=training_arguments(options, work, device), train_dataset=data,
                   data_collator=Collator(pad if pad is not None else codec.stop_ids[0]),
                   callbacks=[callback.trainer_callback()])


def _install(peft_model: Any, options: TrainOptions, settings: Settings, ref: BaseRef, report: DataReport,
             work: Path, steps: int, loss: float, seconds: float) -> Path:
    record = {
        "data_file": options.data.name,
        "data_sha256": file_sha256(options.data),
        "base_model": ref.persona_id,
        "base_path": str(ref.profile.path) if ref.profile.path is not None else None,
        "steps": steps,
        "final_loss": round(loss, 6),
        "examples": len(report.examples),
        "skipped_records": report.skipped,
        "seconds": round(seconds, 1),
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "settings": options.record(),
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
