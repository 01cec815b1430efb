"""Settings layering (CLI > inkstone.toml > environment > defaults) and validation messages."""

import re
from pathlib import Path

import pytest

from core.config import GenerationSettings, load_settings
from core.errors import ConfigError


def test_defaults_bind_to_localhost_and_use_the_bundled_model(tmp_path: Path) -> None:
    streamlit_config = (Path(__file__).resolve().parents[1] / ".streamlit" / "config.toml").read_text()
    assert 'address = "127.0.0.1"' in streamlit_config
    s = load_settings(config_file=tmp_path / "none.toml", environ={})
    assert s.model == "qwen2.5-coder-0.5b"
    assert s.home == Path("data") and s.db_path == Path("data/inkstone.db")
    assert s.trust_remote_code is False


def test_cli_overrides_file_which_overrides_env(tmp_path: Path) -> None:
    toml = tmp_path / "inkstone.toml"
    toml.write_text('model = "smollm2-135m"\nhome = "/from/file"\n[generation]\ntemperature = 0.2\n')
    env = {"INKSTONE_HOME": "/from/env", "INKSTONE_MODEL": "fake", "INKSTONE_ADAPTERS": "/env/adapters"}
    s = load_settings(config_file=toml, environ=env)
    assert s.home == Path("/from/file") and s.model == "smollm2-135m" and s.adapters == Path("/env/adapters")
    assert s.generation.temperature == 0.2
    s = load_settings({"model": "fake", "temperature": 0, "home": None}, config_file=toml, environ=env)
    assert s.model == "fake" and s.generation.temperature == 0 and s.home == Path("/from/file")


def test_bad_values_are_named(tmp_path: Path) -> None:
    toml = tmp_path / "inkstone.toml"
    toml.write_text("modle = 'x'\n")
    with pytest.raises(ConfigError, match="modle"):
        load_settings(config_file=toml, environ={})
    toml.write_text("not toml ===")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(config_file=toml, environ={})
    with pytest.raises(ConfigError, match="top_p"):
        GenerationSettings(top_p=0).validated()
    toml.write_text('trust_remote_code = "false"\n')
    with pytest.raises(ConfigError, match="trust_remote_code='false' must be true or false"):
        load_settings(config_file=toml, environ={})
    with pytest.raises(ConfigError, match="quantize"):
        load_settings({"quantize": "3bit"}, config_file=tmp_path / "none.toml", environ={})


def test_stored_settings_roundtrip_ignores_unknown_keys() -> None:
    g = GenerationSettings.from_dict({"temperature": 0.0, "max_turns": 3, "system_prompt": "x"})
    assert g.temperature == 0.0 and g.max_turns == 3 and g.top_k == GenerationSettings().top_k


def test_generation_typos_and_wrong_types_in_the_config_file_are_named(tmp_path: Path) -> None:
    path = tmp_path / "inkstone.toml"
    path.write_text("[generation]\nmax_new_token = 64\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"'max_new_token' in {re.escape(str(path))}: did you mean 'max_new_tokens'"):
        load_settings(config_file=path, environ={})
    path.write_text('temperature = "hot"\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"temperature='hot' is not a number"):
        load_settings(config_file=path, environ={})
    path.write_text("[generation]\nmax_new_tokens = 64.0\n", encoding="utf-8")
    assert load_settings(config_file=path, environ={}).generation.max_new_tokens == 64
