"""HistoryStore on a temp SQLite file: sessions (create, list order, rename, update, delete, search in
English and Chinese), messages (roundtrip with stats and sources, order, delete, auto title), the FTS
index staying in sync, recovery of interrupted answers, thread safety, upgrading an older schema, and
the StorageError cases (read-only, locked, corrupt, from a newer Inkstone) that must leave the file as
it was.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlite_utils import Database

from core.errors import InputError, NotFoundError, StorageError
from core.history.store import HistoryStore, auto_title, new_id, now
from core.storage import migrations


@pytest.fixture
def store(tmp_path: Path):
    s = HistoryStore.open(tmp_path / "data" / "inkstone.db")
    yield s
    s.close()


def test_open_creates_folder_wal_and_records_migrations(tmp_path: Path) -> None:
    path = tmp_path / "new" / "dir" / "inkstone.db"
    store = HistoryStore.open(path)
    assert path.is_file()
    assert store.db.journal_mode == "wal"
    assert store.db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    names = [fn.__name__ for fn in migrations.MIGRATIONS]
    assert migrations.applied_migrations(store.db) == names
    store.close()
    # Opening again applies nothing twice.
    again = HistoryStore.open(path)
    assert migrations.applied_migrations(again.db) == names
    assert {"knowledge_bases", "documents", "session_knowledge"} <= set(again.db.table_names())  # m004
    again.close()


def test_ids_and_timestamps_increase() -> None:
    ids = [new_id() for _ in range(2000)]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert all(len(i) == 25 for i in ids)
    stamps = [now() for _ in range(2000)]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)


def test_create_get_list_order_rename_update_delete(store: HistoryStore) -> None:
    a = store.create_session(model="m1", persona="poet", settings={"temperature": 0.2})
    b = store.create_session(model="m2", title="  My   plan ")
    assert a.title == "New chat" and a.title_auto
    assert b.title == "My plan" and not b.title_auto
    assert store.get_session(a.id) == a
    assert [s.id for s in store.list_sessions()] == [b.id, a.id]
    store.add_message(a.id, "user", "hello")  # activity moves a session to the top
    assert [s.id for s in store.list_sessions()] == [a.id, b.id]
    assert [s.id for s in store.list_sessions(limit=1)] == [a.id]

    renamed = store.rename_session(a.id, "  Poems\n about cats ")
    assert renamed.title == "Poems about cats" and not renamed.title_auto
    with pytest.raises(InputError):
        store.rename_session(a.id, "   ")

    updated = store.update_session(a.id, model="m3", settings={"top_k": 5})
    assert (updated.model, updated.persona, updated.settings) == ("m3", "poet", {"top_k": 5})
    assert store.update_session(a.id, persona="").persona is None

    store.delete_session(a.id)
    assert [s.id for s in store.list_sessions()] == [b.id]
    assert store.messages(a.id) == []
    assert store.db.execute("SELECT count(*) FROM messages").fetchone()[0] == 0
    with pytest.raises(NotFoundError, match=a.id):
        store.get_session(a.id)
    with pytest.raises(NotFoundError):
        store.delete_session(a.id)
    with pytest.raises(NotFoundError):
        store.rename_session(a.id, "x")


def test_messages_roundtrip_with_stats_sources_and_order(store: HistoryStore) -> None:
    s = store.create_session(model="m")
    q = store.add_message(s.id, "user", "What is in the report?")
    a = store.add_message(s.id, "assistant", "", status="streaming")
    sources = [{"file": "report.pdf", "page": 3, "text": "Revenue grew."}, {"file": "notes.md"}]
    store.update_message(a.id, content="Revenue grew [1].", status="complete", prompt_tokens=120,
                         completion_tokens=7, ttft_ms=35.5, tokens_per_s=41.25, sources=sources)  # fmt: skip
    got = store.get_message(a.id)
    assert (got.content, got.status, got.prompt_tokens, got.completion_tokens) == (
        "Revenue grew [1].", "complete", 120, 7
    )  # fmt: skip
    assert (got.ttft_ms, got.tokens_per_s, got.sources, got.error) == (35.5, 41.25, sources, None)
    assert [m.id for m in store.messages(s.id)] == [q.id, a.id]
    assert store.message_count(s.id) == 2

    store.update_message(a.id, status="error", error="CUDA out of memory")
    assert (store.get_message(a.id).status, store.get_message(a.id).error) == ("error", "CUDA out of memory")

    store.delete_message(a.id)  # regenerate: the last answer goes
    assert [m.id for m in store.messages(s.id)] == [q.id]
    with pytest.raises(NotFoundError, match=a.id):
        store.get_message(a.id)
    with pytest.raises(NotFoundError):
        store.update_message(a.id, content="x")
    with pytest.raises(InputError):
        store.add_message(s.id, "tool", "x")
    with pytest.raises(InputError):
        store.update_message(q.id, status="done")
    with pytest.raises(NotFoundError):
        store.add_message("nope", "user", "x")


def test_first_user_message_names_the_session(store: HistoryStore) -> None:
    s = store.create_session(model="m")
    store.add_message(s.id, "system", "You are terse.")
    assert store.get_session(s.id).title == "New chat"
    long = "\n  Please   summarise the quarterly report for the board, with numbers\nand more"
    store.add_message(s.id, "user", long)
    title = store.get_session(s.id).title
    assert title == auto_title(long) and title.endswith("…") and len(title) <= 40
    assert title.startswith("Please summarise the quarterly")
    store.add_message(s.id, "user", "Second question")
    assert store.get_session(s.id).title == title
    named = store.create_session(model="m", title="Mine")
    store.add_message(named.id, "user", "Something else")
    assert store.get_session(named.id).title == "Mine"
    assert auto_title("法国的首都是哪里？") == "法国的首都是哪里？"


def test_search_english_and_chinese(store: HistoryStore) -> None:
    fr = store.create_session(model="m")
    store.add_message(fr.id, "user", "What is the capital of France?")
    store.add_message(fr.id, "assistant", "首都是巴黎。")
    py = store.create_session(model="m", title="Python tips")
    store.add_message(py.id, "user", "How do I sort a list (in place)?")

    assert [s.id for s in store.search_sessions("capital")] == [fr.id]
    assert [s.id for s in store.search_sessions("capit FRANCE")] == [fr.id]  # prefix, case-insensitive
    assert [s.id for s in store.search_sessions("巴黎")] == [fr.id]
    assert [s.id for s in store.search_sessions("python")] == [py.id]  # title only
    assert store.search_sessions("capital python") == []
    assert store.search_sessions("   ") == []
    assert [s.id for s in store.search_sessions('sort "list" (in')] == [py.id]  # FTS syntax is literal

    hits = store.search_messages("巴黎")
    assert len(hits) == 1 and hits[0].role == "assistant" and "巴黎" in hits[0].snippet
    assert hits[0].session_id == fr.id and hits[0].session_title == "What is the capital of France?"
    hit = store.search_messages("france")[0]
    assert hit.role == "user" and "France" in hit.snippet
    assert store.search_messages("50%") == [] and store.search_messages("_") == []


def test_fts_stays_in_sync_after_update_and_delete(store: HistoryStore) -> None:
    s = store.create_session(model="m")
    m = store.add_message(s.id, "assistant", "apples are red")

    def indexed(word: str) -> int:
        sql = "SELECT count(*) FROM messages_fts WHERE messages_fts MATCH ?"
        return store.db.execute(sql, [word]).fetchone()[0]

    assert indexed("apples") == 1
    store.update_message(m.id, content="bananas are yellow")
    assert indexed("apples") == 0 and indexed("bananas") == 1
    assert store.search_messages("apples") == [] and len(store.search_messages("bananas")) == 1
    store.update_message(m.id, tokens_per_s=12.0)  # stats updates leave the index alone
    assert indexed("bananas") == 1
    store.rename_session(s.id, "Fruit talk")
    assert [x.id for x in store.search_sessions("fruit")] == [s.id]
    store.delete_message(m.id)
    assert indexed("bananas") == 0
    store.delete_session(s.id)
    assert store.search_sessions("fruit") == []
    assert store.db.execute("INSERT INTO messages_fts (messages_fts) VALUES ('integrity-check')")


def test_recover_interrupted(store: HistoryStore, tmp_path: Path) -> None:
    s = store.create_session(model="m")
    done = store.add_message(s.id, "assistant", "finished")
    cut = store.add_message(s.id, "assistant", "half an ans", status="streaming")
    also = HistoryStore.open(tmp_path / "data" / "inkstone.db")  # while its writer is open: left alone
    assert also.recover_interrupted() == 0 and also.get_message(cut.id).status == "streaming"
    also.close()
    store.close()
    reopened = HistoryStore.open(tmp_path / "data" / "inkstone.db")  # the writer is gone: settled on open
    assert reopened.get_message(cut.id).status == "stopped"
    assert reopened.get_message(cut.id).content == "half an ans"
    assert "Interrupted" in reopened.get_message(cut.id).error
    assert reopened.get_message(done.id).status == "complete"
    assert reopened.recover_interrupted() == 0
    reopened.close()


def test_streaming_rows_of_other_hosts_settle_by_heartbeat(store: HistoryStore) -> None:
    s = store.create_session(model="m")
    fresh = store.add_message(s.id, "assistant", "a", status="streaming")
    old = store.add_message(s.id, "assistant", "b", status="streaming")
    store.db.execute("UPDATE messages SET writer = 'elsewhere/1/1.00/x', updated_at = ? WHERE id = ?",
                     [datetime.now(UTC).isoformat(), fresh.id])
    store.db.execute("UPDATE messages SET writer = 'elsewhere/1/1.00/x', updated_at = ? WHERE id = ?",
                     [(datetime.now(UTC) - timedelta(hours=1)).isoformat(), old.id])
    store.db.conn.commit()
    assert store.recover_interrupted() == 1
    assert (store.get_message(fresh.id).status, store.get_message(old.id).status) == ("streaming", "stopped")


def test_writes_from_several_threads(store: HistoryStore) -> None:
    s = store.create_session(model="m")
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            for i in range(25):
                msg = store.add_message(s.id, "user", f"thread {n} message {i}")
                store.update_message(msg.id, tokens_per_s=float(i))
                store.list_sessions()
        except BaseException as exc:  # collected and re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert store.message_count(s.id) == 100


def test_upgrade_from_older_schema_keeps_rows(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    # An Inkstone that shipped only m001: its schema, its _migrations row, and some history.
    old = Database(sqlite3.connect(path))
    assert migrations.migrate(old, until="m001_initial") == ["m001_initial"]
    t0, t1 = "2024-01-01T00:00:00.000000+00:00", "2024-01-01T00:00:01.000000+00:00"
    old.execute(
        "INSERT INTO sessions (id, title, title_auto, model, persona, settings, created_at, updated_at) "
        "VALUES ('s1', 'Old chat', 0, 'old-model', NULL, '{\"temperature\": 0.5}', ?, ?)",
        [t0, t0],
    )
    old.execute(
        "INSERT INTO messages (id, session_id, role, content, status, created_at, sources) "
        "VALUES ('m1', 's1', 'user', 'Remember the giraffe', 'complete', ?, '[]')",
        [t1],
    )
    assert "messages_fts" not in old.table_names()
    old.close()

    store = HistoryStore.open(path)
    assert migrations.applied_migrations(store.db) == [fn.__name__ for fn in migrations.MIGRATIONS]
    session = store.get_session("s1")
    assert (session.title, session.model, session.settings) == ("Old chat", "old-model", {"temperature": 0.5})
    assert [m.content for m in store.messages("s1")] == ["Remember the giraffe"]
    # m002 indexed the rows that existed before it.
    assert [h.message_id for h in store.search_messages("giraffe")] == ["m1"]
    assert [s.id for s in store.search_sessions("old chat")] == ["s1"]
    store.close()


def test_newer_database_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "inkstone.db"
    HistoryStore.open(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO _migrations VALUES ('m999_from_the_future', 'x')")
    conn.close()
    before = path.read_bytes()
    with pytest.raises(StorageError, match="newer Inkstone") as info:
        HistoryStore.open(path)
    assert str(path) in str(info.value)
    assert path.read_bytes() == before


def test_corrupt_file_is_refused_and_left_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "inkstone.db"
    path.write_bytes(os.urandom(8192))
    before = path.read_bytes()
    with pytest.raises(StorageError, match="move the file aside") as info:
        HistoryStore.open(path)
    assert str(path) in str(info.value) and "never overwrites" in str(info.value)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["inkstone.db"]


def test_locked_database_times_out_with_storage_error(tmp_path: Path) -> None:
    path = tmp_path / "inkstone.db"
    store = HistoryStore.open(path)
    s = store.create_session(model="m")
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StorageError, match="close the other Inkstone process") as info:
            HistoryStore.open(path, timeout=0.2)
        assert str(path) in str(info.value)
        # A store already open reports the lock the same way when it writes.
        store.db.conn.execute("PRAGMA busy_timeout = 200")
        with pytest.raises(StorageError, match="locked"):
            store.add_message(s.id, "user", "hi")
    finally:
        other.execute("ROLLBACK")
        other.close()
    store.add_message(s.id, "user", "hi")  # usable again once the other process lets go
    assert store.message_count(s.id) == 1
    store.close()


def test_read_only_connection_is_refused(tmp_path: Path) -> None:
    # Works as root too: the connection itself is read-only, as a chmod-ed file would make it.
    path = tmp_path / "inkstone.db"
    HistoryStore.open(path).close()
    before = path.read_bytes()
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    with pytest.raises(StorageError, match="check permissions") as info:
        HistoryStore(Database(conn))
    conn.close()
    assert str(path) in str(info.value)
    assert path.read_bytes() == before


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores file permissions")
def test_read_only_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "inkstone.db"
    HistoryStore.open(path).close()
    before = path.read_bytes()
    path.chmod(0o444)
    try:
        with pytest.raises(StorageError, match="check permissions") as info:
            HistoryStore.open(path)
        assert str(path) in str(info.value)
        assert path.read_bytes() == before
    finally:
        path.chmod(0o644)


def test_streaming_row_of_a_reused_pid_is_settled(store: HistoryStore) -> None:
    import socket

    s = store.create_session(model="m")
    row = store.add_message(s.id, "assistant", "a", status="streaming")
    # this host, a pid that runs now (our parent), but a start time that is not its own: the writer is gone
    store.db.execute("UPDATE messages SET writer = ? WHERE id = ?", [f"{socket.gethostname()}/{os.getppid()}/1.00/x",
                                                                      row.id])
    store.db.conn.commit()
    assert store.recover_interrupted() == 1 and store.get_message(row.id).status == "stopped"
