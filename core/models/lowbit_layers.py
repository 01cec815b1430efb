"""Low-bit Linear layers for CPU decoding (int4 / int8 weight-only, bf16 activations) and the quantizers.

PyTorch ships the CPU kernels (``_weight_int4pack_mm_for_cpu``, ``_weight_int8pack_mm``); they take bfloat16
activations. The layers subclass ``nn.Linear`` so that PEFT wraps them with its standard LoRA layer, which
runs the adapter in its own float dtype beside the low-bit base (nothing is merged into the codes).
Quantizers return portable codes (the cache format); ``build_layer`` packs them for this CPU.
"""

from __future__ import annotations

import functools

import torch
from torch import nn

GROUP_SIZE = 32
"""int4 values per scale/zero pair (the bundled GGUF weights use blocks of 32 too)."""


class Int4Linear(nn.Linear):
    """y = x W^T + b with W held as 4-bit codes, an asymmetric bf16 scale/zero per group of input columns."""

    lowbit_kind = "int4"

    def __init__(self, packed: torch.Tensor, scales_zeros: torch.Tensor, bias: torch.Tensor | None,
                 in_features: int, out_features: int, group_size: int) -> None:
        nn.Module.__init__(self)  # no float weight: nn.Linear's __init__ would allocate one
        self.in_features, self.out_features, self.group_size = in_features, out_features, group_size
        self.register_buffer("weight", packed, persistent=False)  # PEFT reads .weight (device; int: no cast)
        self.register_buffer("scales_zeros", scales_zeros, persistent=False)
        self.bias = None if bias is None else nn.Parameter(bias.to(torch.bfloat16), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        flat = x.reshape(-1, self.in_features).to(torch.bfloat16).contiguous()  # the kernels index raw memory
        out = torch.ops.aten._weight_int4pack_mm_for_cpu(flat, self.weight, self.group_size, self.scales_zeros)
        if self.bias is not None:
            out = out + self.bias
        return out.reshape(*x.shape[:-1], self.out_features).to(x.dtype)

    def extra_repr(self) -> str:  # noqa: D102
        bias = self.bias is not None
        return f"in={self.in_features}, out={self.out_features}, int4 group={self.group_size}, bias={bias}"


class Int8Linear(nn.Linear):
    """y = x W^T + b with W held as int8, one bf16 scale per output row (symmetric)."""

    lowbit_kind = "int8"

    def __init__(self, codes: torch.Tensor, scales: torch.Tensor, bias: torch.Tensor | None) -> None:
        nn.Module.__init__(self)
        self.out_features, self.in_features = codes.shape
        self.register_buffer("weight", codes, persistent=False)
        self.register_buffer("scales", scales, persistent=False)
        self.bias = None if bias is None else nn.Parameter(bias.to(torch.bfloat16), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        flat = x.reshape(-1, self.in_features).to(torch.bfloat16).contiguous()  # the kernels index raw memory
        out = torch.ops.aten._weight_int8pack_mm(flat, self.weight, self.scales)
        if self.bias is not None:
            out = out + self.bias
        return out.reshape(*x.shape[:-1], self.out_features).to(x.dtype)

    def extra_repr(self) -> str:  # noqa: D102
        return f"in={self.in_features}, out={self.out_features}, int8, bias={self.bias is not None}"


# -- quantization: float weight -> portable codes (the tensors the cache stores) -------------------------


def quantize_int4(weight: torch.Tensor, group_size: int = GROUP_SIZE) -> dict[str, torch.Tensor]:
    """Codes (two per byte, low nibble first) and bf16 [groups, out, 2] scale/zero of an [out, in] weight.

    Per group of ``group_size`` input columns the 16 levels are fitted for the least squared error, not just
    spread over min..max: starting from the full range and from 90% of it (clipping a lone outlier often costs
    less than coarsening every other value), codes and the line ``scale * code + offset`` are refitted in
    turn (least squares), and the better start is kept. On the bundled Qwen2.5 model this halves the
    perplexity cost of min..max rounding. Values on an exact 16-level grid come back exactly. The zero is
    refitted after the scale's bf16 rounding. The kernel reconstructs ``(code - 8) * scale + zero``.
    """
    w = weight.detach().to(torch.float32, copy=True).reshape(weight.shape[0], -1, group_size)
    lo, hi = w.amin(-1, keepdim=True), w.amax(-1, keepdim=True)
    best: tuple[torch.Tensor, ...] = ()  # per group, the (error, codes, scale, zero) of the better start
    for shrink in (1.0, 0.9):
        half = (hi - lo) * (shrink / 2)
        offset, scale = (lo + hi) / 2 - half, (half * (2 / 15)).clamp_(min=1e-8)
        for _ in range(3):
            codes = (w - offset).div_(scale).round_().clamp_(0, 15)
            scale, offset = _refit_line(w, codes, scale, offset)
        scale = scale.to(torch.bfloat16).float()
        codes = (w - offset).div_(scale).round_().clamp_(0, 15)
        zero = (w - (codes - 8) * scale).mean(-1, keepdim=True).to(torch.bfloat16).float()
        err = (w - (codes - 8) * scale - zero).square_().sum(-1, keepdim=True)
        found = (err, codes, scale, zero)
        if best:
            better = err < best[0]
            found = tuple(torch.where(better, new, old) for new, old in zip(found, best, strict=True))
        best = found
    _, best_codes, best_scale, best_zero = best
    codes = best_codes.to(torch.uint8).reshape(weight.shape)
    scales_zeros = torch.stack([best_scale.squeeze(-1).t(), best_zero.squeeze(-1).t()], dim=-1).to(torch.bfloat16)
    return {"codes": codes[:, 0::2] | (codes[:, 1::2] << 4), "scales_zeros": scales_zeros.contiguous()}


def _refit_line(w: torch.Tensor, codes: torch.Tensor, scale: torch.Tensor, offset: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """Least-squares ``scale, offset`` of ``w ~ scale * codes + offset`` per group (kept where codes are flat)."""
    n = w.shape[-1]
    sum_c, sum_cc = codes.sum(-1, keepdim=True), codes.square().sum(-1, keepdim=True)
    sum_w, sum_cw = w.sum(-1, keepdim=True), (codes * w).sum(-1, keepdim=True)
    det = n * sum_cc - sum_c * sum_c
    ok = det > 0.5  # at least two distinct codes (det is an integer here)
    fitted = (n * sum_cw - sum_c * sum_w) / torch.where(ok, det, torch.ones_like(det))
    scale = torch.where(ok & (fitted > 1e-8), fitted, scale)
    return scale, torch.where(ok, (sum_w - scale * sum_c) / n, offset)


def quantize_int8(weight: torch.Tensor) -> dict[str, torch.Tensor]:
    """int8 codes and one bf16 scale per output row (symmetric, absmax / 127)."""
    w = weight.detach().to(torch.float32, copy=True)  # one float32 temporary, worked on in place
    scales = (w.abs().amax(dim=1) / 127).clamp(min=1e-8).to(torch.bfloat16)
    codes = w.div_(scales.float()[:, None]).round_().clamp_(-127, 127).to(torch.int8)
    return {"codes": codes, "scales": scales}


def build_layer(kind: str, tensors: dict[str, torch.Tensor], bias: torch.Tensor | None,
                group_size: int = GROUP_SIZE) -> nn.Linear:
    """A runtime layer from portable codes (int4 codes are repacked for this CPU here)."""
    if kind == "int8":
        return Int8Linear(_aligned(tensors["codes"]), _aligned(tensors["scales"]), bias)
    byte = tensors["codes"]
    codes = torch.stack([byte & 15, byte >> 4], dim=-1).reshape(byte.shape[0], -1).to(torch.int32)
    packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(codes, 1)
    out_features, in_features = codes.shape
    return Int4Linear(packed, _aligned(tensors["scales_zeros"]), bias, in_features, out_features, group_size)


def _aligned(t: torch.Tensor) -> torch.Tensor:
    """``t``, or a fresh copy where it is not contiguous on a 64-byte boundary: the kernels' vector loads do not
    accept unaligned data (a segfault on long inputs), as a tensor viewing a safetensors file may be."""
    return t if t.is_contiguous() and t.data_ptr() % 64 == 0 else t.clone()


def eligible(kind: str, module: nn.Module) -> bool:
    """Whether ``module`` is a float Linear that ``kind`` can hold (int4: whole groups of 32, rows by 16)."""
    if type(module) is not nn.Linear:  # noqa: E721 - exactly a float Linear, not a PEFT or quantized layer
        return False
    n, k = module.out_features, module.in_features
    if kind == "int4":
        return k % GROUP_SIZE == 0 and n % 16 == 0
    return True


# -- CPU support -------------------------------------------------------------------------------------------


@functools.cache
def cpu_supports(kind: str) -> bool:
    """Whether this CPU and torch build run ``kind`` fast: the kernel runs and is right, with AVX2 or better on x86."""
    if kind == "fp32":
        return True
    import platform

    if kind in ("int4", "int8") and platform.machine().lower() in ("x86_64", "amd64", "i686"):
        if torch.backends.cpu.get_cpu_capability() not in ("AVX2", "AVX512"):
            return False  # the kernels fall back to scalar code, slower than float32 matmul
    try:
        gen = torch.Generator().manual_seed(0)
        weight = torch.randn(32, 64, generator=gen)
        x = torch.randn(2, 64, generator=gen).to(torch.bfloat16)
        if kind == "bf16":
            layer = nn.Linear(64, 32, bias=False).to(torch.bfloat16)
            layer.weight.data.copy_(weight)
            got, ref = layer(x).float(), x.float() @ weight.to(torch.bfloat16).float().t()
        else:
            t = quantize_int4(weight) if kind == "int4" else quantize_int8(weight)
            layer = build_layer(kind, t, None, GROUP_SIZE)
            got, ref = layer(x).float(), x.float() @ dequantize(layer).t()
        return bool(torch.allclose(got, ref, rtol=0.05, atol=0.05))
    except (RuntimeError, NotImplementedError):
        return False


def dequantize(layer: nn.Module) -> torch.Tensor:
    """The float32 [out, in] weight a low-bit (or float) Linear computes with."""
    if isinstance(layer, Int8Linear):
        return layer.weight.float() * layer.scales.float()[:, None]
    if isinstance(layer, Int4Linear):
        eye = torch.eye(layer.in_features, dtype=torch.bfloat16)
        sz = layer.scales_zeros
        return torch.ops.aten._weight_int4pack_mm_for_cpu(eye, layer.weight, layer.group_size, sz).float().t()
    return layer.weight.detach().float()


# -- whole models --------------------------------------------------------------------------------------------


def quantize_model(model: nn.Module, kind: str, repacked: dict[str, dict[str, torch.Tensor]] | None = None
                   ) -> dict[str, dict[str, torch.Tensor]]:
    """Turn ``model`` (in place) into ``kind`` weights with bf16 elsewhere; return the portable codes per layer.

    ``repacked``: int4 codes taken as they are (a GGUF's own 4-bit blocks, ``core.models.gguf_blocks``); with it,
    an int4 model holds every other layer as int8 rather than requantizing it to 4 bits.
    """
    portable: dict[str, dict[str, torch.Tensor]] = {}
    if kind == "fp32":
        return portable
    if kind in ("int4", "int8"):
        head = model.get_output_embeddings()
        for name, module in list(model.named_modules()):
            # int8 for the output head: its error lands directly on the logits (int4 there cost smollm2 +7%
            # perplexity)
            layer_kind = "int8" if module is head else kind
            if layer_kind == "int4" and repacked is not None and name not in repacked:
                layer_kind = "int8"  # not 4-bit in the GGUF: 8 bits keep its 5-8-bit blocks closely
            if not eligible(layer_kind, module):
                continue
            if layer_kind == "int4" and repacked is not None:
                t = repacked[name]
            else:
                t = quantize_int4(module.weight) if layer_kind == "int4" else quantize_int8(module.weight)
            model.set_submodule(name, build_layer(layer_kind, t, module.bias, GROUP_SIZE))
            portable[name] = t
    to_bf16(model)
    return portable


def to_bf16(model: nn.Module) -> None:
    """Cast parameters to bf16 in place, keeping buffers (rotary frequencies) in their precision."""
    buffers = [(m, name, b) for m in model.modules() for name, b in m._buffers.items() if b is not None]
    model.to(torch.bfloat16)
    for module, name, buffer in buffers:
        module._buffers[name] = buffer
