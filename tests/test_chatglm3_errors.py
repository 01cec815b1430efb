"""Bad ChatGLM3 checkpoints are refused with one ``ModelError`` that names the problem.

Covers: detection of ChatGLM3 directories, config fields the GLM mapping cannot represent, missing and
unexpected tensors (listed together), shape mismatches, shard files missing from an index, no weights,
and that a failed conversion leaves nothing in the cache. Broken copies are built from whatever weights the
fixture has (single or sharded, ``.bin`` or safetensors, any dtype and sizes).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from core.errors import ModelError
from tests.chatglm3_fixture import FIXTURE, fixture_config


def _copy(tmp_path: Path, **config_changes) -> Path:
    src = tmp_path / "ckpt"
    shutil.copytree(FIXTURE, src)
    cfg_file = src / "config.json"
    cfg = json.loads(cfg_file.read_text(encoding="utf-8"))
    cfg.update(config_changes)
    cfg_file.write_text(json.dumps(cfg), encoding="utf-8")
    return src


def _take_weights(src: Path) -> dict:
    """Remove every weight file (and index) of checkpoint ``src``; return its complete state dict."""
    from core.chatglm3 import read_chatglm3_state_dict
    from core.chatglm3.weights import weight_files

    state = read_chatglm3_state_dict(src)
    for file in weight_files(src):
        file.unlink()
    for index in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        (src / index).unlink(missing_ok=True)
    return state


def _load(src: Path, tmp_path: Path):
    from core.chatglm3 import load_chatglm3_model

    return load_chatglm3_model(src, cache_dir=tmp_path / "cache")


def test_is_chatglm3_checkpoint(tmp_path: Path) -> None:
    from core.chatglm3 import is_chatglm3_checkpoint

    assert is_chatglm3_checkpoint(FIXTURE)
    assert not is_chatglm3_checkpoint(tmp_path)  # no config.json
    (tmp_path / "config.json").write_text('{"model_type": "glm"}', encoding="utf-8")
    assert not is_chatglm3_checkpoint(tmp_path)
    (tmp_path / "config.json").write_text("{not json", encoding="utf-8")
    assert not is_chatglm3_checkpoint(tmp_path)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("add_bias_linear", True),
        ("rmsnorm", False),
        ("post_layer_norm", False),
        ("apply_residual_connection_post_layernorm", True),
        ("pre_seq_len", 128),
        ("quantization_bit", 4),
        ("rope_ratio", -1),
        ("num_layers", 0),
    ],
)
def test_unsupported_config_field_is_named(field: str, value, tmp_path: Path) -> None:
    src = _copy(tmp_path, **{field: value})
    with pytest.raises(ModelError, match=field):
        _load(src, tmp_path)
    cache = tmp_path / "cache"
    assert not cache.exists() or not any(cache.iterdir()), "a refused checkpoint leaves no cache entry"


def test_missing_and_unexpected_tensors_listed_in_one_error(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    src = _copy(tmp_path)
    layers = fixture_config()["num_layers"]
    state = _take_weights(src)
    last_dense = f"transformer.encoder.layers.{layers - 1}.self_attention.dense.weight"
    qkv = "transformer.encoder.layers.0.self_attention.query_key_value."
    first_qkv = qkv + ("bias" if qkv + "bias" in state else "weight")
    del state[last_dense]
    del state[first_qkv]
    extra = state["transformer.encoder.final_layernorm.weight"]
    state[f"transformer.encoder.layers.{layers}.mlp.extra.weight"] = extra
    save_file({k: v.clone() for k, v in state.items()}, str(src / "model.safetensors"))
    with pytest.raises(ModelError) as info:
        _load(src, tmp_path)
    message = str(info.value)
    assert last_dense in message
    assert first_qkv in message
    assert f"encoder.layers.{layers}.mlp.extra.weight" in message and "unexpected" in message
    assert not any((tmp_path / "cache").iterdir())


def test_missing_tensor_in_single_bin_is_found_after_loading(tmp_path: Path) -> None:
    import torch

    src = _copy(tmp_path)
    state = _take_weights(src)
    del state["transformer.output_layer.weight"]
    torch.save(state, src / "pytorch_model.bin")
    with pytest.raises(ModelError, match=r"missing tensors: transformer\.output_layer\.weight"):
        _load(src, tmp_path)


def test_shape_mismatch_names_tensor(tmp_path: Path) -> None:
    cfg = fixture_config()
    heads = cfg["num_attention_heads"]
    groups = cfg["multi_query_group_num"] if cfg.get("multi_query_attention") else heads
    # Another valid group count (it divides the heads), so only the weights' row count can disagree.
    src = _copy(tmp_path, multi_query_attention=True, multi_query_group_num=1 if groups != 1 else heads)
    with pytest.raises(ModelError, match="query_key_value"):
        _load(src, tmp_path)
    src2 = _copy(tmp_path / "b", ffn_hidden_size=cfg["ffn_hidden_size"] // 2)
    with pytest.raises(ModelError, match="gate_up_proj"):
        _load(src2, tmp_path / "b")


def test_missing_shard_and_missing_weights(tmp_path: Path) -> None:
    src = _copy(tmp_path)
    _take_weights(src)
    with pytest.raises(ModelError, match="no weights"):
        _load(src, tmp_path)
    index = {"weight_map": {"transformer.output_layer.weight": "pytorch_model-00002-of-00002.bin"}}
    (src / "pytorch_model.bin.index.json").write_text(json.dumps(index), encoding="utf-8")
    with pytest.raises(ModelError, match="pytorch_model-00002-of-00002.bin"):
        _load(src, tmp_path)


def test_not_a_chatglm_config(tmp_path: Path) -> None:
    src = _copy(tmp_path, model_type="llama")
    with pytest.raises(ModelError, match="'llama'"):
        _load(src, tmp_path)
    with pytest.raises(ModelError, match="config.json"):
        _load(tmp_path / "nowhere", tmp_path)
