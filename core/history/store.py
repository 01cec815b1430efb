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
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from sqlite_utils import Database

from core.errors import InputError, NotFoundError, StorageError
from core.history.images import ImageFiles, StoredImage, check_pictures, hashes_of
from core.history.search import SearchHit, search_sql, snippet
from core.history.writers import INTERRUPTED, new_writer, writer_closed, writer_gone
from core.images import ImageInput
from core.storage.sqlite import BUSY_TIMEOUT_S, SqliteStore, new_id, now

__all__ = [
    "BUSY_TIMEOUT_S", "CURRENT_LEAF", "DEFAULT_TITLE", "ROLES", "STATUSES", "HistoryStore", "Message", "SearchHit",
    "Session", "StoredImage", "auto_title", "new_id", "now",
]  # fmt: skip

ROLES = ("system", "user", "assistant")
STATUSES = ("complete", "streaming", "stopped", "error")
DEFAULT_TITLE = "New chat"
TITLE_CHARS = 40
CURRENT_LEAF = "<current leaf>"
"""``add_message``'s default parent: the session's current leaf (the message is added at the end of the open path)."""
MAX_DEPTH = 1_000_000
"""Walks up or down a tree stop here: a guard against a cycle in a damaged database, never reached by real chats."""


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
    current_leaf: str | None = None
    """The last message of the path the chat shows and the model sees (None: no messages yet)."""


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
    parent_id: str | None = None
    """The message this one follows (None: a first message); siblings are edits or other answers."""
    good: bool = False
    """The user marked this answer as good: it goes into the chat's training data export."""


def auto_title(text: str) -> str:
    """A session title from a first message: its first non-empty line, whitespace collapsed, ~40 chars."""
    line = next((ln for ln in text.splitlines() if ln.strip()), "")
    line = " ".join(line.split())
    if not line:
        return DEFAULT_TITLE
    return line if len(line) <= TITLE_CHARS else line[: TITLE_CHARS - 1].rstrip() + "…"


_SESSION_COLUMNS = ", ".join(f.name for f in fields(Session))
_MESSAGE_COLUMNS = ", ".join(f.name for f in fields(Message))
_PARENT = [f.name for f in fields(Message)].index("parent_id")
_CREATED = [f.name for f in fields(Message)].index("created_at")
_M_COLUMNS = ", ".join(f"m.{f.name}" for f in fields(Message))
_PATH_SQL = (
    "WITH RECURSIVE path(id, depth) AS (SELECT ?, 0 UNION ALL SELECT m.parent_id, p.depth + 1 FROM messages m "
    f"JOIN path p ON m.id = p.id WHERE m.parent_id IS NOT NULL AND p.depth < {MAX_DEPTH}) "
    f"SELECT {_M_COLUMNS} FROM path JOIN messages m ON m.id = path.id WHERE m.session_id = ? ORDER BY path.depth DESC"
)
_SUBTREE = (
    "WITH RECURSIVE sub(id, depth) AS (SELECT ?, 0 UNION ALL SELECT m.id, s.depth + 1 FROM messages m "
    f"JOIN sub s ON m.parent_id = s.id WHERE s.depth < {MAX_DEPTH}) "
)


def _session(row: tuple) -> Session:
    # Rows are selected as the dataclass's columns, in its field order; only JSON and bools need mapping.
    session = Session(*row)
    session.title_auto, session.settings = bool(session.title_auto), json.loads(session.settings)
    return session


def _message(row: tuple) -> Message:
    message = Message(*row)
    message.good = bool(message.good)
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
        self.image_files = ImageFiles.beside(self.path)
        """The pictures of messages, one file per content hash next to the database (``core.history.images``)."""
        with suppress(StorageError):  # locked right now: the next open settles them
            self.recover_interrupted()
        if self.image_files.root.is_dir():
            with suppress(StorageError):  # files a crash left between writing a picture and committing its message
                self.collect_images()

    def close(self) -> None:
        """Close the connection (also when it was handed in); answers it left ``streaming`` count as interrupted."""
        if self._later:
            with suppress(StorageError), self._write():
                pass  # one more try at the final updates still waiting
        writer_closed(self.writer)
        super().close()
        self.image_files.close()

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

    @contextmanager
    def _with_pictures(self, images: Sequence[ImageInput]) -> Iterator[Database]:
        """A write transaction that also writes picture files: if it fails (its commit too), the files of
        ``images`` that no row names are removed again."""
        try:
            with self._write() as db:
                yield db
        except BaseException:
            if images:
                with suppress(StorageError):
                    self.collect_images(image.sha256 for image in images)
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
            pictures = hashes_of(db, "SELECT id FROM messages WHERE session_id = ?", [session_id])
            db.execute("DELETE FROM messages WHERE session_id = ?", [session_id])
            if db.execute("DELETE FROM sessions WHERE id = ?", [session_id]).rowcount == 0:
                raise NotFoundError(f"No session with id {session_id!r}: nothing was deleted.")
        self._unused_pictures_go(pictures)

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
        parent_id: str | None = CURRENT_LEAF,
        images: Sequence[ImageInput] = (),
    ) -> Message:
        """Store a message under ``parent_id`` (default: the session's current leaf, i.e. at the end of the open
        path; None: a first message), make it the session's current leaf, and bump its ``updated_at``.

        ``persona`` is the (id, name, avatar) of the persona that wrote an answer. The first user message of a
        session whose title is still automatic also names the session. A parent that is not a message of this
        session is refused (InputError): a tree never links two sessions.

        ``images`` (checked pictures, ``core.images.read_image``) are stored with a user message, each file once by
        its content hash, in the same transaction as the row: a refused message leaves no file and no row.
        """
        if role not in ROLES:
            raise InputError(f"Message role {role!r} is not allowed: use one of {', '.join(ROLES)}.")
        _check_status(status)
        check_pictures(role, images)
        stamp = now()
        message = Message(new_id(), session_id, role, content, status, stamp)
        if persona is not None:
            message.persona_id, message.persona_name, message.persona_avatar = persona
        with self._with_pictures(images) as db:
            rows = list(db.query("SELECT title_auto, current_leaf FROM sessions WHERE id = ?", [session_id]))
            if not rows:
                raise NotFoundError(f"No session with id {session_id!r}: create it before adding messages.")
            if parent_id == CURRENT_LEAF:
                parent_id = rows[0]["current_leaf"]
            elif parent_id is not None:
                _check_parent(db, session_id, parent_id)
            message.parent_id = parent_id
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
                named = content if content.strip() or not images else f"[{images[0].name}]"
                db.execute(
                    "UPDATE sessions SET title = ?, current_leaf = ?, updated_at = ? WHERE id = ?",
                    [auto_title(named), message.id, stamp, session_id],
                )
            else:
                db.execute(
                    "UPDATE sessions SET current_leaf = ?, updated_at = ? WHERE id = ?", [message.id, stamp, session_id]
                )
            self.image_files.link(db, message.id, images)
        return message

    def images_of(self, message_id: str) -> list[StoredImage]:
        """The pictures of a message, in the order they were attached (empty: none); ``.read()`` gives the bytes."""
        return self.images_for([message_id]).get(message_id, [])

    def images_for(self, message_ids: Iterable[str]) -> dict[str, list[StoredImage]]:
        """The pictures of each of ``message_ids`` that has any (one query for a whole chat)."""
        with self._read() as db:
            return self.image_files.rows(db, message_ids)

    def collect_images(self, hashes: Iterable[str] | None = None) -> int:
        """Remove the picture files of ``hashes`` (None: all) that no message uses any more; how many went."""
        with self._write() as db:
            return self.image_files.collect(db, hashes)

    def _unused_pictures_go(self, hashes: set[str]) -> None:
        """After a delete is committed: remove its pictures' files that no message uses now (checked under the
        write lock, so a picture another process linked meanwhile stays); if that fails, the next open does it."""
        if hashes:
            with suppress(StorageError):
                self.collect_images(hashes)

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
        """The current path of a session, first message to current leaf: what the chat shows, the model sees
        and exports hold (empty for an unknown session or one without messages)."""
        with self._read() as db:
            row = db.execute("SELECT current_leaf FROM sessions WHERE id = ?", [session_id]).fetchone()
            if row is None:
                return []
            # One indexed scan of the session's rows and a walk up in Python: faster than a recursive query that
            # looks up each parent (a long single path is the common case; branches add few rows).
            rows = {r[0]: r for r in db.execute(f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE session_id = ?",
                                                [session_id])}  # fmt: skip
        if not rows:
            return []
        # A leaf that is not a message of the chat (rows written by another tool): its newest message, nothing hidden.
        path, at = [], rows.get(row[0]) or max(rows.values(), key=lambda r: (r[_CREATED], r[0]))
        while at is not None and len(path) <= len(rows):  # the length guard: a cycle in a damaged file
            path.append(at)
            at = rows.get(at[_PARENT])
        return [_message(r) for r in reversed(path)]

    def path_to(self, message_id: str) -> list[Message]:
        """The messages from the first one down to ``message_id`` (included); NotFoundError if there is none."""
        session_id = self.get_message(message_id).session_id
        with self._read() as db:
            return [_message(r) for r in db.execute(_PATH_SQL, [message_id, session_id])]

    def all_messages(self, session_id: str) -> list[Message]:
        """Every message of a session, on every branch, oldest first (a parent always comes before its children)."""
        with self._read() as db:
            sql = f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE session_id = ? ORDER BY id"
            return [_message(row) for row in db.execute(sql, [session_id])]

    def children(self, session_id: str) -> dict[str | None, list[str]]:
        """The ids of each message's children, oldest first, keyed by parent id (None: the first messages). A
        message's siblings are ``children[message.parent_id]``; ``‹ 2/3 ›`` is its place there."""
        out: dict[str | None, list[str]] = {}
        with self._read() as db:
            sql = "SELECT parent_id, id FROM messages WHERE session_id = ? ORDER BY parent_id, id"
            for parent, message_id in db.execute(sql, [session_id]):
                out.setdefault(parent, []).append(message_id)
        return out

    def switch_branch(self, session_id: str, message_id: str) -> str:
        """Make ``message_id``'s branch the current path: the session's current leaf becomes the newest message
        below it (itself when it has none), so the chat shows that branch's whole continuation. Returns the leaf.
        NotFoundError when the message is not in this session (deleted meanwhile, say in another tab)."""
        with self._write() as db:
            _check_parent(db, session_id, message_id, noun="message")
            leaf = db.execute(_SUBTREE + "SELECT max(id) FROM sub", [message_id]).fetchone()[0]
            db.execute("UPDATE sessions SET current_leaf = ? WHERE id = ?", [leaf, session_id])
        return leaf

    def delete_branch(self, message_id: str) -> int:
        """Delete a message and everything below it (its branch), never the rest of the tree; returns how many
        messages went. If the open path ran through it, the session switches to the newest remaining branch
        next to it (or ends at its parent). InputError while an answer in it is still being written."""
        with self._write() as db:
            row = db.execute("SELECT session_id, parent_id FROM messages WHERE id = ?", [message_id]).fetchone()
            if row is None:
                raise NotFoundError(f"No message with id {message_id!r}: nothing was deleted (it may have been "
                                    "deleted already, for example in another tab).")
            session_id, parent_id = row
            branch = f"(SELECT id FROM ({_SUBTREE} SELECT id FROM sub))"
            if db.execute(f"SELECT 1 FROM messages WHERE id IN {branch} AND status = 'streaming' LIMIT 1",
                          [message_id]).fetchone():  # fmt: skip
                raise InputError("An answer in this branch is still being written: stop it or wait for it, then "
                                 "delete the branch.")
            leaf = db.execute("SELECT current_leaf FROM sessions WHERE id = ?", [session_id]).fetchone()[0]
            on_path = db.execute(f"SELECT 1 WHERE ? IN {branch}", [leaf, message_id]).fetchone() is not None
            pictures = hashes_of(db, f"SELECT id FROM {branch}", [message_id])
            deleted = db.execute(f"DELETE FROM messages WHERE id IN {branch}", [message_id]).rowcount
            if on_path:
                if parent_id is None:
                    leaf = db.execute("SELECT max(id) FROM messages WHERE session_id = ?", [session_id]).fetchone()[0]
                else:
                    leaf = db.execute(_SUBTREE + "SELECT max(id) FROM sub", [parent_id]).fetchone()[0]
                db.execute("UPDATE sessions SET current_leaf = ?, updated_at = ? WHERE id = ?",
                           [leaf, now(), session_id])  # fmt: skip
        self._unused_pictures_go(pictures)
        return deleted

    def delete_message(self, message_id: str) -> None:
        """Delete one message with its branch (``delete_branch``)."""
        self.delete_branch(message_id)

    def fork_session(self, message_id: str, *, title: str | None = None) -> Session:
        """A new chat from here: a new session (same model, persona, settings and RAG choice) holding a copy of
        the path down to ``message_id`` (answers with their tool calls), which is left as it was. An answer still
        being written is copied as ``stopped``. NotFoundError if the message is gone."""
        path = self.path_to(message_id)
        source = self.get_session(path[-1].session_id)
        stamp = now()
        session = Session(new_id(), " ".join((title or f"{source.title} (fork)").split()), False, source.model,
                          source.persona, dict(source.settings), stamp, stamp)  # fmt: skip
        rows, parent = [], None
        for message in path:
            copy = {**asdict(message), "id": new_id(), "session_id": session.id, "parent_id": parent,
                    "sources": _dumps(message.sources), "writer": None, "updated_at": stamp}  # fmt: skip
            if copy["status"] == "streaming":
                copy["status"] = "stopped"
            rows.append(copy)
            parent = copy["id"]
        session.current_leaf = parent
        with self._write() as db:
            db["sessions"].insert({**asdict(session), "settings": _dumps(session.settings)})
            db["messages"].insert_all(rows)
            for message, copy in zip(path, rows, strict=True):  # pictures and tool calls go with their messages
                for table, columns in (("message_images", "position, sha256, mime, width, height, name"),
                                       ("tool_steps", "position, call_id, name, arguments, result, seconds, error")):
                    db.execute(f"INSERT INTO {table} (message_id, {columns}) SELECT ?, {columns} FROM {table} "
                               "WHERE message_id = ?", [copy["id"], message.id])
            if db["session_knowledge"].exists():  # the chat's RAG switch and knowledge bases go with it
                db.execute(
                    "INSERT INTO session_knowledge (session_id, rag, kb_ids, updated_at) SELECT ?, rag, kb_ids, ? "
                    "FROM session_knowledge WHERE session_id = ?",
                    [session.id, stamp, source.id],
                )
        return session

    def mark_good(self, message_id: str, good: bool = True) -> None:
        """Mark an answer as good (training data) or unmark it; InputError for a user message."""
        with self._write() as db:
            row = db.execute("SELECT role FROM messages WHERE id = ?", [message_id]).fetchone()
            if row is None:
                raise NotFoundError(f"No message with id {message_id!r}: it may have been deleted.")
            if row[0] != "assistant":
                raise InputError("Only answers can be marked as good training data, not your own messages.")
            db.execute("UPDATE messages SET good = ? WHERE id = ?", [int(good), message_id])

    def good_answers(self, *, session_id: str | None = None, persona_id: str | None = None) -> list[Message]:
        """The answers marked good (on any branch), oldest first: of one chat, or written by one persona in any chat."""
        if (session_id is None) == (persona_id is None):
            raise ValueError("give exactly one of session_id and persona_id")
        column, value = ("session_id", session_id) if session_id is not None else ("persona_id", persona_id)
        with self._read() as db:
            sql = f"SELECT {_MESSAGE_COLUMNS} FROM messages WHERE good = 1 AND {column} = ? ORDER BY id"
            return [_message(row) for row in db.execute(sql, [value])]

    def message_count(self, session_id: str) -> int:
        """How many messages a session has, on all branches."""
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


def _check_parent(db: Database, session_id: str, parent_id: str, noun: str = "parent message") -> None:
    """NotFoundError unless ``parent_id`` is a message of ``session_id`` (a forged or stale id is refused)."""
    row = db.execute("SELECT session_id FROM messages WHERE id = ?", [parent_id]).fetchone()
    if row is None:
        raise NotFoundError(f"No {noun} with id {parent_id!r} in this chat: it may have been deleted (for example in "
                            "another tab); reload the chat.")
    if row[0] != session_id:
        raise InputError(f"Message {parent_id!r} belongs to another session, not {session_id!r}: a message can only "
                         "follow one of its own chat.")


def _check_status(status: str) -> None:
    if status not in STATUSES:
        raise InputError(f"Message status {status!r} is not allowed: use one of {', '.join(STATUSES)}.")
