"""Knowledge in a chat: each chat's RAG switch, its knowledge bases, and the retriever ``ChatService`` calls.

Owns the per-chat setting (stored as ``SessionKnowledge`` rows) and ``retrieve``, which turns a question
into the numbered sources an answer cites. Names are resolved to knowledge bases by the caller
(``KnowledgeService``); this module works with ids and rows.
"""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import PurePath
from typing import TYPE_CHECKING, Any

from core.config import Settings
from core.errors import KnowledgeBaseError
from core.kb.library import LibraryHandle
from core.kb.naming import QueryHit
from core.kb.rows import KnowledgeBase, KnowledgeRows, SessionKnowledge
from core.kb.search import Translate, query, translated

if TYPE_CHECKING:  # the retrieval reads a chat's row; history itself sits above kb
    from core.history.store import Session


def session_knowledge(rows: KnowledgeRows, session_id: str) -> tuple[bool, list[KnowledgeBase]]:
    """A chat's RAG switch and its knowledge bases (ones dropped since are left out)."""
    value = rows.session_knowledge(session_id)
    kbs = [kb for kb in (rows.kb_by_id(i) for i in value.kb_ids) if kb is not None]
    return value.rag, kbs


def set_session_knowledge(rows: KnowledgeRows, session_id: str, rag: bool,
                          kb_ids: tuple[str, ...] | None = None) -> None:  # fmt: skip
    """Turn RAG on or off for a chat and (if ``kb_ids`` is given) set the knowledge bases it searches."""
    ids = rows.session_knowledge(session_id).kb_ids if kb_ids is None else kb_ids
    rows.set_session_knowledge(session_id, SessionKnowledge(bool(rag), tuple(ids)))


RELATIVE_FLOOR = 0.5
"""A chat's sources keep the hits scoring at least this share of the best one's: on the rag_hard dev set this drops
unrelated passages (a 0.2 hit under a 0.9 one) from the numbered context and no passage holding an answer."""


def relevant(hits: list[QueryHit]) -> list[QueryHit]:
    """The hits worth numbering in an answer's context: those within ``RELATIVE_FLOOR`` of the best, renumbered."""
    if not hits:
        return hits
    best = max(h.score for h in hits)
    kept = [h for h in hits if h.score >= best * RELATIVE_FLOOR]
    return [replace(h, rank=rank) for rank, h in enumerate(kept, start=1)]


def one_version(hits: list[QueryHit], question: str) -> list[QueryHit]:
    """Where hits come from several versions of one document (file names equal once years and words such as
    "revision" are left out: an expense policy of 2023 and its 2025 revision), only the version the question is
    about keeps its hits: the one whose date or file name holds a year the question names, else the newest. A
    0.5B model shown both versions answered from the older one (bench/rag_answer.py); the sources show which
    version was used, with its date."""
    from knowledge.library import version_family

    def family(hit: QueryHit) -> str:
        return version_family(re.sub(r"[_\-.]+", " ", PurePath(hit.source).stem))

    years = set(re.findall(r"(?:19|20)\d\d", question))
    drop: set[str] = set()
    for name in {family(h) for h in hits}:
        versions = {h.source: h.date for h in hits if family(h) == name}
        if not name or len(versions) < 2:
            continue
        asked = [src for src, day in versions.items() if years & set(re.findall(r"(?:19|20)\d\d", f"{src} {day}"))]
        newest = max(versions.values())
        keep = set(asked) if asked else {src for src, day in versions.items() if day == newest}
        drop |= set(versions) - keep
    kept = [h for h in hits if h.source not in drop]
    return [replace(h, rank=rank) for rank, h in enumerate(kept, start=1)]


def named(hits: list[QueryHit], question: str) -> list[QueryHit]:
    """Where the question names something (Larkspur, BW-140, Orbit K2; 青禾, 成都) that a passage holds (in its text
    or file name), the passages written in the name's script keep only those of the documents holding the most of
    these names (in any of their passages). Passages in the other script stay (an English question's "Yunxi" is not
    written in a Chinese passage), except Chinese ones under a Chinese question naming something in Latin letters
    (Chinese text writes it so too). Asked for "the current Larkspur policy", the 0.5B model answered from a Nimbus
    handbook passage listed under the Larkspur one, and asked about 青禾咨询成都分公司, from a 星河科技 handbook of
    an office in 成都 (bench/rag_answer.py)."""
    from knowledge.citations import chinese_names, claims, latin_names

    def chinese(hit: QueryHit) -> bool:
        return len(re.findall(r"[\u3400-\u9fff]", hit.text)) > len(re.findall(r"[A-Za-z]", hit.text))

    def holds(hit: QueryHit, name: str) -> bool:
        where = f"{hit.text} {re.sub(r'[_.]+', ' ', hit.source)}".lower()
        return re.search(rf"(?<![A-Za-z0-9-]){re.escape(name.lower())}(?![A-Za-z0-9-])", where) is not None

    asked_in_chinese = re.search(r"[\u3400-\u9fff]", question) is not None  # Chinese text writes "Nimbus" too
    latin = latin_names(question) if asked_in_chinese else claims(question)[1]  # "Larkspur 2023 年的…" names it
    for names, script in ((latin, False), (chinese_names(question), True)):
        held: dict[str, set[str]] = {}  # per document: a table chunk of "Orbit K2" need not say the name itself
        for h in hits:
            held.setdefault(h.source, set()).update(n for n in names if holds(h, n))
        mine = [h for h in hits if chinese(h) == script or (asked_in_chinese and not script)]
        counts = {id(h): len(held[h.source]) for h in mine}
        most = max(counts.values(), default=0)
        hits = [h for h in hits if counts.get(id(h), most) == most] if most else hits
    return [replace(h, rank=rank) for rank, h in enumerate(hits, start=1)]


def retrieve(settings: Settings, rows: KnowledgeRows, handle: LibraryHandle, session: Session,
             question: str, translate: Translate | None = None) -> list[dict[str, Any]] | None:  # fmt: skip
    """Sources for ``question`` in ``session``: None when the chat has RAG off, else its numbered sources
    ``[{"n", "source", "page", "ocr", "date", "score", "text", "query"}]`` (empty: nothing relevant found), where
    ``query`` is what was searched for (``core.chat.followup``: a follow-up gets the subject of the turns before it;
    hit@4 on the dev follow-ups 1.00 against 0.12 for the question alone, bench/rag_eval.py --hard), followed by
    its translations (`` | ``-separated) when ``translate`` is given, the passages are in another language and the
    question's own search is unsure (``knowledge.crosslingual.needs_translation``).
    Raises a KnowledgeBaseError when it cannot search (the chat then answers without sources and says why).
    """
    rag, kbs = session_knowledge(rows, session.id)
    if not rag:
        return None
    if not kbs:
        raise KnowledgeBaseError(
            "RAG is on for this chat but it has no knowledge base chosen: pick one next to the RAG switch "
            "(or `python -m core chat --kb NAME`)."
        )
    from knowledge.crosslingual import needs_translation

    found = query(settings, rows, handle, kbs, question, k=settings.rag_top_k)
    also = translated(handle, kbs, question, translate) if needs_translation(h.score for h in found) else []
    if also:
        found = query(settings, rows, handle, kbs, question, k=settings.rag_top_k, also=also)
    hits = named(one_version(relevant(found), question), question)
    searched = " | ".join([" ".join(question.split()), *also])
    return [{"n": h.rank, "source": h.source, "page": h.page, "ocr": h.ocr, "date": h.date, "score": round(h.score, 4),
             "text": h.text, "query": searched} for h in hits]  # fmt: skip
