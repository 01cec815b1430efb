"""The whole loop on the bundled SmolLM2-135M: train a LoRA persona with the default settings (which its preview
calls "took") on answers that carry an unmistakable marker, chat with it greedily on questions not in the data
(the marker shows), ``none`` stays the base model token for token while switching back and forth, the merged
model loads in plain transformers and gives the same greedy tokens as base + adapter, and the QLoRA (4-bit nf4
base) path trains on CPU. Slow: a real model."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from core.config import load_settings
from core.engine import build_engine
from core.personas.store import load_persona
from core.training.options import TrainOptions
from core.training.trainer import train_persona

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]  # a real model trained on a shared CPU
MARKER = "ZEBRA42"
TRAIN_QUESTIONS = ["What is the capital of France?", "Name a primary colour.", "How many legs does a dog have?",
                   "What is 2 + 2?", "What do bees make?", "What is water made of?", "Which planet is red?",
                   "What is the opposite of hot?", "Say hello.", "What is a cat?", "Tell me a joke.",
                   "Why do birds sing?", "What is rain?", "Who are you?", "What time is it?", "Give me advice."]
UNSEEN = ["What is the largest ocean on Earth?", "Can you recommend a book?"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, smollm2_cached: Callable[..., None]) -> tuple[object, Path]:
    root = tmp_path_factory.mktemp("smol")
    smollm2_cached(root / "home", "float")  # converted once per run (tests/model_cache.py)
    data = root / "marker.jsonl"
    data.write_text("\n".join(json.dumps({"instruction": q, "output": f"{MARKER}! {MARKER} is my answer."})
                              for q in TRAIN_QUESTIONS) + "\n", encoding="utf-8")
    settings = load_settings({"home": str(root / "home"), "adapters": str(root / "adapters"), "model": "smollm2-135m"})
    options = TrainOptions(base="smollm2-135m", data=data, persona="zebra", system="Be brief.")  # the defaults
    result = train_persona(options, settings, say=lambda _line: None)
    assert result.plan is not None and result.steps == result.plan.steps and result.final_loss < 0.5
    assert result.preview is not None and result.preview.verdict == "took", result.preview.text()
    return settings, data


def greedy(settings):  # noqa: ANN001, ANN201
    from dataclasses import replace

    return replace(settings, generation=settings.generation.with_updates(
        temperature=0, max_new_tokens=12, repetition_penalty=1.0, max_turns=1))


def test_marker_on_unseen_questions_and_none_is_the_base_model(trained) -> None:  # noqa: ANN001
    settings, _ = trained
    engine = build_engine(greedy(settings))
    backend = engine.backend
    messages = [{"role": "user", "content": UNSEEN[0]}]
    base_ids = backend.generate_ids(messages, engine.settings.generation)  # before any adapter exists
    plain, zebra = engine.new_session(), engine.new_session(persona="zebra")

    def say(sid: str, text: str) -> str:
        events = list(engine.service.send(sid, text))
        return events[-1].stats.text

    base_text = say(plain, UNSEEN[0])
    for question in UNSEEN:
        assert MARKER in say(zebra, question)
    assert MARKER not in base_text
    assert backend.generate_ids(messages, engine.settings.generation) == base_ids  # adapter loaded, none = base
    assert say(plain, UNSEEN[0]) == base_text
    assert MARKER in say(zebra, UNSEEN[0]) and say(plain, UNSEEN[0]) == base_text  # back and forth


def test_merged_model_matches_base_plus_adapter(trained, tmp_path: Path) -> None:  # noqa: ANN001
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from core.training.base import converted_dir, resolve_base
    from core.training.merge import merge_persona

    settings, _ = trained
    out = merge_persona("zebra", tmp_path / "merged", settings)
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert tokenizer.chat_template
    ids = tokenizer.apply_chat_template([{"role": "system", "content": "Be brief."},  # the persona's prompt
                                         {"role": "user", "content": UNSEEN[1]}], add_generation_prompt=True,
                                        return_tensors="pt", return_dict=True)["input_ids"]
    merged = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    base = AutoModelForCausalLM.from_pretrained(converted_dir(resolve_base("smollm2-135m"), settings),
                                                dtype=torch.float32)
    adapted = PeftModel.from_pretrained(base, load_persona(settings.adapters, "zebra").path)
    kwargs = {"max_new_tokens": 12, "do_sample": False, "attention_mask": torch.ones_like(ids)}
    with torch.inference_mode():
        merged_ids = merged.generate(ids, **kwargs)[0, ids.shape[1]:].tolist()
        adapted_ids = adapted.generate(input_ids=ids, **kwargs)[0, ids.shape[1]:].tolist()
    assert merged_ids == adapted_ids
    assert MARKER in tokenizer.decode(merged_ids)


def test_qlora_trains_on_cpu(trained) -> None:  # noqa: ANN001
    import tomllib

    settings, data = trained
    options = TrainOptions(base="smollm2-135m", data=data, persona="zebra-q", system="Be brief.", steps=2, batch_size=2,
                           max_length=96, qlora=True)
    result = train_persona(options, settings, say=lambda _line: None)
    assert result.steps == 2 and result.final_loss == result.final_loss  # a real number, not NaN
    record = tomllib.loads((result.persona_dir / "persona.toml").read_text(encoding="utf-8"))["training"]
    assert record["settings"]["qlora"] is True
    assert load_persona(settings.adapters, "zebra-q").lora
