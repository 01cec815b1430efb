"""Merge a LoRA persona into a full model directory (``python -m core merge``).

The adapter is merged into an unquantized copy of its base (fp32 on CPU unless a dtype is given), never into a
4-bit model: merging into nf4 weights would round the LoRA delta away. The output is a plain Hugging Face model
directory (safetensors, tokenizer with its chat template, generation config) that ``AutoModelForCausalLM`` loads
and Inkstone loads with ``--model DIR``. For ChatGLM3 the output is the native GLM checkpoint (``GlmForCausalLM``
weights) with ChatGLM3's ``tokenizer.model`` and the converter's marker, which Inkstone loads with the ChatGLM3
prompt format.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from core.config import Settings
from core.errors import ConfigError, ModelError
from core.personas.store import Persona, load_persona
from core.storage.dirswap import recover, replace_dir
from core.training.base import BaseRef, converted_dir, resolve_base


def base_of(persona: Persona, base: str | None) -> BaseRef:
    """The base to merge into: ``base`` if given, else the persona's recorded base (profile id or path)."""
    spec = base or _recorded_path(persona) or persona.base_model
    if not spec:
        raise ConfigError(f"Persona {persona.id!r} names no base model: pass --base ID|PATH.")
    ref = resolve_base(spec)
    if persona.base_model and not persona.fits_model(ref.profile.id):
        raise ConfigError(f"Persona {persona.id!r} was trained for {persona.base_model!r}, not {ref.persona_id!r}: "
                          "pass the base it was trained for.")
    return ref


def _recorded_path(persona: Persona) -> str | None:
    import tomllib

    data = tomllib.loads((persona.path / "persona.toml").read_text(encoding="utf-8"))
    path = (data.get("training") or {}).get("base_path")
    return path if isinstance(path, str) and Path(path).is_dir() else None


def merge_persona(persona_id: str, out: Path, settings: Settings, *, base: str | None = None,
                  dtype: str = "float32", overwrite: bool = False) -> Path:
    """Write base + the persona's LoRA, merged, to ``out``; return ``out``."""
    import torch
    from peft import PeftModel

    persona = load_persona(settings.adapters, persona_id)
    if not persona.lora:
        raise ConfigError(f"Persona {persona_id!r} is prompt-only (no LoRA adapter): there is nothing to merge.")
    out = Path(out)
    recover(out)  # a merge killed while swapping left the previous output aside
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ConfigError(f"{out} exists and is not empty: choose another --out or pass --overwrite.")
    ref = base_of(persona, base)
    torch_dtype = getattr(torch, dtype)
    model, save_tokenizer = _load_unquantized(ref, settings, torch_dtype)
    try:
        merged = PeftModel.from_pretrained(model, str(persona.path)).merge_and_unload()
    except (ValueError, RuntimeError, KeyError) as exc:
        raise ModelError(f"The adapter of persona {persona_id!r} does not fit {ref.persona_id} ({exc}).") from None
    with replace_dir(out) as tmp:
        merged.save_pretrained(str(tmp), safe_serialization=True)
        save_tokenizer(tmp)
        (tmp / "inkstone-merge.json").write_text(json.dumps(
            {"persona": persona_id, "base_model": ref.persona_id, "dtype": dtype}, indent=2), encoding="utf-8")
    return out


def _load_unquantized(ref: BaseRef, settings: Settings, dtype: Any) -> tuple[Any, Any]:
    """The base model in ``dtype`` on CPU, and a function that writes its tokenizer files into a directory."""
    if ref.chatglm3:
        from core.chatglm3 import load_chatglm3_model
        from core.chatglm3.convert import MARKER, converted_checkpoint_dir

        src = ref.profile.path
        assert src is not None
        cache = settings.cache_dir / "chatglm3"
        model = load_chatglm3_model(src, dtype=dtype, cache_dir=cache)

        def save_chatglm3(dest: Path) -> None:
            converted = converted_checkpoint_dir(src, cache)
            for name in ("tokenizer.model", "tokenizer_config.json", "special_tokens_map.json"):
                if (src / name).is_file():
                    shutil.copy2(src / name, dest / name)
            shutil.copy2(converted / MARKER, dest / MARKER)
            shutil.copy2(converted / "generation_config.json", dest / "generation_config.json")

        return model, save_chatglm3
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = converted_dir(ref, settings)
    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype)
    tokenizer = AutoTokenizer.from_pretrained(str(path))
    return model, lambda dest: tokenizer.save_pretrained(str(dest))
