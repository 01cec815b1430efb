"""The "Model & settings" page with AppTest: model facts, switching model, per-session generation settings."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.history.store import HistoryStore

APP = Path(__file__).resolve().parents[1] / "app.py"
PAGE = "ui/settings_page.py"


@pytest.fixture
def store(app_store: HistoryStore) -> HistoryStore:
    """A fresh data dir with the ``fake`` model and no cached engine; the app's history database."""
    return app_store


def settings_page(session: str | None = None) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=30)
    if session is not None:
        at.query_params["session"] = session
    at.run()
    at.switch_page(PAGE).run()
    assert not at.exception, at.exception
    return at


def click(at: AppTest, label: str) -> None:
    next(b for b in at.main.button if b.label == label).click().run()


def facts(at: AppTest) -> str:
    return " ".join(md.value for md in at.main.markdown)


def test_shows_the_loaded_model(store: HistoryStore) -> None:
    at = settings_page()
    assert "**Loaded model:** fake" in facts(at) and "**Context window:** 4096 tokens" in facts(at)
    assert at.main.selectbox[0].value == "fake"
    assert at.main.radio[0].options == ["none", "4bit", "8bit"]
    assert "CUDA" in at.main.caption[0].value
    assert at.main.subheader[0].value == "Settings for new chats"  # no chat open


def test_switching_the_model_reloads_the_engine(store: HistoryStore) -> None:
    at = settings_page()
    at.main.selectbox[0].set_value("fake-slow")
    click(at, "Load model")
    assert not at.exception, at.exception
    assert "**Loaded model:** fake-slow" in facts(at)
    other_tab = settings_page()  # every tab shares the loaded model
    assert "**Loaded model:** fake-slow" in facts(other_tab)


def test_an_unknown_local_directory_is_refused(store: HistoryStore, tmp_path: Path) -> None:
    at = settings_page()
    at.main.selectbox[0].set_value("Local model directory…")
    at.main.text_input[0].set_value(str(tmp_path / "missing-model"))
    click(at, "Load model")
    assert "missing-model" in at.error[0].value
    assert "**Loaded model:** fake" in facts(at)


def test_generation_settings_are_saved_into_the_session(store: HistoryStore) -> None:
    session = store.create_session(model="fake", settings={"temperature": 0.7, "system_prompt": "Be brief."})
    at = settings_page(session.id)
    form = {w.label: w for w in at.main.number_input}
    form["Temperature (0 = greedy)"].set_value(0.0)
    form["Max new tokens"].set_value(64)
    form["Max turns in the prompt"].set_value(3)
    click(at, "Save settings")
    assert not at.exception, at.exception
    assert "Saved" in at.success[0].value
    saved = store.get_session(session.id).settings
    assert saved["temperature"] == 0.0 and saved["max_new_tokens"] == 64 and saved["max_turns"] == 3
    assert saved["system_prompt"] == "Be brief."  # other keys of the session's settings are kept


def test_a_picked_model_that_fails_to_load_offers_the_configured_one(
    store: HistoryStore, tmp_path: Path
) -> None:
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "config.json").write_text("{}", encoding="utf-8")  # resolves, but cannot be loaded
    at = settings_page()
    at.main.selectbox[0].set_value("Local model directory…")
    at.main.text_input[0].set_value(str(broken))
    click(at, "Load model")
    assert not at.exception, at.exception
    assert "broken-model" in at.error[0].value and "not supported" in at.error[0].value
    click(at, "Use the configured model instead")
    assert not at.exception and not at.error
    at.switch_page(PAGE).run()
    assert "**Loaded model:** fake" in facts(at)


def test_with_no_chat_open_the_new_chat_defaults_are_controls_that_new_chats_use(
    store: HistoryStore, app_home: Path
) -> None:
    at = settings_page()
    assert not at.get("json")  # not a raw JSON dump
    form = {w.label: w for w in at.main.number_input}
    assert form["Temperature (0 = greedy)"].value == 0.7 and form["Max new tokens"].value == 512
    form["Temperature (0 = greedy)"].set_value(0.2)
    form["Max new tokens"].set_value(64)
    click(at, "Save settings")
    assert not at.exception, at.exception
    assert "new chats start with these" in at.success[0].value
    assert store.list_sessions() == []  # saving defaults creates no chat
    again = settings_page()  # another tab, later: the saved defaults are shown
    form = {w.label: w for w in again.main.number_input}
    assert form["Temperature (0 = greedy)"].value == 0.2 and form["Max new tokens"].value == 64
    again.switch_page("ui/chat_page.py").run()
    again.chat_input[0].set_value("hello").run()
    [session] = store.list_sessions()
    assert session.settings["temperature"] == 0.2 and session.settings["max_new_tokens"] == 64


def test_a_broken_defaults_file_is_named_and_no_chat_is_created_with_it(store: HistoryStore, app_home: Path) -> None:
    app_home.mkdir(parents=True, exist_ok=True)
    (app_home / "new-chat.toml").write_text('[generation]\ntemperature = "hot"\n', encoding="utf-8")
    at = settings_page()
    assert "new-chat.toml" in at.error[0].value and "temperature='hot'" in at.error[0].value
    at.switch_page("ui/chat_page.py").run()
    at.chat_input[0].set_value("hello").run()
    assert not at.exception, at.exception
    assert "new-chat.toml" in at.error[0].value
    assert store.list_sessions() == []
