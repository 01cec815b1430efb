"""Loading ChatGLM3 checkpoints as native ``GlmForCausalLM`` and reproducing the original implementation.

Checks, for the fixture and for ChatGLM3-format variants built from it in tmp dirs (sharded ``.bin`` +
index, fp16 ``.bin``, sharded safetensors + index, bf16 safetensors): logits of every reference case
(tolerance from the dtype the weights went through on disk: 1e-4 fp32, 2e-3 fp16, 5e-2 bf16, see
``tests/chatglm3_fixture.py``), the 16 greedy ids, the decoded ``greedy_text``, the dtype on disk being
kept, and the converted weights being bit-identical to the source. Also: the conversion cache (reuse,
re-conversion on change, atomic writes, stale entries pruned) and that no file from the checkpoint
directory is ever executed (booby-trapped ``*.py`` + ``auto_map``). Works for any ChatGLM3-format fixture
(``CHATGLM3_FIXTURE``): single or sharded, ``.bin`` or safetensors, fp32/fp16/bf16, any sizes.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from tests.chatglm3_fixture import (
    FIXTURE,
    disk_dtype,
    dtype_name,
    fixture_config,
    fixture_reference,
    logits_bound,
    relative_tolerance,
)


@pytest.fixture(scope="module")
def ref() -> dict:
    return fixture_reference()


@pytest.fixture(scope="module")
def tok():
    from core.chatglm3 import ChatGLM3Tokenizer

    return ChatGLM3Tokenizer(FIXTURE)


@pytest.fixture(scope="module")
def source_state() -> dict[str, torch.Tensor]:
    from core.chatglm3 import read_chatglm3_state_dict

    return read_chatglm3_state_dict(FIXTURE)


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("chatglm3-cache")


def _strip_stop(ids: list[int], stop: list[int]) -> list[int]:
    return ids[:-1] if ids and ids[-1] in stop else ids


def reference_margins(model32, ids: torch.Tensor, want: list[int]) -> list[float]:
    """Top-2 logit margin of each greedy step of the reference answer, teacher-forced through an fp32 model that
    matches the reference logits: step 0 comes from the prompt, step j from prompt + want[:j]."""
    with torch.no_grad():
        logits = model32(torch.cat([ids, torch.tensor([want[:-1]], dtype=ids.dtype)], 1)).logits[0].float()
    top2 = logits[ids.shape[1] - 1:].topk(2, dim=-1).values
    return (top2[:, 0] - top2[:, 1]).tolist()


def check_against_reference(model, tok, ref: dict, relative: float, *, greedy: bool = True,
                            margins_from=None) -> None:
    """Logits of every case within ``relative`` x their scale; greedy ids and their text.

    Without ``margins_from`` (fp32) the greedy ids must match exactly. With it (an fp32 model of the same
    checkpoint), ids are compared only up to the first step whose reference top-2 margin is within twice the bound,
    where rounding may flip a near-tie; the text is compared when every id was.
    """
    for i, case in enumerate(ref["cases"]):
        ids = torch.tensor([tok.prompt_ids(case["messages"])])
        assert ids[0].tolist() == case["prompt_ids"]
        with torch.no_grad():
            logits = model(ids).logits[0].float()
        expected = ref["logits"][case["logits_key"]]
        assert logits.shape == expected.shape
        tol = logits_bound(expected, relative)
        err = (logits - expected).abs().max().item()
        assert err <= tol, f"case {i}: max |logit diff| {err:.2e} > {tol:.2e}"
        if not greedy:
            continue
        out = model.generate(ids, do_sample=False, max_new_tokens=16, eos_token_id=tok.stop_ids,
                             pad_token_id=tok.pad_token_id)
        new = _strip_stop(out[0, ids.shape[1]:].tolist(), tok.stop_ids)
        want = _strip_stop(case["greedy_new_ids"], tok.stop_ids)
        steps = len(want)
        if margins_from is not None:
            margins = reference_margins(margins_from, ids, case["greedy_new_ids"])
            steps = next((j for j, m in enumerate(margins) if m <= 2 * tol), len(margins))
        assert new[:steps] == want[:steps], f"case {i} (first {steps} ids, clear of near-ties)"
        if steps >= len(case["greedy_new_ids"]):
            assert new == want, f"case {i}"
            assert tok.decode(out[0, ids.shape[1]:].tolist()) == case["greedy_text"]


def converted_weight_files(dst: Path) -> list[Path]:
    """The safetensors files of a converted directory: ``model.safetensors``, or shards named by the index."""
    index = dst / "model.safetensors.index.json"
    if index.is_file():
        assert not (dst / "model.safetensors").exists()
        names = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
        assert names and all(n.startswith("model-") and n.endswith(".safetensors") for n in names)
        return [dst / n for n in names]
    return [dst / "model.safetensors"]


def test_fixture_matches_reference(tok, ref, cache) -> None:
    from transformers import GlmForCausalLM

    from core.chatglm3 import load_chatglm3_model

    model = load_chatglm3_model(FIXTURE, cache_dir=cache, dtype=torch.float32)
    assert type(model) is GlmForCausalLM
    check_against_reference(model, tok, ref, relative_tolerance())


def test_fixture_keeps_dtype_on_disk(cache) -> None:
    from core.chatglm3 import converted_checkpoint_dir, load_chatglm3_model
    from core.chatglm3.weights import weight_files

    model = load_chatglm3_model(FIXTURE, cache_dir=cache)
    assert dtype_name(model.dtype) == disk_dtype(), "dtype=None must keep the dtype on disk"
    dst = converted_checkpoint_dir(FIXTURE, cache)
    files = converted_weight_files(dst)
    assert all(f.is_file() for f in files)
    assert len(files) == len(weight_files(FIXTURE)), "one converted shard per source shard"


def _copy_meta(dst: Path) -> Path:
    dst.mkdir(parents=True)
    for name in ("config.json", "tokenizer.model", "tokenizer_config.json", "generation_config.json"):
        if (FIXTURE / name).is_file():
            shutil.copy(FIXTURE / name, dst / name)
    return dst


def make_variant(state: dict[str, torch.Tensor], dst: Path, fmt: str, shards: int,
                 dtype: torch.dtype) -> Path:
    """Write ``state`` as a ChatGLM3-format checkpoint: fmt "bin" or "safetensors", 1 or N shards."""
    from safetensors.torch import save_file

    _copy_meta(dst)
    names = sorted(state)
    parts = [names[i::shards] for i in range(shards)]
    weight_map = {}
    for i, part in enumerate(parts):
        tensors = {k: state[k].to(dtype).contiguous() for k in part}
        if fmt == "bin":
            name = f"pytorch_model-{i + 1:05d}-of-{shards:05d}.bin" if shards > 1 else "pytorch_model.bin"
            torch.save(tensors, dst / name)
        else:
            name = f"model-{i + 1:05d}-of-{shards:05d}.safetensors" if shards > 1 else "model.safetensors"
            save_file(tensors, str(dst / name), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(part, name))
    if shards > 1:
        index = "pytorch_model.bin.index.json" if fmt == "bin" else "model.safetensors.index.json"
        (dst / index).write_text(json.dumps({"metadata": {}, "weight_map": weight_map}), encoding="utf-8")
    return dst


VARIANTS = {
    "sharded_bin": ("bin", 2, torch.float32),
    "fp16_bin": ("bin", 1, torch.float16),
    "sharded_safetensors": ("safetensors", 2, torch.float32),
    "bf16_safetensors": ("safetensors", 1, torch.bfloat16),
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_variant_checkpoints_load(variant, tok, ref, cache, source_state, tmp_path) -> None:
    from core.chatglm3 import load_chatglm3_model
    from core.chatglm3.weights import convert_chatglm3_state_dict

    fmt, shards, dtype = VARIANTS[variant]
    src = make_variant(source_state, tmp_path / variant, fmt, shards, dtype)
    cfg = json.loads((src / "config.json").read_text(encoding="utf-8"))
    model = load_chatglm3_model(src, cache_dir=cache)
    assert model.dtype == dtype, "dtype=None must keep the dtype on disk"
    # The converted weights are exactly the source weights in that dtype, renamed/split.
    expected = convert_chatglm3_state_dict({k: v.to(dtype) for k, v in source_state.items()}, cfg)
    got = model.state_dict()
    assert set(expected) == set(got)
    for name, tensor in expected.items():
        assert torch.equal(got[name], tensor), name
    # The weights went through the fixture's dtype on disk, then this variant's dtype.
    rel = relative_tolerance(disk_dtype(), dtype)
    if dtype == torch.float32:
        check_against_reference(model, tok, ref, rel)
        return
    # Rounded weights: compute in fp32 against the reference, and in the disk dtype on top.
    model32 = load_chatglm3_model(src, cache_dir=cache, dtype=torch.float32)
    reference32 = load_chatglm3_model(FIXTURE, cache_dir=cache, dtype=torch.float32)
    check_against_reference(model32, tok, ref, rel, margins_from=reference32)
    check_against_reference(model, tok, ref, relative_tolerance(disk_dtype(), dtype, compute=dtype),
                            margins_from=reference32)


def _touch_weights(src: Path) -> None:
    """Move the mtime of the checkpoint's (first) weight file one second on."""
    from core.chatglm3.weights import weight_files

    weights = weight_files(src)[0]
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 10**9))


def test_conversion_cache_reuse_invalidation_and_atomicity(ref, cache, tmp_path, monkeypatch) -> None:
    from core.chatglm3 import convert, converted_checkpoint_dir, load_chatglm3_model

    src = tmp_path / "ckpt"
    shutil.copytree(FIXTURE, src)
    cache_dir = tmp_path / "cache"
    load_chatglm3_model(src, cache_dir=cache_dir)
    first = converted_checkpoint_dir(src, cache_dir)
    assert (first / convert.MARKER).is_file() and all(f.is_file() for f in converted_weight_files(first))
    config = json.loads((first / "config.json").read_text(encoding="utf-8"))
    assert config["model_type"] == "glm" and "auto_map" not in config
    assert config["max_position_embeddings"] == fixture_config()["seq_length"]
    gen = json.loads((first / "generation_config.json").read_text(encoding="utf-8"))
    special = ref["special_ids"]
    assert gen["eos_token_id"] == [ref["eos_token_id"], special["<|user|>"], special["<|observation|>"]]
    assert [p.name for p in cache_dir.iterdir()] == [first.name], "no temp dirs may be left behind"

    def refuse(*args, **kwargs):
        raise AssertionError("a cached conversion must be reused")

    monkeypatch.setattr(convert, "_write_converted", refuse)
    load_chatglm3_model(src, cache_dir=cache_dir)
    monkeypatch.undo()

    _touch_weights(src)
    second = converted_checkpoint_dir(src, cache_dir)
    assert second != first
    load_chatglm3_model(src, cache_dir=cache_dir)
    assert second.is_dir() and not first.exists(), "the stale conversion of the same source is pruned"


def test_default_cache_dir_under_inkstone_home(home, tmp_path) -> None:
    from core.chatglm3 import converted_checkpoint_dir, default_cache_dir

    assert default_cache_dir() == home / "cache" / "chatglm3"
    assert converted_checkpoint_dir(FIXTURE).parent == home / "cache" / "chatglm3"


def test_checkpoint_code_is_never_executed(tok, ref, tmp_path, monkeypatch) -> None:
    import transformers
    from transformers import GlmForCausalLM

    from core.chatglm3 import load_chatglm3_model

    src = tmp_path / "trapped"
    shutil.copytree(FIXTURE, src)
    sentinel = tmp_path / "EXECUTED"
    trap = f"open({str(sentinel)!r}, 'w').write('checkpoint code ran')\nraise RuntimeError('trap')\n"
    for name in ("configuration_chatglm.py", "modeling_chatglm.py", "tokenization_chatglm.py"):
        (src / name).write_text(trap, encoding="utf-8")
    cfg = json.loads((src / "config.json").read_text(encoding="utf-8"))
    assert "auto_map" in cfg  # the fixture keeps the hub's auto_map, pointing at the trapped files

    def no_dynamic(*args, **kwargs):
        raise AssertionError("dynamic (remote) code loading was attempted")

    monkeypatch.setattr(transformers.dynamic_module_utils, "get_class_from_dynamic_module", no_dynamic)
    seen: list[dict] = []
    original = GlmForCausalLM.from_pretrained.__func__

    def spy(cls, *args, **kwargs):
        seen.append(kwargs)
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(GlmForCausalLM, "from_pretrained", classmethod(spy))
    model = load_chatglm3_model(src, cache_dir=tmp_path / "cache")
    assert seen and all(not kw.get("trust_remote_code") for kw in seen)
    assert not sentinel.exists()
    check_against_reference(model, tok, ref, relative_tolerance(disk_dtype(), compute=model.dtype), greedy=False)


@pytest.mark.cuda
def test_bitsandbytes_4bit_on_cuda(tok, ref, cache) -> None:
    from transformers import BitsAndBytesConfig

    from core.chatglm3 import load_chatglm3_model

    quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_compute_dtype=torch.float16)
    model = load_chatglm3_model(FIXTURE, cache_dir=cache, device_map="cuda", quantization_config=quant)
    case = ref["cases"][0]
    ids = torch.tensor([case["prompt_ids"]], device="cuda")
    with torch.no_grad():
        logits = model(ids).logits[0].float().cpu()
    # 4-bit random weights: exact agreement with the fp32 reference is not expected, only a working model.
    assert logits.shape == ref["logits"][case["logits_key"]].shape and torch.isfinite(logits).all()
    out = model.generate(ids, do_sample=False, max_new_tokens=4, eos_token_id=tok.stop_ids)
    assert out.shape[1] > ids.shape[1]


def test_explicit_convert_is_idempotent_replaces_stale_and_refuses_foreign_dirs(tmp_path) -> None:
    from core.chatglm3 import convert_chatglm3_checkpoint
    from core.chatglm3.convert import MARKER
    from core.errors import ModelError

    src = tmp_path / "ckpt"
    shutil.copytree(FIXTURE, src)
    dst = convert_chatglm3_checkpoint(src, tmp_path / "out")
    marker = json.loads((dst / MARKER).read_text(encoding="utf-8"))
    assert marker["dtype"] == disk_dtype(src)
    files = converted_weight_files(dst)
    written = [f.stat().st_mtime_ns for f in files]
    assert convert_chatglm3_checkpoint(src, dst) == dst
    assert [f.stat().st_mtime_ns for f in files] == written, "same source: nothing rewritten"
    _touch_weights(src)
    convert_chatglm3_checkpoint(src, dst)
    assert json.loads((dst / MARKER).read_text(encoding="utf-8"))["fingerprint"] != marker["fingerprint"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt", "out"], "no temp/old dirs left"
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("x", encoding="utf-8")
    with pytest.raises(ModelError, match="not a converted ChatGLM3 checkpoint"):
        convert_chatglm3_checkpoint(src, foreign)
    assert (foreign / "keep.txt").is_file()
