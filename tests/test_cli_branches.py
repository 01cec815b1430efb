"""The CLI's branches (issue 20), in-process on a temp data dir with the scripted ``fake`` model: ``chat
--session ID --edit MESSAGE_ID "text"`` answers an edit and keeps the old branch, ``sessions show --tree``
draws both with the current path marked, ``sessions branch`` switches back, ``sessions fork`` copies a path
into a new session, ``sessions export --format json`` carries the tree; bad ids fail with status 1."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.cli import main
from core.history.store import HistoryStore


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_edit_tree_branch_fork_from_the_command_line(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "chat", "--model", "fake", "--json", "first question")
    sid = json.loads(out.splitlines()[-1])["session_id"]
    for text in ("second question", "third question"):
        assert cli(capsys, "chat", "--model", "fake", "--session", sid, text)[0] == 0
    store = HistoryStore.open(home / "inkstone.db")
    first = store.messages(sid)[0]
    store.close()

    code, out, _ = cli(capsys, "chat", "--model", "fake", "--session", sid, "--edit", first.id, "edited question")
    assert code == 0 and "You said: edited question" in out
    code, out, _ = cli(capsys, "sessions", "show", sid, "--tree")
    assert code == 0 and "8 messages, 2 on the current path" in out
    lines = out.splitlines()
    old = next(line for line in lines if "user: first question" in line)
    new = next(line for line in lines if "user: edited question" in line)
    assert old.startswith("  ├─ ") and new.startswith("* └─ ")  # two branches; the edit is current
    assert any("third question" in line and line.startswith("  │  ") for line in lines)  # the old branch, kept

    code, out, _ = cli(capsys, "sessions", "branch", sid, first.id)
    assert code == 0 and "You said: third question" in out
    code, out, _ = cli(capsys, "sessions", "export", sid, "--format", "json")
    data = json.loads(out)
    assert [m["content"] for m in data["messages"]][-1] == "You said: third question" and len(data["tree"]) == 8

    store = HistoryStore.open(home / "inkstone.db")
    second_answer = store.messages(sid)[3]
    store.close()
    code, out, _ = cli(capsys, "sessions", "fork", sid, second_answer.id, "--json")
    fork = json.loads(out)["session"]
    code, out, _ = cli(capsys, "sessions", "show", fork)
    assert code == 0 and "You said: second question" in out and "third" not in out


def test_bad_ids_fail_with_a_message(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "chat", "--model", "fake", "--json", "hello")
    sid = json.loads(out.splitlines()[-1])["session_id"]
    code, _, err = cli(capsys, "sessions", "branch", sid, "no-such-message")
    assert code == 1 and "no-such-message" in err
    code, _, err = cli(capsys, "chat", "--model", "fake", "--session", sid, "--edit", "no-such-message", "x")
    assert code == 1 and "no-such-message" in err
    code, _, err = cli(capsys, "chat", "--model", "fake", "--edit", "m1", "x")
    assert code == 1 and "--edit needs --session" in err
    code, _, err = cli(capsys, "chat", "--model", "fake", "--session", sid, "--edit", "m1", "--tools", "datetime", "x")
    assert code == 1 and "--edit and --tools do not go together" in err
    store = HistoryStore.open(home / "inkstone.db")
    answer = store.messages(sid)[1]
    store.close()
    code, _, err = cli(capsys, "chat", "--model", "fake", "--session", sid, "--edit", answer.id, "x")
    assert code == 1 and "not a user message" in err


def test_mark_good_and_export_training_data(home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "chat", "--model", "fake", "--json", "teach me")
    sid = json.loads(out.splitlines()[-1])["session_id"]
    code, _, err = cli(capsys, "sessions", "training-data", sid)
    assert code == 1 and "marked as good" in err
    store = HistoryStore.open(home / "inkstone.db")
    answer = store.messages(sid)[1]
    store.close()
    assert cli(capsys, "sessions", "good", sid, answer.id)[0] == 0
    target = tmp_path / "good.jsonl"
    code, out, _ = cli(capsys, "sessions", "training-data", sid, "-o", str(target))
    assert code == 0 and "1 training record" in out
    assert json.loads(target.read_text(encoding="utf-8")) == {"messages": [
        {"role": "user", "content": "teach me"}, {"role": "assistant", "content": "You said: teach me"}]}
    code, _, err = cli(capsys, "sessions", "training-data")
    assert code == 1 and "--persona" in err
