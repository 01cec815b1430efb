"""Vision-language models (tiny random Qwen2-VL, LLaVA, SmolVLM and GLM-4V checkpoints built here) through
Inkstone's transformers backend behind the fair queue: greedy answer ids equal transformers' own ``generate`` on
the processor's inputs, Stop ends an answer, a LoRA persona on the language model changes the answer and "no
adapter" restores it, seeds repeat, a 1024 x 768 picture works, the prompt count grows with pictures (and equals
what the processor builds), and ``model inspect`` says which models take pictures."""

from __future__ import annotations

import io
import json
import threading
from pathlib import Path
from typing import Any

import pytest

from core.backends import create_backend
from core.backends.base import AdapterSpec, Finished, TextDelta
from core.cli import main
from core.config import GenerationSettings, load_settings
from core.generation.scheduler import queued
from core.images import ImageInput, read_image
from core.models.registry import resolve
from core.models.vision import as_parts, language_lora_targets, load_processor
from tests.fixtures_native import make_native_checkpoint
from tests.vlm_fixture import make_vlm_checkpoint

KINDS = ["qwen2_vl", "llava", "smolvlm", "glm4v"]
GREEDY = GenerationSettings().with_updates(temperature=0, repetition_penalty=1.0, max_new_tokens=8,
                                           prompt_lookup="off")


def picture(width: int, height: int, color: tuple[int, int, int] = (200, 30, 40), name: str = "p.png") -> ImageInput:
    """A checked PNG picture with a gradient (so the pixels matter)."""
    from PIL import Image

    image = Image.new("RGB", (width, height), color)
    for x in range(0, width, max(1, width // 16)):
        for y in range(height):
            image.putpixel((x, y), (x % 256, y % 256, 90))
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return read_image(buf.getvalue(), name)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("vlm")
    return {kind: make_vlm_checkpoint(kind, root / kind) for kind in KINDS}


@pytest.fixture(scope="module")
def backends(checkpoints: dict[str, Path]) -> dict[str, Any]:
    settings = load_settings({"device": "cpu"})
    return {kind: queued(create_backend(resolve(str(path)), settings)) for kind, path in checkpoints.items()}


def answer(backend: Any, messages: list[dict[str, Any]], settings: GenerationSettings = GREEDY,
           **kwargs: Any) -> tuple[str, Finished]:
    events = list(backend.stream(messages, settings, threading.Event(), **kwargs))
    assert isinstance(events[-1], Finished)
    return "".join(e.text for e in events if isinstance(e, TextDelta)), events[-1]


def reference_ids(path: Path, messages: list[dict[str, Any]], max_new_tokens: int = 8) -> list[int]:
    """transformers alone: the model's processor renders and preprocesses, ``model.generate`` decodes greedily."""
    import torch
    from transformers import AutoModelForImageTextToText

    processor = load_processor(path)
    model = AutoModelForImageTextToText.from_pretrained(str(path))
    parts, images = as_parts(messages)
    text = processor.apply_chat_template(parts, add_generation_prompt=True, tokenize=False)
    inputs = processor(text=[text], images=[i.pil() for i in images] or None, return_tensors="pt")
    with torch.inference_mode():
        out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    return out[0, inputs["input_ids"].shape[1]:].tolist()


@pytest.mark.parametrize("kind", KINDS)
def test_greedy_ids_equal_transformers_generate(kind: str, checkpoints: dict[str, Path],
                                                backends: dict[str, Any]) -> None:
    backend = backends[kind]
    assert backend.capabilities.images and backend.loaded.images
    messages = [{"role": "system", "content": "Describe pictures."},
                {"role": "user", "content": "What is in this picture?", "images": [picture(1024, 768)]}]
    expected = reference_ids(checkpoints[kind], messages)
    ids = backend.generate_ids(messages, GREEDY)
    assert ids == expected
    other = [messages[0], {**messages[1], "images": [picture(300, 500, (10, 200, 30))]}]
    assert backend.generate_ids(other, GREEDY) != ids  # the pixels reach the model
    text, done = answer(backend, messages)
    stop = set(backend.loaded.codec.stop_ids)
    assert text == backend.loaded.codec.decode([i for i in expected if i not in stop])
    assert done.prompt_tokens == backend.count_prompt_tokens(messages)
    assert done.completion_tokens == len(expected) and done.ttft_s is not None and done.ttft_s > 0
    # text-only messages to the same model: the same ids as transformers too
    plain = [{"role": "user", "content": "Hello there"}]
    assert backend.generate_ids(plain, GREEDY) == reference_ids(checkpoints[kind], plain)


@pytest.mark.parametrize("kind", KINDS)
def test_prompt_count_includes_image_tokens(kind: str, backends: dict[str, Any]) -> None:
    backend = backends[kind]
    text = [{"role": "user", "content": "What is this?"}]
    one = [{**text[0], "images": [picture(1024, 768)]}]
    two = [{**text[0], "images": [picture(1024, 768), picture(64, 48, name="small.png")]}]
    counts = [backend.count_prompt_tokens(m) for m in (text, one, two)]
    assert counts[0] < counts[1] < counts[2]
    # the per-size shortcut counts exactly what the processor builds, history included
    history = [*two, {"role": "assistant", "content": "Two pictures."}, {**one[0], "content": "And this?"}]
    for messages in (one, two, history):
        assert backend.count_prompt_tokens(messages) == len(backend.loaded.codec.prompt_ids(messages))
    if kind == "qwen2_vl":  # dynamic resolution: a bigger picture costs more tokens
        assert counts[1] - counts[0] > counts[2] - counts[1]


@pytest.mark.parametrize("kind", KINDS)
def test_stop_ends_a_picture_answer(kind: str, backends: dict[str, Any]) -> None:
    backend = backends[kind]
    messages = [{"role": "user", "content": "Tell me everything.", "images": [picture(1024, 768)]}]
    stop = threading.Event()
    settings = GREEDY.with_updates(max_new_tokens=400)
    events = []
    for event in backend.stream(messages, settings, stop):
        events.append(event)
        stop.set()
    done = events[-1]
    assert isinstance(done, Finished) and done.reason == "stopped" and done.completion_tokens < 400
    assert not backend.busy  # the queue and the lock are free again
    assert backend.generate_ids(messages, GREEDY)  # and the model still answers


@pytest.mark.parametrize("kind", KINDS)
def test_seed_repeats_a_sampled_answer(kind: str, backends: dict[str, Any]) -> None:
    backend = backends[kind]
    messages = [{"role": "user", "content": "Guess.", "images": [picture(320, 240)]}]
    sampled = GREEDY.with_updates(temperature=1.5, top_p=1.0, top_k=0, max_new_tokens=12)
    assert answer(backend, messages, sampled, seed=7)[0] == answer(backend, messages, sampled, seed=7)[0]


def make_lora(path: Path, out: Path) -> Path:
    """A LoRA adapter on the language model's projections only, with weights large enough to change answers."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForImageTextToText

    model = AutoModelForImageTextToText.from_pretrained(str(path))
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=language_lora_targets(model)))
    torch.manual_seed(1)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 2.0)
    peft_model.save_pretrained(out)
    return out


@pytest.mark.parametrize("kind", KINDS)
def test_lora_persona_changes_the_answer(kind: str, checkpoints: dict[str, Path], backends: dict[str, Any],
                                         tmp_path: Path) -> None:
    from safetensors import safe_open

    adapter_dir = make_lora(checkpoints[kind], tmp_path / "persona")
    with safe_open(str(adapter_dir / "adapter_model.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert keys and all("language_model" in k or "text_model" in k for k in keys)  # the vision tower is left alone
    backend = backends[kind]
    messages = [{"role": "user", "content": "What is this?", "images": [picture(1024, 768)]}]
    base, _ = answer(backend, messages)
    persona, done = answer(backend, messages, adapter=AdapterSpec("painter", adapter_dir))
    assert persona != base and done.reason in ("stop", "length")
    assert answer(backend, messages)[0] == base  # "no adapter" restores the base model's answer


def test_model_inspect_says_which_models_take_pictures(checkpoints: dict[str, Path], tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["model", "inspect", str(checkpoints["qwen2_vl"]), "--json"]) == 0
    info = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert info["images"] is True and info["architecture"] == "Qwen2VLForConditionalGeneration"
    assert info["context_window"] == 2048 and info["parameters"] > 0
    text_model = make_native_checkpoint("qwen2", tmp_path / "text")
    assert main(["model", "inspect", str(text_model), "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["images"] is False


def test_training_a_persona_on_a_vision_model_adapts_only_its_language_model(
        checkpoints: dict[str, Path], backends: dict[str, Any], home: Path, tmp_path: Path) -> None:
    from safetensors import safe_open

    data = tmp_path / "d.jsonl"
    data.write_text("\n".join(json.dumps({"instruction": q, "output": "ZEBRA ZEBRA."})
                              for q in ("Hello?", "Name a colour.", "What day is it?", "Two plus two?")) + "\n")
    adapters = tmp_path / "adapters"
    assert main(["train", "--home", str(home), "--adapters", str(adapters), "--base", str(checkpoints["qwen2_vl"]),
                 "--data", str(data), "--persona", "zebra", "--steps", "2", "--batch-size", "4", "--lr", "5e-2",
                 "--max-length", "128"]) == 0
    with safe_open(str(adapters / "zebra" / "adapter_model.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert keys and all("language_model" in k for k in keys)  # "all-linear" left the vision tower alone
    messages = [{"role": "user", "content": "What is this?", "images": [picture(640, 480)]}]
    text, done = answer(backends["qwen2_vl"], messages, adapter=AdapterSpec("zebra", adapters / "zebra"))
    assert done.reason in ("stop", "length") and text != answer(backends["qwen2_vl"], messages)[0]


def test_a_chat_with_a_picture_runs_on_a_vision_model_and_the_stored_picture_answers_again(
    backends: dict[str, Any], tmp_path: Path
) -> None:
    """The whole way: the chat service stores the attached picture, the real model sees it, and a regenerated
    answer (the picture read back from the data dir) is the same greedy answer; another picture changes it."""
    from core.chat.service import ChatService, Done
    from core.history.store import HistoryStore

    store = HistoryStore.open(tmp_path / "inkstone.db")
    backend = backends["qwen2_vl"]
    service = ChatService(store, backend)
    sid = store.create_session(model=backend.model_id, settings=GREEDY.with_updates(max_new_tokens=6).to_dict()).id
    first = list(service.send(sid, "What is in the picture?", images=[picture(64, 48)]))[-1]
    again = list(service.regenerate(sid))[-1]
    assert isinstance(first, Done) and isinstance(again, Done)
    assert first.stats.text and again.stats.text == first.stats.text
    question = store.messages(sid)[0]
    assert [p.sha256 for p in store.images_of(question.id)] == [picture(64, 48).sha256]
    other = list(service.send(sid, "And this one?", images=[picture(64, 48, (10, 200, 10))]))[-1]
    assert isinstance(other, Done) and other.stats.prompt_tokens > first.stats.prompt_tokens
    store.close()
