"""Knowledge bases as the CLI and the UI use them: create, list, ingest, remove, drop, re-embed, query,
and each chat's RAG switch with the retriever ``ChatService`` calls for an answer's sources.

A knowledge base searches with the embedder it was built with (stored on its row and in its Chroma
collection). Another embedder is refused with the re-embed command, never mixed silently: one asked for
(``ingest --embedder``), one set explicitly as the ``embedder`` setting, or a collection whose vectors came
from another one. Without the setting, the library default only applies to new knowledge bases.
"""

from __future__ import annotations

import re
import shutil
import tempfile
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from core.config import Settings
from core.errors import (
    InkstoneError,
    InputError,
    KnowledgeBaseError,
    KnowledgeUnavailable,
    NotFoundError,
    ReembedRequired,
)
from core.history.store import Session
from core.kb.files import collect, sanitize_name
from core.kb.ingest import Ingestion, IngestReport, ProgressCallback
from core.kb.library import LibraryHandle, reembed_hint
from core.kb.rows import Document, KnowledgeBase, KnowledgeRows, SessionKnowledge

MAX_KB_NAME = 100
_SUFFIX = re.compile(r"\.[a-z0-9]{1,10}")


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

    def to_dict(self) -> dict[str, Any]:
        """``{"rank", "score", "source", "page", "text"}`` (``kb query --json``)."""
        return {"rank": self.rank, "score": round(self.score, 4), "source": self.source, "page": self.page,
                "text": self.text}  # fmt: skip


def clean_kb_name(name: str) -> str:
    """A knowledge base's display name: NFC, whitespace collapsed; InputError when empty or too long."""
    text = " ".join(unicodedata.normalize("NFC", name or "").split())
    text = "".join(ch for ch in text if unicodedata.category(ch) != "Cc")
    if not text:
        raise InputError("A knowledge base needs a name: give it a few words (any language).")
    if len(text) > MAX_KB_NAME:
        raise InputError(f"Knowledge base name {text[:40]!r}… has {len(text)} characters: use at most {MAX_KB_NAME}.")
    return text


class KnowledgeService:
    """Knowledge bases of one data dir (rows in SQLite, chunks in Chroma)."""

    def __init__(self, settings: Settings, rows: KnowledgeRows) -> None:
        self.settings = settings
        self.rows = rows
        self.handle = LibraryHandle(settings)

    @classmethod
    def open(cls, settings: Settings) -> KnowledgeService:
        """The service over ``settings.db_path`` (Chroma is connected on first use)."""
        return cls(settings, KnowledgeRows.open(settings.db_path))

    def close(self) -> None:
        """Close the database connection and the Chroma client."""
        self.handle.close()
        self.rows.close()

    # Embedders

    @staticmethod
    def embedders() -> dict[str, str]:
        """Bundled embedder ids and what they are."""
        from knowledge import EMBEDDERS

        return dict(EMBEDDERS)

    @property
    def default_embedder(self) -> str:
        """The embedder new knowledge bases get: the ``embedder`` setting, else the library's default."""
        from knowledge import DEFAULT_EMBEDDER

        return self.settings.embedder or DEFAULT_EMBEDDER

    # Knowledge bases

    def summaries(self) -> list[KbSummary]:
        """Every knowledge base with its counts, by name."""
        stats = self.rows.kb_stats()
        return [KbSummary(kb, **stats.get(kb.id, {})) for kb in self.rows.kbs()]

    def get(self, name: str) -> KnowledgeBase:
        """The knowledge base named ``name``; NotFoundError naming the ones that exist."""
        kb = self.rows.kb_by_name(clean_kb_name(name))
        if kb is None:
            names = [k.name for k in self.rows.kbs()]
            known = f"the existing ones are {', '.join(repr(n) for n in names)}" if names else "there are none yet"
            raise NotFoundError(
                f"No knowledge base named {name!r}: {known}. Create it with `python -m core kb create NAME` "
                "or `python -m core kb ingest --kb NAME PATH...` (or on the Knowledge page)."
            )
        return kb

    def resolve(self, spec: str | list[str]) -> list[KnowledgeBase]:
        """Knowledge bases from names (``a,b`` splits at commas unless a knowledge base has that exact name)."""
        given = [spec] if isinstance(spec, str) else list(spec)
        found: list[KnowledgeBase] = []
        for item in given:
            exact = self.rows.kb_by_name(clean_kb_name(item)) if item.strip() else None
            names = [item] if exact is not None else [n for n in item.split(",") if n.strip()]
            for name in names:
                kb = self.get(name)
                if kb.id not in {k.id for k in found}:
                    found.append(kb)
        if not found:
            raise InputError("No knowledge base given: name one (see `python -m core kb list`).")
        return found

    def create(self, name: str, embedder: str | None = None, chunk_size: int | None = None,
               chunk_overlap: int | None = None) -> KnowledgeBase:  # fmt: skip
        """Create an empty knowledge base (its Chroma collection with the embedder recorded)."""
        from knowledge import DEFAULT_CHUNK_OVERLAP, DEFAULT_CHUNK_SIZE, collection_name

        name = clean_kb_name(name)
        existing = self.rows.kb_by_name(name)
        if existing is not None:
            raise InputError(
                f"Knowledge base {name!r} already exists (embedder {existing.embedder}): ingest into it, or drop it "
                f"first with `python -m core kb drop {name!r}`."
            )
        size = chunk_size or self.settings.kb_chunk_size or DEFAULT_CHUNK_SIZE
        overlap = chunk_overlap if chunk_overlap is not None else self.settings.kb_chunk_overlap
        overlap = DEFAULT_CHUNK_OVERLAP if overlap is None else overlap
        if not 50 <= size <= 20000 or not 0 <= overlap < size:
            raise InputError(f"Chunk size {size} / overlap {overlap} is not usable: use a size of 50-20000 "
                             "characters and an overlap of 0 up to less than the size.")  # fmt: skip
        collection = collection_name(name)
        library = self.handle.get()
        with self.handle.calls(name):
            if self._stored_chunks(library, collection):
                if self.settings.chroma_url:
                    raise KnowledgeBaseError(
                        f"The Chroma server already has a collection {collection!r} for the name {name!r} that this "
                        "Inkstone does not know (another Inkstone's?): choose another name."
                    )
                library.drop_collection(collection)  # left over in our own folder from a lost database
            info = library.create_collection(collection, embedder or self.default_embedder)
        return self.rows.add_kb(name, collection, info.id, info.dimension, size, overlap)

    @staticmethod
    def _stored_chunks(library: Any, collection: str) -> int:
        """Chunks Chroma holds in ``collection`` (0 when it does not exist); StoreUnavailable propagates."""
        from knowledge import KnowledgeError, StoreUnavailable

        try:
            return library.count(collection)
        except StoreUnavailable:
            raise
        except KnowledgeError:
            return 0

    def drop(self, name: str) -> None:
        """Delete a knowledge base: its collection, then its rows (chats that used it simply stop using it)."""
        kb = self.get(name)
        library = self.handle.get()
        with self.handle.calls(kb.name):
            library.drop_collection(kb.collection)
        self.rows.delete_kb(kb.id)

    def documents(self, name: str) -> list[Document]:
        """The documents of a knowledge base, by name."""
        return self.rows.documents(self.get(name).id)

    # Ingestion

    def ingest(self, name: str, paths: list[Path], *, embedder: str | None = None,
               progress: ProgressCallback | None = None, names: list[str] | None = None) -> IngestReport:  # fmt: skip
        """Ingest files and folders (recursively) into ``name``, creating it with ``embedder`` (or the default)
        if missing. ``names`` gives each path's document name (uploads); else it comes from the path.
        """
        from knowledge import SUPPORTED_SUFFIXES

        clean = clean_kb_name(name)
        kb = self.rows.kb_by_name(clean)
        if kb is None:
            kb = self.create(clean, embedder)
        elif embedder is not None:
            self._check_embedder(kb, embedder)
        elif self.settings.embedder:
            self._check_embedder(kb, self.settings.embedder, configured=True)
        candidates = collect(list(paths), SUPPORTED_SUFFIXES)
        if names is not None:
            if len(names) != len(paths) or any(Path(p).is_dir() for p in paths):
                raise InputError("Give one name per uploaded file.")
            candidates = [type(c)(c.path, sanitize_name(n), c.reason) for c, n in zip(candidates, names, strict=True)]
        self._check_chunks_present(kb, repair=True)
        return Ingestion(self.rows, self.handle, kb, progress).run(candidates)

    def ingest_uploads(self, name: str, uploads: list[tuple[str, BinaryIO | bytes]], *, embedder: str | None = None,
                       progress: ProgressCallback | None = None) -> IngestReport:  # fmt: skip
        """Ingest uploaded files (browser name, content): each is copied to a temporary folder under the data dir
        (``knowledge/uploads/``) under a neutral name with its suffix (never under the given name), ingested
        under its sanitized name, and the copies are deleted afterwards. Inkstone keeps no copy of an upload.
        """
        uploads_dir = self.settings.home / "knowledge" / "uploads"
        try:
            uploads_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise KnowledgeBaseError(f"Cannot create {uploads_dir} for uploads ({exc}): check the data dir.") from exc
        with tempfile.TemporaryDirectory(prefix="upload-", dir=uploads_dir) as folder:
            paths: list[Path] = []
            for index, (raw_name, content) in enumerate(uploads):
                suffix = Path(sanitize_name(raw_name)).suffix.lower()
                suffix = suffix if _SUFFIX.fullmatch(suffix) else ""
                path = Path(folder) / f"upload-{index}{suffix}"
                with path.open("wb") as out:
                    if isinstance(content, bytes):
                        out.write(content)
                    else:
                        shutil.copyfileobj(content, out, 1024 * 1024)
                paths.append(path)
            return self.ingest(name, paths, embedder=embedder, progress=progress, names=[n for n, _ in uploads])

    @staticmethod
    def supported_suffixes() -> list[str]:
        """File suffixes the loaders read (``.pdf``, ``.txt``...), sorted."""
        from knowledge import SUPPORTED_SUFFIXES

        return sorted(SUPPORTED_SUFFIXES)

    def _check_embedder(self, kb: KnowledgeBase, spec: str, *, configured: bool = False) -> None:
        """ReembedRequired when ``spec`` (asked for, or the ``embedder`` setting) is not ``kb``'s embedder."""
        if spec == kb.embedder:
            return
        library = self.handle.get()
        with self.handle.calls(kb.name):
            wanted = library.embedder_info(spec)
        if wanted.id == kb.embedder:
            return
        other = "remove the embedder setting or set it back to" if configured else "leave --embedder out to keep"
        whose = "the embedder setting is" if configured else "not"
        raise ReembedRequired(
            f"Knowledge base {kb.name!r} was built with embedder {kb.embedder!r}, but {whose} {wanted.id!r}; "
            f"vectors of two embedders cannot be mixed. Re-embed it: {reembed_hint(kb.name, spec)}, or {other} "
            f"{kb.embedder!r}."
        )

    def embedder_conflict(self, kb: KnowledgeBase) -> str | None:
        """Why ``kb`` cannot be used with the ``embedder`` setting (set explicitly, and another one), or None."""
        if not self.settings.embedder:
            return None
        try:
            self._check_embedder(kb, self.settings.embedder, configured=True)
        except ReembedRequired as exc:
            return str(exc)
        except InkstoneError:
            return None  # Chroma or the embedder is unavailable: the next operation says so
        return None

    def _check_chunks_present(self, kb: KnowledgeBase, *, repair: bool = False) -> None:
        """KnowledgeUnavailable when Chroma lost a knowledge base's chunks (its folder deleted behind our back).

        With ``repair``, the collection is made again and the lost documents are marked ``error`` instead,
        so that ingesting the files again adds them back.
        """
        expected = self.rows.kb_stats().get(kb.id, {}).get("chunks", 0)
        if not expected:
            return
        library = self.handle.get()
        with self.handle.calls(kb.name):
            if self._stored_chunks(library, kb.collection):
                return
        lost = f"its chunks are gone from {self.handle.where} (was the folder deleted?): ingest the file again"
        if not repair:
            raise KnowledgeUnavailable(
                f"Knowledge base {kb.name!r} has {expected} chunks in the history database but none in "
                f"{self.handle.where} (was it deleted behind Inkstone's back?): ingest its files again with "
                f"`python -m core kb ingest --kb {kb.name!r} PATH...`, or drop it."
            )
        with self.handle.calls(kb.name):
            library.create_collection(kb.collection, kb.embedder)
        for doc in self.rows.documents(kb.id):
            if doc.status == "ready":
                self.rows.update_document(doc.id, status="error", error=lost, chunks=0)

    def remove(self, name: str, document: str) -> list[Document]:
        """Remove a document (every version of that name) and its chunks; returns the rows removed."""
        kb = self.get(name)
        docs = self.rows.documents(kb.id)
        for candidate in (document, sanitize_name(document, keep_folders=True), sanitize_name(document)):
            matches = [d for d in docs if d.name == candidate]
            if matches:
                break
        else:
            listed = ", ".join(repr(d.name) for d in docs[:20]) or "none"
            raise NotFoundError(f"Knowledge base {kb.name!r} has no document {document!r}; its documents: {listed}.")
        library = self.handle.get()
        for doc in matches:
            with self.handle.calls(kb.name):
                library.remove_document(kb.collection, doc.id)
            self.rows.delete_document(doc.id)
        return matches

    def reembed(self, name: str, embedder: str,
                progress: Callable[[int, int | None], None] | None = None) -> KnowledgeBase:  # fmt: skip
        """Re-embed every stored chunk of ``name`` with ``embedder`` (the original files are not needed)."""
        kb = self.get(name)
        library = self.handle.get()
        with self.handle.calls(kb.name):
            info = library.reembed(kb.collection, embedder, progress=progress)
        self.rows.set_kb_embedder(kb.id, info.id, info.dimension)
        return self.get(kb.name)

    # Retrieval

    def query(self, kbs: list[KnowledgeBase], text: str, k: int = 4) -> list[QueryHit]:
        """The best ``k`` chunks of ready documents in ``kbs`` for ``text`` (hybrid search, best first)."""
        if not text or not text.strip():
            raise InputError("The query is empty: type a question.")
        if not 1 <= k <= 100:
            raise InputError(f"k={k} is out of range: ask for 1 to 100 hits.")
        for kb in kbs:
            if self.settings.embedder:
                self._check_embedder(kb, self.settings.embedder, configured=True)
        ready = self.rows.ready_ids([kb.id for kb in kbs])
        if not ready:
            return []
        by_collection = {kb.collection: kb for kb in kbs}
        stats = self.rows.kb_stats()
        partial = any(s.get("documents", 0) != s.get("ready", 0) for kb_id, s in stats.items()
                      if kb_id in {kb.id for kb in kbs})  # fmt: skip
        library = self.handle.get()
        try:
            with self.handle.calls(kbs[0].name if len(kbs) == 1 else None):
                hits = library.search([(kb.collection, kb.embedder) for kb in kbs], text, k=k * 3 if partial else k)
        except KnowledgeUnavailable:
            for kb in kbs:
                self._check_chunks_present(kb)  # a collection lost behind our back gets its own message
            raise
        hits = [h for h in hits if h.doc_id in ready][:k]
        if not hits:
            for kb in kbs:
                self._check_chunks_present(kb)
        return [QueryHit(rank, h.score, h.source, h.page, h.text, by_collection[h.collection].name if
                         h.collection in by_collection else "") for rank, h in enumerate(hits, start=1)]  # fmt: skip

    def session_knowledge(self, session_id: str) -> tuple[bool, list[KnowledgeBase]]:
        """A chat's RAG switch and its knowledge bases (ones dropped since are left out)."""
        value = self.rows.session_knowledge(session_id)
        kbs = [kb for kb in (self.rows.kb_by_id(i) for i in value.kb_ids) if kb is not None]
        return value.rag, kbs

    def set_session_knowledge(self, session_id: str, rag: bool, kb_names: list[str] | None = None) -> None:
        """Turn RAG on or off for a chat and (if given) choose its knowledge bases by name."""
        if kb_names is None:
            ids = self.rows.session_knowledge(session_id).kb_ids
        else:
            ids = tuple(kb.id for kb in self.resolve(kb_names)) if kb_names else ()
        self.rows.set_session_knowledge(session_id, SessionKnowledge(bool(rag), tuple(ids)))

    def retrieve(self, session: Session, question: str) -> list[dict[str, Any]] | None:
        """The retriever of ``ChatService``: None when the chat has RAG off, else its numbered sources
        ``[{"n", "source", "page", "score", "text"}]`` (empty: nothing relevant found). Raises a
        KnowledgeBaseError when it cannot search (the chat then answers without sources and says why).
        """
        rag, kbs = self.session_knowledge(session.id)
        if not rag:
            return None
        if not kbs:
            raise KnowledgeBaseError(
                "RAG is on for this chat but it has no knowledge base chosen: pick one next to the RAG switch "
                "(or `python -m core chat --kb NAME`)."
            )
        hits = self.query(kbs, question, k=self.settings.rag_top_k)
        return [{"n": h.rank, "source": h.source, "page": h.page, "score": round(h.score, 4), "text": h.text}
                for h in hits]  # fmt: skip
