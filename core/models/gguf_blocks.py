"""int4 CPU weights taken from a GGUF file's own 4-bit blocks: repacked, never requantized.

A 4-bit GGUF block holds 32 weights as codes ``q`` in 0..15 on a line ``w = scale * q + low`` per block:
Q4_0 ``d * (q - 8)``, Q4_1 ``d * q + m``, Q4_K ``d * sc * q - dmin * m`` (eight blocks of 32 per 256-weight
super-block, 6-bit ``sc`` and ``m``). That is exactly the asymmetric group-32 layout of torch's CPU int4 kernel,
which computes ``(q - 8) * scale + zero``: the codes are copied and ``zero = low + 8 * scale``. Only the bf16
rounding of the scale and zero differs from the GGUF's own dequantization (the layer-output test holds that).

Tensors of other types (Q5_0, Q6_K, Q8_0, ...) are not 4-bit: the caller keeps them on its int8 path. Which
GGUF tensor is which model layer, and the row order (llama.cpp permutes Llama's q/k rows), come from
transformers' own GGUF loader, and each repacked weight is checked against the model's dequantized weight
before it is used: a mismatch is left to the requantizer, never loaded wrong.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

FOUR_BIT = ("Q4_0", "Q4_1", "Q4_K")
"""GGUF block types held as int4 without requantizing."""
GROUP = 32


def decode_blocks(raw: np.ndarray, qtype: str, rows: int, cols: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Codes [rows, cols] (uint8, 0..15), scale and low [rows, cols / 32] (float32) of a 4-bit GGUF tensor.

    Each weight is ``scale * code + low`` of its group of 32, computed in float32 as the GGUF dequantization does.
    """
    raw = np.ascontiguousarray(raw, dtype=np.uint8).reshape(rows, -1)
    if qtype in ("Q4_0", "Q4_1"):
        head = 2 if qtype == "Q4_0" else 4
        blocks = raw.reshape(rows, cols // GROUP, head + 16)
        d = blocks[..., 0:2].copy().view(np.float16)[..., 0].astype(np.float32)
        low = -8 * d if qtype == "Q4_0" else blocks[..., 2:4].copy().view(np.float16)[..., 0].astype(np.float32)
        qs = blocks[..., head:]
        codes = np.concatenate([qs & 15, qs >> 4], axis=-1)  # low nibbles are weights 0..15, high ones 16..31
        return _tensors(codes, d, low, rows, cols)
    if qtype == "Q4_K":
        from gguf.quants import Q4_K

        blocks = raw.reshape(rows * (cols // 256), 144)
        d = blocks[:, 0:2].copy().view(np.float16).astype(np.float32)
        dmin = blocks[:, 2:4].copy().view(np.float16).astype(np.float32)
        sc, m = Q4_K.get_scale_min(blocks[:, 4:16].copy())
        qs = blocks[:, 16:].reshape(-1, 4, 1, 32) >> np.array([0, 4], dtype=np.uint8).reshape(1, 1, 2, 1)
        codes = (qs & 15).reshape(rows, cols)  # per 64 weights: 32 low nibbles, then the same bytes' high ones
        scale = (d * sc.astype(np.float32)).reshape(rows, -1)
        low = -(dmin * m.astype(np.float32)).reshape(rows, -1)
        return _tensors(codes, scale, low, rows, cols)
    raise ValueError(f"{qtype} is not a 4-bit GGUF block type ({', '.join(FOUR_BIT)})")


def _tensors(codes: np.ndarray, scale: np.ndarray, low: np.ndarray, rows: int, cols: int
             ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return (torch.from_numpy(np.ascontiguousarray(codes).reshape(rows, cols)),
            torch.from_numpy(np.ascontiguousarray(scale).reshape(rows, -1)),
            torch.from_numpy(np.ascontiguousarray(low).reshape(rows, -1)))


def portable_int4(codes: torch.Tensor, scale: torch.Tensor, low: torch.Tensor) -> dict[str, torch.Tensor]:
    """The cache form of ``lowbit_layers.quantize_int4`` for given codes and lines (``zero = low + 8 * scale``)."""
    scales_zeros = torch.stack([scale.t(), (low + 8 * scale).t()], dim=-1).to(torch.bfloat16).contiguous()
    return {"codes": codes[:, 0::2] | (codes[:, 1::2] << 4), "scales_zeros": scales_zeros}


def dequantized(codes: torch.Tensor, scale: torch.Tensor, low: torch.Tensor) -> torch.Tensor:
    """The float32 weight ``scale * code + low`` (the GGUF dequantization)."""
    return codes.float() * scale.repeat_interleave(GROUP, 1) + low.repeat_interleave(GROUP, 1)


def repack_int4(gguf_path: Path, model: Any) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, str]]:
    """Portable int4 tensors of ``model``'s Linear layers stored as 4-bit blocks in ``gguf_path``, and the GGUF
    type of every Linear weight found there (``{module name: "Q4_K" | "Q6_K" | ...}``).

    A layer is repacked only when its codes reproduce the model's own (dequantized) weight.
    """
    from gguf import GGUFReader
    from transformers.modeling_gguf_pytorch_utils import (
        TENSOR_PROCESSORS,
        TensorProcessor,
        get_gguf_hf_weights_map,
        read_field,
    )

    reader = GGUFReader(str(gguf_path))
    arch = read_field(reader, "general.architecture")[0]
    processor = TENSOR_PROCESSORS.get(arch, TensorProcessor)(config=model.config.to_dict())
    names = get_gguf_hf_weights_map(model, processor)
    linears = {name for name, module in model.named_modules() if isinstance(module, torch.nn.Linear)}
    repacked: dict[str, dict[str, torch.Tensor]] = {}
    types: dict[str, str] = {}
    for tensor in reader.tensors:
        hf_name = names.get(tensor.name, "")
        module_name = hf_name.removesuffix(".weight")
        if not hf_name.endswith(".weight") or module_name not in linears:
            continue
        qtype = tensor.tensor_type.name
        types[module_name] = qtype
        weight = model.get_submodule(module_name).weight
        rows, cols = weight.shape
        if qtype not in FOUR_BIT or cols % GROUP or rows % 16:
            continue
        codes, scale, low = decode_blocks(tensor.data, qtype, rows, cols)
        # the row order transformers gives this tensor (Llama's q/k rows are un-permuted), as an index vector
        order = processor.process(weights=np.arange(rows)[:, None], name=tensor.name, tensor_key_mapping=names,
                                  parsed_parameters={}).weights[:, 0]
        order = torch.from_numpy(np.ascontiguousarray(order))
        codes, scale, low = codes[order], scale[order], low[order]
        if not _matches(dequantized(codes, scale, low), weight):
            continue
        repacked[module_name] = portable_int4(codes, scale, low)
    return repacked, types


def _matches(ours: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether ``ours`` is ``weight`` up to the rounding of ``weight``'s dtype."""
    w = weight.detach().float()
    eps = torch.finfo(weight.dtype).eps
    return bool(((ours - w).abs() <= w.abs().clamp(min=1e-6) * eps * 2 + 1e-7).all())
