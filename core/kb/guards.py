"""Checks run before a knowledge base is used: the right embedder, and chunks still present in Chroma.

A knowledge base searches with the embedder it was built with (stored on its row and in its Chroma
collection). Another embedder is refused with the re-embed command, never mixed silently: one asked for
(``ingest --embedder``), one set explicitly as the ``embedder`` setting, or a collection whose vectors came
from another one. This module owns those refusals and the detection (and, for ingestion, repair) of a
collection whose chunks were lost behind Inkstone's back. It changes rows only in that repair.
"""

from __future__ import annotations

from typing import Any

from core.config import Settings
from core.errors import InkstoneError, KnowledgeUnavailable, ReembedRequired
from core.kb.library import LibraryHandle, reembed_hint
from core.kb.rows import KnowledgeBase, KnowledgeRows


def stored_chunks(library: Any, collection: str) -> int:
    """Chunks Chroma holds in ``collection`` (0 when it does not exist); StoreUnavailable propagates.

    ``library`` is the ``knowledge.KnowledgeLibrary`` of a ``LibraryHandle``.
    """
    from knowledge import KnowledgeError, StoreUnavailable

    try:
        return library.count(collection)
    except StoreUnavailable:
        raise
    except KnowledgeError:
        return 0


def check_embedder(handle: LibraryHandle, kb: KnowledgeBase, spec: str, *, configured: bool = False) -> None:
    """ReembedRequired when ``spec`` (asked for, or the ``embedder`` setting) is not ``kb``'s embedder."""
    if spec == kb.embedder:
        return
    library = handle.get()
    with handle.calls(kb.name):
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


def check_configured_embedder(settings: Settings, handle: LibraryHandle, kb: KnowledgeBase) -> None:
    """``check_embedder`` against the ``embedder`` setting, when one is set explicitly (else nothing to check)."""
    if settings.embedder:
        check_embedder(handle, kb, settings.embedder, configured=True)


def embedder_conflict(settings: Settings, handle: LibraryHandle, kb: KnowledgeBase) -> str | None:
    """Why ``kb`` cannot be used with the ``embedder`` setting (set explicitly, and another one), or None."""
    if not settings.embedder:
        return None
    try:
        check_embedder(handle, kb, settings.embedder, configured=True)
    except ReembedRequired as exc:
        return str(exc)
    except InkstoneError:
        return None  # Chroma or the embedder is unavailable: the next operation says so
    return None


def check_chunks_present(rows: KnowledgeRows, handle: LibraryHandle, kb: KnowledgeBase, *,
                         repair: bool = False) -> None:  # fmt: skip
    """KnowledgeUnavailable when Chroma lost a knowledge base's chunks (its folder deleted behind our back).

    With ``repair``, the collection is made again and the lost documents are marked ``error`` instead,
    so that ingesting the files again adds them back.
    """
    expected = rows.kb_stats().get(kb.id, {}).get("chunks", 0)
    if not expected:
        return
    library = handle.get()
    with handle.calls(kb.name):
        if stored_chunks(library, kb.collection):
            return
    lost = f"its chunks are gone from {handle.where} (was the folder deleted?): ingest the file again"
    if not repair:
        raise KnowledgeUnavailable(
            f"Knowledge base {kb.name!r} has {expected} chunks in the history database but none in "
            f"{handle.where} (was it deleted behind Inkstone's back?): ingest its files again with "
            f"`python -m core kb ingest --kb {kb.name!r} PATH...`, or drop it."
        )
    with handle.calls(kb.name):
        library.create_collection(kb.collection, kb.embedder)
    for doc in rows.documents(kb.id):
        if doc.status == "ready":
            rows.update_document(doc.id, status="error", error=lost, chunks=0)
