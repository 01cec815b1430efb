"""The GLM mapping against an independent pure-torch forward of the original ChatGLM3 architecture.

``chatglm3_forward`` below is written from the architecture description (RMSNorm, fused qkv with bias,
RoPE on the first half of each head in interleaved pairs with base 10000 * rope_ratio, multi-query
attention, SwiGLU MLP), not from the loader. It is first validated against the fixture's reference
logits, then used where no reference exists: ``rope_ratio`` 2.0 (the native config must get rope theta
20000 and different logits), plain multi-head attention (per-head fused qkv layout) and one kv group.
Also checks the config mapping for ChatGLM3-6B's real sizes. Sizes, vocabulary and special ids come from
the fixture (``CHATGLM3_FIXTURE``); the reference-logit tolerance from its dtype on disk.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from tests.chatglm3_fixture import FIXTURE, fixture_config, fixture_reference, logits_bound, relative_tolerance
from tests.chatglm3_reference import chatglm3_forward


def _fixture_cfg() -> dict:
    return fixture_config()


def test_reference_forward_reproduces_fixture_logits() -> None:
    from core.chatglm3 import read_chatglm3_state_dict

    ref = fixture_reference()
    sd = read_chatglm3_state_dict(FIXTURE)
    rel = relative_tolerance()
    for case in ref["cases"]:
        expected = ref["logits"][case["logits_key"]]
        got = chatglm3_forward(sd, _fixture_cfg(), case["prompt_ids"])
        assert (got - expected).abs().max().item() <= logits_bound(expected, rel)


def _random_checkpoint(dst: Path, cfg: dict, seed: int = 0) -> dict[str, torch.Tensor]:
    from safetensors.torch import save_file

    gen = torch.Generator().manual_seed(seed)
    heads, hd = cfg["num_attention_heads"], cfg["kv_channels"]
    hidden, ffn = cfg["hidden_size"], cfg["ffn_hidden_size"]
    groups = cfg["multi_query_group_num"] if cfg["multi_query_attention"] else heads
    qkv_rows = (heads + 2 * groups) * hd

    def rnd(*shape: int, scale: float = 0.15) -> torch.Tensor:
        return torch.randn(*shape, generator=gen) * scale

    sd = {
        "transformer.embedding.word_embeddings.weight": rnd(cfg["padded_vocab_size"], hidden, scale=1.0),
        "transformer.encoder.final_layernorm.weight": 1 + rnd(hidden, scale=0.1),
        "transformer.output_layer.weight": rnd(cfg["padded_vocab_size"], hidden),
        "transformer.rotary_pos_emb.inv_freq": torch.zeros(hd // 4),
    }
    for i in range(cfg["num_layers"]):
        p = f"transformer.encoder.layers.{i}."
        sd |= {
            p + "input_layernorm.weight": 1 + rnd(hidden, scale=0.1),
            p + "self_attention.query_key_value.weight": rnd(qkv_rows, hidden, scale=0.3),
            p + "self_attention.query_key_value.bias": rnd(qkv_rows, scale=0.3),
            p + "self_attention.dense.weight": rnd(hidden, heads * hd),
            p + "post_attention_layernorm.weight": 1 + rnd(hidden, scale=0.1),
            p + "mlp.dense_h_to_4h.weight": rnd(2 * ffn, hidden),
            p + "mlp.dense_4h_to_h.weight": rnd(hidden, ffn),
        }
    dst.mkdir(parents=True)
    (dst / "config.json").write_text(json.dumps(cfg), encoding="utf-8")
    save_file(sd, str(dst / "model.safetensors"))
    return sd


def _ids() -> list[int]:
    """45 prompt-like ids valid for the fixture: ``[gMASK] sop <|user|>`` + ordinary ids + ``<|assistant|>``, x3."""
    special = json.loads((FIXTURE / "reference.json").read_text(encoding="utf-8"))["special_ids"]
    pieces = special["[gMASK]"] - 1  # SentencePiece ids lie below the specials ([MASK], [gMASK], ...)
    body = [i % pieces for i in (800, 800, 526, 17, 250, 31, 999, 400, 5, 77, 600)]
    return [special["[gMASK]"], special["sop"], special["<|user|>"], *body, special["<|assistant|>"]] * 3

VARIANTS = {
    "rope_ratio_2": {"rope_ratio": 2.0},
    "multi_head_no_mqa": {"multi_query_attention": False},
    "one_kv_group": {"multi_query_group_num": 1},
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_native_model_matches_reference_forward(variant: str, tmp_path: Path) -> None:
    from core.chatglm3 import load_chatglm3_model

    cfg = _fixture_cfg() | VARIANTS[variant]
    sd = _random_checkpoint(tmp_path / variant, cfg)
    model = load_chatglm3_model(tmp_path / variant, cache_dir=tmp_path / "cache")
    assert model.config.num_key_value_heads == (cfg["multi_query_group_num"] if cfg["multi_query_attention"]
                                                else cfg["num_attention_heads"])
    ids = _ids()
    with torch.no_grad():
        got = model(torch.tensor([ids])).logits[0]
    expected = chatglm3_forward(sd, cfg, ids)
    assert (got - expected).abs().max().item() < 1e-4


def test_rope_ratio_sets_theta_and_changes_logits(tmp_path: Path) -> None:
    from core.chatglm3 import load_chatglm3_model

    for ratio in (1, 2.0):
        src = tmp_path / f"r{ratio}"
        shutil.copytree(FIXTURE, src)
        (src / "config.json").write_text(json.dumps(_fixture_cfg() | {"rope_ratio": ratio}), encoding="utf-8")
    m1 = load_chatglm3_model(tmp_path / "r1", cache_dir=tmp_path / "cache")
    m2 = load_chatglm3_model(tmp_path / "r2.0", cache_dir=tmp_path / "cache")
    assert m1.config.rope_parameters["rope_theta"] == 10000
    assert m2.config.rope_parameters["rope_theta"] == 20000
    assert m2.config.rope_parameters["partial_rotary_factor"] == 0.5
    rot = _fixture_cfg()["kv_channels"] // 2
    expected_inv_freq = 1.0 / 20000.0 ** (torch.arange(0, rot, 2, dtype=torch.float) / rot)
    assert torch.allclose(m2.model.rotary_emb.inv_freq, expected_inv_freq)
    ids = torch.tensor([_ids()])
    with torch.no_grad():
        diff = (m1(ids).logits - m2(ids).logits).abs().max().item()
    assert diff > 1e-3, "rope_ratio must change the logits"


def test_config_mapping_for_chatglm3_6b_sizes() -> None:
    from core.chatglm3 import glm_config_from_chatglm3

    six_b = {
        "model_type": "chatglm", "padded_vocab_size": 65024, "hidden_size": 4096, "num_layers": 28,
        "num_attention_heads": 32, "kv_channels": 128, "multi_query_attention": True,
        "multi_query_group_num": 2, "ffn_hidden_size": 13696, "layernorm_epsilon": 1e-5,
        "seq_length": 8192, "add_qkv_bias": True, "add_bias_linear": False, "rmsnorm": True,
        "post_layer_norm": True, "apply_residual_connection_post_layernorm": False,
        "pre_seq_len": None, "quantization_bit": 0, "eos_token_id": 2, "pad_token_id": 0,
        "rope_ratio": 50,
    }
    c = glm_config_from_chatglm3(six_b)
    assert (c.vocab_size, c.hidden_size, c.num_hidden_layers, c.num_attention_heads, c.head_dim) == (
        65024, 4096, 28, 32, 128)
    assert (c.num_key_value_heads, c.intermediate_size, c.max_position_embeddings) == (2, 13696, 8192)
    assert c.rms_norm_eps == 1e-5 and c.attention_bias is True and c.tie_word_embeddings is False
    assert c.rope_parameters["rope_theta"] == 500000 and c.rope_parameters["partial_rotary_factor"] == 0.5
    assert c.eos_token_id == 2 and c.pad_token_id == 0 and c.hidden_act == "silu"
    assert glm_config_from_chatglm3(six_b | {"rope_ratio": None}).rope_parameters["rope_theta"] == 10000
