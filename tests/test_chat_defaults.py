"""``core.chat.defaults``: new-chat defaults saved from the settings page are validated before anything is written,
read back over the configured defaults, and a broken file is reported with its path and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.chat.defaults import defaults_path, load_chat_defaults, save_chat_defaults
from core.config import load_settings
from core.errors import ConfigError, NotFoundError
from core.personas.store import load_persona


@pytest.fixture
def settings(tmp_path: Path):
    return load_settings({"home": str(tmp_path / "data"), "model": "fake", "adapters": str(tmp_path / "adapters")},
                         config_file=tmp_path / "none.toml")  # fmt: skip


def test_saved_defaults_are_read_back(settings) -> None:
    assert load_chat_defaults(settings).generation == settings.generation  # nothing saved yet
    save_chat_defaults(settings, {"temperature": 0.2, "max_new_tokens": 64}, None)
    loaded = load_chat_defaults(settings)
    assert loaded.generation.temperature == 0.2 and loaded.generation.max_new_tokens == 64
    assert loaded.generation.top_p == settings.generation.top_p and loaded.persona is None


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"temperature": 9.0}, "temperature=9.0"),
        ({"temperature": "hot"}, "temperature='hot'"),
        ({"max_new_tokens": 6.5}, "max_new_tokens=6.5"),
        ({"temprature": 0.1}, "'temprature'"),
    ],
)
def test_a_bad_value_is_refused_and_the_saved_defaults_stay(settings, values: dict, named: str) -> None:
    save_chat_defaults(settings, {"temperature": 0.3}, None)
    before = defaults_path(settings).read_bytes()
    with pytest.raises(ConfigError, match=named):
        save_chat_defaults(settings, values, None)
    assert defaults_path(settings).read_bytes() == before
    assert load_chat_defaults(settings).generation.temperature == 0.3


def test_an_unknown_persona_is_refused_before_writing(settings) -> None:
    with pytest.raises(NotFoundError):
        save_chat_defaults(settings, {}, "nobody", check_persona=lambda pid: load_persona(settings.adapters, pid))
    assert not defaults_path(settings).exists()


def test_a_persona_is_saved_with_the_defaults(settings) -> None:
    (settings.adapters / "poet").mkdir(parents=True)
    (settings.adapters / "poet" / "persona.toml").write_text('name = "Poet"\n', encoding="utf-8")
    save_chat_defaults(settings, {}, "poet", check_persona=lambda pid: load_persona(settings.adapters, pid))
    assert load_chat_defaults(settings).persona == "poet"


@pytest.mark.parametrize(
    "text", ["[generation\n", "persona = 3\n", "generation = 1\n", "[generation]\ntop_k = true\n", "\udcff"]
)
def test_a_broken_file_names_itself(settings, text: str) -> None:
    path = defaults_path(settings)
    path.parent.mkdir(parents=True)
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    with pytest.raises(ConfigError, match="new-chat.toml"):
        load_chat_defaults(settings)


def test_a_new_cli_chat_starts_from_the_saved_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    import json

    from core.cli import main
    from core.history.store import HistoryStore

    home, adapters = tmp_path / "data", tmp_path / "adapters"
    monkeypatch.setenv("INKSTONE_HOME", str(home))
    monkeypatch.setenv("INKSTONE_ADAPTERS", str(adapters))
    monkeypatch.setenv("INKSTONE_CONFIG", str(tmp_path / "absent.toml"))
    (adapters / "poet").mkdir(parents=True)
    (adapters / "poet" / "persona.toml").write_text('name = "Poet"\nsystem_prompt = "Answer in verse."\n',
                                                   encoding="utf-8")  # fmt: skip
    settings = load_settings({}, config_file=tmp_path / "absent.toml")
    save_chat_defaults(settings, {"temperature": 0.2, "max_new_tokens": 48}, "poet")

    def new_chat(*flags: str):  # -> Session
        assert main(["chat", "--model", "fake", "--json", *flags, "hello"]) == 0
        sid = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["session_id"]
        store = HistoryStore.open(home / "inkstone.db")
        try:
            return store.get_session(sid)
        finally:
            store.close()

    plain = new_chat()
    assert (plain.persona, plain.settings["temperature"], plain.settings["max_new_tokens"]) == ("poet", 0.2, 48)
    flagged = new_chat("--persona", "none", "--temperature", "0.7")  # flags still win over the defaults
    assert (flagged.persona, flagged.settings["temperature"], flagged.settings["max_new_tokens"]) == (None, 0.7, 48)
