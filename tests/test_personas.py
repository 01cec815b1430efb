"""Personas: persona.toml validation (every problem named at once), the system prompt reaching the prompt, and
LoRA personas on a real tiny model: loaded once, switched per answer, "none" restores the base model exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.backends.fake import FakeBackend
from core.chat.service import Done
from core.cli import main
from core.config import load_settings
from core.engine import build_engine
from core.errors import ConfigError, NotFoundError
from core.history.store import HistoryStore
from core.personas.store import list_personas, load_persona
from tests.fixtures_native import make_native_checkpoint


def write_persona(adapters: Path, pid: str, toml: str) -> Path:
    path = adapters / pid
    path.mkdir(parents=True, exist_ok=True)
    (path / "persona.toml").write_text(toml, encoding="utf-8")
    return path


def test_valid_persona_loads(tmp_path: Path) -> None:
    write_persona(tmp_path, "poet", 'name = "Poet"\nsystem_prompt = "Answer in verse."\ngreeting = "Hail!"\n'
                                    '[generation]\ntemperature = 0.9\n')
    p = load_persona(tmp_path, "poet")
    assert (p.name, p.system_prompt, p.greeting, p.lora, p.generation) == (
        "Poet", "Answer in verse.", "Hail!", False, {"temperature": 0.9})


def test_every_problem_is_named_at_once(tmp_path: Path) -> None:
    write_persona(tmp_path, "broken", 'colour = "red"\nlora = true\n[generation]\ntop_p = 7\n')
    with pytest.raises(ConfigError) as err:
        load_persona(tmp_path, "broken")
    message = str(err.value)
    for part in ("unknown key 'colour'", "`name` is missing", "top_p=7", "adapter_config.json is missing",
                 "adapter_model.safetensors is missing"):
        assert part in message
    personas, broken = list_personas(tmp_path)
    assert personas == [] and len(broken) == 1


def test_pickled_adapter_is_refused(tmp_path: Path) -> None:
    path = write_persona(tmp_path, "old", 'name = "Old"\nlora = true\n')
    (path / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA"}))
    (path / "adapter_model.bin").write_bytes(b"\x80\x04pickle")
    with pytest.raises(ConfigError, match=r"adapter_model\.bin is a pickle"):
        load_persona(tmp_path, "old")


def test_unknown_persona_lists_the_available_ones(tmp_path: Path) -> None:
    write_persona(tmp_path, "poet", 'name = "Poet"\n')
    with pytest.raises(NotFoundError, match=r"'pirate' not found .*available: poet"):
        load_persona(tmp_path, "pirate")


def test_system_prompt_and_defaults_reach_the_turn(home: Path, tmp_path: Path) -> None:
    adapters = tmp_path / "adapters"
    write_persona(adapters, "poet", 'name = "Poet"\nsystem_prompt = "Answer in verse."\n[generation]\nmax_turns = 3\n')
    backend = FakeBackend()
    engine = build_engine(load_settings({"model": "fake", "adapters": str(adapters)}), backend=backend)
    sid = engine.new_session(persona="poet")
    assert engine.service.session_settings(sid).max_turns == 3
    list(engine.service.send(sid, "hello"))
    assert backend.prompts[-1][0] == {"role": "system", "content": "Answer in verse."}
    assert backend.adapters == [None]


def test_cli_persona_flag(home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                          capsys: pytest.CaptureFixture[str]) -> None:
    adapters = tmp_path / "adapters"
    write_persona(adapters, "poet", 'name = "Poet"\nsystem_prompt = "Answer in verse."\n')
    monkeypatch.setenv("INKSTONE_ADAPTERS", str(adapters))
    assert main(["chat", "--model", "fake", "--persona", "poet", "--json", "hi"]) == 0
    sid = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["session_id"]
    store = HistoryStore.open(home / "inkstone.db")
    assert store.get_session(sid).persona == "poet"
    assert main(["chat", "--model", "fake", "--session", sid, "--persona", "none", "hi again"]) == 0
    assert store.get_session(sid).persona is None
    assert main(["chat", "--model", "fake", "--persona", "ghost", "hi"]) == 1
    assert "'ghost' not found" in capsys.readouterr().err
    store.close()


@pytest.fixture(scope="module")
def lora_setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny Llama and a persona with a random (non-zero) LoRA adapter trained 'for' it."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    root = tmp_path_factory.mktemp("lora")
    model_dir = make_native_checkpoint("llama", root / "tiny-llama")
    adapters = root / "adapters"
    torch.manual_seed(1)
    peft_model = get_peft_model(AutoModelForCausalLM.from_pretrained(model_dir), LoraConfig(
        r=8, lora_alpha=64, target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=False))
    path = write_persona(adapters, "pirate", 'name = "Pirate"\nsystem_prompt = "Talk like a pirate."\n'
                                             'lora = true\nbase_model = "tiny-llama"\n')
    peft_model.save_pretrained(path)
    write_persona(adapters, "other", 'name = "Other"\nlora = true\nbase_model = "some-other-model"\n')
    peft_model.save_pretrained(adapters / "other")
    return model_dir, adapters


def answer(engine, sid: str) -> str:  # noqa: ANN001
    events = list(engine.service.send(sid, "Hello there"))
    assert isinstance(events[-1], Done), events[-1]
    return events[-1].stats.text


def test_lora_persona_switches_without_reloading(home: Path, lora_setup: tuple[Path, Path]) -> None:
    model_dir, adapters = lora_setup
    engine = build_engine(load_settings({"model": str(model_dir), "adapters": str(adapters), "temperature": 0,
                                         "max_new_tokens": 8, "repetition_penalty": 1.0, "max_turns": 1}))
    base_model = engine.backend.loaded.model
    plain = engine.new_session()
    pirate = engine.new_session(persona="pirate")
    system_only = engine.new_session()
    engine.store.update_session(system_only, settings={**engine.store.get_session(system_only).settings,
                                                       "system_prompt": "Talk like a pirate."})
    base_answer = answer(engine, plain)
    system_answer = answer(engine, system_only)
    pirate_answer = answer(engine, pirate)
    assert pirate_answer != system_answer  # same prompt, the adapter changes the output
    assert answer(engine, plain) == base_answer  # "no persona" is the base model again
    assert answer(engine, pirate) == pirate_answer
    assert engine.backend.loaded.model is base_model and list(engine.backend.inner._peft.peft_config) == ["pirate"]


def test_adapter_for_another_model_is_refused_before_storing(home: Path, lora_setup: tuple[Path, Path]) -> None:
    model_dir, adapters = lora_setup
    engine = build_engine(load_settings({"model": str(model_dir), "adapters": str(adapters)}))
    with pytest.raises(ConfigError, match="trained for 'some-other-model'"):
        engine.new_session(persona="other")  # a new chat with it is refused at once
    assert engine.store.list_sessions() == []
    sid = engine.store.create_session(model="some-other-model", persona="other").id  # made for another model
    with pytest.raises(ConfigError, match="trained for 'some-other-model'"):
        engine.service.send(sid, "Hello")
    assert engine.store.messages(sid) == []


def test_a_persona_retrained_in_place_answers_with_its_new_adapter(
    home: Path, lora_setup: tuple[Path, Path], tmp_path: Path
) -> None:
    """`train --overwrite` replaces a persona's adapter files under the same id while the app runs: the next answer
    uses the new adapter (as a freshly started app would), not the one loaded before."""
    import shutil

    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    model_dir, shared = lora_setup
    adapters = tmp_path / "adapters"
    shutil.copytree(shared / "pirate", adapters / "pirate")
    settings = load_settings({"model": str(model_dir), "adapters": str(adapters), "temperature": 0,
                              "max_new_tokens": 8, "repetition_penalty": 1.0, "max_turns": 1})
    engine = build_engine(settings)
    old = answer(engine, engine.new_session(persona="pirate"))
    torch.manual_seed(7)
    retrained = get_peft_model(AutoModelForCausalLM.from_pretrained(model_dir), LoraConfig(
        r=8, lora_alpha=64, target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=False))
    retrained.save_pretrained(adapters / "pirate")
    fresh = answer(build_engine(settings), engine.new_session(persona="pirate"))
    assert fresh != old  # the retrained adapter really answers differently
    assert answer(engine, engine.new_session(persona="pirate")) == fresh
