"""Persona directories a user can get wrong, each named in one ConfigError and never breaking other lookups:
an adapter_config.json that is not an object, a damaged adapter_model.safetensors (read at load, not at first
use), an avatar the chat view cannot show, and typos or wrong types in [generation]."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from core.errors import ConfigError
from core.personas.avatars import avatar_problem
from core.personas.store import list_personas, load_persona

REPO = Path(__file__).resolve().parents[1]


def write_persona(adapters: Path, pid: str, toml: str) -> Path:
    path = adapters / pid
    path.mkdir(parents=True, exist_ok=True)
    (path / "persona.toml").write_text(toml, encoding="utf-8")
    return path


def lora_persona(adapters: Path, pid: str, config: object = None) -> Path:
    path = write_persona(adapters, pid, f'name = "{pid.title()}"\nlora = true\n')
    cfg = {"peft_type": "LORA", "r": 4, "target_modules": ["q_proj"]} if config is None else config
    (path / "adapter_config.json").write_text(json.dumps(cfg))
    save_file({"base_model.model.q_proj.lora_A.weight": np.zeros((4, 8), dtype=np.float32)},
              str(path / "adapter_model.safetensors"))
    return path


def test_adapter_config_array_breaks_only_its_own_persona(tmp_path: Path) -> None:
    write_persona(tmp_path, "poet", 'name = "Poet"\n')
    lora_persona(tmp_path, "ok")
    lora_persona(tmp_path, "weird", config=["not", "an", "object"])
    personas, broken = list_personas(tmp_path)
    assert [p.id for p in personas] == ["ok", "poet"]
    assert len(broken) == 1 and "'weird'" in broken[0] and "must be a JSON object" in broken[0]


def test_deeply_nested_adapter_config_breaks_only_its_own_persona(tmp_path: Path) -> None:
    lora_persona(tmp_path, "ok")
    deep = lora_persona(tmp_path, "deep")
    (deep / "adapter_config.json").write_text("[" * 100_000 + "]" * 100_000)
    personas, broken = list_personas(tmp_path)
    assert [p.id for p in personas] == ["ok"]
    assert len(broken) == 1 and "'deep'" in broken[0] and "nested too deeply" in broken[0]


@pytest.mark.parametrize("damage", ["garbage", "truncated", "no-lora"])
def test_damaged_adapter_weights_are_named_at_load(tmp_path: Path, damage: str) -> None:
    path = lora_persona(tmp_path, "pirate")
    weights = path / "adapter_model.safetensors"
    if damage == "garbage":
        weights.write_bytes(b"\x00garbage" * 64)
    elif damage == "truncated":
        weights.write_bytes(weights.read_bytes()[:-16])
    else:
        save_file({"embed.weight": np.zeros((2, 2), dtype=np.float32)}, str(weights))
    with pytest.raises(ConfigError) as err:
        load_persona(tmp_path, "pirate")
    message = str(err.value)
    assert "Persona 'pirate'" in message and "adapter_model.safetensors" in message
    assert ("no LoRA tensors" if damage == "no-lora" else "damaged or not a safetensors file") in message


def test_cli_with_damaged_adapter_exits_with_the_message(home: Path, tmp_path: Path) -> None:
    path = lora_persona(tmp_path / "adapters", "pirate")
    (path / "adapter_model.safetensors").write_bytes(b"\xff" * 100)
    proc = subprocess.run(
        [sys.executable, "-m", "core", "chat", "--model", "fake", "--persona", "pirate", "hi"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
        env={**__import__("os").environ, "INKSTONE_ADAPTERS": str(tmp_path / "adapters")},
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "Persona 'pirate'" in proc.stderr and "damaged" in proc.stderr


def test_avatars(tmp_path: Path) -> None:
    path = write_persona(tmp_path, "p", 'name = "P"\n')
    (path / "face.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    for ok in ("🪶", "👩‍🚀", "🇫🇷", "👍🏽", ":material/school:", "face.png"):
        assert avatar_problem(ok, path) is None, ok
    for bad in ("x" * 10_000, "AB", "★", "🪶🪶", "../face.png", "/etc/passwd", "missing.png", ":material/x y:"):
        assert avatar_problem(bad, path), bad
    write_persona(tmp_path, "long", f'name = "Long"\navatar = "{"x" * 10_000}"\n')
    with pytest.raises(ConfigError, match="`avatar` 'xxx.*is not one emoji"):
        load_persona(tmp_path, "long")
    write_persona(tmp_path, "img", 'name = "Img"\navatar = "face.png"\n')
    (tmp_path / "img" / "face.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    assert load_persona(tmp_path, "img").avatar == str(tmp_path / "img" / "face.png")


def test_every_emoji_streamlit_shows_is_accepted() -> None:
    from streamlit.emojis import ALL_EMOJIS

    rejected = [e for e in ALL_EMOJIS if avatar_problem(e, Path("."))]
    assert rejected == []


def test_generation_typos_and_types_are_named(tmp_path: Path) -> None:
    write_persona(tmp_path, "t", 'name = "T"\n[generation]\ntemprature = 4.9\ntop_k = "many"\nmax_turns = 3\n')
    with pytest.raises(ConfigError) as err:
        load_persona(tmp_path, "t")
    message = str(err.value)
    assert "Unknown generation setting 'temprature' in [generation]: did you mean 'temperature'?" in message
    assert "top_k='many' is not a whole number" in message
    write_persona(tmp_path, "hot", 'name = "Hot"\n[generation]\ntemperature = "hot"\n')
    with pytest.raises(ConfigError, match=r"temperature='hot' is not a number: write it without quotes"):
        load_persona(tmp_path, "hot")


def test_label_shows_an_emoji_avatar_only(tmp_path: Path) -> None:
    write_persona(tmp_path, "poet", 'name = "Poet"\navatar = "🪶"\n')
    write_persona(tmp_path, "img", 'name = "Img"\navatar = "face.png"\n')
    (tmp_path / "img" / "face.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    write_persona(tmp_path, "icon", 'name = "Icon"\navatar = ":material/school:"\n')
    labels = {p.id: p.label for p in list_personas(tmp_path)[0]}
    assert labels == {"poet": "🪶 Poet", "img": "Img", "icon": "Icon"}
