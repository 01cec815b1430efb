"""Knowledge bases as the CLI and the UI use them: ``KnowledgeService``, the façade over ``core.kb``.

It owns the lifecycle of a knowledge base (create, list, drop, remove a document, re-embed, ingest) and
delegates the rest, keeping one method per operation for the CLI, the UI and the engine:

- ``core.kb.naming``: ``clean_kb_name`` and the ``KbSummary`` / ``QueryHit`` results;
- ``core.kb.guards``: the embedder check (another embedder is refused with the re-embed command, never mixed
  silently) and the check (and repair) of chunks lost from Chroma;
- ``core.kb.uploads``: staging browser uploads as temporary files for ingestion;
- ``core.kb.search``: ``query``, the hybrid search over knowledge bases;
- ``core.kb.chats``: each chat's RAG switch and the retriever ``ChatService`` calls.

Without the ``embedder`` setting, the library default only applies to new knowledge bases.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import core.kb.chats as chats
import core.kb.guards as guards
import core.kb.search as search
from core.config import Settings
from core.errors import InputError, KnowledgeBaseError, NotFoundError
from core.kb.files import collect, sanitize_name
from core.kb.ingest import Ingestion, IngestReport, ProgressCallback
from core.kb.library import LibraryHandle
from core.kb.naming import MAX_KB_NAME, KbSummary, QueryHit, clean_kb_name
from core.kb.rows import Document, KnowledgeBase, KnowledgeRows
from core.kb.uploads import rename_uploads, staged_uploads

if TYPE_CHECKING:  # the retrieval reads a chat's row; history itself sits above kb
    from core.history.store import Session

__all__ = ["MAX_KB_NAME", "KbSummary", "KnowledgeService", "QueryHit", "clean_kb_name"]


class KnowledgeService:
    """Knowledge bases of one data dir (rows in SQLite, chunks in Chroma)."""

    def __init__(self, settings: Settings, rows: KnowledgeRows) -> None:
        self.settings = settings
        self.rows = rows
        self.handle = LibraryHandle(settings)
        self.translate: search.Translate | None = None
        """Translates a chat's question for passages in another language (the engine sets the loaded model's)."""

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
            if guards.stored_chunks(library, collection):
                if self.settings.chroma_url:
                    raise KnowledgeBaseError(
                        f"The Chroma server already has a collection {collection!r} for the name {name!r} that this "
                        "Inkstone does not know (another Inkstone's?): choose another name."
                    )
                library.drop_collection(collection)  # left over in our own folder from a lost database
            info = library.create_collection(collection, embedder or self.default_embedder)
        return self.rows.add_kb(name, collection, info.id, info.dimension, size, overlap)

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
            guards.check_embedder(self.handle, kb, embedder)
        else:
            guards.check_configured_embedder(self.settings, self.handle, kb)
        candidates = collect(list(paths), SUPPORTED_SUFFIXES)
        if names is not None:
            candidates = rename_uploads(candidates, paths, names)
        guards.check_chunks_present(self.rows, self.handle, kb, repair=True)
        return Ingestion(self.rows, self.handle, kb, progress).run(candidates)

    def sync(self, name: str, folder: Path, *, embedder: str | None = None,
             progress: ProgressCallback | None = None) -> tuple[IngestReport, list[str]]:  # fmt: skip
        """Make ``name`` mirror ``folder``: ingest new files, re-ingest changed ones (content hash), then remove
        the documents no file in the folder has any more. Returns the ingestion report and the names removed.

        Safe to run twice (the second run finds everything unchanged) and to kill: ingestion resumes on the next
        run, and nothing is removed unless the ingestion finished (a missing or empty folder removes nothing).
        """
        from knowledge import SUPPORTED_SUFFIXES

        root = Path(folder).expanduser()
        if not root.is_dir():
            raise InputError(f"{folder} is not a folder: give the folder whose files the knowledge base mirrors.")
        present = {c.name for c in collect([root], SUPPORTED_SUFFIXES) if c.reason is None}
        if not present:
            raise InputError(f"{folder} holds no supported files ({', '.join(self.supported_suffixes())}); "
                             "nothing was synced or removed.")  # fmt: skip
        report = self.ingest(name, [root], embedder=embedder, progress=progress)
        if report.aborted:
            return report, []
        removed: list[str] = []
        for doc in self.rows.documents(self.get(name).id):
            if doc.name not in present and doc.name not in removed:
                self.remove(name, doc.name)
                removed.append(doc.name)
        return report, removed

    def ingest_uploads(self, name: str, uploads: list[tuple[str, BinaryIO | bytes]], *, embedder: str | None = None,
                       progress: ProgressCallback | None = None) -> IngestReport:  # fmt: skip
        """Ingest uploaded files (browser name, content): each is copied to a temporary folder under the data dir
        (``knowledge/uploads/``) under a neutral name with its suffix (never under the given name), ingested
        under its sanitized name, and the copies are deleted afterwards. Inkstone keeps no copy of an upload.
        """
        with staged_uploads(self.settings.home, uploads) as paths:
            return self.ingest(name, paths, embedder=embedder, progress=progress, names=[n for n, _ in uploads])

    @staticmethod
    def supported_suffixes() -> list[str]:
        """File suffixes the loaders read (``.pdf``, ``.txt``...), sorted."""
        from knowledge import SUPPORTED_SUFFIXES

        return sorted(SUPPORTED_SUFFIXES)

    def embedder_conflict(self, kb: KnowledgeBase) -> str | None:
        """Why ``kb`` cannot be used with the ``embedder`` setting (set explicitly, and another one), or None."""
        return guards.embedder_conflict(self.settings, self.handle, kb)

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

    # Retrieval and chats

    def query(self, kbs: list[KnowledgeBase], text: str, k: int = 4) -> list[QueryHit]:
        """The best ``k`` chunks of ready documents in ``kbs`` for ``text`` (hybrid search, best first)."""
        return search.query(self.settings, self.rows, self.handle, kbs, text, k)

    def session_knowledge(self, session_id: str) -> tuple[bool, list[KnowledgeBase]]:
        """A chat's RAG switch and its knowledge bases (ones dropped since are left out)."""
        return chats.session_knowledge(self.rows, session_id)

    def set_session_knowledge(self, session_id: str, rag: bool, kb_names: list[str] | None = None) -> None:
        """Turn RAG on or off for a chat and (if given) choose its knowledge bases by name."""
        ids = None if kb_names is None else tuple(kb.id for kb in self.resolve(kb_names)) if kb_names else ()
        chats.set_session_knowledge(self.rows, session_id, rag, ids)

    def retrieve(self, session: Session, question: str) -> list[dict[str, Any]] | None:
        """The retriever of ``ChatService``: None when the chat has RAG off, else its numbered sources
        ``[{"n", "source", "page", "score", "text"}]`` (empty: nothing relevant found). Raises a
        KnowledgeBaseError when it cannot search (the chat then answers without sources and says why).
        """
        return chats.retrieve(self.settings, self.rows, self.handle, session, question, self.translate)
