"""Prompt-lookup decoding: the ``prompt_lookup`` setting validates with clear messages, ``auto`` decides per prompt
(greedy, CPU, text to copy) as documented, and on a real (tiny, float32) checkpoint an answer with prompt lookup on
streams the same greedy text as with it off, in fewer forward passes, with and without a LoRA adapter, and still
stops on request."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from core.backends.base import AdapterSpec, Finished, TextDelta
from core.chat.defaults import load_chat_defaults, save_chat_defaults
from core.chat.prompt import with_context
from core.config import GenerationSettings, load_settings
from core.errors import ConfigError
from core.generation.lookup import LOOKUP_QUOTE_CHARS, prompt_lookup_tokens
from tests.fixtures_native import make_native_checkpoint

CODE_EDIT = ("def add(a, b):\n    return a + b\n\nRename b to c:\n```\ndef add(a, b):\n    return a + b\n```")
OPEN = "Hello"
SOURCES = [{"n": 1, "source": "manual.pdf", "page": 3, "text": "The warranty lasts 24 months. " * 12}]


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


# -- the setting ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("changes", "named"), [
    ({"prompt_lookup": "fast"}, "prompt_lookup='fast' is not supported: use auto, on, off"),
    ({"prompt_lookup": 3}, "prompt_lookup=3 is not supported"),
    ({"prompt_lookup_tokens": 0}, "prompt_lookup_tokens=0 is out of range: use a value between 1 and 64"),
    ({"prompt_lookup_tokens": "ten"}, "prompt_lookup_tokens='ten' is not a whole number"),
])
def test_bad_values_are_refused_naming_the_value_and_the_fix(changes: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigError, match=named.replace("(", r"\(")):
        GenerationSettings().with_updates(**changes)


def test_config_file_value_is_checked_and_normalized(tmp_path: Path) -> None:
    config = tmp_path / "inkstone.toml"
    config.write_text('[generation]\nprompt_lookup = "ON"\nprompt_lookup_tokens = 5\n', encoding="utf-8")
    generation = load_settings(config_file=config, environ={}).generation
    assert (generation.prompt_lookup, generation.prompt_lookup_tokens) == ("on", 5)
    config.write_text("prompt_lookup = false\n", encoding="utf-8")  # a TOML boolean means on/off
    assert load_settings(config_file=config, environ={}).generation.prompt_lookup == "off"
    config.write_text('[generation]\nprompt_lookup = "sometimes"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="prompt_lookup='sometimes'"):
        load_settings(config_file=config, environ={})


def test_new_chat_defaults_keep_the_setting(tmp_path: Path) -> None:
    settings = load_settings({"home": str(tmp_path)}, config_file=tmp_path / "absent.toml", environ={})
    save_chat_defaults(settings, {"prompt_lookup": "off", "temperature": 0.2}, None)
    loaded = load_chat_defaults(settings).generation
    assert (loaded.prompt_lookup, loaded.temperature) == ("off", 0.2)
    with pytest.raises(ConfigError, match="prompt_lookup='maybe'"):
        save_chat_defaults(settings, {"prompt_lookup": "maybe"}, None)
    assert load_chat_defaults(settings).generation.prompt_lookup == "off"  # the refused save changed nothing


# -- what auto decides -------------------------------------------------------------------------------------------


def test_auto_is_on_for_prompts_with_text_to_copy_and_off_for_open_questions() -> None:
    auto = GenerationSettings(temperature=0, prompt_lookup_tokens=7)
    rag = [{"role": "system", "content": with_context("Be brief.", SOURCES, "How long?")}, *user("How long?")]
    indented = user("Make it faster:\n\n    for x in xs:\n        total += x\n")
    quote = user("Translate this letter: " + "Dear Sir, thank you for your letter. " * 15)
    assert len(quote[0]["content"]) >= LOOKUP_QUOTE_CHARS
    for messages in (rag, user(CODE_EDIT), indented, quote):
        assert prompt_lookup_tokens(auto, messages) == 7
    code_earlier = [*user(CODE_EDIT), {"role": "assistant", "content": "Done."}, *user("Now rename a too.")]
    assert prompt_lookup_tokens(auto, code_earlier) == 7  # code in an earlier turn may be edited again
    long_history = [*user("x" * 2000), {"role": "assistant", "content": "ok"}, *user("And why is the sky blue?")]
    for messages in (user(OPEN), user("Why is the sky blue? " * 3), long_history, []):
        assert prompt_lookup_tokens(auto, messages) is None
    assert prompt_lookup_tokens(auto, rag, device="cuda") is None  # not measured on CUDA: auto stays off there
    sampled = auto.with_updates(temperature=0.7)
    assert prompt_lookup_tokens(sampled, rag) is None  # sampled answers measured no faster: auto stays off
    assert prompt_lookup_tokens(sampled.with_updates(prompt_lookup="on"), rag) == 7


def test_on_and_off_decide_alone() -> None:
    on, off = GenerationSettings(prompt_lookup="on"), GenerationSettings(prompt_lookup="off")
    assert prompt_lookup_tokens(on, user(OPEN)) == prompt_lookup_tokens(on, user(OPEN), device="cuda") == 10
    assert prompt_lookup_tokens(off, user(CODE_EDIT)) is None


# -- a real model ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A tiny float32 Llama (greedy is then exact), its backend with a forward counter, and a LoRA persona."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from core.engine import build_engine

    root = tmp_path_factory.mktemp("lookup")
    model_dir = make_native_checkpoint("llama", root / "tiny-llama")
    torch.manual_seed(3)
    peft_model = get_peft_model(AutoModelForCausalLM.from_pretrained(model_dir), LoraConfig(
        r=8, lora_alpha=64, target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=False))
    peft_model.save_pretrained(root / "adapters" / "pirate")
    engine = build_engine(load_settings({"model": str(model_dir), "home": str(root / "home"), "dtype": "float32"},
                                        config_file=root / "absent.toml", environ={}))
    backend = getattr(engine.backend, "inner", engine.backend)  # the backend's own generate (never batched)
    calls: list[int] = []
    backend.loaded.model.register_forward_hook(lambda *_: calls.append(1))
    return {"backend": backend, "calls": calls, "adapter": AdapterSpec("pirate", root / "adapters" / "pirate"),
            "line": engine.backend}


def answer(tiny: dict[str, Any], text: str, mode: str,
           adapter: AdapterSpec | None = None, via: str = "backend") -> tuple[str, Finished, int]:
    """(streamed text, Finished, forward passes) of one greedy answer (``via="line"``: through the scheduler,
    which batches what it can, as the app and the API do)."""
    settings = GenerationSettings().with_updates(temperature=0, max_new_tokens=40, repetition_penalty=1.0,
                                                 prompt_lookup=mode)
    tiny["calls"].clear()
    pieces, finished = [], None
    for event in tiny[via].stream(user(text), settings, threading.Event(), adapter):
        if isinstance(event, TextDelta):
            pieces.append(event.text)
        else:
            finished = event
    assert finished is not None
    return "".join(pieces), finished, len(tiny["calls"])


@pytest.mark.slow
@pytest.mark.parametrize("text", [CODE_EDIT, OPEN])
def test_lookup_streams_the_same_greedy_text_in_fewer_forward_passes(tiny: dict[str, Any], text: str) -> None:
    plain, plain_end, plain_passes = answer(tiny, text, "off")
    looked, looked_end, looked_passes = answer(tiny, text, "on")
    assert looked == plain and plain.strip()
    assert looked_end.completion_tokens == plain_end.completion_tokens == plain_passes
    assert looked_passes < plain_passes  # drafts were accepted: several tokens per forward pass


@pytest.mark.slow
def test_lookup_with_a_lora_adapter_streams_the_same_text(tiny: dict[str, Any]) -> None:
    base, _, _ = answer(tiny, CODE_EDIT, "off")
    plain, _, plain_passes = answer(tiny, CODE_EDIT, "off", tiny["adapter"])
    looked, _, looked_passes = answer(tiny, CODE_EDIT, "on", tiny["adapter"])
    assert looked == plain != base  # the adapter applies, with and without prompt lookup
    assert looked_passes < plain_passes


@pytest.mark.slow
def test_auto_on_the_backend_looks_up_code_edits_only(tiny: dict[str, Any]) -> None:
    code, code_end, code_passes = answer(tiny, CODE_EDIT, "auto")
    assert code_passes < code_end.completion_tokens
    assert code == answer(tiny, CODE_EDIT, "off")[0]
    _, open_end, open_passes = answer(tiny, OPEN, "auto")
    assert open_passes == open_end.completion_tokens  # one forward pass per token: plain decoding


@pytest.mark.slow
def test_stop_ends_an_answer_with_lookup_on(tiny: dict[str, Any]) -> None:
    settings = GenerationSettings().with_updates(temperature=0, max_new_tokens=40, repetition_penalty=1.0,
                                                 prompt_lookup="on")
    stop = threading.Event()
    events = []
    for event in tiny["backend"].stream(user(CODE_EDIT), settings, stop):
        events.append(event)
        stop.set()  # as the Stop button does after the first text
    finished = events[-1]
    assert isinstance(finished, Finished) and finished.reason == "stopped"
    assert finished.completion_tokens < 40


@pytest.mark.slow
def test_the_app_path_runs_a_lookup_answer_alone_when_the_batch_is_empty(tiny: dict[str, Any]) -> None:
    """Through the scheduler (batching on), a code edit with prompt lookup is not batched while nothing else
    runs: the backend's generate drafts from the prompt (fewer forward passes than tokens), same text."""
    assert getattr(tiny["line"], "batcher", None) is not None  # this backend batches
    looked, looked_end, looked_passes = answer(tiny, CODE_EDIT, "on", via="line")
    plain, plain_end, plain_passes = answer(tiny, CODE_EDIT, "off", via="line")
    assert looked == plain and looked_end.completion_tokens == plain_end.completion_tokens
    assert looked_passes < looked_end.completion_tokens
