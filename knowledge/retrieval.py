"""Hybrid retrieval: Chroma vector search plus BM25 (bm25s) over CJK-aware tokens, fused by reciprocal rank fusion.

Tokens: Chinese (and Japanese kana) runs are cut by jieba in search mode (words plus their sub-words, so
"知识库" also matches "知识"); other scripts are lowercased words; a short stop list drops function words.
The BM25 index of a collection is built once from its stored texts and cached until the collection's
generation token (bumped by every write) or its size changes; its tokens are saved next to the Chroma directory
(``knowledge.bm25_file``), so a fresh process reads them instead of tokenizing every chunk again.

Fusion: each candidate gets 1/(60 + rank) from the vector list and from the BM25 list; the k best fused
candidates are kept. Their score is the calibrated cosine similarity to the query: the embedder's typical
"unrelated" to "clearly relevant" cosine range mapped onto [0, 1], so scores from collections built with
different embedders are comparable and the relevance floor means the same everywhere. Hits are returned
best score first.
"""

from __future__ import annotations

import contextlib
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

RRF_K = 60
_JIEBA_READY = False
_CJK_RUN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\u3040-\u30ff]+")
_WORD = re.compile(r"[^\W_]+(?:['’.][^\W_]+)*")
STOPWORDS = frozenset(
    "a an and are as at be but by do does did for from has have had how i if in into is it its of on or so than "
    "that the their then there these they this to was were what when where which who whom why will with you your "
    "的 了 是 在 和 与 及 或 也 就 都 而 吗 呢 吧 啊 么 什么 怎么 哪 哪里 哪个 多少 几 谁 为 被 把 对 从 "
    "到 由 之 其 这 那 这个 那个 一个 有 没有 我 你 他 她 它 我们 你们 他们 请问 是否 如何 为什么".split()
)


def tokenize(text: str) -> list[str]:
    """BM25 tokens of ``text``: jieba search-mode words for CJK runs, lowercased words otherwise, minus stopwords."""
    import jieba

    if not _JIEBA_READY:
        init_tokenizer()
    tokens: list[str] = []
    pos = 0
    for match in _CJK_RUN.finditer(text):
        tokens += _words(text[pos : match.start()])
        tokens += [w for w in jieba.cut_for_search(match.group()) if w.strip() and w not in STOPWORDS]
        pos = match.end()
    tokens += _words(text[pos:])
    return tokens


def _words(text: str) -> list[str]:
    return [w for w in (m.group().lower() for m in _WORD.finditer(text)) if w not in STOPWORDS]


def init_tokenizer() -> None:
    """Load jieba's dictionary now (about a second, once per process), quietly."""
    import logging

    import jieba

    global _JIEBA_READY
    jieba.setLogLevel(logging.WARNING)
    jieba.initialize()
    _JIEBA_READY = True


@dataclass
class Bm25Index:
    """A BM25 index over one collection's chunks, valid for one generation of it.

    ``tokens`` keeps each chunk's token ids (int32, ids from ``vocab``) so that a rebuild after a change only
    reads and tokenizes the chunks it has not seen before.
    """

    generation: str
    count: int
    ids: list[str]
    model: object | None  # bm25s.BM25, or None for a collection without tokens
    vocab: dict[str, int]
    tokens: dict[str, np.ndarray]

    _languages: frozenset[str] | None = field(default=None, repr=False)
    _pinyin: object | None = field(default=None, repr=False)  # knowledge.pinyin_names.PinyinTable, when asked

    def languages(self) -> frozenset[str]:
        """The languages of the chunks ("zh": at least 30% of a chunk's tokens are Chinese words, else "en"),
        worked out once per generation from the stored tokens."""
        if self._languages is None:
            by_id = sorted(self.vocab, key=self.vocab.__getitem__)
            cjk = np.fromiter((bool(_CJK_RUN.search(w)) for w in by_id), dtype=bool, count=len(by_id))
            found: set[str] = set()
            for ids in self.tokens.values():
                if len(ids):
                    found.add("zh" if cjk[ids].mean() >= 0.3 else "en")
                    if len(found) == 2:
                        break
            self._languages = frozenset(found)
        return self._languages

    def pinyin_words(self, names: list[str]) -> list[str]:
        """The Chinese words of this index spelled in pinyin like ``names`` (``knowledge.pinyin_names``); the
        spelling table is built on the first call of a generation."""
        from knowledge.pinyin_names import PinyinTable

        if not names:
            return []
        if self._pinyin is None:
            self._pinyin = PinyinTable(self.vocab)
        return self._pinyin.words(names)  # type: ignore[attr-defined]

    def top(self, query_tokens: list[str], n: int) -> list[tuple[str, float]]:
        """The ``n`` best (chunk id, BM25 score) pairs with a positive score, best first."""
        known = [self.vocab[t] for t in query_tokens if t in self.vocab]
        if self.model is None or not known or not self.ids:
            return []
        scores = self.model.get_scores_from_ids(known)
        n = min(n, len(scores))
        best = np.argpartition(-scores, n - 1)[:n]
        best = best[np.argsort(-scores[best], kind="stable")]
        return [(self.ids[i], float(scores[i])) for i in best if scores[i] > 0]


class Bm25Cache:
    """One BM25 index per collection, rebuilt (incrementally) when the collection changes; with a ``directory``,
    the tokens are also saved there (``knowledge.bm25_file``) so a fresh process starts from them."""

    def __init__(self, directory: Path | None = None) -> None:
        self._indexes: dict[str, Bm25Index] = {}
        self._lock = threading.Lock()
        self.directory = directory

    def get(self, store, name: str, generation: str, count: int) -> Bm25Index:  # store: ChromaStore
        """The index for ``name`` at ``generation``/``count``, building it from the stored texts if needed."""
        from knowledge import bm25_file

        with self._lock:
            index = self._indexes.get(name)
            if index is not None and index.generation == generation and index.count == count:
                return index
            path = bm25_file.index_path(self.directory, name) if self.directory else None
            if index is None and path is not None and (saved := bm25_file.load_tokens(path)) is not None:
                meta, ids, vocab, tokens = saved
                if meta.get("generation") == generation and meta.get("count") == count:
                    index = index_from_tokens(generation, count, ids, vocab, tokens)
                    self._indexes[name] = index
                    return index
                index = Bm25Index(str(meta.get("generation")), -1, ids, None, vocab, tokens)  # unchanged chunks
            index = build_index(store, name, generation, count, previous=index)
            self._indexes[name] = index
            if path is not None:
                with contextlib.suppress(OSError):  # a read-only or full disk: searches work, the next open rebuilds
                    bm25_file.save_tokens(path, generation, count, index.ids, index.vocab, index.tokens)
            return index

    def forget(self, name: str) -> None:
        """Drop the cached index of ``name`` (and its saved tokens)."""
        from knowledge import bm25_file

        with self._lock:
            self._indexes.pop(name, None)
            if self.directory is not None:
                bm25_file.remove(bm25_file.index_path(self.directory, name))


def build_index(store, name: str, generation: str, count: int, previous: Bm25Index | None = None) -> Bm25Index:
    """Index every stored chunk of ``name`` with bm25s, tokenizing only chunks ``previous`` has not seen."""
    vocab = previous.vocab if previous else {}
    known = previous.tokens if previous else {}
    ids = store.all_ids(name)
    missing = [cid for cid in ids if cid not in known]
    tokens = {cid: known[cid] for cid in ids if cid in known}
    for start in range(0, len(missing), 1000):
        for chunk in store.get(name, missing[start : start + 1000], with_embeddings=False):
            title = str(chunk.metadata.get("title", ""))
            words = tokenize(chunk.text if chunk.text.startswith(title) else f"{title}\n{chunk.text}")
            tokens[chunk.id] = np.fromiter((vocab.setdefault(w, len(vocab)) for w in words), dtype=np.int32)
    ids = [cid for cid in ids if cid in tokens]
    return index_from_tokens(generation, count, ids, vocab, tokens)


def index_from_tokens(generation: str, count: int, ids: list[str], vocab: dict[str, int],
                      tokens: dict[str, np.ndarray]) -> Bm25Index:  # fmt: skip
    """The BM25 scores of chunks already tokenized (``tokens`` per id in ``ids``)."""
    import bm25s

    if not any(len(tokens[cid]) for cid in ids):
        return Bm25Index(generation, count, ids, None, vocab, tokens)
    model = bm25s.BM25()
    model.index(([tokens[cid].tolist() for cid in ids], vocab), create_empty_token=False, show_progress=False)
    return Bm25Index(generation, count, ids, model, vocab, tokens)


def rrf(ranks: list[int | None]) -> float:
    """Reciprocal rank fusion of 0-based ranks (None = not in that list), normalized so rank 0 everywhere is 1."""
    total = sum(1.0 / (RRF_K + 1 + r) for r in ranks if r is not None)
    return total / (len(ranks) / (RRF_K + 1))


def calibrate(cosine: float, similarity_range: tuple[float, float]) -> float:
    """Map a cosine similarity through the embedder's (unrelated, relevant) range onto [0, 1]."""
    lo, hi = similarity_range
    return float(min(1.0, max(0.0, (cosine - lo) / (hi - lo))))
