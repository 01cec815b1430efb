"""Packing CPU weights tensor by tensor (``core.models.packstream``): a ChatGLM3 checkpoint (the fixture, and the
same weights as fp16 ``.bin`` shards) and tiny Llama / Qwen2 directories packed without a float model compute
exactly what the float model quantized in place computes, first start and cached start alike; a cache of the
previous layout still loads; a damaged or partial cache is rebuilt with a notice; a checkpoint that does not fit
its config is refused with a message and leaves no cache behind.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from core.config import load_settings
from core.errors import ModelError
from core.models import lowbit_layers, packstream, safeparts
from core.models.loader import load_model
from core.models.registry import resolve
from tests.chatglm3_fixture import FIXTURE
from tests.fixtures_native import make_native_checkpoint

IDS = torch.tensor([[1, 5, 9, 42, 7, 100, 300, 12]])


def _load(model: Path, home: Path, kind: str, notes: list[str] | None = None):  # noqa: ANN202
    settings = load_settings({"home": str(home), "model": str(model), "device": "cpu", "cpu_weights": kind})
    return load_model(resolve(str(model)), settings, notes.append if notes is not None else None)


def _logits(model: torch.nn.Module) -> torch.Tensor:
    with torch.inference_mode():
        return model(IDS).logits[0].float()


def _greedy(model: torch.nn.Module) -> list[int]:
    with torch.inference_mode():
        out = model.generate(IDS, max_new_tokens=8, do_sample=False, pad_token_id=0)
    return out[0, IDS.shape[1]:].tolist()


def _float_then_packed(model: torch.nn.Module, kind: str) -> torch.nn.Module:
    """The path before packstream: the whole bf16 model in memory, quantized in place."""
    lowbit_layers.quantize_model(model, kind)
    return model.eval()


def _bin_shards(tmp_path: Path) -> Path:
    """The fixture's weights as fp16 ``.bin`` shards (torch.save) with an index, like the ChatGLM3-6B download."""
    from core.chatglm3 import read_chatglm3_state_dict

    dst = tmp_path / "chatglm3-bin"
    dst.mkdir()
    for name in ("config.json", "tokenizer.model", "tokenizer_config.json"):
        shutil.copy(FIXTURE / name, dst / name)
    state = {k: v.half() for k, v in read_chatglm3_state_dict(FIXTURE).items()}
    names = sorted(state)
    weight_map = {}
    for i, part in enumerate((names[: len(names) // 2], names[len(names) // 2:])):
        file = f"pytorch_model-0000{i + 1}-of-00002.bin"
        torch.save({k: state[k] for k in part}, dst / file)
        weight_map |= dict.fromkeys(part, file)
    (dst / "pytorch_model.bin.index.json").write_text(json.dumps({"weight_map": weight_map}), encoding="utf-8")
    return dst


@pytest.mark.parametrize("kind", ["int8", "int4"])
@pytest.mark.parametrize("shards", ["fixture", "fp16-bin"])
def test_chatglm3_packed_directly_matches_the_float_path(tmp_path: Path, kind: str, shards: str) -> None:
    """A ChatGLM3 checkpoint packed shard by shard (no converted copy written) gives the logits and greedy tokens
    of the converted bf16 model quantized whole, on the first start and on the cached one."""
    from core.chatglm3 import load_chatglm3_model

    src = FIXTURE if shards == "fixture" else _bin_shards(tmp_path)
    notes: list[str] = []
    first = _load(src, tmp_path / "home", kind, notes)
    assert first.cpu_weights == kind and any("tensor by tensor" in n for n in notes), notes
    assert not (tmp_path / "home" / "cache" / "chatglm3").exists()  # no float copy on disk
    cached = _load(src, tmp_path / "home", kind)
    old = _float_then_packed(load_chatglm3_model(src, dtype=torch.bfloat16, cache_dir=tmp_path / "c"), kind)
    for model in (first.model, cached.model):
        torch.testing.assert_close(_logits(model), _logits(old), rtol=0, atol=0)
        assert _greedy(model) == _greedy(old)
    assert first.codec.prompt_ids([{"role": "user", "content": "hi"}]) == cached.codec.prompt_ids(
        [{"role": "user", "content": "hi"}])


@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_native_directory_packed_directly_matches_the_float_path(tmp_path: Path, family: str) -> None:
    """A Hugging Face directory whose tensors carry the model's names is packed tensor by tensor too (a tied output
    head from the embedding), with the logits of ``from_pretrained`` in bf16 quantized whole."""
    from transformers import AutoModelForCausalLM

    src = make_native_checkpoint(family, tmp_path / family)
    assert packstream.hf_source(src) is not None
    notes: list[str] = []
    first = _load(src, tmp_path / "home", "int8", notes)
    assert any("tensor by tensor" in n for n in notes), notes
    cached = _load(src, tmp_path / "home", "int8")
    old = _float_then_packed(AutoModelForCausalLM.from_pretrained(src, dtype=torch.bfloat16), "int8")
    for model in (first.model, cached.model):
        torch.testing.assert_close(_logits(model), _logits(old), rtol=0, atol=0)
        assert _greedy(model) == _greedy(old)


def _cache_of(home: Path) -> Path:
    return next((home / "cache").rglob("lowbit.json")).parent


def test_a_cache_of_the_previous_layout_still_loads(tmp_path: Path) -> None:
    """A format-3 cache (one model.safetensors, no parts list) loads as it is, with the same logits, no rebuild."""
    from safetensors.torch import save_file

    first = _load(FIXTURE, tmp_path, "int8")
    cache = _cache_of(tmp_path)
    meta = json.loads((cache / "lowbit.json").read_text())
    tensors: dict[str, torch.Tensor] = {}
    for name in meta.pop("files"):
        tensors.update(safeparts.read_safetensors(cache / name))
        (cache / name).unlink()
    save_file(tensors, str(cache / "model.safetensors"))
    (cache / "lowbit.json").write_text(json.dumps({**meta, "format": 3}), encoding="utf-8")
    notes: list[str] = []
    again = _load(FIXTURE, tmp_path, "int8", notes)
    assert not any("rebuilding" in n or "Packing" in n for n in notes), notes
    assert (cache / "model.safetensors").is_file()
    torch.testing.assert_close(_logits(again.model), _logits(first.model), rtol=0, atol=0)


@pytest.mark.parametrize("damage", ["missing part", "garbage header", "truncated", "unknown tensor", "bad entry",
                                    "bad lowbit.json"])
def test_a_damaged_cache_is_rebuilt_with_a_notice(tmp_path: Path, damage: str) -> None:
    """Whatever is wrong with a packed cache, the start says so, packs again and answers as before."""
    first = _load(FIXTURE, tmp_path, "int8")
    cache = _cache_of(tmp_path)
    part = cache / json.loads((cache / "lowbit.json").read_text())["files"][0]
    if damage == "missing part":
        part.unlink()
    elif damage == "garbage header":
        part.write_bytes(b"\xff" * 64)
    elif damage == "truncated":
        part.write_bytes(part.read_bytes()[: part.stat().st_size // 2])
    elif damage == "bad entry":
        header = json.dumps({"x": {"dtype": "I8", "shape": "oops", "data_offsets": [0, 1]}}).encode()
        part.write_bytes(len(header).to_bytes(8, "little") + header + b"\0")
    elif damage == "bad lowbit.json":
        meta = json.loads((cache / "lowbit.json").read_text())
        (cache / "lowbit.json").write_text(json.dumps({**meta, "layers": 5}), encoding="utf-8")
    else:
        from safetensors.torch import save_file

        tensors = dict(safeparts.read_safetensors(part))
        tensors["model.layers.0.not_a_weight"] = torch.zeros(3)
        save_file(tensors, str(part))
    notes: list[str] = []
    again = _load(FIXTURE, tmp_path, "int8", notes)
    assert any("unreadable" in n and "rebuilding" in n for n in notes), notes
    torch.testing.assert_close(_logits(again.model), _logits(first.model), rtol=0, atol=0)
    assert json.loads((cache / "lowbit.json").read_text())["files"]


def test_a_checkpoint_that_does_not_fit_its_config_is_refused(tmp_path: Path) -> None:
    """Weights whose shapes disagree with config.json: one ModelError naming the tensor, and no cache folder."""
    src = tmp_path / "ckpt"
    shutil.copytree(FIXTURE, src)
    cfg = json.loads((src / "config.json").read_text())
    (src / "config.json").write_text(json.dumps({**cfg, "ffn_hidden_size": cfg["ffn_hidden_size"] * 2}))
    with pytest.raises(ModelError, match=r"shapes do not match config\.json: model\.layers\.0\.mlp\.\w+\.weight"):
        _load(src, tmp_path / "home", "int8")
    lowbit = tmp_path / "home" / "cache" / "lowbit"
    assert not lowbit.exists() or not [p for p in lowbit.iterdir() if p.is_dir()]


def test_reader_and_writer_agree_with_safetensors(tmp_path: Path) -> None:
    """Every dtype the caches use comes back equal and 64-byte aligned; a cut file is a ValueError, not a crash."""
    from safetensors.torch import save_file

    gen = torch.Generator().manual_seed(0)
    tensors = {"a": torch.randn(3, 5, generator=gen).to(torch.bfloat16), "b": torch.randint(-127, 127, (7, 9),
               dtype=torch.int8, generator=gen), "c": torch.randint(0, 255, (4,), dtype=torch.uint8, generator=gen),
               "d": torch.randn(2, 2, generator=gen), "e": torch.zeros(0, 4), "f": torch.tensor(3.0)}
    save_file(tensors, str(tmp_path / "x.safetensors"))
    got = dict(safeparts.read_safetensors(tmp_path / "x.safetensors"))
    assert got.keys() == tensors.keys()
    for name, t in tensors.items():
        assert got[name].dtype == t.dtype and torch.equal(got[name], t)
        assert got[name].data_ptr() % 64 == 0 or got[name].numel() == 0
    safeparts.write_safetensors(tmp_path / "ours.safetensors", tensors)  # and what it writes, safetensors reads
    from safetensors.torch import load_file

    back = load_file(str(tmp_path / "ours.safetensors"))
    assert back.keys() == tensors.keys() and all(torch.equal(back[k], t) for k, t in tensors.items())
    raw = (tmp_path / "x.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(raw[:-10])
    with pytest.raises(ValueError, match="truncated"):
        list(safeparts.read_safetensors(tmp_path / "cut.safetensors"))


@pytest.mark.parametrize("kind", ["int8", "int4"])
def test_row_blocks_give_the_same_codes(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Quantizing a weight in blocks of rows gives exactly the codes of quantizing it whole."""
    weight = torch.randn(80, 64, generator=torch.Generator().manual_seed(3)).to(torch.bfloat16)
    whole = (lowbit_layers.quantize_int4 if kind == "int4" else lowbit_layers.quantize_int8)(weight)
    monkeypatch.setattr(packstream, "ROWS_ELEMENTS", 16 * 64)  # blocks of 16 rows
    blocks = packstream.quantize_rows(kind, weight)
    assert blocks.keys() == whole.keys()
    for part in whole:
        assert torch.equal(blocks[part], whole[part]), part


def test_a_cache_that_cannot_be_written_is_a_notice(tmp_path: Path) -> None:
    """Where the packed copy cannot be written the start says so and answers anyway, with the same logits."""
    reference = _load(FIXTURE, tmp_path / "ok", "int8")
    (tmp_path / "home" / "cache").mkdir(parents=True)
    (tmp_path / "home" / "cache" / "lowbit").write_text("not a folder", encoding="utf-8")
    notes: list[str] = []
    loaded = _load(FIXTURE, tmp_path / "home", "int8", notes)
    assert any("Could not cache the int8 weights" in n for n in notes), notes
    torch.testing.assert_close(_logits(loaded.model), _logits(reference.model), rtol=0, atol=0)
