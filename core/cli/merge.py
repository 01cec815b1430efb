"""``python -m core merge --persona ID --out DIR``: a LoRA persona merged into a full model directory that plain
transformers and ``python -m core chat --model DIR`` load."""

from __future__ import annotations

import argparse
from pathlib import Path

from core.cli.common import add_home_flag, fail, settings_from_args
from core.errors import InkstoneError
from core.outputs import check_output_folder


def build_parser() -> argparse.ArgumentParser:
    """Flags of ``merge``."""
    p = argparse.ArgumentParser(prog="python -m core merge", description="Merge a LoRA persona into its base model.")
    p.add_argument("--persona", required=True, help="persona id with a LoRA adapter")
    p.add_argument("--out", required=True, type=Path, help="output directory for the merged model")
    p.add_argument("--base", help="base model id or directory (default: the one the persona was trained for)")
    p.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], default="float32",
                   help="dtype of the merged weights (default float32)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out directory")
    p.add_argument("--adapters", help="persona directory root (default: $INKSTONE_ADAPTERS or ./adapters)")
    add_home_flag(p)
    return p


def run(args: argparse.Namespace) -> int:
    """Merge and print where the model was written."""
    from core.training.merge import merge_persona

    try:
        settings = settings_from_args(args, adapters=args.adapters)
        # --overwrite replaces --out whole: never the data dir or the personas, whatever path was typed
        check_output_folder(args.out, settings.home, flag="--out", keep=[(settings.adapters, "the personas folder")])
        out = merge_persona(args.persona, args.out, settings, base=args.base, dtype=args.dtype,
                            overwrite=args.overwrite)
    except InkstoneError as exc:
        return fail(exc)
    print(f"Merged persona {args.persona!r} into {out}. Chat with it: python -m core chat --model {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point: parse ``argv`` and run."""
    return run(build_parser().parse_args(argv))
