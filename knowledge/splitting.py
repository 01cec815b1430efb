"""CJK-aware recursive splitting of page segments into chunks that keep their page and character offsets.

LangChain's RecursiveCharacterTextSplitter does the splitting: it tries blank lines, then lines, then sentence
ends (Chinese 。！？； and English ". ! ? ;"), then clause commas, spaces and finally characters, and keeps each
separator at the end of the piece it closes, so a Chinese sentence keeps its 。 and no chunk starts with one.

Tables: a run of lines that hold the same number (>= 1) of " | " separators is a table (Markdown tables in text
files; DOCX and HTML tables are written that way by their loaders), its first line the header. A chunk that
starts inside a table below its header gets that header as ``Chunk.header``, stored above the chunk's text, so
"What is the power rating of the BW-170?" finds the row with the column's name in it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from knowledge.documents import Segment
from knowledge.errors import KnowledgeError

MIN_CHUNK_SIZE = 20
SEPARATORS = ["\n\n", "\n", "。", "！", "？", "；", ". ", "! ", "? ", "; ", "，", ", ", " ", ""]


@dataclass(frozen=True)
class Chunk:
    """One chunk: its text, 1-based page (None outside PDFs), [start, end) character offsets in that page or file."""

    text: str
    page: int | None
    start: int
    end: int
    index: int
    header: str = ""  # the header row of the table this chunk starts in, when the chunk does not hold it
    ocr: bool = False  # read from a picture by OCR (a scanned page, an image file)

    @property
    def stored_text(self) -> str:
        """What is stored and shown: the table header (if any) on a line above the text."""
        return f"{self.header}\n{self.text}" if self.header else self.text


def make_splitter(chunk_size: int, chunk_overlap: int):  # -> RecursiveCharacterTextSplitter
    """The splitter for ``chunk_size`` characters with ``chunk_overlap`` characters of overlap."""
    from langchain_text_splitters import RecursiveCharacterTextSplitter

    if chunk_size < MIN_CHUNK_SIZE:
        raise KnowledgeError(f"chunk size {chunk_size} is too small; use at least {MIN_CHUNK_SIZE} characters")
    if not 0 <= chunk_overlap < chunk_size:
        raise KnowledgeError(
            f"chunk overlap {chunk_overlap} must be at least 0 and below the chunk size {chunk_size}; lower it"
        )
    return RecursiveCharacterTextSplitter(
        separators=SEPARATORS,
        keep_separator="end",
        chunk_size=chunk_size,
        chunk_overlap=chunk_overlap,
        length_function=len,
        strip_whitespace=True,
    )


_MD_RULE = re.compile(r"^\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?$")


def table_headers(text: str) -> list[tuple[int, int, str]]:
    """(start, end, header line) of each table in ``text``: runs of 2+ lines with the same number of " | ",
    blank lines between them allowed (a Markdown rule line |---|---| belongs to the run but is no header)."""
    tables: list[tuple[int, int, str]] = []
    pos = 0
    run: list[tuple[int, str]] = []
    cells = -1

    def close() -> None:
        rows = [(at, line) for at, line in run if not _MD_RULE.match(line.strip())]
        if len(rows) >= 2:
            tables.append((run[0][0], run[-1][0] + len(run[-1][1]), rows[0][1].strip()))

    for line in text.split("\n"):
        if not line.strip() and run:  # blank lines between rows (HTML and DOCX output) keep the table going
            pos += len(line) + 1
            continue
        n = line.strip().strip("|").count("|")
        if n >= 1 and (n == cells or not run or _MD_RULE.match(line.strip())):
            if not _MD_RULE.match(line.strip()):
                cells = n
            run.append((pos, line))
        else:
            close()
            run, cells = ([(pos, line)], n) if n >= 1 else ([], -1)
        pos += len(line) + 1
    close()
    return tables


def split_segments(segments: Iterable[Segment], chunk_size: int, chunk_overlap: int) -> Iterator[Chunk]:
    """Chunks of every segment in order, numbered from 0, lazily (one segment in memory at a time)."""
    splitter = make_splitter(chunk_size, chunk_overlap)
    index = 0
    for segment in segments:
        search_from = 0
        previous_len = 0
        tables = table_headers(segment.text)
        for piece in splitter.split_text(segment.text):
            if not piece.strip():
                continue
            # Same rule as LangChain's add_start_index: look from just before where the overlap can begin.
            at = segment.text.find(piece, max(0, search_from + previous_len - chunk_overlap))
            if at == -1:
                at = segment.text.find(piece)
            start = segment.offset + max(at, 0)
            header = next((h for a, b, h in tables if a < max(at, 0) < b and h not in piece), "")
            yield Chunk(piece, segment.page, start, start + len(piece), index, header, segment.ocr)
            index += 1
            search_from, previous_len = max(at, 0), len(piece)
