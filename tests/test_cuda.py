"""CUDA paths (skipped without a GPU): bf16, bitsandbytes 4-bit (nf4) and 8-bit loads of the ChatGLM3 fixture and
of a tiny Llama, each answering a chat turn; bf16 logits of the fixture stay close to the fp32 reference (bound from
``tests/chatglm3_fixture.py``: bf16 arithmetic, or the fixture's dtype on disk if that is coarser). The same loads
with ``quantize`` on the CPU run everywhere in ``tests/test_quantized_cpu.py``; these check the CUDA placement."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.chat.service import Done
from core.config import load_settings
from core.engine import build_engine
from tests.chatglm3_fixture import FIXTURE, fixture_reference, logits_bound, relative_tolerance
from tests.fixtures_native import make_native_checkpoint

pytestmark = pytest.mark.cuda


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_native_checkpoint("llama", tmp_path_factory.mktemp("llama") / "tiny-llama")


def models(llama_dir: Path) -> dict[str, Path]:
    if not FIXTURE.is_dir():
        pytest.skip(f"ChatGLM3 fixture not found at {FIXTURE}")
    return {"chatglm3": FIXTURE, "llama": llama_dir}


@pytest.mark.parametrize("quantize", [None, "4bit", "8bit"])
@pytest.mark.parametrize("which", ["chatglm3", "llama"])
def test_cuda_load_and_chat(which: str, quantize: str | None, llama_dir: Path, home: Path) -> None:
    import torch

    path = models(llama_dir)[which]
    settings = load_settings({"model": str(path), "device": "cuda", "quantize": quantize, "max_new_tokens": 8,
                              "temperature": 0})
    engine = build_engine(settings)
    loaded = engine.backend.loaded
    assert loaded.device == "cuda" and next(engine.backend.loaded.model.parameters()).is_cuda
    if quantize is None:
        assert loaded.dtype == ("bfloat16" if torch.cuda.is_bf16_supported() else "float16")
    else:
        import bitsandbytes as bnb

        kind = bnb.nn.Linear4bit if quantize == "4bit" else bnb.nn.Linear8bitLt
        assert any(isinstance(m, kind) for m in engine.backend.loaded.model.modules())
    sid = engine.new_session()
    events = list(engine.service.send(sid, "Hello"))
    assert isinstance(events[-1], Done) and events[-1].stats.completion_tokens >= 1
    print(f"{which} {quantize or loaded.dtype}: {events[-1].stats.tokens_per_s:.1f} tokens/s, "
          f"{torch.cuda.max_memory_allocated() / 2**20:.0f} MiB peak")


def test_cuda_bf16_logits_close_to_reference(home: Path) -> None:
    import torch

    from core.chatglm3 import load_chatglm3_model

    if not FIXTURE.is_dir():
        pytest.skip(f"ChatGLM3 fixture not found at {FIXTURE}")
    reference = fixture_reference()
    rel = relative_tolerance(compute=torch.bfloat16)
    model = load_chatglm3_model(FIXTURE, dtype=torch.bfloat16, device_map="cuda", cache_dir=home / "glm")
    for case in reference["cases"]:
        ids = torch.tensor([case["prompt_ids"]], device="cuda")
        with torch.inference_mode():
            out = model(input_ids=ids).logits[0].float().cpu()
        expected = reference["logits"][case["logits_key"]]
        assert (out - expected).abs().max() <= logits_bound(expected, rel)
        assert (out.argmax(-1) == expected.argmax(-1)).float().mean() > 0.9
