"""Chat history in SQLite (sqlite-utils): sessions, messages with status and stats, full-text search.

``HistoryStore`` (a ``core.storage.sqlite.SqliteStore``: handed its connection or opening one at a path,
migrations applied, one lock per call, each write committed at once) maps rows to the small dataclasses
``Session``, ``Message`` and ``SearchHit``. The UI and the chat service call it from several threads.
Timestamps are ISO-8601 UTC strings with microseconds, so they sort as text; ids sort by creation time.
Search SQL and snippets live in ``core.history.search``; ids and timestamps in ``core.storage.sqlite``
(re-exported here).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from sqlite_utils import Database

from core.errors import InputError, NotFoundError, StorageError
from core.history.search import SearchHit, search_sql, snippet
from core.history.writers import INTERRUPTED, new_writer, writer_closed, writer_gone
from core.storage.sqlite import BUSY_TIMEOUT_S, SqliteStore, new_id, now

__all__ = [
    "BUSY_TIMEOUT_S", "DEFAULT_TITLE", "ROLES", "STATUSES", "HistoryStore", "Message", "SearchHit", "Session",
    "auto_title", "new_id", "now",
]  # fmt: skip

ROLES = ("system", "user", "assistant")
STATUSES = ("complete", "streaming", "stopped", "error")
DEFAULT_TITLE = "New chat"
TITLE_CHARS = 40


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


class HistoryStore(SqliteStore):
    """Sessions and messages in one SQLite database; safe to share between threads."""

    def __init__(self, db: Database) -> None:
        """Use the handed-in ``db``, applying pragmas and migrations now; StorageError if that fails.

        Prefer ``HistoryStore.open(path)``; a connection shared between threads must have been made with
        ``check_same_thread=False``.
        """
        self.writer = new_writer()
        """Marks the ``streaming`` answers this store writes (see ``writer_gone``)."""
        self._later: dict[str, dict[str, Any]] = {}
        """Final answer updates that could not be written yet (see ``settle_later``)."""
        super().__init__(db)
        with suppress(StorageError):  # locked right now: the next open settles them
            self.recover_interrupted()

    def close(self) -> None:
        """Close the connection (also when it was handed in); answers it left ``streaming`` count as interrupted."""
        if self._later:
            with suppress(StorageError), self._write():
                pass  # one more try at the final updates still waiting
        writer_closed(self.writer)
        super().close()

    def settle_later(self, message_id: str, **changes: Any) -> None:
        """Keep a streaming answer's final update that could not be written (database locked, disk full): it is
        written with this store's next successful write, or at close, unless the row is no longer streaming."""
        with self._lock:
            self._later[message_id] = {k: (_dumps(v) if k == "sources" else v) for k, v in changes.items()
                                       if v is not None}

    @contextmanager
    def _write(self) -> Iterator[Database]:
        # Every write first retries the final answer updates still waiting (``settle_later``).
        with self._lock:
            with super()._write() as db:
                later = dict(self._later)
                for message_id, changes in later.items():
                    assignments = ", ".join(f"{column} = ?" for column in [*changes, "updated_at"])
                    db.execute(
                        f"UPDATE messages SET {assignments} WHERE id = ? AND status = 'streaming'",
                        [*changes.values(), now(), message_id],
                    )
                yield db
            for message_id in later:
                self._later.pop(message_id, None)

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
        titles, messages = search_sql(text, "sessions"), search_sql(text, "messages")
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
        where = search_sql(text, "messages")
        if where is None:
            return []
        sql = (
            "SELECT m.id, m.session_id, m.role, m.content, s.title FROM messages m JOIN sessions s "
            f"ON s.id = m.session_id WHERE {where[0]} ORDER BY m.id DESC LIMIT ?"
        )
        with self._read() as db:
            rows = list(db.query(sql, [*where[1], limit]))
        return [
            SearchHit(r["session_id"], r["id"], r["role"], snippet(r["content"], text), r["title"])
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
