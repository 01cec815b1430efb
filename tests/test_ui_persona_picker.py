"""The persona picker in the chat view: switching mid-chat applies from the next answer and shows in the
conversation; each answer keeps the avatar and name of the persona that wrote it; a new chat can start with
a persona picked before its first message."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.history.store import HistoryStore

APP = Path(__file__).resolve().parents[1] / "app.py"


@pytest.fixture
def adapters(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "adapters"
    for pid, name, avatar, greeting in (("poet", "Poet", "🪶", "Ahoy, a verse for you."),
                                        ("owl", "Wise Owl", "🦉", "Hoo, ask me.")):  # fmt: skip
        (root / pid).mkdir(parents=True)
        (root / pid / "persona.toml").write_text(
            f'name = "{name}"\navatar = "{avatar}"\nsystem_prompt = "Be {name}."\ngreeting = "{greeting}"\n',
            encoding="utf-8",
        )
    monkeypatch.setenv("INKSTONE_ADAPTERS", str(root))
    return root


def picker(at: AppTest):
    return next(s for s in at.sidebar.selectbox if s.label == "Persona")


def answers(at: AppTest) -> list[tuple[str, str, str]]:
    """(avatar, name caption, text) of each assistant bubble."""
    return [
        (m.avatar, next((c.value for c in m.caption if c.value.startswith("**")), ""), m.markdown[0].value)
        for m in at.chat_message
        if m.name == "assistant"
    ]


def test_switching_persona_mid_chat_applies_from_the_next_answer(app_store: HistoryStore, adapters: Path) -> None:
    session = app_store.create_session(model="fake", persona="poet")
    at = AppTest.from_file(str(APP), default_timeout=30)
    at.query_params["session"] = session.id
    at.run()
    assert not at.exception, at.exception
    assert picker(at).options[0] == "No persona"
    assert sorted(picker(at).options[1:]) == sorted(["🦉 Wise Owl", "🪶 Poet"])  # avatar + name labels
    assert picker(at).value == "poet"
    at.chat_input[0].set_value("first question").run()
    assert not at.exception, at.exception
    assert answers(at) == [("🪶", "**Poet**", "You said: first question")]

    picker(at).set_value("owl").run()
    assert not at.exception, at.exception
    assert app_store.get_session(session.id).persona == "owl"
    assert any("Persona switched to Wise Owl" in c.value for c in at.caption)
    assert answers(at) == [("🪶", "**Poet**", "You said: first question")]  # the old answer keeps its persona

    at.chat_input[0].set_value("second question").run()
    assert not at.exception, at.exception
    assert answers(at) == [
        ("🪶", "**Poet**", "You said: first question"),
        ("🦉", "**Wise Owl**", "You said: second question"),
    ]
    assert [m.persona_name for m in app_store.messages(session.id) if m.role == "assistant"] == ["Poet", "Wise Owl"]
    assert [c.value for c in at.caption if "Persona switched" in c.value] == ["Persona switched to Wise Owl"]

    picker(at).set_value("").run()  # no persona: the default assistant icon, no name
    at.chat_input[0].set_value("third").run()
    assert not at.exception, at.exception
    assert answers(at)[-1][1:] == ("", "You said: third")
    assert answers(at)[-1][0] == "assistant"  # Streamlit's default icon for the role


def test_a_new_chat_starts_with_the_persona_picked_before_its_first_message(
    app_store: HistoryStore, adapters: Path
) -> None:
    at = AppTest.from_file(str(APP), default_timeout=30).run()
    assert picker(at).value == ""
    assert [m.markdown[0].value for m in at.chat_message] == []
    picker(at).set_value("owl").run()
    assert not at.exception, at.exception
    assert [m.markdown[0].value for m in at.chat_message] == ["Hoo, ask me."]  # the picked persona's greeting
    assert app_store.list_sessions() == []  # nothing stored before the first message
    at.chat_input[0].set_value("hello").run()
    assert not at.exception, at.exception
    [session] = app_store.list_sessions()
    assert session.persona == "owl"
    assert answers(at) == [("🦉", "**Wise Owl**", "You said: hello")]
    at.sidebar.button[0].click().run()  # New chat: back to the saved defaults (no persona)
    assert picker(at).value == ""
    assert [m.markdown[0].value for m in at.chat_message] == []


def test_an_answer_by_a_deleted_persona_keeps_its_name(app_store: HistoryStore, adapters: Path) -> None:
    session = app_store.create_session(model="fake")
    app_store.add_message(session.id, "user", "hi")
    app_store.add_message(session.id, "assistant", "Old verse.", persona=("gone", "Gone Bard", "🎻"))
    at = AppTest.from_file(str(APP), default_timeout=30)
    at.query_params["session"] = session.id
    at.run()
    assert not at.exception, at.exception
    assert answers(at) == [("🎻", "**Gone Bard**", "Old verse.")]
