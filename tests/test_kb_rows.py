"""Knowledge-base rows (migration m004): tables, an upgrade of an older database, per-session RAG choices,
and the sanitizing of document names and file collection (no Chroma or model needed here)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlite_utils import Database

from core.errors import InputError, NotFoundError
from core.history.store import HistoryStore
from core.kb.files import collect, sanitize_name
from core.kb.rows import KnowledgeRows, SessionKnowledge
from core.storage.migrations import applied_migrations, migrate


def test_an_older_database_is_upgraded_and_keeps_its_sessions(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    db = Database(conn)
    migrate(db, until="m002_search")
    db.execute("INSERT INTO sessions (id, title, model, created_at, updated_at) VALUES ('s1', 'Kept', 'fake', "
               "'2026-01-01', '2026-01-01')")  # fmt: skip
    conn.commit()
    conn.close()
    store = HistoryStore.open(path)
    try:
        assert store.get_session("s1").title == "Kept"
        assert "m004_knowledge" in applied_migrations(store.db)
        assert {"knowledge_bases", "documents", "session_knowledge"} <= set(store.db.table_names())
    finally:
        store.close()


@pytest.fixture
def rows(tmp_path: Path) -> KnowledgeRows:
    rows = KnowledgeRows.open(tmp_path / "inkstone.db")
    yield rows
    rows.close()


def test_documents_and_stats(rows: KnowledgeRows) -> None:
    kb = rows.add_kb("产品手册", "c-1", "minilm", 384, 500, 50)
    assert rows.kb_by_name("产品手册") == kb and rows.kb_by_id(kb.id) == kb
    a = rows.add_document(kb, "a.txt", "h1", 10)
    b = rows.add_document(kb, "b.pdf", "h2", 20)
    rows.update_document(a.id, status="ready", chunks=3, pages=1, warnings=["w"])
    rows.update_document(b.id, status="error", error="encrypted")
    assert rows.kb_stats()[kb.id] == {"documents": 2, "ready": 1, "errors": 1, "ingesting": 0, "chunks": 3}
    assert rows.ready_with_hash(kb.id, "h1").name == "a.txt"
    assert rows.ready_with_hash(kb.id, "h2") is None  # an errored document is not a duplicate to skip
    assert rows.ready_ids([kb.id]) == {a.id}
    [doc_a, doc_b] = rows.documents(kb.id)
    assert (doc_a.warnings, doc_b.error, doc_b.status) == (["w"], "encrypted", "error")
    with pytest.raises(ValueError):
        rows.update_document(a.id, status="bogus")
    rows.delete_kb(kb.id)
    assert rows.kbs() == [] and rows.documents(kb.id) == []


def test_session_choices_survive_reopen_and_go_with_the_session(tmp_path: Path) -> None:
    store = HistoryStore.open(tmp_path / "inkstone.db")
    session = store.create_session(model="fake")
    rows = KnowledgeRows.open(tmp_path / "inkstone.db")
    assert rows.session_knowledge(session.id) == SessionKnowledge(False, ())
    rows.set_session_knowledge(session.id, SessionKnowledge(True, ("k1", "k2")))
    rows.close()
    rows = KnowledgeRows.open(tmp_path / "inkstone.db")
    assert rows.session_knowledge(session.id) == SessionKnowledge(True, ("k1", "k2"))
    store.delete_session(session.id)
    assert rows.session_knowledge(session.id) == SessionKnowledge(False, ())
    rows.close()
    store.close()


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("../../x", "x"),
        ("..\\..\\evil.txt", "evil.txt"),
        ("/etc/passwd", "passwd"),
        ("line1\nline2.txt", "line1 line2.txt"),
        ("..", "document"),
        ("", "document"),
        (".hidden.md", "hidden.md"),
        ("报告\t2024.pdf", "报告 2024.pdf"),
    ],
)
def test_sanitize_name(raw: str, expected: str) -> None:
    assert sanitize_name(raw) == expected


def test_sanitize_keeps_folders_below_an_ingested_folder_only() -> None:
    assert sanitize_name("sub/../a.txt", keep_folders=True) == "sub/a.txt"
    long = sanitize_name("x" * 500 + ".pdf")
    assert len(long) <= 200 and long.endswith(".pdf")


def test_collect_walks_folders_and_reports_what_it_skips(tmp_path: Path) -> None:
    (tmp_path / "docs" / "sub").mkdir(parents=True)
    (tmp_path / "docs" / "a.txt").write_text("a")
    (tmp_path / "docs" / "sub" / "b.md").write_text("b")
    (tmp_path / "docs" / "image.png").write_bytes(b"\x89PNG")
    (tmp_path / "docs" / ".git").mkdir()
    (tmp_path / "docs" / ".git" / "config.txt").write_text("x")
    found = collect([tmp_path / "docs", tmp_path / "docs" / "a.txt", tmp_path / "missing.txt"],
                    frozenset({".txt", ".md"}))  # fmt: skip
    assert [(c.name, c.reason) for c in found] == [
        ("a.txt", None),
        ("image.png", "unsupported file type .png"),
        ("sub/b.md", None),
        ("missing.txt", f"no such file or folder: {tmp_path / 'missing.txt'}"),
    ]


def test_rag_choice_of_an_unknown_session_is_refused(rows: KnowledgeRows) -> None:
    with pytest.raises(NotFoundError, match="No session with id 'nope'"):
        rows.set_session_knowledge("nope", SessionKnowledge(True, ()))


def test_a_name_with_undecodable_bytes_is_an_input_error_not_a_crash(rows: KnowledgeRows) -> None:
    # argv bytes that are not UTF-8 reach Python as lone surrogates; SQLite cannot store or compare them.
    with pytest.raises(InputError, match="not valid UTF-8"):
        rows.kb_by_name("手册\udcff")
    with pytest.raises(InputError, match="not valid UTF-8"):
        rows.add_kb("手册\udcff", "c-1", "minilm", 384, 500, 50)
    assert rows.kbs() == []


def test_kb_cli_reports_a_name_with_undecodable_bytes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from core.cli import main

    code = main(["kb", "show", "--home", str(tmp_path / "data"), "手册\udcff"])
    assert code == 1
    assert "error: Text with bytes that are not valid UTF-8 ('\\udcff')" in capsys.readouterr().err
