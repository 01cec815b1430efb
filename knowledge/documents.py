"""The loaded-file data types: ``Segment`` (a run of page text) and ``Document`` (an opened, validated file).

Owns only the data; it imports neither ``knowledge.loaders`` nor ``knowledge.formats``. Whoever opens a file
(``loaders.open_document`` or a format's opener in ``formats``) sets ``Document.reader`` to the function that
yields that format's segments, so ``Document.segments()`` needs no knowledge of formats.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Segment:
    """A run of text from one page (``page`` is 1-based for PDFs, None otherwise); ``offset`` is its start in it;
    ``ocr`` marks text read from an image by OCR (a scanned page, an image file) rather than from a text layer."""

    text: str
    page: int | None
    offset: int = 0
    ocr: bool = False


@dataclass
class Document:
    """An opened, validated file whose text is read lazily by ``segments()`` through its ``reader``."""

    path: Path
    name: str
    kind: str
    pages: int = 1
    encoding: str | None = None
    warnings: list[str] = field(default_factory=list)
    reader: Callable[[Document], Iterator[Segment]] | None = field(default=None, repr=False, compare=False)
    on_page: Callable[[int, bool], None] | None = field(default=None, repr=False, compare=False)
    """Called by readers of paged formats after each page: (pages read so far, whether that page needed OCR)."""

    def page_done(self, done: int, ocr: bool) -> None:
        """Tell ``on_page`` (if set) that ``done`` pages are read; ``ocr``: the last one was read by OCR."""
        if self.on_page is not None:
            self.on_page(done, ocr)

    def segments(self) -> Iterator[Segment]:
        """The file's text, page by page (PDF) or in bounded blocks (text); LoaderError if none of it is text."""
        if self.reader is None:
            raise TypeError(f"{self.name}: no reader was set for this {self.kind} document; open it with open_document")
        yield from self.reader(self)
