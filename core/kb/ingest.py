"""Ingestion of files into one knowledge base: dedup, replace, resume, per-file errors, progress.

Per file: hash it (streamed); a ready document with the same content in this knowledge base means
``unchanged`` and nothing is added. Otherwise a document row is written ``ingesting`` first, the library
loads, splits, embeds and stores the chunks under the row's id, and the row becomes ``ready`` (or
``error`` with the reason). Only then are older versions of the same name removed, so a changed file
replaces its old chunks and a broken new version never costs the old one. A row left ``ingesting`` by a
killed process is picked up again by the next ingestion of that file (the library first deletes any
chunks stored under the id), and retrieval ignores chunks of rows that are not ready.

A file's own problem (unreadable, empty, binary, encrypted, or a loader crash) is recorded on its row
and the other files go on; a problem of the whole knowledge base (Chroma down, wrong embedder) ends the
ingestion with the files done so far reported.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from core.errors import InkstoneError
from core.kb.files import Candidate
from core.kb.library import LibraryHandle
from core.kb.rows import Document, KnowledgeBase, KnowledgeRows

if TYPE_CHECKING:
    from knowledge import KnowledgeLibrary


@dataclass(frozen=True)
class FileResult:
    """What happened to one file: ``added``, ``replaced``, ``unchanged``, ``skipped`` or ``error``."""

    name: str
    status: str
    chunks: int = 0
    pages: int = 0
    detail: str | None = None
    """The error, the reason it was skipped, or what it duplicates."""
    warnings: tuple[str, ...] = ()
    ocr_pages: int = 0
    """Pages (or the image) whose text was read by OCR."""


@dataclass(frozen=True)
class IngestProgress:
    """Where an ingestion is: files finished of all, the current file, its chunks embedded and pages read so far."""

    files_done: int
    files_total: int
    name: str
    chunks_done: int = 0
    chunks_total: int | None = None
    result: FileResult | None = None
    """Set once the current file is finished."""
    pages_done: int = 0
    pages_total: int | None = None
    """Pages of the current PDF (1 for an image) read so far, OCR'd ones included; None for other formats."""
    ocr_pages: int = 0
    """Of those, pages read by OCR (about a second each on a CPU)."""

    @property
    def fraction(self) -> float:
        """Share of all files done, counting the current one by its pages read (else its chunks stored)."""
        if self.result is not None:  # finished: already counted in files_done
            part = 0.0
        elif self.pages_total:
            part = self.pages_done / self.pages_total
        else:
            part = self.chunks_done / self.chunks_total if self.chunks_total else 0.0
        return min((self.files_done + min(part, 1.0)) / max(self.files_total, 1), 1.0)


ProgressCallback = Callable[[IngestProgress], None]


@dataclass
class IngestReport:
    """The outcome of one ingestion."""

    kb: str
    results: list[FileResult] = field(default_factory=list)
    aborted: str | None = None
    """Why the ingestion stopped early (Chroma down, wrong embedder); None when every file was tried."""

    def count(self, *statuses: str) -> int:
        """Files that ended with one of ``statuses``."""
        return sum(1 for r in self.results if r.status in statuses)

    @property
    def chunks(self) -> int:
        """Chunks added by this ingestion."""
        return sum(r.chunks for r in self.results if r.status in ("added", "replaced"))

    @property
    def errors(self) -> list[FileResult]:
        """The files that failed."""
        return [r for r in self.results if r.status == "error"]

    def summary(self) -> str:
        """One line: files, chunks, skipped and errors."""
        added, replaced = self.count("added"), self.count("replaced")
        parts = [f"{len(self.results)} files", f"{added} added", f"{replaced} replaced",
                 f"{self.count('unchanged')} unchanged", f"{self.count('skipped')} skipped",
                 f"{len(self.errors)} errors", f"{self.chunks} chunks added"]  # fmt: skip
        return f"Knowledge base {self.kb!r}: " + ", ".join(parts) + "."

    def to_dict(self) -> dict:
        """JSON-ready form (``python -m core kb ingest --json``)."""
        return {
            "kb": self.kb, "files": len(self.results), "added": self.count("added"),
            "replaced": self.count("replaced"), "unchanged": self.count("unchanged"),
            "skipped": self.count("skipped"), "errors": len(self.errors), "chunks": self.chunks,
            "aborted": self.aborted,
            "results": [{"name": r.name, "status": r.status, "chunks": r.chunks, "pages": r.pages,
                         "ocr_pages": r.ocr_pages, "detail": r.detail, "warnings": list(r.warnings)}
                        for r in self.results],
        }  # fmt: skip


class Ingestion:
    """Ingests candidates into one knowledge base through the library, keeping the rows in step."""

    def __init__(self, rows: KnowledgeRows, handle: LibraryHandle, kb: KnowledgeBase,
                 progress: ProgressCallback | None = None) -> None:  # fmt: skip
        self.rows, self.handle, self.kb = rows, handle, kb
        self.progress = progress or (lambda _update: None)

    def run(self, candidates: list[Candidate]) -> IngestReport:
        """Ingest every candidate in order; returns the report (``aborted`` set if it had to stop)."""
        report = IngestReport(self.kb.name)
        total = len(candidates)
        for index, cand in enumerate(candidates):
            self.progress(IngestProgress(index, total, cand.name))
            try:
                result = self._one(cand, _Tracker(self.progress, index, total, cand.name))
            except InkstoneError as exc:
                report.results.append(FileResult(cand.name, "error", detail=str(exc)))
                report.aborted = str(exc)
                break
            report.results.append(result)
            self.progress(IngestProgress(index + 1, total, cand.name, result.chunks, result.chunks, result))
        return report

    def _one(self, cand: Candidate, on_chunks: _Tracker) -> FileResult:
        if cand.reason is not None:
            status = "skipped" if cand.path.exists() else "error"
            return FileResult(cand.name, status, detail=cand.reason)
        from knowledge import file_sha256

        try:
            size = cand.path.stat().st_size
            digest = file_sha256(cand.path)
        except OSError as exc:
            return FileResult(cand.name, "error", detail=f"cannot read {cand.path}: {exc.strerror or exc}")
        same = self.rows.ready_with_hash(self.kb.id, digest)
        if same is not None:
            note = "same content already ingested" + (f" as {same.name!r}" if same.name != cand.name else "")
            return FileResult(cand.name, "unchanged", same.chunks, same.pages, note)
        library = self.handle.get()  # before any row is written: Chroma down ends the ingestion here
        previous = self.rows.documents_named(self.kb.id, cand.name)
        resume = next((d for d in previous if d.status != "ready" and d.content_hash == digest), None)
        if resume is not None:
            self.rows.update_document(resume.id, status="ingesting", error=None, size_bytes=size)
            doc = resume
        else:
            doc = self.rows.add_document(self.kb, cand.name, digest, size)
        with self.handle.calls(self.kb.name):
            failure = self._add(library, doc, cand, on_chunks)
        if failure is not None:
            self._discard([d for d in previous if d.id != doc.id and d.status != "ready"], library)
            return failure
        replaced = any(d.status == "ready" for d in previous if d.id != doc.id)
        self._discard([d for d in previous if d.id != doc.id], library)
        done = self.rows.documents_named(self.kb.id, cand.name)[-1]
        return FileResult(cand.name, "replaced" if replaced else "added", done.chunks, done.pages,
                          warnings=tuple(done.warnings), ocr_pages=on_chunks.ocr_pages)  # fmt: skip

    def _add(self, library: KnowledgeLibrary, doc: Document, cand: Candidate,
             on_chunks: _Tracker) -> FileResult | None:  # fmt: skip
        """Store the file's chunks under ``doc``; a FileResult for a per-file error, None when ready."""
        from knowledge import KnowledgeError, LoaderError

        kb = self.kb
        try:
            stats = library.add_document(kb.collection, kb.embedder, doc.id, cand.path, cand.name, kb.chunk_size,
                                         kb.chunk_overlap, progress=on_chunks, pages=on_chunks.pages)  # fmt: skip
            if stats.chunks == 0:
                raise LoaderError(f"{cand.name} has no text to search (nothing was added): check the file.")
        except KnowledgeError as exc:
            if not isinstance(exc, LoaderError):
                self.rows.update_document(doc.id, status="error", error=str(exc))
                raise  # the whole knowledge base has the problem: stop here (rerunning resumes this file)
            error = str(exc)
        except Exception as exc:  # a loader crash on one strange file must not stop the other files
            error = f"{cand.name} could not be read ({type(exc).__name__}: {exc}); the other files go on."
        else:
            self.rows.update_document(doc.id, status="ready", pages=stats.pages, chunks=stats.chunks,
                                      warnings=list(stats.warnings), error=None)  # fmt: skip
            return None
        library.remove_document(kb.collection, doc.id)  # nothing half-added stays behind
        self.rows.update_document(doc.id, status="error", error=error, chunks=0, pages=0)
        return FileResult(cand.name, "error", detail=error)

    def _discard(self, docs: list[Document], library: KnowledgeLibrary) -> None:
        """Remove these document versions: their chunks, then their rows."""
        for old in docs:
            with self.handle.calls(self.kb.name):
                library.remove_document(self.kb.collection, old.id)
            self.rows.delete_document(old.id)


class _Tracker:
    """Turns the library's chunk and page counts for one file into ``IngestProgress`` updates."""

    def __init__(self, progress: ProgressCallback, index: int, total: int, name: str) -> None:
        self.progress, self.index, self.total, self.name = progress, index, total, name
        self.chunks: tuple[int, int | None] = (0, None)
        self.read: tuple[int, int | None] = (0, None)
        self.ocr_pages = 0

    def __call__(self, done: int, of: int | None) -> None:
        """Chunks stored so far (of the total, once known)."""
        self.chunks = (done, of)
        self._emit()

    def pages(self, done: int, of: int, ocr: int) -> None:
        """Pages read so far of the file's pages, ``ocr`` of them by OCR."""
        self.read, self.ocr_pages = (done, of), ocr
        self._emit()

    def _emit(self) -> None:
        self.progress(IngestProgress(self.index, self.total, self.name, *self.chunks, pages_done=self.read[0],
                                     pages_total=self.read[1], ocr_pages=self.ocr_pages))  # fmt: skip
