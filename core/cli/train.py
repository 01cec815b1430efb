"""``python -m core train``: train a LoRA (or QLoRA) persona from an Alpaca/chat data file.

Writes ``$INKSTONE_ADAPTERS/<persona>/`` (persona.toml with the training record, adapter_config.json,
adapter_model.safetensors, metrics.csv), usable at once with ``python -m core chat --persona <persona>``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from core.cli.common import add_home_flag, fail, settings_from_args
from core.errors import InkstoneError
from core.outputs import check_output_folder


def build_parser() -> argparse.ArgumentParser:
    """Flags of ``train``."""
    p = argparse.ArgumentParser(prog="python -m core train", description="Train a LoRA persona for a base model.")
    p.add_argument("--base", required=True, help="model profile id or local model directory to train for")
    p.add_argument("--data", required=True, type=Path, help="Alpaca JSON/JSONL or chat JSONL (messages) file")
    p.add_argument("--persona", required=True, help="persona id (directory name under the adapters dir)")
    p.add_argument("--name", help="display name (default: the id)")
    p.add_argument("--system", help="system prompt of the persona (also for examples without one)")
    p.add_argument("--avatar", help="an emoji or image path shown with answers")
    p.add_argument("--language", help="language tag(s), e.g. zh,en")
    p.add_argument("--greeting", help="first message shown in a new chat")
    length = p.add_mutually_exclusive_group()
    length.add_argument("--steps", type=int, help="optimizer steps (default: chosen from the data, see the start of "
                                                  "training)")
    length.add_argument("--epochs", type=float, help="passes over the data (default: chosen from the data)")
    p.add_argument("--lr", type=float, help="learning rate (default: scaled to the model, 1e-3 at 135M)")
    p.add_argument("--rank", type=int, help="LoRA rank (default 8; 16 from 500 examples)")
    p.add_argument("--alpha", type=int, help="LoRA alpha (default: twice the rank)")
    p.add_argument("--dropout", type=float, default=0.05, help="LoRA dropout (default 0.05)")
    p.add_argument("--target-modules", nargs="+", default=None,
                   help="modules to adapt (default all-linear; ChatGLM3: query_key_value dense dense_h_to_4h "
                        "dense_4h_to_h); commas also work")
    p.add_argument("--max-length", type=int, default=512, help="longest example in tokens; longer ones are skipped")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--grad-accum", type=int, default=1, help="gradient accumulation steps")
    p.add_argument("--save-steps", type=int, help="checkpoint every N steps (and at the end; default: at each "
                                                  "held-out evaluation)")
    p.add_argument("--warmup-steps", type=int, help="default: 5%% of the steps")
    p.add_argument("--holdout", type=int, help="examples kept out of training for held-out loss and the preview "
                                               "(default 10%% from 20 examples; 0: none)")
    p.add_argument("--eval-steps", type=int, help="held-out loss every N steps (default: ten times a run)")
    p.add_argument("--no-keep-best", dest="keep_best", action="store_false",
                   help="end on the last step, not on the checkpoint with the lowest held-out loss")
    p.add_argument("--preview", type=int, default=3, help="prompts answered with and without the persona after "
                                                          "training (default 3; 0: none)")
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint of this persona")
    p.add_argument("--qlora", action="store_true", help="4-bit nf4 base (bitsandbytes); LoRA on top")
    p.add_argument("--report-to", choices=["none", "tensorboard", "wandb"], default="none",
                   help="also log to TensorBoard or WandB (offline); metrics.csv is always written")
    p.add_argument("--strict", action="store_true", help="fail on any bad record instead of skipping it")
    p.add_argument("--overwrite", action="store_true", help="replace an existing persona with this id")
    p.add_argument("--device", choices=["auto", "cuda", "cpu"], help="where to train (default: auto)")
    p.add_argument("--adapters", help="persona directory root (default: $INKSTONE_ADAPTERS or ./adapters)")
    p.add_argument("--job", help=argparse.SUPPRESS)  # the app's job id: progress goes to its SQLite row
    add_home_flag(p)
    return p


def options_from_args(args: argparse.Namespace):  # noqa: ANN201
    """TrainOptions from parsed flags."""
    from core.training.options import TrainOptions

    targets = tuple(t for item in (args.target_modules or []) for t in item.split(",") if t) or None
    return TrainOptions(
        base=args.base, data=args.data, persona=args.persona, name=args.name, system=args.system,
        avatar=args.avatar, language=args.language, greeting=args.greeting, steps=args.steps, epochs=args.epochs,
        lr=args.lr, rank=args.rank, alpha=args.alpha, dropout=args.dropout, target_modules=targets,
        max_length=args.max_length, batch_size=args.batch_size, grad_accum=args.grad_accum,
        save_steps=args.save_steps, warmup_steps=args.warmup_steps, holdout=args.holdout, eval_steps=args.eval_steps,
        keep_best=args.keep_best, preview=args.preview, seed=args.seed, resume=args.resume,
        qlora=args.qlora, report_to=args.report_to, strict=args.strict, overwrite=args.overwrite,
    )


def run(args: argparse.Namespace) -> int:
    """Train and print where the persona was written; exit 1 with the message on any Inkstone error."""
    from core.training.trainer import train_persona

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    try:
        settings = settings_from_args(args, device=args.device, adapters=args.adapters)
        options = options_from_args(args).checked()
        # --overwrite replaces the persona folder whole: never one that is, holds or sits directly in the data dir
        check_output_folder(settings.adapters / options.persona, settings.home, flag="The persona folder",
                            top_level_only=True)  # fmt: skip
        if args.job:
            from core.training.jobs import run_as_job

            return run_as_job(args.job, options, settings, say)
        result = train_persona(options, settings, say=say)
    except InkstoneError as exc:
        return fail(exc)
    print(summary(result, options.base, options.persona))
    return 0


def summary(result, base: str, persona: str) -> str:  # noqa: ANN001 - a TrainResult (imported lazily)
    """The last lines of ``train``: where the persona is, its losses, the preview's verdict and what to do next."""
    held = ""
    if result.eval_loss is not None:
        held = f", held-out loss {result.eval_loss:.4f}"
        if result.base_eval_loss is not None:
            held += f" (base {result.base_eval_loss:.4f})"
        if result.best_step is not None and result.best_step != result.steps:
            held += f" from the best checkpoint, step {result.best_step}"
    lines = [f"Persona {persona!r} written to {result.persona_dir}: {result.steps} steps, training loss "
             f"{result.final_loss:.4f}{held}, {result.examples} training examples ({result.heldout} held out, "
             f"{result.skipped} records skipped), {result.seconds:.0f} s."]
    if result.preview is not None:
        lines.append(f"Verdict: {result.preview.verdict} — {result.preview.reason}")
        if result.preview.verdict != "took":
            lines.append(f"Train longer: {result.preview.resume_command}")
    lines.append(f"Chat with it: python -m core chat --model {base} --persona {persona}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point: parse ``argv`` and run."""
    return run(build_parser().parse_args(argv))
