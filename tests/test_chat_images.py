"""Pictures in chat turns (``ChatService``): a model that takes pictures gets them with its user messages (from the
store, on every later turn, through edits and regenerations); a text-only model refuses them before anything is
stored, naming models that take pictures; bad pictures never reach the store."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from core.backends.fake import IMAGE_TOKENS, FakeBackend
from core.chat.service import ChatService, Done
from core.config import GenerationSettings
from core.errors import InputError, StorageError
from core.history.store import HistoryStore
from core.images import ImageInput, read_image


def png(width: int = 32, height: int = 24, color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, "PNG")
    return buffer.getvalue()


def picture(name: str = "red.png", width: int = 32, height: int = 24, color: tuple[int, int, int] = (200, 30, 30)
            ) -> ImageInput:  # fmt: skip
    return read_image(png(width, height, color), name)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[HistoryStore]:
    s = HistoryStore.open(tmp_path / "inkstone.db")
    yield s
    s.close()


def files(tmp_path: Path) -> list[Path]:
    return [p for p in (tmp_path / "images").rglob("*") if p.is_file()] if (tmp_path / "images").exists() else []


def answer(events: Iterator) -> str:
    done = list(events)[-1]
    assert isinstance(done, Done), done
    return done.stats.text


def new_chat(store: HistoryStore, **settings: object) -> str:
    return store.create_session(model="fake", settings=GenerationSettings().with_updates(**settings).to_dict()).id


def test_a_vision_model_sees_the_pictures_of_the_question_and_later_turns(store: HistoryStore) -> None:
    backend = FakeBackend(images=True)
    service = ChatService(store, backend)
    sid = new_chat(store)
    assert answer(service.send(sid, "what is this?", images=[picture()])) == \
        "I see 1 picture, 32x24. You said: what is this?"
    assert answer(service.send(sid, "", images=[picture("big.png", 40, 30, (0, 0, 9)), picture()])) == \
        "I see 2 pictures, 40x30, 32x24."  # a picture alone, without text
    answer(service.send(sid, "and now?"))
    prompt = backend.prompts[-1]
    assert [len(m.get("images", [])) for m in prompt] == [1, 0, 2, 0, 0]  # from the store, each with its message
    assert prompt[0]["images"][0].data == png()
    stored = store.messages(sid)
    assert [len(store.images_of(m.id)) for m in stored] == [1, 0, 2, 0, 0, 0]


def test_edit_keeps_the_pictures_and_regenerate_sees_them(store: HistoryStore) -> None:
    backend = FakeBackend(images=True)
    service = ChatService(store, backend)
    sid = new_chat(store)
    answer(service.send(sid, "what colour?", images=[picture()]))
    question = store.messages(sid)[0]
    assert answer(service.edit(sid, question.id, "which colour?")) == "I see 1 picture, 32x24. You said: which colour?"
    edited = store.messages(sid)[0]
    assert edited.id != question.id and store.images_of(edited.id)[0].sha256 == picture().sha256
    assert answer(service.regenerate(sid)).startswith("I see 1 picture")
    other = picture("blue.png", 8, 8, (0, 0, 200))
    assert answer(service.edit(sid, edited.id, "this one?", images=[other])).startswith("I see 1 picture, 8x8.")


def test_a_text_only_model_refuses_pictures_before_storing_anything(store: HistoryStore, tmp_path: Path) -> None:
    service = ChatService(store, FakeBackend(model_id="qwen2.5-0.5b"))
    sid = new_chat(store)
    with pytest.raises(InputError) as refused:
        service.send(sid, "what is this?", images=[picture()])
    text = str(refused.value)
    assert "qwen2.5-0.5b" in text and "pictures" in text and "Qwen2-VL" in text and "SmolVLM" in text
    with pytest.raises(InputError, match="cannot see pictures"):
        service.check_message(None, "", images=[picture()])  # a draft chat: refused before it is created
    assert store.messages(sid) == [] and files(tmp_path) == []
    answer(service.send(sid, "just text then"))  # the chat goes on


def test_switching_to_a_text_only_model_turns_earlier_pictures_into_a_note(store: HistoryStore) -> None:
    sid = new_chat(store)
    answer(ChatService(store, FakeBackend(images=True)).send(sid, "look", images=[picture()]))
    text_only = FakeBackend()
    service = ChatService(store, text_only)
    answer(service.send(sid, "what did I show you?"))
    first = text_only.prompts[-1][0]
    assert "images" not in first and first["content"].startswith("look\n\n[a picture attached here")
    with pytest.raises(InputError, match="cannot see pictures"):
        service.regenerate(sid, message_id=store.messages(sid)[1].id)  # answering the picture again: refused


def test_history_with_pictures_is_trimmed_to_the_context_window(store: HistoryStore) -> None:
    backend = FakeBackend(images=True, context_window=IMAGE_TOKENS * 3 + 60)
    service = ChatService(store, backend)
    sid = new_chat(store, max_new_tokens=20)
    for i in range(3):
        answer(service.send(sid, f"picture {i}", images=[picture(f"{i}.png", color=(i * 50, 0, 0))]))
    events = service.send(sid, "last", images=[picture("last.png")])
    started = next(events)
    assert started.omitted_turns >= 2  # each picture costs IMAGE_TOKENS: older turns are left out of the prompt
    assert answer(events).startswith("I see 1 picture")
    assert len(store.messages(sid)) == 8  # and stay stored


def test_too_many_pictures_are_refused_with_nothing_stored(store: HistoryStore, tmp_path: Path) -> None:
    service = ChatService(store, FakeBackend(images=True))
    sid = new_chat(store)
    with pytest.raises(InputError, match="9 pictures.*at most 8"):
        service.send(sid, "nine", images=[picture(f"{i}.png", color=(i, 0, 0)) for i in range(9)])
    with pytest.raises(InputError, match="empty"):
        service.send(sid, "   ")
    assert store.messages(sid) == [] and files(tmp_path) == []


def test_a_missing_picture_file_in_history_does_not_block_the_chat(store: HistoryStore) -> None:
    backend = FakeBackend(images=True)
    service = ChatService(store, backend)
    sid = new_chat(store)
    answer(service.send(sid, "look", images=[picture()]))
    first = store.messages(sid)[0]
    store.images_of(first.id)[0].path.unlink()
    answer(service.send(sid, "next"))
    assert "[a picture no longer available]" in backend.prompts[-1][0]["content"]
    with pytest.raises(StorageError, match="missing"):
        service.regenerate(sid, message_id=store.messages(sid)[1].id)  # answering that very picture again


def test_an_api_exchange_stores_the_request_pictures(tmp_path: Path) -> None:
    """``core.api.record.start_exchange`` stores ``Prepared.user_images`` (set by the API's request preparation)
    with the user message, like the chat view does; a Prepared without the attribute stores none."""
    from types import SimpleNamespace

    from core.api.record import start_exchange
    from core.config import load_settings
    from core.engine import build_engine

    settings = load_settings({"home": str(tmp_path / "data"), "model": "fake"}, config_file=tmp_path / "none.toml")
    engine = build_engine(settings, backend=FakeBackend(images=True))
    try:
        prep = SimpleNamespace(session="new", config=engine.chat_config(), user_text="what is it?", persona=None,
                               user_images=[picture()])  # fmt: skip
        recorder = start_exchange(engine, prep)
        question = engine.store.get_message(engine.store.get_message(recorder.answer_id).parent_id or "")
        assert question.content == "what is it?" and [p.name for p in engine.store.images_of(question.id)] == \
            ["red.png"]
        del prep.user_images
        prep.session = recorder.session_id
        again = start_exchange(engine, prep)
        assert engine.store.images_of(engine.store.get_message(again.answer_id).parent_id or "") == []
    finally:
        engine.store.close()
