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
    """A run of text from one page (``page`` is 1-based for PDFs, None otherwise); ``offset`` is its start in it."""

    text: str
    page: int | None
    offset: int = 0


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

    def segments(self) -> Iterator[Segment]:
        """The file's text, page by page (PDF) or in bounded blocks (text); LoaderError if none of it is text."""
        if self.reader is None:
            raise TypeError(f"{self.name}: no reader was set for this {self.kind} document; open it with open_document")
        yield from self.reader(self)
