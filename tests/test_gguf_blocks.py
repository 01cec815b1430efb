"""int4 repacked from a GGUF's own 4-bit blocks: the codes are the GGUF's (bit-exact against gguf's own
dequantization), a repacked int4 layer computes the GGUF weight's linear output to bf16 precision (far closer than
requantizing the dequantized weight), and a bundled SmolLM2 loaded with int4 holds every layer repacked.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType, GGUFReader, dequantize
from gguf.quants import quantize

from core.config import load_settings
from core.models import bundled, gguf_blocks, lowbit_layers
from core.models.loader import load_model
from core.models.registry import resolve


def _gguf(profile_id: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return bundled.assemble(bundled.source_for(profile_id), tmp_path_factory.mktemp("gguf"))


@pytest.fixture(scope="module")
def qwen_gguf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled Qwen2.5-Coder GGUF (Q4_K_M: Q4_K, Q5_0, Q6_K, Q8_0 tensors), joined from its packages."""
    return _gguf("qwen2.5-coder-0.5b", tmp_path_factory)


def _tensors(path: Path, qtype: str, count: int) -> list:  # noqa: ANN001
    return [t for t in GGUFReader(str(path)).tensors if t.tensor_type.name == qtype][:count]


def _repacked_layer(tensor) -> tuple[torch.nn.Module, torch.Tensor]:  # noqa: ANN001
    cols, rows = (int(s) for s in tensor.shape)
    codes, scale, low = gguf_blocks.decode_blocks(tensor.data, tensor.tensor_type.name, rows, cols)
    reference = torch.from_numpy(dequantize(tensor.data, tensor.tensor_type)).reshape(rows, cols)
    assert torch.equal(gguf_blocks.dequantized(codes, scale, low), reference)  # the codes are the GGUF's
    layer = lowbit_layers.build_layer("int4", gguf_blocks.portable_int4(codes, scale, low), None)
    return layer, reference


def _check_layer_output(tensor, beats_requantizing: bool) -> None:  # noqa: ANN001
    layer, weight = _repacked_layer(tensor)
    x = torch.randn(4, weight.shape[1], generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)
    ref = x.float() @ weight.t()  # the GGUF dequantization's float32 linear output
    got = layer(x).float()
    scale = ref.abs().max()
    # bf16 scale/zero and the kernel's bf16 output: about 2**-8 of the output's size, nothing more
    assert (got - ref).abs().max() <= scale * 2**-6, (tensor.name, float((got - ref).abs().max()), float(scale))
    if not beats_requantizing:
        return
    requant = lowbit_layers.build_layer("int4", lowbit_layers.quantize_int4(weight), None)
    err_repack = (got - ref).square().mean()
    err_requant = (requant(x).float() - ref).square().mean()
    assert err_repack * 20 < err_requant, (tensor.name, float(err_repack), float(err_requant))


@pytest.mark.slow
def test_qwen_q4_k_blocks_give_the_gguf_layer_output(qwen_gguf: Path) -> None:
    """Real Q4_K tensors of the bundled Qwen2.5 (its 4-bit ffn_down layers) repack to the GGUF's own output, 20x
    closer than refitting 4-bit levels to the dequantized weight (Q4_K's 6-bit scales and mins put its levels
    off the min..max grid a refit finds)."""
    tensors = _tensors(qwen_gguf, "Q4_K", 3)
    assert len(tensors) == 3
    for tensor in tensors:
        _check_layer_output(tensor, beats_requantizing=True)


@pytest.mark.slow
def test_smollm2_q4_1_blocks_give_the_gguf_layer_output() -> None:
    """Real Q4_1 tensors of the bundled SmolLM2 (every Linear there is Q4_1) repack to the GGUF's own output
    (a refit finds Q4_1's min..max levels too, so no ratio is asked here)."""
    tensors = _tensors(bundled.source_for("smollm2-135m").parts[0], "Q4_1", 3)
    for tensor in tensors:
        _check_layer_output(tensor, beats_requantizing=False)


def test_q4_0_and_q4_1_blocks_decode_bit_exactly() -> None:
    """Blocks written by gguf's own quantizer decode to exactly what gguf dequantizes them to."""
    weight = np.random.default_rng(1).standard_normal((48, 128)).astype(np.float32)
    for qtype in (GGMLQuantizationType.Q4_0, GGMLQuantizationType.Q4_1):
        raw = quantize(weight, qtype)
        codes, scale, low = gguf_blocks.decode_blocks(raw, qtype.name, 48, 128)
        assert codes.dtype == torch.uint8 and int(codes.max()) <= 15
        assert torch.equal(gguf_blocks.dequantized(codes, scale, low),
                           torch.from_numpy(dequantize(raw, qtype)).reshape(48, 128))
    with pytest.raises(ValueError, match="Q5_0 is not a 4-bit"):
        gguf_blocks.decode_blocks(np.zeros(22 * 4, np.uint8), "Q5_0", 1, 128)


@pytest.mark.slow
def test_bundled_smollm2_int4_holds_its_own_blocks(tmp_path: Path) -> None:
    """A first start with int4 takes all 210 Q4_1 layers as they are (Llama's permuted q/k rows included): each
    layer computes the GGUF weight (the float32 model's) to bf16 precision; the head stays int8."""
    settings = load_settings({"home": str(tmp_path), "model": "smollm2-135m", "device": "cpu",
                              "cpu_weights": "int4"})
    loaded = load_model(resolve("smollm2-135m"), settings)
    model = loaded.model
    assert loaded.cpu_weights == "int4" and len(model.inkstone_repacked) == 210
    reader = GGUFReader(str(bundled.source_for("smollm2-135m").parts[0]))
    q = next(t for t in reader.tensors if t.name == "blk.3.attn_q.weight")
    raw = torch.from_numpy(dequantize(q.data, q.tensor_type)).reshape(576, 576)
    layer = model.get_submodule("model.layers.3.self_attn.q_proj")
    assert isinstance(layer, lowbit_layers.Int4Linear)
    # the GGUF stores q's rows permuted for its rope; the repacked layer holds them in the model's order
    heads, dim = 9, 576 // 9 // 2
    hf_order = raw.reshape(heads, dim, 2, 576).swapaxes(2, 1).reshape(576, 576)
    got = lowbit_layers.dequantize(layer)
    assert (got - hf_order).abs().max() <= hf_order.abs().max() * 2**-7
    assert isinstance(model.get_output_embeddings(), lowbit_layers.Int8Linear)
    again = load_model(resolve("smollm2-135m"), settings)  # a cached start reads the same layers
    assert again.from_cache and again.model.inkstone_repacked == model.inkstone_repacked
    torch.testing.assert_close(lowbit_layers.dequantize(again.model.get_submodule(
        "model.layers.3.self_attn.q_proj")), got, rtol=0, atol=0)
