"""What a model is before loading it: architecture, parameter count, context window, dtype on disk, and
how much memory it needs in bf16, 8-bit and 4-bit, plus the check that refuses a load that will not fit.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from core.errors import ModelError

GIB = 1024**3
OVERHEAD_BYTES = int(0.75 * GIB)
"""CUDA context, activations and a modest KV cache, on top of the weights."""


@dataclass(frozen=True)
class ModelInfo:
    """Facts about a checkpoint, read without loading its weights."""

    model: str
    architecture: str
    family: str
    parameters: int
    output_parameters: int
    """Parameters of lm_head (kept in 16-bit by bitsandbytes)."""
    context_window: int
    dtype_on_disk: str
    memory_gib: dict[str, float]
    """Estimated memory (weights + overhead) for bf16, 8bit and 4bit."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)


def memory_estimate(parameters: int, output_parameters: int) -> dict[str, float]:
    """GiB needed for bf16, 8-bit and 4-bit (nf4 + double quant) weights plus a fixed overhead."""
    body = parameters - output_parameters
    head = output_parameters * 2
    sizes = {"bf16": parameters * 2, "8bit": body * 1.03 + head, "4bit": body * 0.53 + head}
    return {k: round((v + OVERHEAD_BYTES) / GIB, 2) for k, v in sizes.items()}


def parameter_counts(model: Any) -> tuple[int, int]:
    """(all parameters, untied lm_head parameters) of a model (real or on the meta device)."""
    total = sum(p.numel() for p in model.parameters())
    head = model.get_output_embeddings()
    head_params = head.weight.numel() if head is not None and not model.config.tie_word_embeddings else 0
    return total, head_params


def _count_parameters(config: Any) -> tuple[int, int]:
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        return parameter_counts(AutoModelForCausalLM.from_config(config))


def _dtype_on_disk(path: Path, declared: Any) -> str:
    """dtypes in the weights' safetensors header, else (``.bin`` weights) the config's declaration.

    Only ``model*.safetensors`` count: a directory may hold other safetensors files (adapters, test references).
    """
    files = sorted(path.glob("model*.safetensors"))
    if files:
        with files[0].open("rb") as f:
            size = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(size))
        dtypes = {v["dtype"] for k, v in header.items() if k != "__metadata__"}
        names = {"F32": "float32", "F16": "float16", "BF16": "bfloat16"}
        return ",".join(sorted(names.get(d, d.lower()) for d in dtypes))
    return str(declared or "unknown").removeprefix("torch.")


def inspect_directory(path: Path, *, trust_remote_code: bool = False) -> ModelInfo:
    """Describe the checkpoint in ``path`` (ChatGLM3 or any natively supported architecture)."""
    from transformers import AutoConfig

    from core.chatglm3 import glm_config_from_chatglm3, is_chatglm3_checkpoint, read_chatglm3_config
    from core.models.loader import check_remote_code, context_window_of

    if is_chatglm3_checkpoint(path):
        raw = read_chatglm3_config(path)
        config = glm_config_from_chatglm3(raw)
        family, declared = "chatglm3", raw.get("torch_dtype")
    else:
        check_remote_code(path, trust_remote_code)
        config = AutoConfig.from_pretrained(str(path), trust_remote_code=trust_remote_code)
        family, declared = config.model_type, getattr(config, "dtype", None) or getattr(config, "torch_dtype", None)
    total, head = _count_parameters(config)
    return ModelInfo(
        model=str(path),
        architecture=(config.architectures or [type(config).__name__.replace("Config", "ForCausalLM")])[0]
        if family != "chatglm3"
        else "GlmForCausalLM (from ChatGLM3)",
        family=family,
        parameters=total,
        output_parameters=head,
        context_window=context_window_of(config),
        dtype_on_disk=_dtype_on_disk(path, declared),
        memory_gib=memory_estimate(total, head),
    )


def available_memory(device: str) -> int | None:
    """Free bytes on the GPU (CUDA) or available RAM (CPU, from /proc/meminfo); None when unknown."""
    if device == "cuda":
        import torch

        free, _total = torch.cuda.mem_get_info()
        return int(free)
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def check_fits(info: ModelInfo, device: str, dtype_bytes: int, quantize: str | None) -> None:
    """Refuse a load that needs more memory than is free, suggesting 4-bit where that would fit."""
    free = available_memory(device)
    if free is None:
        return
    if quantize:
        need_gib = info.memory_gib[quantize]
    else:
        need_gib = (info.parameters * dtype_bytes + OVERHEAD_BYTES) / GIB
    free_gib = free / GIB
    if need_gib <= free_gib:
        return
    where = "GPU" if device == "cuda" else "RAM"
    hint = (
        f" With --quantize 4bit it needs about {info.memory_gib['4bit']} GiB."
        if device == "cuda" and quantize != "4bit" and info.memory_gib["4bit"] <= free_gib
        else " Use a smaller model, free memory, or " + ("use --quantize 4bit." if device == "cuda" else "use a GPU.")
    )
    raise ModelError(
        f"{info.model} needs about {need_gib:.1f} GiB but only {free_gib:.1f} GiB of {where} is free.{hint}"
    )


def inspect_loaded(loaded: Any) -> ModelInfo:
    """Describe a model already in memory (bundled profiles, whose files are GGUF)."""
    from core.models.loader import context_window_of

    model = loaded.model
    total, head_params = parameter_counts(model)

    return ModelInfo(
        model=loaded.model_id,
        architecture=(model.config.architectures or [type(model).__name__])[0],
        family=model.config.model_type,
        parameters=total,
        output_parameters=head_params,
        context_window=context_window_of(model.config),
        dtype_on_disk="gguf (dequantized to float32)",
        memory_gib=memory_estimate(total, head_params),
    )
