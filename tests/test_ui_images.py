"""Pictures in the chat view, driven with AppTest (its chat input takes uploads): a picture sent with a message is
answered, stored once under the data dir and shown as a thumbnail; the text-only model refuses it with a message
naming models that take pictures; bad files are refused naming the file; nothing is stored for a refused message."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from core import backends
from core.backends.fake import FakeBackend
from core.history.store import HistoryStore
from tests.test_ui_chat import APP, bubbles

SVG = b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>'


def png(width: int = 32, height: int = 24, color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture
def vision(monkeypatch: pytest.MonkeyPatch) -> None:
    """The ``fake`` model sees pictures (a scripted vision model, no weights)."""
    monkeypatch.setitem(backends.FACTORIES, "fake",
                        lambda profile, settings, progress, options: FakeBackend(model_id=profile.id, images=True,
                                                                                 **options))  # fmt: skip


def start() -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=30)
    at.run()
    assert not at.exception, at.exception
    return at


def picture_files(home: Path) -> list[Path]:
    return [p for p in (home / "images").rglob("*") if p.is_file()] if (home / "images").exists() else []


def test_a_picture_is_answered_stored_and_shown(app_store: HistoryStore, app_home: Path, vision: None) -> None:
    at = start()
    at.chat_input[0].upload("red.png", png(), "image/png").set_value("what is this?").run()
    assert not at.exception, at.exception
    assert bubbles(at)[-1] == ("assistant", "I see 1 picture, 32x24. You said: what is this?")
    [session] = app_store.list_sessions()
    question = app_store.messages(session.id)[0]
    assert [p.name for p in app_store.images_of(question.id)] == ["red.png"]
    assert len(picture_files(app_home)) == 1
    assert at.chat_message[0].name == "user" and at.chat_message[0].image[0].captions == ["red.png"]  # thumbnail
    at.chat_input[0].upload("red.png", png(), "image/png").upload("blue.png", png(color=(0, 0, 200)),
                                                                  "image/png").run()  # pictures alone, no text
    assert not at.exception, at.exception
    assert bubbles(at)[-1] == ("assistant", "I see 2 pictures, 32x24, 32x24.")
    assert len(picture_files(app_home)) == 2  # red is stored once
    assert [image.captions for image in at.image] == [["red.png"], ["red.png", "blue.png"]]


def test_the_text_only_model_refuses_a_picture_and_the_chat_goes_on(app_store: HistoryStore, app_home: Path) -> None:
    at = start()
    at.chat_input[0].upload("red.png", png(), "image/png").set_value("what is this?").run()
    assert not at.exception, at.exception
    assert "cannot see pictures" in at.error[0].value and "Qwen2-VL" in at.error[0].value
    assert app_store.list_sessions() == [] and picture_files(app_home) == []
    at.chat_input[0].set_value("hello then").run()
    assert bubbles(at)[-1] == ("assistant", "You said: hello then")


@pytest.mark.parametrize(("name", "data", "words"), [
    ("broken.png", png()[:70], "damaged"),
    ("notes.png", b"just some text, not a picture", "not a picture"),
    ("drawing.png", SVG, "not a picture"),
])
def test_bad_files_are_refused_naming_them(app_store: HistoryStore, app_home: Path, vision: None, name: str,
                                           data: bytes, words: str) -> None:  # fmt: skip
    at = start()
    at.chat_input[0].upload("good.png", png(), "image/png").upload(name, data, "image/png").set_value("look").run()
    assert not at.exception, at.exception
    assert name in at.error[0].value and words in at.error[0].value
    assert app_store.list_sessions() == [] and picture_files(app_home) == []


def test_nine_pictures_are_refused(app_store: HistoryStore, app_home: Path, vision: None) -> None:
    at = start()
    box = at.chat_input[0]
    for i in range(9):
        box.upload(f"{i}.png", png(color=(i, 0, 0)), "image/png")
    box.set_value("all of them").run()
    assert "9 pictures" in at.error[0].value and "at most 8" in at.error[0].value
    assert app_store.list_sessions() == [] and picture_files(app_home) == []


def test_an_edit_keeps_the_pictures(app_store: HistoryStore, app_home: Path, vision: None) -> None:
    at = start()
    at.chat_input[0].upload("red.png", png(), "image/png").set_value("what is this?").run()
    [session] = app_store.list_sessions()
    first = app_store.messages(session.id)[0]
    at.button(key=f"edit-{first.id}").click().run()
    at.text_area(key=f"edit-text-{first.id}").set_value("")  # only the picture is left
    at.button(key=f"edit-send-{first.id}").click().run()
    assert not at.exception, at.exception
    assert bubbles(at)[-1] == ("assistant", "I see 1 picture, 32x24.")
    edited = app_store.messages(session.id)[0]
    assert edited.id != first.id and [p.name for p in app_store.images_of(edited.id)] == ["red.png"]
    assert at.chat_message[0].image[0].captions == ["red.png"]
    assert len(picture_files(app_home)) == 1
