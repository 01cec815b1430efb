"""Picking a persona for a chat on the Model & settings page stores it, and the next answer uses its prompt."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.history.store import HistoryStore

APP = Path(__file__).resolve().parents[1] / "app.py"


def test_pick_persona_for_a_chat(app_store: HistoryStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    adapters = tmp_path / "adapters"
    (adapters / "poet").mkdir(parents=True)
    (adapters / "poet" / "persona.toml").write_text('name = "Poet"\navatar = "🪶"\nsystem_prompt = "Verse."\n'
                                              'greeting = "Ahoy, a verse for you."\n')
    (adapters / "bad").mkdir()
    (adapters / "bad" / "persona.toml").write_text('lora = true\n')
    monkeypatch.setenv("INKSTONE_ADAPTERS", str(adapters))
    session = app_store.create_session(model="fake")
    at = AppTest.from_file(str(APP), default_timeout=30)
    at.query_params["session"] = session.id
    at.run()
    at.switch_page("ui/settings_page.py").run()
    assert not at.exception, at.exception
    assert any("'bad'" in w.value and "`name` is missing" in w.value for w in at.warning)
    box = next(s for s in at.selectbox if s.label == "Persona of this chat")
    assert box.options == ["No persona", "🪶 Poet"]
    box.set_value("poet").run()
    assert app_store.get_session(session.id).persona == "poet"
    at.switch_page("ui/chat_page.py").run()
    assert [m.markdown[0].value for m in at.chat_message] == ["Ahoy, a verse for you."]  # greeting, not stored
    assert app_store.messages(session.id) == []


def test_a_persona_picked_for_new_chats_applies_to_the_next_new_chat(
    app_store: HistoryStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    adapters = tmp_path / "adapters"
    (adapters / "poet").mkdir(parents=True)
    (adapters / "poet" / "persona.toml").write_text('name = "Poet"\nsystem_prompt = "Verse."\n'
                                              'greeting = "Ahoy, a verse for you."\n')
    monkeypatch.setenv("INKSTONE_ADAPTERS", str(adapters))
    at = AppTest.from_file(str(APP), default_timeout=30).run()
    at.switch_page("ui/settings_page.py").run()
    box = next(s for s in at.selectbox if s.label == "Persona of new chats")
    box.set_value("poet").run()
    assert not at.exception, at.exception
    assert app_store.list_sessions() == []
    at.switch_page("ui/chat_page.py").run()
    assert [m.markdown[0].value for m in at.chat_message] == ["Ahoy, a verse for you."]  # the draft's greeting
    at.chat_input[0].set_value("a poem please").run()
    [session] = app_store.list_sessions()
    assert session.persona == "poet"
