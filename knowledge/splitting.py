"""CJK-aware recursive splitting of page segments into chunks that keep their page and character offsets.

LangChain's RecursiveCharacterTextSplitter does the splitting: it tries blank lines, then lines, then sentence
ends (Chinese 。！？； and English ". ! ? ;"), then clause commas, spaces and finally characters, and keeps each
separator at the end of the piece it closes, so a Chinese sentence keeps its 。 and no chunk starts with one.
"""

from __future__ import annotations

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


def split_segments(segments: Iterable[Segment], chunk_size: int, chunk_overlap: int) -> Iterator[Chunk]:
    """Chunks of every segment in order, numbered from 0, lazily (one segment in memory at a time)."""
    splitter = make_splitter(chunk_size, chunk_overlap)
    index = 0
    for segment in segments:
        search_from = 0
        previous_len = 0
        for piece in splitter.split_text(segment.text):
            if not piece.strip():
                continue
            # Same rule as LangChain's add_start_index: look from just before where the overlap can begin.
            at = segment.text.find(piece, max(0, search_from + previous_len - chunk_overlap))
            if at == -1:
                at = segment.text.find(piece)
            start = segment.offset + max(at, 0)
            yield Chunk(piece, segment.page, start, start + len(piece), index)
            index += 1
            search_from, previous_len = max(at, 0), len(piece)
