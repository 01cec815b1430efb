"""``python -m core sessions``: list, show, export (md/json, stdout and --output), delete and search, each
with --json, run in-process through ``main([...])`` on a temp data dir; errors go to stderr with exit
status 1; and one real ``python -m core sessions list --json`` subprocess.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.cli.sessions import main
from core.history.store import HistoryStore, Session

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def chat(home: Path) -> Session:
    store = HistoryStore.open(home / "inkstone.db")
    s = store.create_session(model="m", persona="tutor")
    store.add_message(s.id, "user", "法国的首都是哪里？")
    answer = store.add_message(s.id, "assistant", "首都是巴黎。")
    store.update_message(answer.id, sources=[{"file": "geo.pdf", "page": 3}])
    other = store.create_session(model="m", title="Shopping list")
    store.add_message(other.id, "user", "eggs and milk")
    session = store.get_session(s.id)
    store.close()
    return session


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_list(home: Path, chat: Session, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "list", "--json", "--home", str(home))
    assert code == 0
    rows = json.loads(out)
    assert [r["title"] for r in rows] == ["Shopping list", "法国的首都是哪里？"]
    assert rows[1]["id"] == chat.id and rows[1]["message_count"] == 2
    code, out, _ = run_cli(capsys, "list", "--home", str(home))
    assert code == 0 and chat.id in out and "法国的首都是哪里？" in out
    code, out, _ = run_cli(capsys, "list", "--json", "--limit", "1", "--home", str(home))
    assert [r["title"] for r in json.loads(out)] == ["Shopping list"]


def test_list_uses_inkstone_home_without_flag(home: Path, chat: Session, capsys) -> None:
    code, out, _ = run_cli(capsys, "list", "--json")
    assert code == 0 and len(json.loads(out)) == 2


def test_show(home: Path, chat: Session, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "show", chat.id, "--json", "--home", str(home))
    data = json.loads(out)
    assert code == 0 and data["session"]["id"] == chat.id
    assert [m["content"] for m in data["messages"]] == ["法国的首都是哪里？", "首都是巴黎。"]
    code, out, _ = run_cli(capsys, "show", chat.id, "--home", str(home))
    assert (
        "user: 法国的首都是哪里？" in out and "assistant: 首都是巴黎。" in out and "[1] geo.pdf, p. 3" in out
    )


def test_export_stdout_and_file(home: Path, chat: Session, tmp_path: Path, capsys) -> None:
    code, out, _ = run_cli(capsys, "export", chat.id, "--format", "md", "--home", str(home))
    assert code == 0 and out.startswith("# 法国的首都是哪里？") and "**Assistant**" in out
    code, out, _ = run_cli(capsys, "export", chat.id, "--format", "json", "--home", str(home))
    assert code == 0 and json.loads(out)["messages"][1] == {
        "role": "assistant", "content": "首都是巴黎。", "sources": [{"file": "geo.pdf", "page": 3}]
    }  # fmt: skip
    target = tmp_path / "chat.json"
    code, out, _ = run_cli(
        capsys, "export", chat.id, "--format", "json", "-o", str(target), "--json", "--home", str(home)
    )
    assert code == 0 and json.loads(out) == {"exported": chat.id, "format": "json", "path": str(target)}
    assert json.loads(target.read_text(encoding="utf-8"))["title"] == "法国的首都是哪里？"


def test_search(home: Path, chat: Session, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "search", "巴黎", "--json", "--home", str(home))
    hits = json.loads(out)
    assert code == 0 and [(h["session_id"], h["role"]) for h in hits] == [(chat.id, "assistant")]
    code, out, _ = run_cli(capsys, "search", "shopping", "--sessions", "--json", "--home", str(home))
    assert [r["title"] for r in json.loads(out)] == ["Shopping list"]
    code, out, _ = run_cli(capsys, "search", "eggs", "--home", str(home))
    assert code == 0 and "eggs and milk" in out


def test_delete_prints_what_it_deleted(home: Path, chat: Session, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "delete", chat.id, "--json", "--home", str(home))
    assert code == 0 and json.loads(out) == {"deleted": chat.id, "title": chat.title, "messages": 2}
    code, out, err = run_cli(capsys, "delete", chat.id, "--home", str(home))
    assert code == 1 and out == "" and chat.id in err and err.startswith("error:")


def test_errors_go_to_stderr_with_status_1(home: Path, tmp_path: Path, capsys) -> None:
    code, out, err = run_cli(capsys, "show", "nope", "--home", str(home))
    assert code == 1 and out == "" and "'nope'" in err
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "inkstone.db").write_bytes(b"not a database at all" * 100)
    code, out, err = run_cli(capsys, "list", "--home", str(bad))
    assert code == 1 and "move the file aside" in err


def test_subprocess_list_json(home: Path, chat: Session) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "core", "sessions", "list", "--json", "--home", str(home)],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, encoding="utf-8", timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert [r["id"] for r in json.loads(result.stdout)][-1] == chat.id


def test_export_never_overwrites_the_database_or_data_dir_files(home: Path, chat: Session, tmp_path: Path,
                                                                  capsys) -> None:
    db = home / "inkstone.db"
    (home / "cache").mkdir(exist_ok=True)
    for target in (db, Path(f"{db}-wal"), Path(f"{db}-shm"), home / "cache" / "x.md", home):
        code, _, err = run_cli(capsys, "export", chat.id, "-o", str(target), "--force", "--home", str(home))
        assert code == 1 and "inside Inkstone's data dir" in err, target
    link = tmp_path / "innocent.md"
    link.symlink_to(db)
    code, _, err = run_cli(capsys, "export", chat.id, "-o", str(link), "--force", "--home", str(home))
    assert code == 1 and "inside Inkstone's data dir" in err
    store = HistoryStore.open(db)  # every session is still there
    assert len(store.list_sessions()) == 2
    store.close()


def test_export_asks_for_force_to_replace_a_file(home: Path, chat: Session, tmp_path: Path, capsys) -> None:
    target = tmp_path / "notes.md"
    target.write_text("my notes", encoding="utf-8")
    code, _, err = run_cli(capsys, "export", chat.id, "-o", str(target), "--home", str(home))
    assert code == 1 and "already exists" in err and "--force" in err
    assert target.read_text(encoding="utf-8") == "my notes"
    code, _, _ = run_cli(capsys, "export", chat.id, "-o", str(target), "--force", "--home", str(home))
    assert code == 0 and target.read_text(encoding="utf-8").startswith("# 法国的首都是哪里？")


def test_list_limit_must_be_positive(home: Path, chat: Session, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["list", "--limit", "0", "--home", str(home)])
    assert exit_.value.code == 2 and "'0' is not a whole number >= 1" in capsys.readouterr().err
    code, out, _ = run_cli(capsys, "list", "--limit", "1", "--home", str(home))
    assert code == 0 and len(out.strip().splitlines()) == 1


def test_export_carries_the_rag_switch_and_knowledge_bases(home: Path, chat: Session, capsys) -> None:
    from core.kb.rows import KnowledgeRows, SessionKnowledge

    rows = KnowledgeRows.open(home / "inkstone.db")
    kept = rows.add_kb("产品手册", "c-1", "minilm", 384, 500, 50)
    dropped = rows.add_kb("Old notes", "c-2", "minilm", 384, 500, 50)
    rows.set_session_knowledge(chat.id, SessionKnowledge(True, (kept.id, dropped.id)))
    rows.delete_kb(dropped.id)
    rows.close()
    code, out, _ = run_cli(capsys, "export", chat.id, "--format", "json", "--home", str(home))
    data = json.loads(out)
    assert code == 0 and (data["rag"], data["knowledge_bases"]) == (True, ["产品手册"])
    code, out, _ = run_cli(capsys, "export", chat.id, "--format", "md", "--home", str(home))
    assert code == 0 and "· RAG: on (产品手册)" in out.splitlines()[2]

    store = HistoryStore.open(home / "inkstone.db")
    other = next(s for s in store.list_sessions() if s.id != chat.id)
    store.close()
    code, out, _ = run_cli(capsys, "export", other.id, "--format", "json", "--home", str(home))
    assert (json.loads(out)["rag"], json.loads(out)["knowledge_bases"]) == (False, [])  # never set: off
    code, out, _ = run_cli(capsys, "export", other.id, "--home", str(home))
    assert "· RAG: off" in out
