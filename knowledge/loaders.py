"""Loaders: one file -> a stream of page-like text segments, with the page number where the format has pages.

``open_document(path)`` checks the file up front (type, empty, binary, encoding, encryption) and raises
LoaderError with a message that names the file and the fix; ``Document.segments()`` then yields the text
lazily, so a 200 MB text file is read in bounded blocks and never held whole in memory. Problems that do not
stop the file (a scanned PDF page OCR cannot read, undecodable bytes) are collected in ``Document.warnings``.
Images (PNG, JPEG, WebP, BMP, the first frame of a GIF) and PDF pages without a text layer are read by OCR
(``knowledge.ocr``); their segments carry ``ocr=True``.
``Segment`` and ``Document`` live in ``knowledge.documents``; the PDF, DOCX and HTML readers in
``knowledge.formats``. This module imports both and neither imports it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

from knowledge.charset import SAMPLE_BYTES, detect_encoding
from knowledge.documents import Document, Segment
from knowledge.errors import LoaderError
from knowledge.formats import check_docx, html_encoding, html_segments, open_image, open_pdf
from knowledge.ocr import IMAGE_SUFFIXES

TEXT_SUFFIXES = frozenset({".txt", ".md", ".markdown", ".text", ".rst", ".csv", ".log"})
SUPPORTED_SUFFIXES = TEXT_SUFFIXES | {".pdf", ".docx", ".html", ".htm"} | IMAGE_SUFFIXES
_REFUSED = {  # types people expect to work, with what to do instead
    ".svg": "an SVG is a drawing made of shapes, not a picture of text; export it as PNG to have it OCR'd",
    ".svgz": "an SVG is a drawing made of shapes, not a picture of text; export it as PNG to have it OCR'd",
    ".tif": "TIFF is not read; save the pages as PDF or PNG",
    ".tiff": "TIFF is not read; save the pages as PDF or PNG",
    ".heic": "HEIC photos are not read; export them as JPEG",
}
TEXT_BLOCK_CHARS = 256 * 1024  # a text file is yielded in segments of about this many characters


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of the file's bytes, read in 1 MiB blocks (bounded memory for any size)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def open_document(path: Path, name: str | None = None) -> Document:
    """Validate ``path`` and return a Document; LoaderError (naming ``name``) when it cannot be indexed."""
    path = Path(path)
    name = name or path.name
    suffix = path.suffix.lower()
    if suffix in _REFUSED:
        raise LoaderError(f"{name}: {_REFUSED[suffix]}")
    if suffix not in SUPPORTED_SUFFIXES:
        raise LoaderError(
            f"{name}: unsupported file type {suffix or '(no extension)'!r}; "
            f"supported: {', '.join(sorted(SUPPORTED_SUFFIXES))} (convert it to one of these)"
        )
    if not path.is_file():
        raise LoaderError(f"{name}: no such file ({path}); check the path")
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            sample = fh.read(SAMPLE_BYTES)
    except OSError as exc:
        raise LoaderError(f"{name}: cannot be read ({exc.strerror or exc}); check its permissions") from exc
    if size == 0 or not sample.strip(b" \t\r\n\x00\xef\xbb\xbf\xff\xfe"):
        raise LoaderError(f"{name} is empty; there is nothing to index")
    if suffix in TEXT_SUFFIXES:
        encoding = detect_encoding(sample, name)
        return Document(path, name, "text", encoding=encoding, reader=_text_segments)
    if suffix == ".pdf":
        return open_pdf(path, name, sample)
    if suffix in IMAGE_SUFFIXES:
        return open_image(path, name)
    if suffix == ".docx":
        return check_docx(path, name, sample)
    return Document(
        path, name, "html", encoding=html_encoding(sample, name), reader=html_segments
    )


def _text_segments(doc: Document) -> Iterator[Segment]:
    """Decode ``doc`` in blocks; each segment ends at a paragraph or line break when one is near the block end."""
    replaced = 0
    offset = 0
    carry = ""
    produced = False
    with open(doc.path, encoding=doc.encoding, errors="replace", newline=None) as fh:
        while True:
            block = fh.read(TEXT_BLOCK_CHARS)
            replaced += block.count("\ufffd")
            text = carry + block
            if len(block) < TEXT_BLOCK_CHARS:  # end of file: the rest is the last segment
                carry = text
                break
            cut = _cut_point(text)
            carry = text[cut:]
            head = text[:cut]
            if head.strip():
                produced = True
                yield Segment(head, None, offset)
            offset += len(head)
    if carry.strip():
        produced = True
        yield Segment(carry, None, offset)
    if replaced:
        doc.warnings.append(
            f"{replaced} character(s) in {doc.name} could not be decoded as {doc.encoding} and were replaced by \ufffd"
        )
    if not produced:
        raise LoaderError(f"{doc.name} holds only whitespace; there is nothing to index")


def _cut_point(text: str) -> int:
    """Where to end a block: after the last blank line, else line break, in its second half; else at the end."""
    half = len(text) // 2
    for sep in ("\n\n", "\n", "。", ". "):
        at = text.rfind(sep, half)
        if at != -1:
            return at + len(sep)
    return len(text)
