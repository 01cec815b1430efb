"""bitsandbytes 4-bit (nf4) and 8-bit through the app's own load path on the CPU: a tiny Llama and the ChatGLM3 test
checkpoint load with ``quantize``, their linear layers are bitsandbytes modules, and a chat turn answers.

bitsandbytes' CPU 4-bit kernel needs layer widths that are multiples of its 64-value block (every real checkpoint's
are; a tiny fixture's FFN of 96 is not), so the ChatGLM3 checkpoint here is the fixture reshaped to hidden 64,
4 heads, 2 kv groups and FFN 128."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.chat.service import Done
from core.config import load_settings
from core.engine import build_engine
from tests.chatglm3_fixture import write_reference_checkpoint
from tests.fixtures_native import make_native_checkpoint


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_native_checkpoint("llama", tmp_path_factory.mktemp("llama") / "tiny-llama")


@pytest.fixture(scope="module")
def chatglm3_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_reference_checkpoint(tmp_path_factory.mktemp("glm") / "chatglm3-64", hidden_size=64,
                                      num_attention_heads=4, multi_query_group_num=2, ffn_hidden_size=128,
                                      max_new_tokens=1)


@pytest.mark.parametrize("quantize", ["4bit", "8bit"])
@pytest.mark.parametrize("which", ["chatglm3", "llama"])
def test_quantized_load_and_chat_on_cpu(which: str, quantize: str, llama_dir: Path, chatglm3_dir: Path,
                                        home: Path) -> None:
    import bitsandbytes as bnb

    path = chatglm3_dir if which == "chatglm3" else llama_dir
    notes: list[str] = []
    settings = load_settings({"model": str(path), "device": "cpu", "quantize": quantize, "max_new_tokens": 6,
                              "temperature": 0})
    engine = build_engine(settings, progress=notes.append)
    kind = bnb.nn.Linear4bit if quantize == "4bit" else bnb.nn.Linear8bitLt
    quantized = [m for m in engine.backend.loaded.model.modules() if isinstance(m, kind)]
    assert quantized and all(m.weight.device.type == "cpu" for m in quantized)
    assert any("on the CPU" in n and quantize in n for n in notes), notes
    sid = engine.new_session()
    events = list(engine.service.send(sid, "Hello"))
    assert isinstance(events[-1], Done) and events[-1].stats.completion_tokens >= 1
    assert engine.store.messages(sid)[-1].status == "complete"
