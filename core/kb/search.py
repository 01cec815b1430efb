"""Searching knowledge bases: the ranked hits of ``kb query`` and of a chat's retriever.

Owns ``query``: hybrid search over the ready documents of one or more knowledge bases, after the embedder
guard, with a lost collection reported by its own message; and ``translated``: the question in the passages' other
language, when a translator (the loaded model) is given. It reads rows and Chroma, and changes neither.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from core.config import Settings
from core.errors import InputError, KnowledgeUnavailable
from core.kb.guards import check_chunks_present, check_configured_embedder
from core.kb.library import LibraryHandle
from core.kb.naming import QueryHit
from core.kb.rows import KnowledgeBase, KnowledgeRows

Translate = Callable[[str, str], "str | None"]
"""(question, target language) -> its translation or None: ``knowledge.crosslingual.Translate``."""


def query(settings: Settings, rows: KnowledgeRows, handle: LibraryHandle, kbs: list[KnowledgeBase], text: str,
          k: int = 4, also: Sequence[str] = ()) -> list[QueryHit]:  # fmt: skip
    """The best ``k`` chunks of ready documents in ``kbs`` for ``text`` (hybrid search, best first); ``also``: more
    texts searched with it (its translations, ``translated``)."""
    if not text or not text.strip():
        raise InputError("The query is empty: type a question.")
    if not 1 <= k <= 100:
        raise InputError(f"k={k} is out of range: ask for 1 to 100 hits.")
    for kb in kbs:
        check_configured_embedder(settings, handle, kb)
    ready = rows.ready_ids([kb.id for kb in kbs])
    if not ready:
        return []
    by_collection = {kb.collection: kb for kb in kbs}
    stats = rows.kb_stats()
    partial = any(s.get("documents", 0) != s.get("ready", 0) for kb_id, s in stats.items()
                  if kb_id in {kb.id for kb in kbs})  # fmt: skip
    library = handle.get()
    try:
        with handle.calls(kbs[0].name if len(kbs) == 1 else None):
            hits = library.search([(kb.collection, kb.embedder) for kb in kbs], text, k=k * 3 if partial else k,
                                  also=also)  # fmt: skip
    except KnowledgeUnavailable:
        for kb in kbs:
            check_chunks_present(rows, handle, kb)  # a collection lost behind our back gets its own message
        raise
    hits = [h for h in hits if h.doc_id in ready][:k]
    if not hits:
        for kb in kbs:
            check_chunks_present(rows, handle, kb)
    names = {collection: kb.name for collection, kb in by_collection.items()}
    return [QueryHit(rank, h.score, h.source, h.page, h.text, names.get(h.collection, ""), h.date, h.ocr)
            for rank, h in enumerate(hits, start=1)]  # fmt: skip


def translated(handle: LibraryHandle, kbs: list[KnowledgeBase], text: str, translate: Translate | None) -> list[str]:
    """Translations of ``text`` into the other languages of the passages in ``kbs`` (``knowledge.crosslingual``);
    empty without a translator (``kb query`` without a model) or when every passage is in the question's language."""
    if translate is None or not text.strip() or not kbs:
        return []
    from knowledge.crosslingual import translations

    with handle.calls(kbs[0].name if len(kbs) == 1 else None):
        present = handle.get().languages([(kb.collection, kb.embedder) for kb in kbs])
    return translations(text, present, translate)
