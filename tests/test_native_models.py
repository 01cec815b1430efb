"""Native Hugging Face families (Qwen2.5, Llama-3.1, GLM-4-hf) load from a local directory with their real chat
templates and chat end to end; the memory check refuses a load that will not fit; an out-of-memory during an
answer ends that answer with a clear error and leaves the model usable."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from core.chat.service import Done, Failed
from core.cli import main
from core.config import load_settings
from core.engine import build_engine
from core.errors import ModelError
from core.models import modelinfo as model_inspect
from tests.fixtures_native import make_native_checkpoint

MARKERS = {
    "qwen2": ("<|im_start|>user\nHello there<|im_end|>", "<|im_start|>assistant\n"),
    "llama": ("<|start_header_id|>user<|end_header_id|>\n\nHello there<|eot_id|>",
              "<|start_header_id|>assistant<|end_header_id|>\n\n"),
    "glm": ("<|user|>\nHello there", "<|assistant|>"),
}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("native")
    return {family: make_native_checkpoint(family, root / family) for family in MARKERS}


@pytest.mark.parametrize("family", list(MARKERS))
def test_cli_inspect_prompt_generate(family: str, checkpoints: dict[str, Path], home: Path, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    path = str(checkpoints[family])
    assert main(["model", "inspect", path, "--json"]) == 0
    info = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert info["family"] == family and info["parameters"] > 0 and info["dtype_on_disk"] == "float32"
    assert info["memory_gib"]["4bit"] <= info["memory_gib"]["8bit"] <= info["memory_gib"]["bf16"]

    messages = tmp_path / "m.json"
    messages.write_text(json.dumps([{"role": "system", "content": "Be brief."},
                                    {"role": "user", "content": "Hello there"}]))
    assert main(["model", "prompt", path, "--messages", str(messages), "--json"]) == 0
    prompt = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    user_marker, assistant_marker = MARKERS[family]
    assert user_marker in prompt["text"] and prompt["text"].endswith(assistant_marker)
    assert len(prompt["ids"]) > 5

    assert main(["model", "generate", path, "--messages", str(messages), "--greedy", "--max-new-tokens", "6",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert 1 <= len(out["ids"]) <= 6


@pytest.mark.parametrize("family", list(MARKERS))
def test_chat_turn_streams_and_is_stored(family: str, checkpoints: dict[str, Path], home: Path) -> None:
    engine = build_engine(load_settings({"model": str(checkpoints[family]), "max_new_tokens": 8, "temperature": 0}))
    sid = engine.new_session()
    events = list(engine.service.send(sid, "Hello there"))
    done = events[-1]
    assert isinstance(done, Done) and done.stats.completion_tokens >= 1
    stored = engine.store.messages(sid)[-1]
    assert stored.status == "complete" and stored.content == done.stats.text
    assert engine.backend.count_prompt_tokens([{"role": "user", "content": "Hello there"}]) == done.stats.prompt_tokens


def test_load_that_does_not_fit_is_refused(checkpoints: dict[str, Path], monkeypatch) -> None:  # noqa: ANN001
    info = model_inspect.inspect_directory(checkpoints["llama"])
    bf16_bytes = info.parameters * 2 + model_inspect.OVERHEAD_BYTES
    monkeypatch.setattr(model_inspect, "available_memory", lambda device: bf16_bytes + 1)
    model_inspect.check_fits(info, "cuda", "bfloat16", None)  # fits: no error
    with pytest.raises(ModelError, match=r"in float32 needs about .* GiB but only .* GiB of GPU is free; dtype = "):
        model_inspect.check_fits(info, "cuda", "float32", None)
    monkeypatch.setattr(model_inspect, "available_memory", lambda device: 1)
    with pytest.raises(ModelError, match="of RAM is free; no smaller setting fits"):
        model_inspect.check_fits(info, "cpu", "float32", None)


def test_out_of_memory_ends_the_answer_and_model_stays_usable(checkpoints: dict[str, Path], home: Path) -> None:
    import torch

    engine = build_engine(load_settings({"model": str(checkpoints["qwen2"]), "max_new_tokens": 6, "temperature": 0}))
    sid = engine.new_session()
    calls = {"n": 0}

    def explode(module, args):  # noqa: ANN001, ANN202
        calls["n"] += 1
        if calls["n"] == 3:  # the prompt and one token went through; the next step runs out of memory
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    hook = engine.backend.loaded.model.register_forward_pre_hook(explode)
    events = list(engine.service.send(sid, "Hello there", threading.Event()))
    hook.remove()
    failed = events[-1]
    assert isinstance(failed, Failed) and "ran out of memory" in failed.error and "--quantize 4bit" in failed.error
    user, answer = engine.store.messages(sid)
    assert user.content == "Hello there" and answer.status == "error"
    again = list(engine.service.send(sid, "Hello again"))
    assert isinstance(again[-1], Done) and again[-1].stats.status == "complete"
