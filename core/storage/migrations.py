"""The history database file: numbered schema migrations, applied in order on every open, each once,
and the errors opening it turns into (StorageError naming the path and the fix).

A migration is a function ``mNNN_<what>(db)`` appended to ``MIGRATIONS``; ``_migrations`` records the
names applied. A released migration is never edited: a schema change is a new function at the end.
``migrate`` runs inside one ``BEGIN IMMEDIATE`` transaction, so two processes opening the same file at
once cannot both apply a migration, and a read-only or locked file is noticed at open, not mid-chat.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime

from sqlite_utils import Database

from core.errors import StorageError

Migration = Callable[[Database], None]

MIGRATIONS: list[Migration] = []


def migration(fn: Migration) -> Migration:
    """Register ``fn`` as the next migration (decorator); its name is what ``_migrations`` records."""
    MIGRATIONS.append(fn)
    return fn


@migration
def m001_initial(db: Database) -> None:
    """Sessions and their messages (status and per-turn stats), with the indexes the UI lists by."""
    db.execute(
        """
        CREATE TABLE sessions (
            id TEXT PRIMARY KEY,
            title TEXT NOT NULL,
            title_auto INTEGER NOT NULL DEFAULT 1,
            model TEXT NOT NULL,
            persona TEXT,
            settings TEXT NOT NULL DEFAULT '{}',
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        )
        """
    )
    db.execute(
        """
        CREATE TABLE messages (
            id TEXT PRIMARY KEY,
            session_id TEXT NOT NULL REFERENCES sessions(id) ON DELETE CASCADE,
            role TEXT NOT NULL CHECK (role IN ('system', 'user', 'assistant')),
            content TEXT NOT NULL DEFAULT '',
            status TEXT NOT NULL DEFAULT 'complete'
                CHECK (status IN ('complete', 'streaming', 'stopped', 'error')),
            created_at TEXT NOT NULL,
            prompt_tokens INTEGER,
            completion_tokens INTEGER,
            ttft_ms REAL,
            tokens_per_s REAL,
            sources TEXT NOT NULL DEFAULT '[]',
            error TEXT
        )
        """
    )
    db.execute("CREATE INDEX sessions_updated_at ON sessions (updated_at)")
    db.execute("CREATE INDEX messages_session ON messages (session_id, id)")
    db.execute("CREATE INDEX messages_status ON messages (status)")


@migration
def m002_search(db: Database) -> None:
    """FTS5 indexes over messages.content and sessions.title, filled from existing rows, kept in sync.

    External-content tables keyed by rowid, as sqlite-utils ``enable_fts`` makes them, but with
    triggers that re-index only when the indexed column changes (a streamed answer's stats updates
    do not touch the index). If a VACUUM ever renumbers rowids, ``'rebuild'`` restores the index.
    """
    for table, column in (("messages", "content"), ("sessions", "title")):
        fts = f"{table}_fts"
        db.execute(f"CREATE VIRTUAL TABLE {fts} USING fts5 ({column}, content='{table}')")
        db.execute(f"INSERT INTO {fts} ({fts}) VALUES ('rebuild')")
        db.execute(
            f"CREATE TRIGGER {table}_fts_ai AFTER INSERT ON {table} BEGIN "
            f"INSERT INTO {fts} (rowid, {column}) VALUES (new.rowid, new.{column}); END"
        )
        db.execute(
            f"CREATE TRIGGER {table}_fts_ad AFTER DELETE ON {table} BEGIN "
            f"INSERT INTO {fts} ({fts}, rowid, {column}) VALUES ('delete', old.rowid, old.{column}); END"
        )
        db.execute(
            f"CREATE TRIGGER {table}_fts_au AFTER UPDATE OF {column} ON {table} BEGIN "
            f"INSERT INTO {fts} ({fts}, rowid, {column}) VALUES ('delete', old.rowid, old.{column}); "
            f"INSERT INTO {fts} (rowid, {column}) VALUES (new.rowid, new.{column}); END"
        )


@migration
def m003_answer_writer(db: Database) -> None:
    """Who is writing a ``streaming`` answer (``writer``: host/pid/process start/store) and when it last saved
    (``updated_at``, the heartbeat), so that any process opening the store settles only answers whose writer
    is gone, never one another live process is still writing."""
    db.execute("ALTER TABLE messages ADD COLUMN writer TEXT")
    db.execute("ALTER TABLE messages ADD COLUMN updated_at TEXT")


def database_path(db: Database) -> str:
    """The file behind ``db`` (``:memory:`` for an in-memory database), for error messages."""
    try:
        rows = db.conn.execute("PRAGMA database_list").fetchall()
    except sqlite3.Error:
        return "<unknown database>"
    for _, name, file in rows:
        if name == "main":
            return file or ":memory:"
    return ":memory:"


def storage_error(exc: sqlite3.Error, path: str) -> StorageError:
    """A StorageError naming the file, what went wrong and the fix, for a sqlite3 error on ``path``."""
    name, text = getattr(exc, "sqlite_errorname", "") or "", str(exc).lower()
    if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in text:
        fix = "it is locked by another process: close the other Inkstone process (or program) and try again"
    elif name.startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_PERM")) or "readonly" in text:
        fix = (
            "it cannot be written: check permissions of the file and its folder (Inkstone also writes "
            "-wal and -shm files next to it), or point INKSTONE_HOME at a writable folder"
        )
    elif name.startswith(("SQLITE_NOTADB", "SQLITE_CORRUPT")) or "not a database" in text:
        fix = (
            "it is not a SQLite database or is damaged: move the file aside (Inkstone never overwrites "
            "it) and start again with an empty history"
        )
    elif name.startswith("SQLITE_FULL"):
        fix = "the disk is full: free some space and try again"
    else:
        fix = "check the file and its folder"
    return StorageError(f"History database {path} failed ({exc}); {fix}.")


def applied_migrations(db: Database) -> list[str]:
    """Names recorded in ``_migrations`` in the order they were applied (empty for a new database)."""
    if not db["_migrations"].exists():
        return []
    return [row[0] for row in db.execute("SELECT name FROM _migrations ORDER BY rowid")]


def migrate(db: Database, *, until: str | None = None) -> list[str]:
    """Apply every migration not yet recorded, in order (stopping after ``until`` if given).

    Returns the names applied now. Raises StorageError when the database records a migration this
    Inkstone does not know (it was written by a newer Inkstone). sqlite3 errors propagate; the caller
    names the file in its message.
    """
    known = [fn.__name__ for fn in MIGRATIONS]
    if until is not None and until not in known:
        raise ValueError(f"unknown migration {until!r}")
    db.execute("BEGIN IMMEDIATE")
    try:
        db.execute("CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
        # A write that changes nothing: a read-only file fails here, at open, rather than mid-chat.
        db.execute("DELETE FROM _migrations WHERE 0")
        applied = set(applied_migrations(db))
        unknown = sorted(applied - set(known))
        if unknown:
            raise StorageError(
                f"History database {database_path(db)} was written by a newer Inkstone (it records "
                f"migration {', '.join(unknown)}): upgrade Inkstone, or move the file aside to start "
                "an empty history."
            )
        done: list[str] = []
        for fn in MIGRATIONS:
            name = fn.__name__
            if name not in applied:
                fn(db)
                stamp = datetime.now(UTC).isoformat(timespec="microseconds")
                db.execute("INSERT INTO _migrations (name, applied_at) VALUES (?, ?)", [name, stamp])
                done.append(name)
            if name == until:
                break
        db.execute("COMMIT")
    except BaseException:
        db.rollback()
        raise
    return done


@migration
def m004_knowledge(db: Database) -> None:
    """Knowledge bases, their documents, and each session's RAG switch with its chosen knowledge bases.

    A document row is written ``ingesting`` before its chunks go to Chroma and becomes ``ready`` (or
    ``error`` with the reason) after; retrieval only returns chunks of ``ready`` documents, so an
    interrupted ingestion never shows half a document. Names are as ingested (display only); a name may
    have two rows for a moment while a changed file replaces its old version.
    """
    db.execute(
        """
        CREATE TABLE knowledge_bases (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            collection TEXT NOT NULL UNIQUE,
            embedder TEXT NOT NULL,
            dimension INTEGER NOT NULL,
            chunk_size INTEGER NOT NULL,
            chunk_overlap INTEGER NOT NULL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        )
        """
    )
    db.execute(
        """
        CREATE TABLE documents (
            id TEXT PRIMARY KEY,
            kb_id TEXT NOT NULL REFERENCES knowledge_bases(id) ON DELETE CASCADE,
            name TEXT NOT NULL,
            content_hash TEXT NOT NULL,
            size_bytes INTEGER NOT NULL DEFAULT 0,
            pages INTEGER NOT NULL DEFAULT 0,
            chunks INTEGER NOT NULL DEFAULT 0,
            status TEXT NOT NULL CHECK (status IN ('ingesting', 'ready', 'error')),
            error TEXT,
            warnings TEXT NOT NULL DEFAULT '[]',
            embedder TEXT NOT NULL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        )
        """
    )
    db.execute("CREATE INDEX documents_kb_name ON documents (kb_id, name)")
    db.execute("CREATE INDEX documents_kb_hash ON documents (kb_id, content_hash)")
    db.execute(
        """
        CREATE TABLE session_knowledge (
            session_id TEXT PRIMARY KEY REFERENCES sessions(id) ON DELETE CASCADE,
            rag INTEGER NOT NULL DEFAULT 0,
            kb_ids TEXT NOT NULL DEFAULT '[]',
            updated_at TEXT NOT NULL
        )
        """
    )


@migration
def m005_training_jobs(db: Database) -> None:
    """Background training jobs: one row per ``python -m core train`` process started by the app, with its pid,
    status (``running`` / ``done`` / ``failed`` / ``cancelled``), progress (step, loss, ETA) and log file, so a
    page refresh or an app restart still shows it (``core.training.jobs``)."""
    db.execute(
        """
        CREATE TABLE training_jobs (
            id TEXT PRIMARY KEY,
            persona TEXT NOT NULL,
            base TEXT NOT NULL,
            status TEXT NOT NULL,
            pid INTEGER,
            step INTEGER NOT NULL DEFAULT 0,
            max_steps INTEGER NOT NULL DEFAULT 0,
            loss REAL,
            eta_s REAL,
            log_path TEXT NOT NULL,
            error TEXT,
            args TEXT NOT NULL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        )
        """
    )
    db.execute("CREATE INDEX training_jobs_created ON training_jobs (created_at)")


@migration
def m006_message_persona(db: Database) -> None:
    """The persona that wrote each answer: its id, and its name and avatar at the time of answering, so history
    and exports show who answered even after the persona is renamed or deleted (NULL: no persona, or older rows)."""
    for column in ("persona_id", "persona_name", "persona_avatar"):
        db.execute(f"ALTER TABLE messages ADD COLUMN {column} TEXT")


@migration
def m007_message_tree(db: Database) -> None:
    """A conversation is a tree: each message knows its parent (``parent_id``, NULL for a first message) and a
    session its current leaf (``current_leaf``), whose path from the root is what the model sees, what exports
    hold and what the chat view shows. Edits and regenerated answers become siblings; nothing is overwritten.

    Every existing session becomes one path, in the order its messages were stored (ids sort by time), with its
    newest message as the current leaf: nothing is lost and nothing changes for the user. ``good`` marks an
    answer the user keeps as training data (1), so the chosen versions can be exported for ``core train``.
    """
    db.execute("ALTER TABLE messages ADD COLUMN parent_id TEXT")
    db.execute("ALTER TABLE messages ADD COLUMN good INTEGER NOT NULL DEFAULT 0")
    db.execute("ALTER TABLE sessions ADD COLUMN current_leaf TEXT")
    db.execute(
        "UPDATE messages SET parent_id = (SELECT p.id FROM messages p WHERE p.session_id = messages.session_id "
        "AND p.id < messages.id ORDER BY p.id DESC LIMIT 1)"
    )
    db.execute(
        "UPDATE sessions SET current_leaf = (SELECT max(m.id) FROM messages m WHERE m.session_id = sessions.id)"
    )
    # Children of a message (walking down a branch), and the whole tree of a session without touching rows.
    db.execute("CREATE INDEX messages_parent ON messages (parent_id)")
    db.execute("CREATE INDEX messages_session_tree ON messages (session_id, parent_id, id)")


@migration
def m008_tool_calls(db: Database) -> None:
    """The tool calls of an answer (issue 21): per answer message, each call in order with its tool, arguments
    (JSON), result, seconds and whether it failed; deleted with the message."""
    db.execute("""
        CREATE TABLE IF NOT EXISTS tool_steps (
            message_id TEXT NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
            position INTEGER NOT NULL,
            call_id TEXT NOT NULL DEFAULT '',
            name TEXT NOT NULL,
            arguments TEXT NOT NULL,
            result TEXT NOT NULL,
            seconds REAL,
            error INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (message_id, position)
        )""")


@migration
def m009_message_images(db: Database) -> None:
    """The pictures of a message (issue 22), in the order they were attached. The files live under the data dir's
    ``images/`` folder, one per content hash (``core.history.images``), never in this file; a row names its
    picture by hash, MIME type and size. Deleted with the message; a file no row names any more is removed."""
    db.execute("""
        CREATE TABLE IF NOT EXISTS message_images (
            message_id TEXT NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
            position INTEGER NOT NULL,
            sha256 TEXT NOT NULL,
            mime TEXT NOT NULL,
            width INTEGER NOT NULL,
            height INTEGER NOT NULL,
            name TEXT NOT NULL DEFAULT 'image',
            PRIMARY KEY (message_id, position)
        )""")
    db.execute("CREATE INDEX IF NOT EXISTS message_images_sha256 ON message_images (sha256)")
