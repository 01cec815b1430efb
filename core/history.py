"""Chat history in SQLite (sqlite-utils): sessions, messages with status and stats, full-text search.

``HistoryStore`` is handed its connection (or opens one at a path), applies the numbered migrations
of ``core.migrations`` and maps rows to the small dataclasses ``Session``, ``Message`` and
``SearchHit``. The UI and the chat service call it from several threads, so the connection is opened
with ``check_same_thread=False`` and every call holds one lock; each write commits at once. Timestamps
are ISO-8601 UTC strings with microseconds, so they sort as text; ids sort by creation time.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from core.errors import InputError, NotFoundError, StorageError
from core.migrations import database_path, migrate, storage_error
from core.writers import INTERRUPTED, new_writer, writer_closed, writer_gone

ROLES = ("system", "user", "assistant")
STATUSES = ("complete", "streaming", "stopped", "error")
DEFAULT_TITLE = "New chat"
TITLE_CHARS = 40
BUSY_TIMEOUT_S = 5.0


@dataclass
class Session:
    """One conversation; ``title_auto`` stays True until the user renames it."""

    id: str
    title: str
    title_auto: bool
    model: str
    persona: str | None
    settings: dict[str, Any]
    created_at: str
    updated_at: str


@dataclass
class Message:
    """One message; an assistant answer also carries its status, token stats, sources and error."""

    id: str
    session_id: str
    role: str
    content: str
    status: str
    created_at: str
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    ttft_ms: float | None = None
    tokens_per_s: float | None = None
    sources: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    persona_id: str | None = None
    """The persona that wrote an answer (None: no persona); with its name and avatar at the time of answering."""
    persona_name: str | None = None
    persona_avatar: str | None = None


@dataclass
class SearchHit:
    """A message that matched a search, with a short excerpt around the match."""

    session_id: str
    message_id: str
    role: str
    snippet: str
    session_title: str


_clock_lock = threading.Lock()
_last_id = (0, 0)
_last_stamp = datetime.min.replace(tzinfo=UTC)


def new_id() -> str:
    """A 25-hex-digit id: 13 digits of ms timestamp, 12 random; strictly increasing within the process."""
    global _last_id
    with _clock_lock:
        ms, rand = time.time_ns() // 1_000_000, int.from_bytes(os.urandom(6), "big")
        last_ms, last_rand = _last_id
        if ms <= last_ms:  # same millisecond, or the clock went back: count up from the last id
            ms, rand = last_ms, last_rand + 1
        _last_id = (ms, rand)
    return f"{ms:013x}{rand:012x}"


def now() -> str:
    """The current UTC time as ISO-8601 with microseconds; strictly increasing within the process."""
    global _last_stamp
    with _clock_lock:
        stamp = datetime.now(UTC)
        if stamp <= _last_stamp:
            stamp = _last_stamp + timedelta(microseconds=1)
        _last_stamp = stamp
    return stamp.isoformat(timespec="microseconds")


def auto_title(text: str) -> str:
    """A session title from a first message: its first non-empty line, whitespace collapsed, ~40 chars."""
    line = next((ln for ln in text.splitlines() if ln.strip()), "")
    line = " ".join(line.split())
    if not line:
        return DEFAULT_TITLE
    return line if len(line) <= TITLE_CHARS else line[: TITLE_CHARS - 1].rstrip() + "…"


_SESSION_COLUMNS = ", ".join(f.name for f in fields(Session))
_MESSAGE_COLUMNS = ", ".join(f.name for f in fields(Message))


def _session(row: tuple) -> Session:
    # Rows are selected as the dataclass's columns, in its field order; only JSON and bools need mapping.
    session = Session(*row)
    session.title_auto, session.settings = bool(session.title_auto), json.loads(session.settings)
    return session


def _message(row: tuple) -> Message:
    message = Message(*row)
    message.sources = [] if message.sources == "[]" else json.loads(message.sources)  # "[]": most rows
    return message


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)


_CJK = re.compile(r"[\u2e80-\u9fff\u3040-\u30ff\uac00-\ud7af\uf900-\ufaff\uff00-\uffef]")


def _search_sql(text: str, table: str) -> tuple[str, list[str]] | None:
    """A WHERE clause on ``table`` (messages or sessions, aliased m / s) and its parameters; None if empty.

    Every word must occur. FTS5 (each word quoted, so its syntax characters are literal, and
    prefix-matched) where it can tokenize the words; LIKE for text it cannot: unicode61 makes a whole run
    of CJK characters one token, so 巴黎 inside 首都是巴黎 is found only by a substring match.
    """
    terms = text.split()
    if not terms:
        return None
    alias, column = ("m", "content") if table == "messages" else ("s", "title")
    if all(re.search(r"\w", t) for t in terms) and not _CJK.search(text):
        query = " ".join('"' + t.replace('"', '""') + '"*' for t in terms)
        return f"{alias}.rowid IN (SELECT rowid FROM {table}_fts WHERE {table}_fts MATCH ?)", [query]
    escaped = [t.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") for t in terms]
    sql = " AND ".join(f"{alias}.{column} LIKE ? ESCAPE '\\'" for _ in terms)
    return f"({sql})", [f"%{t}%" for t in escaped]


def _snippet(content: str, text: str, width: int = 60) -> str:
    lower = content.lower()
    found = [i for i in (lower.find(t.lower()) for t in text.split()) if i >= 0]
    start = max(min(found, default=0) - width // 2, 0)
    excerpt = " ".join(content[start : start + width * 2].split())
    return ("…" if start else "") + excerpt + ("…" if start + width * 2 < len(content) else "")


class HistoryStore:
    """Sessions and messages in one SQLite database; safe to share between threads."""

    def __init__(self, db: Database) -> None:
        """Use the handed-in ``db``, applying pragmas and migrations now; StorageError if that fails.

        Prefer ``HistoryStore.open(path)``; a connection shared between threads must have been made with
        ``check_same_thread=False``.
        """
        self.db = db
        self.path = database_path(db)
        self._lock = threading.RLock()
        self.writer = new_writer()
        """Marks the ``streaming`` answers this store writes (see ``writer_gone``)."""
        self._later: dict[str, dict[str, Any]] = {}
        """Final answer updates that could not be written yet (see ``settle_later``)."""
        try:
            db.execute("PRAGMA foreign_keys = ON")
            db.enable_wal()
            db.execute("PRAGMA synchronous = NORMAL")  # safe with WAL; a commit no longer waits on fsync
            migrate(db)
        except sqlite3.Error as exc:
            raise storage_error(exc, self.path) from exc
        with suppress(StorageError):  # locked right now: the next open settles them
            self.recover_interrupted()

    @classmethod
    def open(cls, path: Path, *, timeout: float = BUSY_TIMEOUT_S) -> HistoryStore:
        """Open (creating it and its folder if missing) the history database at ``path``.

        Waits up to ``timeout`` seconds for a lock held by another process. Raises StorageError naming
        the path and the fix when the file is read-only, locked, corrupt or from a newer Inkstone; an
        existing file that fails to open is left exactly as it was.
        """
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(
                f"Cannot create the folder {path.parent} for the history database ({exc}): check "
                "permissions, or point INKSTONE_HOME at a writable folder."
            ) from exc
        if path.exists() and not path.is_file():
            raise StorageError(
                f"History database {path} is not a file: move it aside or choose another home."
            )
        conn = None
        try:
            conn = sqlite3.connect(str(path), timeout=timeout, check_same_thread=False)
            return cls(Database(conn, execute_plugins=False))
        except sqlite3.Error as exc:
            if conn is not None:
                conn.close()
            raise storage_error(exc, str(path)) from exc
        except StorageError:
            if conn is not None:
                conn.close()
            raise

    def close(self) -> None:
        """Close the connection (also when it was handed in); answers it left ``streaming`` count as interrupted."""
        if self._later:
            with suppress(StorageError), self._write():
                pass  # one more try at the final updates still waiting
        writer_closed(self.writer)
        with self._lock:
            self.db.close()

    def settle_later(self, message_id: str, **changes: Any) -> None:
        """Keep a streaming answer's final update that could not be written (database locked, disk full): it is
        written with this store's next successful write, or at close, unless the row is no longer streaming."""
        with self._lock:
            self._later[message_id] = {k: (_dumps(v) if k == "sources" else v) for k, v in changes.items()
                                       if v is not None}

    @contextmanager
    def _read(self) -> Iterator[Database]:
        with self._lock:
            try:
                yield self.db
            except sqlite3.Error as exc:
                raise storage_error(exc, self.path) from exc
            except UnicodeEncodeError as exc:  # a lone surrogate (undecodable input bytes) cannot be stored
                raise InputError(
                    f"Text with bytes that are not valid UTF-8 ({exc.object[exc.start:exc.end]!a}) cannot be stored or "
                    "searched: send it again as UTF-8 text."
                ) from None

    @contextmanager
    def _write(self) -> Iterator[Database]:
        # BEGIN IMMEDIATE takes the write lock up front, so the busy timeout applies to it (a deferred
        # transaction that reads first could fail at once when it upgrades to writing).
        with self._read() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                later = dict(self._later)
                for message_id, changes in later.items():
                    assignments = ", ".join(f"{column} = ?" for column in [*changes, "updated_at"])
                    db.execute(
                        f"UPDATE messages SET {assignments} WHERE id = ? AND status = 'streaming'",
                        [*changes.values(), now(), message_id],
                    )
                yield db
                db.execute("COMMIT")
                for message_id in later:
                    self._later.pop(message_id, None)
            except BaseException:
                db.rollback()
                raise

    # Sessions

    def create_session(
        self,
        *,
        model: str,
        persona: str | None = None,
        settings: dict | None = None,
        title: str | None = None,
    ) -> Session:
        """Create and return a session; without ``title`` it is named from its first user message."""
        title = " ".join((title or "").split())
        stamp = now()
        session = Session(new_id(), title or DEFAULT_TITLE, not title, model, persona or None,
                          dict(settings or {}), stamp, stamp)  # fmt: skip
        row = {**asdict(session), "settings": _dumps(session.settings)}
        with self._write() as db:
            db["sessions"].insert(row)
        return session

    def get_session(self, session_id: str) -> Session:
        """The session with this id; NotFoundError if there is none."""
        with self._read() as db:
            row = db.execute(f"SELECT {_SESSION_COLUMNS} FROM sessions WHERE id = ?", [session_id]).fetchone()
        if row is None:
            raise NotFoundError(
                f"No session with id {session_id!r}: list them with `python -m core sessions list`."
            )
        return _session(row)

    def list_sessions(self, limit: int | None = None) -> list[Session]:
        """Sessions, most recently updated first (at most ``limit``)."""
        sql = f"SELECT {_SESSION_COLUMNS} FROM sessions ORDER BY updated_at DESC, id DESC LIMIT ?"
        with self._read() as db:
            return [_session(row) for row in db.execute(sql, [-1 if limit is None else limit])]

    def rename_session(self, session_id: str, title: str) -> Session:
        """Give a session a title of the user's own (no longer set automatically); returns it."""
        title = " ".join(title.split())
        if not title:
            raise InputError("A session title cannot be empty: type a few words.")
        self._update_session(session_id, title=title, title_auto=0)
        return self.get_session(session_id)

    def update_session(
        self,
        session_id: str,
        *,
        model: str | None = None,
        persona: str | None = None,
        settings: dict | None = None,
    ) -> Session:
        """Change the model, persona (``""`` clears it) or settings (replaced whole) of a session."""
        changes: dict[str, Any] = {}
        if model is not None:
            changes["model"] = model
        if persona is not None:
            changes["persona"] = persona or None
        if settings is not None:
            changes["settings"] = _dumps(settings)
        self._update_session(session_id, **changes)
        return self.get_session(session_id)

    def _update_session(self, session_id: str, **changes: Any) -> None:
        changes["updated_at"] = now()
        self._update_row("sessions", "session", session_id, changes)

    def _update_row(self, table: str, noun: str, row_id: str, changes: dict[str, Any]) -> None:
        """Set ``changes`` on one row of ``table`` (a fixed table name, never user input)."""
        assignments = ", ".join(f"{column} = ?" for column in changes)
        with self._write() as db:
            cursor = db.execute(f"UPDATE {table} SET {assignments} WHERE id = ?", [*changes.values(), row_id])
            if cursor.rowcount == 0:
                raise NotFoundError(f"No {noun} with id {row_id!r}: it may have been deleted.")

    def delete_session(self, session_id: str) -> None:
        """Delete a session and all its messages."""
        with self._write() as db:
            db.execute("DELETE FROM messages WHERE session_id = ?", [session_id])
            if db.execute("DELETE FROM sessions WHERE id = ?", [session_id]).rowcount == 0:
                raise NotFoundError(f"No session with id {session_id!r}: nothing was deleted.")

    def search_sessions(self, text: str, limit: int = 50) -> list[Session]:
        """Sessions whose title or any one message contains every word of ``text``, newest first."""
        titles, messages = _search_sql(text, "sessions"), _search_sql(text, "messages")
        if titles is None or messages is None:
            return []
        sql = (
            f"SELECT {_SESSION_COLUMNS} FROM sessions s WHERE {titles[0]} OR s.id IN (SELECT m.session_id "
            f"FROM messages m WHERE {messages[0]}) ORDER BY s.updated_at DESC, s.id DESC LIMIT ?"
        )
        with self._read() as db:
            return [_session(row) for row in db.execute(sql, [*titles[1], *messages[1], limit])]

    def search_messages(self, text: str, limit: int = 50) -> list[SearchHit]:
        """Messages containing every word of ``text``, newest first, each with a snippet around the match."""
        where = _search_sql(text, "messages")
        if where is None:
            return []
        sql = (
            "SELECT m.id, m.session_id, m.role, m.content, s.title FROM messages m JOIN sessions s "
            f"ON s.id = m.session_id WHERE {where[0]} ORDER BY m.id DESC LIMIT ?"
        )
        with self._read() as db:
            rows = list(db.query(sql, [*where[1], limit]))
        return [
            SearchHit(r["session_id"], r["id"], r["role"], _snippet(r["content"], text), r["title"])
            for r in rows
        ]

    # Messages

    def add_message(
        self,
        session_id: str,
        role: str,
        content: str,
        *,
        status: str = "complete",
        persona: tuple[str, str, str | None] | None = None,
    ) -> Message:
        """Store a message at the end of a session and bump its ``updated_at``.

        ``persona`` is the (id, name, avatar) of the persona that wrote an answer. The first user message of a
        session whose title is still automatic also names the session.
        """
        if role not in ROLES:
            raise InputError(f"Message role {role!r} is not allowed: use one of {', '.join(ROLES)}.")
        _check_status(status)
        stamp = now()
        message = Message(new_id(), session_id, role, content, status, stamp)
        if persona is not None:
            message.persona_id, message.persona_name, message.persona_avatar = persona
        with self._write() as db:
            rows = list(db.query("SELECT title_auto FROM sessions WHERE id = ?", [session_id]))
            if not rows:
                raise NotFoundError(f"No session with id {session_id!r}: create it before adding messages.")
            name_it = (
                role == "user"
                and rows[0]["title_auto"]
                and not db.execute(
                    "SELECT 1 FROM messages WHERE session_id = ? AND role = 'user' LIMIT 1", [session_id]
                ).fetchone()
            )
            writer = self.writer if status == "streaming" else None
            db["messages"].insert({**asdict(message), "sources": "[]", "writer": writer, "updated_at": stamp})
            if name_it:
                db.execute(
                    "UPDATE sessions SET title = ?, updated_at = ? WHERE id = ?",
                    [auto_title(content), stamp, session_id],
                )
            else:
                db.execute("UPDATE sessions SET updated_at = ? WHERE id = ?", [stamp, session_id])
        return message

    def update_message(
        self,
        message_id: str,
        *,
        content: str | None = None,
        status: str | None = None,
        prompt_tokens: int | None = None,
        completion_tokens: int | None = None,
        ttft_ms: float | None = None,
        tokens_per_s: float | None = None,
        sources: list[dict] | None = None,
        error: str | None = None,
    ) -> None:
        """Set the given (non-None) fields of a message, for example as an answer streams and finishes.

        Every update also refreshes the row's ``updated_at``: a streaming answer's heartbeat."""
        if status is not None:
            _check_status(status)
        changes = {
            "content": content,
            "status": status,
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "ttft_ms": ttft_ms,
            "tokens_per_s": tokens_per_s,
            "sources": None if sources is None else _dumps(sources),
            "error": error,
        }
        changes = {k: v for k, v in changes.items() if v is not None}
        if not changes:
            self.get_message(message_id)
            return
        self._update_row("messages", "message", message_id, {**changes, "updated_at": now()})

    def get_message(self, message_id: str) -> Message:
        """The message with this id; NotFoundError if there is none."""
        with self._read() as db:
            row = db.execute(f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE id = ?", [message_id]).fetchone()
        if row is None:
            raise NotFoundError(f"No message with id {message_id!r}: it may have been deleted.")
        return _message(row)

    def messages(self, session_id: str) -> list[Message]:
        """The messages of a session in the order they were added (empty for an unknown session)."""
        with self._read() as db:
            sql = f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE session_id = ? ORDER BY id"
            return [_message(row) for row in db.execute(sql, [session_id])]

    def delete_message(self, message_id: str) -> None:
        """Delete one message (regenerate deletes the last answer before asking again)."""
        with self._write() as db:
            if db.execute("DELETE FROM messages WHERE id = ?", [message_id]).rowcount == 0:
                raise NotFoundError(f"No message with id {message_id!r}: nothing was deleted.")

    def message_count(self, session_id: str) -> int:
        """How many messages a session has."""
        with self._read() as db:
            sql = "SELECT count(*) FROM messages WHERE session_id = ?"
            return db.execute(sql, [session_id]).fetchone()[0]

    def recover_interrupted(self) -> int:
        """Settle answers left ``streaming`` by a process that is gone: ``stopped``, text kept, with an error
        text saying why; never an answer a live process is still writing. Returns how many were settled.

        Runs on every open (app, CLI, any tool), so a kill -9 mid-answer never leaves it streaming for good.
        """
        with self._read() as db:
            rows = db.execute("SELECT id, writer, updated_at FROM messages WHERE status = 'streaming'").fetchall()
        gone = [row[0] for row in rows if writer_gone(row[1], row[2])]
        if not gone:
            return 0
        settled = 0
        with self._write() as db:
            for message_id in gone:
                settled += db.execute(
                    "UPDATE messages SET status = 'stopped', error = coalesce(error, ?), updated_at = ? "
                    "WHERE id = ? AND status = 'streaming'",
                    [INTERRUPTED, now(), message_id],
                ).rowcount
        return settled


def _check_status(status: str) -> None:
    if status not in STATUSES:
        raise InputError(f"Message status {status!r} is not allowed: use one of {', '.join(STATUSES)}.")
