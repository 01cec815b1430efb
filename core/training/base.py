"""The base model for training and merging: resolved like ``--model`` (profile id or local directory), loaded
unquantized through ``core.models.loader`` or, for QLoRA, with a 4-bit nf4 bitsandbytes base.

Bundled GGUF models train on their converted safetensors copy (``<home>/cache/models``), never on the GGUF-loaded
model, so Trainer and ``save_pretrained`` see a plain unquantized checkpoint.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from core.config import Settings
from core.errors import ConfigError, ModelError
from core.models.registry import ModelProfile, resolve


@dataclass(frozen=True)
class BaseRef:
    """Which base model, under which id personas record it, and where its weights are."""

    profile: ModelProfile
    persona_id: str
    """What ``persona.toml`` records as ``base_model``: the profile id, or the directory name of a local model."""
    chatglm3: bool


def resolve_base(spec: str) -> BaseRef:
    """Resolve ``--base``; ConfigError for the scripted fake models, which cannot be trained."""
    from core.chatglm3 import is_chatglm3_checkpoint

    profile = resolve(spec)
    if profile.source == "fake":
        raise ConfigError(f"--base {spec}: the scripted fake model has no weights to train; use a real model.")
    if profile.source == "local" and profile.path is not None:
        return BaseRef(profile, profile.path.name, is_chatglm3_checkpoint(profile.path))
    return BaseRef(profile, profile.id, False)


def converted_dir(ref: BaseRef, settings: Settings) -> Path:
    """The Hugging Face directory of a bundled model (converting the GGUF once if needed) or the local path."""
    from core.models import bundled
    from core.models.loader import load_model

    if ref.profile.source != "bundled":
        assert ref.profile.path is not None
        return ref.profile.path
    source = bundled.source_for(ref.profile.id)
    cached = settings.cache_dir / "models" / f"{ref.profile.id}-{source.fingerprint()}"
    if not (cached / "inkstone-source.json").is_file():
        load_model(ref.profile, replace(settings, device="cpu", dtype="float32", quantize=None,
                                        cpu_weights="fp32"))  # converts
    return cached


def nf4_config(compute_dtype: Any) -> Any:
    """bitsandbytes 4-bit nf4 with double quantization (the QLoRA recipe)."""
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=compute_dtype)


def load_base(ref: BaseRef, settings: Settings, *, qlora: bool = False) -> tuple[Any, Any, str]:
    """Load the base for training: (model, chat codec, device). QLoRA runs on CUDA and, slowly, on CPU.

    Without QLoRA the base is fp32 on CPU (never the low-bit CPU weights used for chat) and bf16 on CUDA.
    """
    from core.models.loader import load_model, pick_device, pick_dtype

    settings = replace(settings, quantize=None, cpu_weights="fp32")  # train on full-precision weights
    device = pick_device(settings)
    if not qlora:
        if ref.profile.source == "bundled":
            converted_dir(ref, settings)  # a GGUF-loaded model is flagged quantized and Trainer refuses it
        loaded = load_model(ref.profile, settings)
        return loaded.model, loaded.codec, device
    dtype = pick_dtype(settings, device)
    quant = nf4_config(dtype)
    device_map = "auto" if device == "cuda" else None
    try:
        if ref.chatglm3:
            from core.chatglm3 import ChatGLM3Tokenizer, load_chatglm3_model
            from core.models.codec import ChatGLM3Codec

            path = ref.profile.path
            model = load_chatglm3_model(path, dtype=dtype, device_map=device_map, quantization_config=quant,
                                        cache_dir=settings.cache_dir / "chatglm3")
            return model, ChatGLM3Codec(ChatGLM3Tokenizer(path)), device
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from core.models.codec import HFChatCodec

        path = converted_dir(ref, settings)
        tokenizer = AutoTokenizer.from_pretrained(str(path))
        model = AutoModelForCausalLM.from_pretrained(str(path), dtype=dtype, quantization_config=quant,
                                                     device_map=device_map)
    except (ImportError, RuntimeError) as exc:
        raise ModelError(f"--qlora could not load {ref.persona_id} in 4-bit with bitsandbytes ({exc}): "
                         "train without --qlora, or check the bitsandbytes install.") from None
    return model, HFChatCodec(tokenizer, model.generation_config, ref.profile.title), device
