"""Pictures in the history (``core.history.images``): stored once by content hash under the data dir, never in the
SQLite file, linked to messages in order, removed from disk when no message uses them, nothing stored half."""

from __future__ import annotations

import io
import sqlite3
from pathlib import Path

import pytest
from PIL import Image
from sqlite_utils import Database

from core.errors import InputError, NotFoundError, StorageError
from core.history.store import HistoryStore
from core.images import ImageInput, read_image
from core.storage.migrations import migrate


def png(width: int = 32, height: int = 24, color: tuple[int, int, int] = (200, 30, 30), kind: str = "PNG") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, kind)
    return buffer.getvalue()


def picture(name: str = "red.png", **kwargs: object) -> ImageInput:
    return read_image(png(**kwargs), name)  # type: ignore[arg-type]


def files(home: Path) -> list[Path]:
    root = home / "images"
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


@pytest.fixture
def store(tmp_path: Path):
    db = HistoryStore.open(tmp_path / "inkstone.db")
    yield db
    db.close()


def test_the_same_picture_twice_is_one_file_outside_the_database(store: HistoryStore, tmp_path: Path) -> None:
    chat = store.create_session(model="m")
    red, blue = picture(), picture("blue.jpg", color=(0, 0, 250), kind="JPEG")
    first = store.add_message(chat.id, "user", "what is this?", images=[red, blue])
    second = store.add_message(chat.id, "user", "and again", images=[red])
    assert [p.name for p in files(tmp_path)] == sorted([f"{red.sha256}.png", f"{blue.sha256}.jpg"])
    assert files(tmp_path)[0].parent.name == files(tmp_path)[0].name[:2]  # images/ab/abcd....png
    assert [(i.name, i.mime, i.width, i.height) for i in store.images_of(first.id)] == [
        ("red.png", "image/png", 32, 24), ("blue.jpg", "image/jpeg", 32, 24)]
    assert store.images_of(second.id)[0].read().data == red.data
    assert red.data not in (tmp_path / "inkstone.db").read_bytes()  # the bytes are not in the SQLite file
    assert store.get_session(chat.id).title == "what is this?"


def test_a_file_goes_when_no_message_uses_it_any_more(store: HistoryStore, tmp_path: Path) -> None:
    chat = store.create_session(model="m")
    red, green = picture(), picture("green.png", color=(0, 200, 0))
    one = store.add_message(chat.id, "user", "one", images=[red, green])
    answer = store.add_message(chat.id, "assistant", "a red and a green square")
    two = store.add_message(chat.id, "user", "two", images=[red])
    other = store.create_session(model="m")
    store.add_message(other.id, "user", "", images=[green])  # a picture alone, no text
    assert store.get_session(other.id).title == "[green.png]"
    store.delete_branch(two.id)
    assert len(files(tmp_path)) == 2  # red is still used by "one"
    store.delete_branch(one.id)
    assert [p.name for p in files(tmp_path)] == [f"{green.sha256}.png"]  # green is still used by the other chat
    with pytest.raises(NotFoundError):
        store.get_message(answer.id)
    store.delete_session(other.id)
    assert files(tmp_path) == []


def test_a_fork_keeps_the_pictures_and_outlives_its_source(store: HistoryStore, tmp_path: Path) -> None:
    chat = store.create_session(model="m")
    red = picture()
    question = store.add_message(chat.id, "user", "look", images=[red])
    store.add_message(chat.id, "assistant", "a square")
    fork = store.fork_session(store.messages(chat.id)[-1].id)
    copied = store.messages(fork.id)[0]
    assert copied.id != question.id and [i.sha256 for i in store.images_of(copied.id)] == [red.sha256]
    store.delete_session(chat.id)
    assert store.images_of(copied.id)[0].read().sha256 == red.sha256  # the fork still has the file


def test_a_refused_message_leaves_no_file_and_no_row(store: HistoryStore, tmp_path: Path) -> None:
    chat = store.create_session(model="m")
    red = picture()
    with pytest.raises(InputError, match="at most 8"):
        store.add_message(chat.id, "user", "nine", images=[picture(f"{i}.png", color=(i, 0, 0)) for i in range(9)])
    with pytest.raises(InputError, match="Only your own messages"):
        store.add_message(chat.id, "assistant", "no", images=[red])
    with pytest.raises(NotFoundError):
        store.add_message("no such session", "user", "x", images=[red])
    assert files(tmp_path) == [] and store.message_count(chat.id) == 0
    with store.db.conn:
        assert store.db.execute("SELECT count(*) FROM message_images").fetchone()[0] == 0


def test_a_failed_commit_removes_the_files_it_wrote(store: HistoryStore, tmp_path: Path) -> None:
    chat = store.create_session(model="m")
    store.db.execute("CREATE TRIGGER refuse BEFORE INSERT ON message_images BEGIN SELECT RAISE(ABORT, 'disk full'); "
                     "END")
    with pytest.raises(StorageError):
        store.add_message(chat.id, "user", "x", images=[picture()])
    assert files(tmp_path) == [] and store.message_count(chat.id) == 0


def test_leftovers_of_a_crash_are_removed_on_open(tmp_path: Path) -> None:
    store = HistoryStore.open(tmp_path / "inkstone.db")
    chat = store.create_session(model="m")
    kept = picture()
    store.add_message(chat.id, "user", "keep", images=[kept])
    orphan = picture("orphan.png", color=(1, 2, 3))
    store.image_files.write(orphan)  # written, then the process died before its row was committed
    temp = store.image_files.root / "ab" / f".{'ab' * 32}.{'0' * 32}.tmp"
    temp.parent.mkdir(parents=True, exist_ok=True)
    temp.write_bytes(b"half a picture")
    foreign = store.image_files.root / "notes.txt"
    foreign.write_text("not Inkstone's")
    store.close()
    again = HistoryStore.open(tmp_path / "inkstone.db")
    assert [p.name for p in files(tmp_path)] == sorted([f"{kept.sha256}.png", "notes.txt"])
    assert not temp.parent.exists()  # its folder went with it
    again.close()


def test_a_missing_file_is_a_clear_error(store: HistoryStore, tmp_path: Path) -> None:
    chat = store.create_session(model="m")
    message = store.add_message(chat.id, "user", "x", images=[picture("cat.png")])
    [stored] = store.images_of(message.id)
    stored.path.unlink()
    with pytest.raises(StorageError, match="cat.png.*missing.*restore the file"):
        stored.read()


def test_an_old_database_gets_the_pictures_table(tmp_path: Path) -> None:
    path = tmp_path / "inkstone.db"
    old = Database(sqlite3.connect(path))
    migrate(old, until="m008_tool_calls")
    old.execute("INSERT INTO sessions (id, title, model, created_at, updated_at) VALUES ('s', 'old', 'm', 't', 't')")
    old.execute("INSERT INTO messages (id, session_id, role, content, created_at) VALUES ('a', 's', 'user', 'hi', 't')")
    old.conn.commit()
    old.close()
    store = HistoryStore.open(path)
    assert store.images_of("a") == []
    reply = store.add_message("s", "user", "now with a picture", images=[picture()])
    assert len(store.images_of(reply.id)) == 1
    store.close()


def test_an_in_memory_store_keeps_pictures_in_a_temporary_folder() -> None:
    store = HistoryStore(Database(sqlite3.connect(":memory:", check_same_thread=False)))
    chat = store.create_session(model="m")
    message = store.add_message(chat.id, "user", "x", images=[picture()])
    root = store.image_files.root
    assert store.images_of(message.id)[0].read().width == 32
    store.close()
    assert not root.exists()
