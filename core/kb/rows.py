"""Knowledge-base, document and per-session RAG rows in the history database (migration ``m004_knowledge``).

``KnowledgeRows`` (a ``core.storage.sqlite.SqliteStore``, like ``core.history.store.HistoryStore``) is handed its
connection (or opens its own to the history file, next to the ``HistoryStore``'s) and maps rows to the small
dataclasses ``KnowledgeBase`` and ``Document``. It holds no Chroma or model code: ``core.kb.service`` decides
what to write, this module only writes it. Every call holds one lock and every write commits at once.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from core.errors import NotFoundError
from core.storage.sqlite import SqliteStore, new_id, now

DOC_STATUSES = ("ingesting", "ready", "error")


@dataclass
class KnowledgeBase:
    """One knowledge base: a display name (any language), its Chroma collection and how it was built."""

    id: str
    name: str
    collection: str
    embedder: str
    dimension: int
    chunk_size: int
    chunk_overlap: int
    created_at: str
    updated_at: str


@dataclass
class Document:
    """One ingested file of a knowledge base; ``name`` is the file's name as ingested (what sources show)."""

    id: str
    kb_id: str
    name: str
    content_hash: str
    size_bytes: int
    pages: int
    chunks: int
    status: str
    error: str | None
    warnings: list[str] = field(default_factory=list)
    embedder: str = ""
    created_at: str = ""
    updated_at: str = ""


@dataclass(frozen=True)
class SessionKnowledge:
    """A chat's RAG switch and the ids of the knowledge bases it searches."""

    rag: bool = False
    kb_ids: tuple[str, ...] = ()


_KB_COLUMNS = ", ".join(f.name for f in fields(KnowledgeBase))
_DOC_COLUMNS = ", ".join(f.name for f in fields(Document))


def _document(row: tuple) -> Document:
    doc = Document(*row)
    doc.warnings = json.loads(doc.warnings) if doc.warnings else []
    return doc


class KnowledgeRows(SqliteStore):
    """The knowledge tables of one history database; safe to share between threads."""

    # Knowledge bases

    def add_kb(self, name: str, collection: str, embedder: str, dimension: int, chunk_size: int,
               chunk_overlap: int) -> KnowledgeBase:  # fmt: skip
        """Insert a knowledge base row (the caller checked the name is free) and return it."""
        stamp = now()
        kb = KnowledgeBase(new_id(), name, collection, embedder, dimension, chunk_size, chunk_overlap, stamp, stamp)
        with self._write() as db:
            db["knowledge_bases"].insert(asdict(kb))
        return kb

    def kbs(self) -> list[KnowledgeBase]:
        """Every knowledge base, by name."""
        with self._read() as db:
            rows = db.execute(f"SELECT {_KB_COLUMNS} FROM knowledge_bases ORDER BY name").fetchall()
        return [KnowledgeBase(*row) for row in rows]

    def kb_by_name(self, name: str) -> KnowledgeBase | None:
        """The knowledge base with this exact name, or None."""
        with self._read() as db:
            row = db.execute(f"SELECT {_KB_COLUMNS} FROM knowledge_bases WHERE name = ?", [name]).fetchone()
        return KnowledgeBase(*row) if row else None

    def kb_by_id(self, kb_id: str) -> KnowledgeBase | None:
        """The knowledge base with this id, or None."""
        with self._read() as db:
            row = db.execute(f"SELECT {_KB_COLUMNS} FROM knowledge_bases WHERE id = ?", [kb_id]).fetchone()
        return KnowledgeBase(*row) if row else None

    def set_kb_embedder(self, kb_id: str, embedder: str, dimension: int) -> None:
        """Record a re-embed: the knowledge base and all its documents now use ``embedder``."""
        stamp = now()
        with self._write() as db:
            db.execute("UPDATE knowledge_bases SET embedder = ?, dimension = ?, updated_at = ? WHERE id = ?",
                       [embedder, dimension, stamp, kb_id])  # fmt: skip
            db.execute("UPDATE documents SET embedder = ?, updated_at = ? WHERE kb_id = ?", [embedder, stamp, kb_id])

    def delete_kb(self, kb_id: str) -> None:
        """Delete a knowledge base row and its document rows."""
        with self._write() as db:
            db.execute("DELETE FROM documents WHERE kb_id = ?", [kb_id])
            db.execute("DELETE FROM knowledge_bases WHERE id = ?", [kb_id])

    def kb_stats(self) -> dict[str, dict[str, int]]:
        """Per knowledge-base id: documents, ready, errors, ingesting and chunks (of ready documents)."""
        sql = (
            "SELECT kb_id, count(*), sum(status = 'ready'), sum(status = 'error'), sum(status = 'ingesting'), "
            "sum(CASE WHEN status = 'ready' THEN chunks ELSE 0 END) FROM documents GROUP BY kb_id"
        )
        with self._read() as db:
            rows = db.execute(sql).fetchall()
        keys = ("documents", "ready", "errors", "ingesting", "chunks")
        return {row[0]: dict(zip(keys, (int(v or 0) for v in row[1:]), strict=True)) for row in rows}

    # Documents

    def add_document(self, kb: KnowledgeBase, name: str, content_hash: str, size_bytes: int) -> Document:
        """Insert a document row with status ``ingesting`` (before any of its chunks are stored)."""
        stamp = now()
        doc = Document(new_id(), kb.id, name, content_hash, size_bytes, 0, 0, "ingesting", None, [],
                       kb.embedder, stamp, stamp)  # fmt: skip
        with self._write() as db:
            db["documents"].insert({**asdict(doc), "warnings": "[]"})
        return doc

    def update_document(self, doc_id: str, **changes: Any) -> None:
        """Set columns of one document row (status, pages, chunks, error, warnings, size_bytes)."""
        if "warnings" in changes:
            changes["warnings"] = json.dumps(changes["warnings"], ensure_ascii=False)
        if changes.get("status") not in (None, *DOC_STATUSES):
            raise ValueError(f"bad document status {changes['status']!r}")
        changes["updated_at"] = now()
        assignments = ", ".join(f"{column} = ?" for column in changes)
        with self._write() as db:
            db.execute(f"UPDATE documents SET {assignments} WHERE id = ?", [*changes.values(), doc_id])

    def documents(self, kb_id: str) -> list[Document]:
        """The documents of a knowledge base, by name then age."""
        with self._read() as db:
            sql = f"SELECT {_DOC_COLUMNS} FROM documents WHERE kb_id = ? ORDER BY name, id"
            return [_document(row) for row in db.execute(sql, [kb_id])]

    def documents_named(self, kb_id: str, name: str) -> list[Document]:
        """Rows of one document name in a knowledge base (two while a new version replaces the old)."""
        with self._read() as db:
            sql = f"SELECT {_DOC_COLUMNS} FROM documents WHERE kb_id = ? AND name = ? ORDER BY id"
            return [_document(row) for row in db.execute(sql, [kb_id, name])]

    def ready_with_hash(self, kb_id: str, content_hash: str) -> Document | None:
        """A ready document of this knowledge base with exactly this content, or None."""
        with self._read() as db:
            sql = (f"SELECT {_DOC_COLUMNS} FROM documents WHERE kb_id = ? AND content_hash = ? "
                   "AND status = 'ready' ORDER BY id LIMIT 1")  # fmt: skip
            row = db.execute(sql, [kb_id, content_hash]).fetchone()
        return _document(row) if row else None

    def ready_ids(self, kb_ids: list[str]) -> set[str]:
        """Ids of the ready documents of these knowledge bases (what retrieval may return)."""
        if not kb_ids:
            return set()
        marks = ", ".join("?" for _ in kb_ids)
        with self._read() as db:
            sql = f"SELECT id FROM documents WHERE status = 'ready' AND kb_id IN ({marks})"
            return {row[0] for row in db.execute(sql, kb_ids)}

    def delete_document(self, doc_id: str) -> None:
        """Delete one document row."""
        with self._write() as db:
            db.execute("DELETE FROM documents WHERE id = ?", [doc_id])

    # Sessions

    def session_knowledge(self, session_id: str) -> SessionKnowledge:
        """A session's RAG switch and knowledge-base ids (off and none when never set)."""
        with self._read() as db:
            row = db.execute("SELECT rag, kb_ids FROM session_knowledge WHERE session_id = ?", [session_id]).fetchone()
        if row is None:
            return SessionKnowledge()
        return SessionKnowledge(bool(row[0]), tuple(json.loads(row[1])))

    def set_session_knowledge(self, session_id: str, value: SessionKnowledge) -> None:
        """Store a session's RAG switch and knowledge-base ids; NotFoundError for an unknown session."""
        with self._write() as db:
            if db.execute("SELECT 1 FROM sessions WHERE id = ?", [session_id]).fetchone() is None:
                raise NotFoundError(f"No session with id {session_id!r}: it may have been deleted.")
            db.execute(
                "INSERT INTO session_knowledge (session_id, rag, kb_ids, updated_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (session_id) DO UPDATE SET rag = excluded.rag, kb_ids = excluded.kb_ids, "
                "updated_at = excluded.updated_at",
                [session_id, int(value.rag), json.dumps(list(value.kb_ids)), now()],
            )
