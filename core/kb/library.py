"""The one ``knowledge.KnowledgeLibrary`` of a process, opened on first use, and its errors in core's terms.

Opening the library connects to Chroma (a folder under the data dir, or the ``chroma_url`` server); it
happens lazily, so listing knowledge bases or chatting without RAG never needs Chroma. When Chroma is
unavailable the handle forgets the library, so the next call connects again (a restarted server, a
recreated folder). ``knowledge`` errors become ``core.errors`` ones here, with the action to take.
"""

from __future__ import annotations

import shlex
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from core.config import Settings
from core.errors import KnowledgeBaseError, KnowledgeUnavailable, ReembedRequired

if TYPE_CHECKING:
    from knowledge import KnowledgeLibrary


def reembed_hint(kb_name: str, embedder: str = "ID") -> str:
    """The command (and UI button) that re-embeds a knowledge base."""
    return (
        f"`python -m core kb reembed {shlex.quote(kb_name)} --embedder {shlex.quote(embedder)}` (or Re-embed "
        "on the Knowledge page)"
    )


class LibraryHandle:
    """Lazily opened knowledge library for one ``Settings``; safe to share between threads."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._library: KnowledgeLibrary | None = None
        self._lock = threading.Lock()

    @property
    def where(self) -> str:
        """The Chroma store in words, for messages."""
        if self.settings.chroma_url:
            return f"the Chroma server at {self.settings.chroma_url}"
        return f"the Chroma folder {self.settings.chroma_path}"

    def get(self) -> KnowledgeLibrary:
        """The library, connecting now if needed (KnowledgeUnavailable when Chroma cannot be reached)."""
        with self._lock:
            if self._library is None:
                with self.calls():
                    from knowledge import KnowledgeLibrary

                    self._library = KnowledgeLibrary(
                        self.settings.chroma_path, self.settings.chroma_url, self.settings.reranker
                    )
            return self._library

    def close(self) -> None:
        """Release the Chroma client, if one is open (the next ``get`` connects again)."""
        with self._lock:
            library, self._library = self._library, None
        if library is not None:
            library.close()

    @contextmanager
    def calls(self, kb_name: str | None = None) -> Iterator[None]:
        """Turn ``knowledge`` errors raised inside into KnowledgeBaseError / ReembedRequired / KnowledgeUnavailable."""
        from knowledge import EmbedderMismatch, KnowledgeError, StoreUnavailable

        try:
            yield
        except EmbedderMismatch as exc:
            target = f"knowledge base {kb_name!r}" if kb_name else "the knowledge base"
            hint = reembed_hint(kb_name or "NAME")
            raise ReembedRequired(f"{exc} Re-embed the {target}: {hint}.") from exc
        except StoreUnavailable as exc:
            self._library = None
            raise KnowledgeUnavailable(f"{exc} (Chats keep working without knowledge bases.)") from exc
        except KnowledgeError as exc:
            raise KnowledgeBaseError(str(exc)) from exc
