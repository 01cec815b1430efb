"""Pictures in exports: the JSON carries a user message's pictures as OpenAI ``image_url`` parts (data URLs), in
``messages`` and in ``tree``; import restores them as stored pictures; a bad picture in a document is refused with
the others' problems and nothing is imported; Markdown names them."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from core.errors import InputError
from core.history.export import session_from_json, session_to_json, session_to_markdown
from core.history.store import HistoryStore
from core.images import read_image


def png(width: int = 32, height: int = 24, color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture
def store(tmp_path: Path) -> Iterator[HistoryStore]:
    s = HistoryStore.open(tmp_path / "inkstone.db")
    yield s
    s.close()


def chat_with_pictures(store: HistoryStore) -> str:
    sid = store.create_session(model="vlm").id
    first = store.add_message(sid, "user", "what is this?", images=[read_image(png(), "red.png")])
    store.add_message(sid, "assistant", "A red square.")
    store.add_message(sid, "user", "", parent_id=first.parent_id,
                      images=[read_image(png(8, 8, (0, 0, 200)), "blue.png"), read_image(png(), "red.png")])
    store.add_message(sid, "assistant", "Blue and red.")
    return sid


def export(store: HistoryStore, sid: str) -> dict:
    tree = store.all_messages(sid)
    pictures = store.images_for(m.id for m in tree)
    data = session_to_json(store.get_session(sid), store.messages(sid), tree=tree, images=pictures)
    return json.loads(json.dumps(data))


def test_pictures_round_trip_as_image_url_parts(store: HistoryStore, tmp_path: Path) -> None:
    sid = chat_with_pictures(store)
    data = export(store, sid)
    question = data["messages"][0]["content"]  # the current path: the edit with two pictures and no text
    assert [part["type"] for part in question] == ["image_url", "image_url"]
    assert question[0]["image_url"]["url"].startswith("data:image/png;base64,")
    assert base64.b64decode(question[1]["image_url"]["url"].split(",", 1)[1]) == png()
    first = data["tree"][0]["content"]
    assert first[0] == {"type": "text", "text": "what is this?"} and first[1]["type"] == "image_url"
    assert data["messages"][1]["content"] == "Blue and red."

    copy = session_from_json(store, data)
    copied = store.all_messages(copy.id)
    restored = {m.content: [(p.width, p.height, p.read().data) for p in store.images_of(m.id)]
                for m in copied if m.role == "user"}  # fmt: skip
    assert restored == {"what is this?": [(32, 24, png())], "": [(8, 8, png(8, 8, (0, 0, 200))), (32, 24, png())]}
    assert len([p for p in (tmp_path / "images").rglob("*") if p.is_file()]) == 2  # the same files, still once
    assert export(store, copy.id)["messages"] == data["messages"]


def test_markdown_names_the_pictures(store: HistoryStore) -> None:
    sid = chat_with_pictures(store)
    tree = store.all_messages(sid)
    text = session_to_markdown(store.get_session(sid), store.messages(sid), images=store.images_for(m.id for m in tree))
    assert "[picture 1: blue.png, 8 x 8]" in text and "[picture 2: red.png, 32 x 24]" in text


def _document(url: str, count: int = 1, role: str = "user") -> dict:
    parts = [{"type": "text", "text": "look"}] + [{"type": "image_url", "image_url": {"url": url}}] * count
    return {"model": "vlm", "messages": [{"role": role, "content": parts}]}


GOOD = "data:image/png;base64," + base64.b64encode(png()).decode()


@pytest.mark.parametrize(("document", "words"), [
    (_document("data:image/png,notbase64"), "not base64"),
    (_document("data:image/png;base64,@@@@"), "base64 payload is damaged"),
    (_document("https://example.com/cat.png"), "not a data: URL"),
    (_document("data:image/png;base64," + base64.b64encode(b"plain text").decode()), "not a picture"),
    (_document("data:image/svg+xml;base64," + base64.b64encode(b"<svg xmlns='http://www.w3.org/2000/svg'/>").decode()),
     "not a picture"),
    (_document(GOOD, count=9), "9 pictures"),
    (_document(GOOD, role="assistant"), "only user messages carry them"),
    ({"model": "vlm", "messages": [{"role": "user", "content": [{"type": "audio"}]}]}, "not a"),
])
def test_a_bad_picture_imports_nothing(store: HistoryStore, tmp_path: Path, document: dict, words: str) -> None:
    document["messages"].append({"role": "user", "content": 5})  # problems are listed together
    with pytest.raises(InputError) as refused:
        session_from_json(store, document)
    assert words in str(refused.value) and "messages[0].content" in str(refused.value)
    assert "messages[1].content is missing or not a string" in str(refused.value)
    assert store.list_sessions() == [] and not (tmp_path / "images").exists()


def test_a_good_document_with_pictures_imports(store: HistoryStore) -> None:
    session = session_from_json(store, _document(GOOD, count=2))
    [message] = store.messages(session.id)
    assert message.content == "look" and [p.name for p in store.images_of(message.id)] == ["image 1", "image 2"]
