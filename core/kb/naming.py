"""Knowledge base names and the plain results the CLI and the UI show.

Owns ``clean_kb_name`` (how a name typed anywhere becomes the stored display name), the ``KbSummary`` of
``kb list`` and the ``QueryHit`` of ``kb query``. Pure data: no SQLite, no Chroma, no other ``core.kb`` module
besides the row dataclasses.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Any

from core.errors import InputError
from core.kb.rows import KnowledgeBase

MAX_KB_NAME = 100


@dataclass(frozen=True)
class KbSummary:
    """A knowledge base with its document counts (from the history database; Chroma is not asked)."""

    kb: KnowledgeBase
    documents: int = 0
    ready: int = 0
    errors: int = 0
    ingesting: int = 0
    chunks: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``kb list --json``)."""
        kb = self.kb
        return {"name": kb.name, "embedder": kb.embedder, "dimension": kb.dimension, "collection": kb.collection,
                "chunk_size": kb.chunk_size, "chunk_overlap": kb.chunk_overlap, "documents": self.documents,
                "ready": self.ready, "errors": self.errors, "ingesting": self.ingesting, "chunks": self.chunks,
                "created_at": kb.created_at}  # fmt: skip


@dataclass(frozen=True)
class QueryHit:
    """One ranked hit of a query: file as ingested, 1-based PDF page (None otherwise), score, chunk text."""

    rank: int
    score: float
    source: str
    page: int | None
    text: str
    kb: str
    date: str = ""
    ocr: bool = False
    """The text was read from a picture by OCR (a scanned page, an image file): it may hold misread characters."""

    @property
    def where(self) -> str:
        """``file, p. 3 (OCR)``: the file, its page when it has one, and the OCR mark."""
        return where_label(self.source, self.page, self.ocr)

    def to_dict(self) -> dict[str, Any]:
        """``{"rank", "score", "source", "page", "ocr", "date", "text"}`` (``kb query --json``)."""
        return {"rank": self.rank, "score": round(self.score, 4), "source": self.source, "page": self.page,
                "ocr": self.ocr, "date": self.date, "text": self.text}  # fmt: skip


def where_label(source: str, page: int | str | None, ocr: bool = False) -> str:
    """How a source is named wherever it is shown or cited: ``file``, ``file, p. 3``, ``scan.pdf, p. 3 (OCR)``."""
    return source + (f", p. {page}" if page not in (None, "") else "") + (" (OCR)" if ocr else "")


def clean_kb_name(name: str) -> str:
    """A knowledge base's display name: NFC, whitespace collapsed; InputError when empty or too long."""
    text = " ".join(unicodedata.normalize("NFC", name or "").split())
    text = "".join(ch for ch in text if unicodedata.category(ch) != "Cc")
    if not text:
        raise InputError("A knowledge base needs a name: give it a few words (any language).")
    if len(text) > MAX_KB_NAME:
        raise InputError(f"Knowledge base name {text[:40]!r}… has {len(text)} characters: use at most {MAX_KB_NAME}.")
    return text
