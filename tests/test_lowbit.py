"""Low-bit CPU weights (``cpu_weights``): the int4/int8 layers compute what their codes say, a model loaded
with each setting answers through the real backend (streaming, stop), the packed model is cached and reused
(a broken cache is rebuilt), a CPU without the kernels falls back with a notice, LoRA personas work on a
quantized base, and on the bundled SmolLM2 the low-bit settings agree with float32 on teacher-forced tokens.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from core.backends.base import AdapterSpec, Finished, TextDelta
from core.backends.transformers_backend import TransformersBackend
from core.config import GenerationSettings, load_settings
from core.models import lowbit, lowbit_layers
from core.models.loader import load_model
from core.models.registry import resolve
from tests.fixtures_native import make_native_checkpoint

GREEDY = GenerationSettings(temperature=0, max_new_tokens=12, repetition_penalty=1.0)
HELLO = [{"role": "user", "content": "Hello, how are you today?"}]


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama checkpoint (hidden 64: two int4 groups per row)."""
    return make_native_checkpoint("llama", tmp_path_factory.mktemp("lowbit") / "tiny-llama")


def _load(model: Path | str, home: Path, cpu_weights: str, notes: list[str] | None = None):  # noqa: ANN202
    settings = load_settings({"home": str(home), "model": str(model), "device": "cpu", "cpu_weights": cpu_weights})
    return load_model(resolve(str(model)), settings, (notes.append if notes is not None else None))


def _stream(backend: TransformersBackend, stop: threading.Event | None = None, adapter: AdapterSpec | None = None):  # noqa: ANN202
    return list(backend.stream(HELLO, GREEDY, stop or threading.Event(), adapter))


def _logits(loaded, ids: torch.Tensor) -> torch.Tensor:  # noqa: ANN001
    with torch.inference_mode():
        return loaded.model(ids).logits[0].float()


def test_layers_compute_with_their_codes() -> None:
    """y = x W^T for the dequantized W; int8 codes stay within half a step, int4 levels fit better than min..max."""
    gen = torch.Generator().manual_seed(1)
    weight = torch.randn(48, 96, generator=gen)
    x = torch.randn(5, 96, generator=gen).to(torch.bfloat16)
    for kind, quantize in (("int4", lowbit_layers.quantize_int4), ("int8", lowbit_layers.quantize_int8)):
        layer = lowbit_layers.build_layer(kind, quantize(weight), None)
        w_hat = lowbit_layers.dequantize(layer)
        ref = x.float() @ w_hat.t()
        torch.testing.assert_close(layer(x).float(), ref, rtol=0.02, atol=0.05)
        if kind == "int4":
            groups = weight.reshape(48, -1, 32)
            step = ((groups.amax(-1) - groups.amin(-1)) / 15).repeat_interleave(32, dim=1)
            # the fitted levels may clip an outlier, but never by more than a min..max step
            assert ((w_hat - weight).abs() <= step * 1.05 + 0.02).all()
            # and they fit better than levels spread evenly over min..max (rounded to the nearest level)
            lo = groups.amin(-1, keepdim=True)
            spread = ((groups - lo) / (step.reshape(48, -1, 32))).round() * step.reshape(48, -1, 32) + lo
            assert (w_hat - weight).square().sum() < (spread.reshape(48, 96) - weight).square().sum() * 0.95
        else:
            step = (weight.abs().amax(1, keepdim=True) / 127).expand_as(weight)
            assert ((w_hat - weight).abs() <= step * 0.55 + 0.02).all()


def test_int4_grid_weights_are_kept_exactly() -> None:
    """Weights that already sit on a 16-level grid per 32 values (a 4-bit GGUF block) come back to bf16 precision."""
    gen = torch.Generator().manual_seed(2)
    codes = torch.randint(0, 16, (32, 128), generator=gen).float()
    codes[:, ::32], codes[:, 1::32] = 0, 15  # each block uses its whole range, as GGUF blocks do
    scale = torch.rand(32, 4, 1, generator=gen).mul(0.05).add(0.01).repeat_interleave(32, dim=1).reshape(32, 128)
    offset = torch.randn(32, 4, 1, generator=gen).mul(0.1).repeat_interleave(32, dim=1).reshape(32, 128)
    weight = codes * scale + offset
    w_hat = lowbit_layers.dequantize(lowbit_layers.build_layer("int4", lowbit_layers.quantize_int4(weight), None))
    # bf16 rounding of scale/zero and of the kernel's bf16 output only; an off-grid fit would miss by up to scale/2
    assert ((w_hat - weight).abs() <= 0.06 * scale + weight.abs() * 2**-8).all()


@pytest.mark.parametrize("kind", ["int4", "int8", "bf16"])
def test_each_setting_answers_through_the_backend(tiny_llama: Path, tmp_path: Path, kind: str) -> None:
    """A local directory on the CPU loads with the setting and streams an answer that ends with Finished."""
    loaded = _load(tiny_llama, tmp_path, kind)
    assert loaded.cpu_weights == kind and loaded.dtype == "bfloat16"
    layer_types = {type(m) for m in loaded.model.modules()}
    expected = {"int4": lowbit_layers.Int4Linear, "int8": lowbit_layers.Int8Linear, "bf16": torch.nn.Linear}[kind]
    assert expected in layer_types
    if kind != "bf16":
        assert torch.nn.Linear not in {type(m) for m in loaded.model.modules() if type(m) is torch.nn.Linear}
    events = _stream(TransformersBackend(loaded))
    assert isinstance(events[-1], Finished) and events[-1].reason in ("stop", "length", "stopped")
    text = "".join(e.text for e in events if isinstance(e, TextDelta))
    assert events[-1].completion_tokens > 0 and text


def test_stop_event_ends_a_low_bit_answer(tiny_llama: Path, tmp_path: Path) -> None:
    """The stop event is honoured on the int4 path: set before the first token, nothing more is generated."""
    backend = TransformersBackend(_load(tiny_llama, tmp_path, "int4"))
    stop = threading.Event()
    stop.set()
    events = _stream(backend, stop)
    assert events[-1].reason == "stopped" and events[-1].completion_tokens <= 1


def test_fp32_setting_keeps_float32(tiny_llama: Path, tmp_path: Path) -> None:
    """cpu_weights = fp32 is the old behaviour: float32 nn.Linear layers, nothing cached."""
    loaded = _load(tiny_llama, tmp_path, "fp32")
    assert loaded.dtype == "float32" and loaded.cpu_weights is None
    assert not (tmp_path / "cache" / "lowbit").exists()


def test_cache_is_written_then_reused(tiny_llama: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first load writes the packed model (safetensors, no pickles); the second reads it without quantizing."""
    first = _load(tiny_llama, tmp_path, "int4")
    caches = list((tmp_path / "cache" / "lowbit").iterdir())
    assert len(caches) == 1 and caches[0].name.endswith(".int4-g32")
    assert sorted(p.name for p in caches[0].iterdir() if p.suffix in (".safetensors", ".json", ".bin", ".pt")) == [
        "config.json", "generation_config.json", "lowbit.json", "model-00001.safetensors"]
    meta = json.loads((caches[0] / "lowbit.json").read_text())
    assert meta["kind"] == "int4" and meta["files"] == ["model-00001.safetensors"]

    def no_quantizing(*_a: object, **_k: object) -> None:
        raise AssertionError("a cached start must not quantize")

    for name in ("quantize_model", "quantize_int4", "quantize_int8"):
        monkeypatch.setattr(lowbit_layers, name, no_quantizing)
    second = _load(tiny_llama, tmp_path, "int4")
    ids = torch.tensor([[1, 5, 9, 42, 7, 100]])
    torch.testing.assert_close(_logits(second, ids), _logits(first, ids), rtol=0, atol=0)
    assert second.codec.prompt_ids(HELLO) == first.codec.prompt_ids(HELLO)


def test_a_pack_killed_while_writing_leaves_no_folder_behind(tiny_llama: Path, tmp_path: Path) -> None:
    """A half-written copy left by a process that was killed while packing is deleted by the next pack; one of a
    process still running (it may be packing right now) is kept."""
    _load(tiny_llama, tmp_path, "int8")
    cache = next((tmp_path / "cache" / "lowbit").iterdir())
    dead, alive = 4194305, os.getppid()  # above Linux's largest pid; the process that started this test
    for pid in (dead, alive):
        half = cache.with_name(f"{cache.name}.partial{pid}")
        half.mkdir()
        (half / "model.safetensors").write_bytes(b"x" * 1000)
    shutil.rmtree(cache)  # the next start packs again
    _load(tiny_llama, tmp_path, "int8")
    assert sorted(p.name for p in cache.parent.iterdir()) == [cache.name, f"{cache.name}.partial{alive}"]


def test_broken_cache_is_rebuilt_with_a_notice(tiny_llama: Path, tmp_path: Path) -> None:
    """A truncated cache file is reported and replaced; the load still succeeds."""
    first = _load(tiny_llama, tmp_path, "int8")
    cache = next((tmp_path / "cache" / "lowbit").iterdir())
    weights = cache / "model-00001.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    notes: list[str] = []
    again = _load(tiny_llama, tmp_path, "int8", notes)
    assert any("unreadable" in n and "rebuilding" in n for n in notes), notes
    ids = torch.tensor([[3, 4, 5, 6]])
    torch.testing.assert_close(_logits(again, ids), _logits(first, ids), rtol=0, atol=0)
    assert lowbit.load_cache(cache, "int8") is not None


def test_cpu_without_kernels_falls_back_with_a_notice(
    tiny_llama: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """When the int4/int8 kernels are missing the model loads in bf16, says so, and still answers."""
    monkeypatch.setattr(lowbit_layers, "cpu_supports", lambda kind: kind in ("bf16", "fp32"))
    notes: list[str] = []
    loaded = _load(tiny_llama, tmp_path, "int4", notes)
    assert loaded.cpu_weights == "bf16"
    assert any("int4" in n and "bf16" in n for n in notes), notes
    assert isinstance(_stream(TransformersBackend(loaded))[-1], Finished)
    monkeypatch.setattr(lowbit_layers, "cpu_supports", lambda kind: kind == "fp32")
    assert _load(tiny_llama, tmp_path / "b", "int8").dtype == "float32"


def test_this_cpu_probe_is_consistent() -> None:
    """The capability probe answers for every choice without raising; fp32 is always there."""
    answers = {kind: lowbit_layers.cpu_supports(kind) for kind in lowbit.CHOICES}
    assert answers["fp32"] is True
    kind, notice = lowbit.resolve_kind("int4")
    assert (notice is None) == answers["int4"] and answers[kind]


def _make_adapter(base_dir: Path, dest: Path, targets: list[str], scale: float) -> Path:
    """A real PEFT LoRA adapter (random, non-zero B) saved as safetensors."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(3)
    base = AutoModelForCausalLM.from_pretrained(str(base_dir), dtype=torch.float32)
    peft_model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules=targets, init_lora_weights=False))
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "lora_B" in name:
                p.mul_(scale)
    peft_model.save_pretrained(str(dest))
    return dest


def test_lora_persona_on_an_int4_base(tiny_llama: Path, tmp_path: Path) -> None:
    """PEFT wraps the int4 layers; with the adapter the answer equals the same adapter on a float32 model that
    holds the dequantized int4 weights, and "no adapter" gives the bare int4 model back."""
    adapter = _make_adapter(tiny_llama, tmp_path / "persona", ["q_proj", "v_proj", "down_proj"], 1.0)
    loaded = _load(tiny_llama, tmp_path, "int4")
    backend = TransformersBackend(loaded)
    ids = torch.tensor([loaded.codec.prompt_ids(HELLO)])
    bare = _logits(loaded, ids)
    spec = AdapterSpec("persona", adapter)
    with_adapter = _stream(backend, adapter=spec)
    assert isinstance(with_adapter[-1], Finished) and with_adapter[-1].completion_tokens > 0
    from peft.tuners.lora import LoraLayer

    wrapped = [m for m in backend._peft.modules() if isinstance(m, LoraLayer)]
    assert wrapped and all(isinstance(m.get_base_layer(), lowbit_layers.Int4Linear) for m in wrapped)
    with torch.inference_mode():
        backend._peft.set_adapter("persona")
        lora_int4 = backend._peft(ids).logits[0].float()
        with backend._peft.disable_adapter():
            torch.testing.assert_close(backend._peft(ids).logits[0].float(), bare, rtol=0, atol=1e-5)
    assert (lora_int4 - bare).abs().max() > 0.05  # the adapter changes the answer

    # reference: float32 model whose Linear weights are the dequantized int4 ones, plus the same adapter
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    ref = AutoModelForCausalLM.from_pretrained(str(tiny_llama), dtype=torch.float32)
    for name, module in loaded.model.named_modules():
        if isinstance(module, (lowbit_layers.Int4Linear, lowbit_layers.Int8Linear)):
            ref.get_submodule(name.replace(".base_layer", "")).weight.data = lowbit_layers.dequantize(module)
    ref.get_input_embeddings().weight.data = loaded.model.get_input_embeddings().weight.float()
    ref = PeftModel.from_pretrained(ref, str(adapter)).eval()
    with torch.inference_mode():
        lora_ref = ref(ids).logits[0].float()
    assert (lora_int4.argmax(-1) == lora_ref.argmax(-1)).float().mean() >= 0.9
    assert (lora_int4 - lora_ref).abs().max() < 0.05 * lora_ref.abs().max() + 0.05


# -- real weights: the bundled SmolLM2 ------------------------------------------------------------------------

TEACHER = [
    ("The capital of France is", " Paris, a city known for its museums, its cafés and the Eiffel Tower."),
    ("def add(a, b):\n", "    return a + b\n\n\ndef sub(a, b):\n    return a - b\n"),
    ("Water boils at", " 100 degrees Celsius at sea level, and it freezes at 0 degrees Celsius."),
    ("The days of the week are Monday,", " Tuesday, Wednesday, Thursday, Friday, Saturday and Sunday."),
]


@pytest.fixture(scope="module")
def smollm2_home(tmp_path_factory: pytest.TempPathFactory, smollm2_cached: Callable[..., None]) -> Path:
    """One data dir for the SmolLM2 tests, holding the float copy converted once per run (tests/model_cache.py);
    the int4/int8 copies are packed from it here."""
    home = tmp_path_factory.mktemp("smollm2-lowbit")
    smollm2_cached(home, "float")
    return home


def _agreement(a, b, tok) -> float:  # noqa: ANN001
    """Share of teacher-forced answer tokens where models ``a`` and ``b`` have the same top-1 next token."""
    agree = total = 0
    for prompt, answer in TEACHER:
        ids = torch.tensor([tok(prompt + answer)["input_ids"]])
        start = len(tok(prompt)["input_ids"]) - 1
        with torch.inference_mode():
            la, lb = a(ids).logits[0, start:-1].float(), b(ids).logits[0, start:-1].float()
        agree += int((la.argmax(-1) == lb.argmax(-1)).sum())
        total += la.shape[0]
    return agree / total


@pytest.mark.slow
def test_smollm2_low_bit_agrees_with_fp32(smollm2_home: Path) -> None:
    """Teacher-forced next-token top-1 of int4/int8/bf16 agrees with float32 on at least 90% of answer tokens,
    and the cached int4 model's greedy answer to a factual question names the fact."""
    fp32 = _load("smollm2-135m", smollm2_home, "fp32")
    tok = fp32.codec.tokenizer
    for kind in ("int4", "int8", "bf16"):
        low = _load("smollm2-135m", smollm2_home, kind)
        assert low.cpu_weights == kind
        assert _agreement(low.model, fp32.model, tok) >= 0.9, kind
    int4 = _load("smollm2-135m", smollm2_home, "int4")
    assert int4.from_cache
    ask = [{"role": "user", "content": "Which city is the capital of France? Answer with the city name."}]
    text = "".join(e.text for e in TransformersBackend(int4).stream(ask, GREEDY, threading.Event())
                   if isinstance(e, TextDelta))
    assert "Paris" in text, text


@pytest.mark.slow
def test_smollm2_lora_on_int4_matches_fp32_with_lora(smollm2_home: Path, tmp_path: Path) -> None:
    """A real PEFT adapter (small random LoRA on q/v/down) answers through the backend on the int4 base; with it
    active, int4 and float32 agree on teacher-forced top-1 tokens, and it visibly changes the int4 logits."""
    fp32 = _load("smollm2-135m", smollm2_home, "fp32")
    int4 = _load("smollm2-135m", smollm2_home, "int4")
    conv = next(p for p in (smollm2_home / "cache" / "models").iterdir() if p.suffix == "" and p.is_dir())
    spec = AdapterSpec("persona", _make_adapter(conv, tmp_path / "persona", ["q_proj", "v_proj", "down_proj"], 0.05))
    ask = [{"role": "user", "content": "Name three colours of the rainbow."}]
    backends = {name: TransformersBackend(loaded) for name, loaded in (("fp32", fp32), ("int4", int4))}
    for backend in backends.values():
        events = list(backend.stream(ask, GREEDY, threading.Event(), spec))
        assert isinstance(events[-1], Finished) and events[-1].completion_tokens > 0
        backend._peft.set_adapter("persona")
    p32, p4 = backends["fp32"]._peft, backends["int4"]._peft
    assert _agreement(p4, p32, fp32.codec.tokenizer) >= 0.85
    ids = torch.tensor([fp32.codec.prompt_ids(ask)])
    with torch.inference_mode():
        lora4 = p4(ids).logits[0, -4:].float()
        with p4.disable_adapter():
            bare4 = p4(ids).logits[0, -4:].float()
    assert (lora4 - bare4).abs().max() > 0.1


def test_inspect_shows_memory_of_each_choice(tiny_llama: Path, tmp_path: Path) -> None:
    """model inspect lists the weights' memory per cpu_weights choice, smallest for int4, and counts the
    parameters of a loaded int4 model like those of the float32 one."""
    from core.models.modelinfo import inspect_directory, inspect_loaded

    info = inspect_directory(tiny_llama)
    mem = info.cpu_weights_gib
    assert list(mem) == list(lowbit.CHOICES)
    assert mem["fp32"] == round(info.parameters * 4 / 1024**3, 2)
    assert mem["int4"] <= mem["int8"] <= mem["bf16"] <= mem["fp32"]
    big = lowbit.memory_gib(7_000_000_000, 0, type("C", (), {"vocab_size": 150_000, "hidden_size": 4096}))
    assert big["int4"] < big["int8"] < big["bf16"] < big["fp32"] and big["int4"] < big["fp32"] / 4
    assert inspect_loaded(_load(tiny_llama, tmp_path, "int4")).parameters == info.parameters


@pytest.mark.slow
def test_bundled_first_start_caches_only_the_packed_model(tmp_path: Path) -> None:
    """A bundled model's first start with int8 weights caches the packed copy with its tokenizer and no float32
    copy (nor the assembled GGUF); the next start loads it from that cache with the same logits, and a later
    fp32 start still converts its own copy."""
    first = _load("smollm2-135m", tmp_path, "int8")
    assert first.cpu_weights == "int8" and not first.from_cache
    models = tmp_path / "cache" / "models"
    names = sorted(p.name for p in models.iterdir())
    assert len(names) == 1 and names[0].endswith(".int8"), names
    assert (models / names[0] / "tokenizer_config.json").is_file()
    assert not any((tmp_path / "cache" / "gguf").glob("*.gguf"))
    again = _load("smollm2-135m", tmp_path, "int8")
    assert again.from_cache and again.cpu_weights == "int8"
    ids = torch.tensor([first.codec.tokenizer("The capital of France is")["input_ids"]])
    torch.testing.assert_close(_logits(again, ids), _logits(first, ids))
    fp32 = _load("smollm2-135m", tmp_path, "fp32")
    assert fp32.dtype == "float32" and len(list(models.iterdir())) == 2
