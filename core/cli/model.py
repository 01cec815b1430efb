"""``python -m core model list|inspect|prompt|generate``: look inside a model while debugging it.

``inspect`` reads config and weight headers only; ``prompt`` shows the exact prompt ids of a message list;
``generate`` prints the new tokens only. All work for every model family the app loads.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.cli.common import add_home_flag, fail, print_json, settings_from_args
from core.errors import InkstoneError, InputError

if TYPE_CHECKING:  # pragma: no cover
    from core.backends.base import Backend
    from core.config import Settings

ROLES = {"system", "user", "assistant", "observation"}


def build_parser() -> argparse.ArgumentParser:
    """Flags of ``model``."""
    p = argparse.ArgumentParser(prog="python -m core model", description="Inspect and debug models.")
    sub = p.add_subparsers(dest="action", required=True)
    sub.add_parser("list", help="built-in model profiles").add_argument("--json", action="store_true")
    for name, help_ in (
        ("inspect", "architecture, parameters, context window, dtype, memory estimate"),
        ("prompt", "exact prompt ids and text for a message list"),
        ("generate", "new tokens for a message list"),
    ):
        q = sub.add_parser(name, help=help_)
        q.add_argument("model", help="profile id or model directory")
        q.add_argument("--json", action="store_true")
        q.add_argument("--trust-remote-code", action="store_true", default=None)
        add_home_flag(q)
        q.add_argument("--device", choices=["auto", "cuda", "cpu"])
        q.add_argument("--dtype", choices=["auto", "float32", "bfloat16", "float16"])
        q.add_argument("--quantize", choices=["4bit", "8bit", "none"])
        q.add_argument("--cpu-weights", choices=["auto", "int4", "int8", "bf16", "fp32"], help="weights held on a CPU")
        if name != "inspect":
            q.add_argument("--messages", required=True, type=Path, help='JSON file: [{"role": ..., "content": ...}]')
        if name == "generate":
            q.add_argument("--max-new-tokens", type=int, default=64)
            q.add_argument("--greedy", action="store_true", help="plain greedy decoding (no sampling, no penalty)")
    return p


def read_messages(path: Path) -> list[dict[str, str]]:
    """Load and validate a JSON list of ``{role, content}``; InputError names the bad entry."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"Cannot read messages from {path}: {exc}. Give a JSON list of {{role, content}}.") from None
    if not isinstance(data, list) or not data:
        raise InputError(f"{path} must hold a non-empty JSON list of {{role, content}} objects.")
    for i, m in enumerate(data):
        if not isinstance(m, dict) or m.get("role") not in ROLES or not isinstance(m.get("content"), str):
            raise InputError(
                f"{path}: message {i} must be {{role: one of {sorted(ROLES)}, content: string}}; got {m!r}."
            )
    return data


def _load(args: argparse.Namespace) -> tuple[Backend, Settings]:
    """The in-process backend of ``args.model``: the debugging commands work on its ``loaded`` model (the
    protocol's member for tokenizer and weights) and its ``generate_ids``."""
    from core.backends import create_backend
    from core.models.registry import resolve

    settings = settings_from_args(
        args, model=args.model, device=args.device, dtype=args.dtype, quantize=args.quantize,
        cpu_weights=args.cpu_weights, trust_remote_code=args.trust_remote_code, engine="torch",
    )  # these commands look at the in-process model (weights, tokenizer), which llama.cpp's server does not have
    profile = resolve(settings.model)
    if profile.backend != "transformers":
        raise InputError(
            f"Profile {profile.id!r} runs on the {profile.backend!r} backend, which has no local tokenizer or weights: "
            "pick a model that loads in-process (a bundled profile or a model directory)."
        )
    backend = create_backend(profile, settings)
    if backend.loaded is None:
        raise InputError(f"Profile {profile.id!r} did not load in-process: pick a bundled profile or a directory.")
    return backend, settings


def _with_saved_choice(info: Any, path: Path, args: argparse.Namespace) -> Any:
    """``info`` with the ``cpu_weights = "auto"`` choice saved for this CPU, if a start has made one."""
    from dataclasses import asdict, replace

    from core.models import autoweights, lowbit

    settings = settings_from_args(args, model=args.model)
    made = autoweights.read_choice(lowbit.auto_record_path(path, settings.cache_dir))
    if made is None:
        return info
    return replace(info, cpu_weights_auto={**asdict(made), "summary": made.summary()})


def run(args: argparse.Namespace) -> int:
    """Run one ``model`` action."""
    from core.models.registry import profiles, resolve

    try:
        if args.action == "list":
            rows = [
                {"id": p.id, "title": p.title, "source": p.source, "description": p.description} for p in profiles()
            ]
            if args.json:
                print_json(rows)
            else:
                for r in rows:
                    print(f"{r['id']:<22} {r['title']}  — {r['description']}")
            return 0
        if args.action == "inspect":
            from core.models.modelinfo import inspect_directory, inspect_loaded

            profile = resolve(args.model)
            if profile.path is not None:
                info = inspect_directory(profile.path, trust_remote_code=bool(args.trust_remote_code))
                info = _with_saved_choice(info, profile.path, args)
            else:
                backend, _ = _load(args)
                info = inspect_loaded(backend.loaded)  # the protocol's in-process model
            result = info.to_dict()
        else:
            messages = read_messages(args.messages)
            backend, settings = _load(args)
            from core.models.codec import render_ids

            codec = backend.loaded.codec
            if args.action == "prompt":
                ids = codec.prompt_ids(messages)
                result = {"ids": ids, "text": render_ids(codec, ids)}
            else:
                # plain decoding of the base model: no prompt-lookup drafts (the backend's generate does the rest)
                gen = settings.generation.with_updates(max_new_tokens=args.max_new_tokens, prompt_lookup="off")
                if args.greedy:
                    gen = gen.with_updates(temperature=0, repetition_penalty=1.0)
                ids = backend.generate_ids(messages, gen)
                result = {"ids": ids, "text": codec.decode(ids)}
    except InkstoneError as exc:
        return fail(exc)
    if args.json:
        print_json(result)
    else:
        print(json.dumps(result, ensure_ascii=False, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    return run(build_parser().parse_args(argv))
