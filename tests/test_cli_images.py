"""``python -m core chat --image PATH "question"`` (in-process, temp data dir, the scripted ``fake`` model seeing
pictures), the refusals that store nothing (a text-only model, a bad file, a missing path), and pictures through
``sessions show``/``export``/``import``."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image

from core import backends
from core.backends.fake import FakeBackend
from core.cli import main
from core.history.store import HistoryStore


def png(path: Path, width: int = 32, height: int = 24) -> Path:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(buffer, "PNG")
    path.write_bytes(buffer.getvalue())
    return path


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def vision(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(backends.FACTORIES, "fake",
                        lambda profile, settings, progress, options: FakeBackend(model_id=profile.id, images=True,
                                                                                 **options))  # fmt: skip


def stored(home: Path) -> tuple[int, int]:
    """(sessions, picture files) in the data dir."""
    store = HistoryStore.open(home / "inkstone.db")
    try:
        sessions = len(store.list_sessions())
    finally:
        store.close()
    return sessions, len([p for p in (home / "images").rglob("*") if p.is_file()]) if (home / "images").exists() else 0


def test_chat_with_pictures_then_export_and_import(home: Path, tmp_path: Path, vision: None,
                                                   capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    red, big = png(tmp_path / "red.png"), png(tmp_path / "big.png", 64, 48)
    code, out, err = cli(capsys, "chat", "--model", "fake", "--json", "--image", str(red), "--image", str(big),
                         "what is this?")  # fmt: skip
    assert code == 0, err
    result = json.loads(out.splitlines()[-1])
    assert result["reply"] == "I see 2 pictures, 32x24, 64x48. You said: what is this?"
    sid = result["session_id"]
    code, out, _ = cli(capsys, "chat", "--model", "fake", "--session", sid, "--image", str(red), "")
    assert code == 0 and "I see 1 picture, 32x24." in out  # a picture alone
    assert stored(home) == (1, 2)
    code, out, _ = cli(capsys, "sessions", "show", sid)
    assert "[picture 2: " in out and "big.png, 64 x 48" in out
    exported = tmp_path / "chat.json"
    assert cli(capsys, "sessions", "export", sid, "--format", "json", "--output", str(exported))[0] == 0
    data = json.loads(exported.read_text())
    assert [part["type"] for part in data["messages"][0]["content"]] == ["text", "image_url", "image_url"]
    code, out, err = cli(capsys, "sessions", "import", str(exported))
    assert code == 0, err
    assert stored(home) == (2, 2)  # the imported chat uses the same two files
    code, out, _ = cli(capsys, "sessions", "export", sid, "--format", "md")
    assert "[picture 1: " in out and "32 x 24]" in out


def test_refused_pictures_store_nothing(home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    red = png(tmp_path / "red.png")
    code, _, err = cli(capsys, "chat", "--model", "fake", "--image", str(red), "what is this?")
    assert code == 1 and "cannot see pictures" in err and "Qwen2-VL" in err
    text = tmp_path / "notes.png"
    text.write_text("not a picture at all")
    code, _, err = cli(capsys, "chat", "--model", "fake", "--image", str(text), "what is this?")
    assert code == 1 and "notes.png" in err and "not a picture" in err
    code, _, err = cli(capsys, "chat", "--model", "fake", "--image", str(tmp_path / "gone.png"), "hello")
    assert code == 1 and "Cannot read the picture" in err and "gone.png" in err
    code, _, err = cli(capsys, "chat", "--model", "fake", "--image", str(red))
    assert code == 1 and "--image goes with a MESSAGE" in err
    assert stored(home) == (0, 0)
