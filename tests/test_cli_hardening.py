"""Bad input and faults at the command line, as a new user meets them: undecodable bytes, refused flags that
must not be saved, a persona's too-large system prompt named as the cause, an answer left ``streaming`` by a
killed process (settled by any CLI command, never while its writer lives), and a closed pipe."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from core import cli
from core.cli import main
from core.history.store import HistoryStore

REPO = Path(__file__).resolve().parents[1]


def sessions(home: Path) -> list:
    store = HistoryStore.open(home / "inkstone.db")
    try:
        return store.list_sessions()
    finally:
        store.close()


def test_invalid_utf8_message_is_refused_without_a_session(home: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "core", "chat", "--model", "fake", b"bad \xff\xfe"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "not valid UTF-8" in proc.stderr and "\\xff\\xfe" in proc.stderr
    assert sessions(home) == []


def test_repl_reports_invalid_utf8_and_goes_on(home: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "core", "chat", "--model", "fake"],
        input=b"bad \xff\xfe\nhello\n", cwd=REPO, capture_output=True, timeout=120,
    )
    err, out = proc.stderr.decode("utf-8", "replace"), proc.stdout.decode("utf-8", "replace")
    assert proc.returncode == 0 and "Traceback" not in err
    assert "not valid UTF-8" in err and "You said: hello" in out
    (only,) = sessions(home)  # one session, for the good line only
    assert only.title == "hello"


def test_refused_flags_are_not_saved_in_the_session(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["chat", "--model", "fake", "--json", "hi"]) == 0
    sid = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["session_id"]
    before = sessions(home)[0].settings
    assert main(["chat", "--model", "fake", "--session", sid, "--max-new-tokens", "32768", "x"]) == 1
    assert "max_new_tokens 32768 leaves no room" in capsys.readouterr().err
    assert sessions(home)[0].settings == before
    assert main(["chat", "--model", "fake", "--session", sid, "again"]) == 0  # the session still works


def test_persona_system_prompt_too_large_is_named_and_not_saved(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    adapters = tmp_path / "adapters"
    (adapters / "verbose").mkdir(parents=True)
    (adapters / "verbose" / "persona.toml").write_text(
        f'name = "Verbose"\nsystem_prompt = "{"blah " * 5000}"\n', encoding="utf-8"
    )
    monkeypatch.setenv("INKSTONE_ADAPTERS", str(adapters))
    assert main(["chat", "--model", "fake", "--json", "hi"]) == 0
    sid = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["session_id"]
    assert main(["chat", "--model", "fake", "--session", sid, "--persona", "verbose", "hi"]) == 1
    err = capsys.readouterr().err
    assert "system prompt of persona 'verbose' needs" in err and "shorten the message" not in err
    assert sessions(home)[0].persona is None
    assert main(["chat", "--model", "fake", "--persona", "verbose", "hi"]) == 1  # a new chat: none made
    assert len(sessions(home)) == 1


def test_session_system_prompt_is_honoured_by_the_cli(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = HistoryStore.open(home / "inkstone.db")
    sid = store.create_session(model="fake", settings={"system_prompt": "word " * 5000}).id
    store.close()
    assert main(["chat", "--model", "fake", "--session", sid, "hi"]) == 1
    assert "system prompt of this chat's stored system_prompt needs" in capsys.readouterr().err


def test_answer_of_a_killed_process_is_settled_by_the_cli_never_while_it_runs(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = home / "inkstone.db"
    script = textwrap.dedent(
        f"""
        import time
        from core.backends.fake import FakeBackend
        from core.chat.service import ChatService, Token
        from core.history.store import HistoryStore
        store = HistoryStore.open({str(db)!r})
        sid = store.create_session(model="fake").id
        service = ChatService(store, FakeBackend([" ".join(f"w{{i}}" for i in range(100))], delay_s=0.01))
        for n, event in enumerate(e for e in service.send(sid, "tell me a long story") if isinstance(e, Token)):
            if n == 60:
                print(sid, flush=True)
                time.sleep(120)  # still writing this answer
        """
    )
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        sid = proc.stdout.readline().strip()
        assert main(["sessions", "show", sid, "--json"]) == 0
        shown = json.loads(capsys.readouterr().out)
        assert shown["messages"][-1]["status"] == "streaming"  # its writer is alive: left alone
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert main(["sessions", "show", sid, "--json"]) == 0
    answer = json.loads(capsys.readouterr().out)["messages"][-1]
    assert answer["status"] == "stopped" and answer["content"].startswith("w0 w1") and "Interrupted" in answer["error"]
    assert main(["chat", "--model", "fake", "--session", sid, "--json", "Continue the story."]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    # the fake model counts words + 4 per message + 2: the partial answer is part of the prompt
    assert result["prompt_tokens"] == (5 + 4) + (len(answer["content"].split()) + 4) + (3 + 4) + 2


def test_closed_pipe_ends_quietly(home: Path) -> None:
    store = HistoryStore.open(home / "inkstone.db")
    for i in range(300):
        store.create_session(model="fake", title=f"chat number {i} " + "x" * 50)
    store.close()
    for _ in range(3):
        proc = subprocess.run(
            ["bash", "-c", f'"{sys.executable}" -m core sessions list --json | head -c 10; exit ${{PIPESTATUS[0]}}'],
            cwd=REPO, capture_output=True, text=True, timeout=120, env={**os.environ},
        )
        assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr
        assert proc.returncode == 0 and len(proc.stdout) == 10


def test_ctrl_c_outside_an_answer_exits_130_without_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "slow_cmd.py").write_text("def main(argv):\n    raise KeyboardInterrupt\n", encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(cli.COMMANDS, "slow", ("slow_cmd", "a command the user interrupts"))
    assert main(["slow"]) == 130
    assert "interrupted" in capsys.readouterr().err


def test_a_flag_repairs_a_bad_stored_setting(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = HistoryStore.open(home / "inkstone.db")
    sid = store.create_session(model="fake", settings={"temperature": 9.0}).id
    store.close()  # saved by something that did not check it first
    assert main(["chat", "--model", "fake", "--session", sid, "hi"]) == 1
    assert "temperature=9.0 is out of range" in capsys.readouterr().err
    assert main(["chat", "--model", "fake", "--session", sid, "--temperature", "0.5", "hi"]) == 0
    assert sessions(home)[0].settings["temperature"] == 0.5


def test_undecodable_bytes_in_other_arguments_are_errors_not_tracebacks(home: Path) -> None:
    for argv in (["sessions", "search", b"caf\xe9"], ["sessions", "show", b"\xff"], ["chat", "--model", "fake",
                                                                                      "--session", b"\xff", "hi"]):
        proc = subprocess.run([sys.executable, "-m", "core", *argv], cwd=REPO, capture_output=True, text=True,
                              timeout=120)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, argv
        assert "not valid UTF-8" in proc.stderr
