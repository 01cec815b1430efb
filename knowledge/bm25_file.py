"""The BM25 index of a collection saved on disk, so that a fresh process does not tokenize every chunk again.

Tokenizing the stored chunk texts (jieba for Chinese) is what makes the first search of a fresh process slow on a
large knowledge base. The tokens are saved, per collection, in ``<chroma dir>-bm25/<collection>.npz`` next to the
Chroma directory: the chunk ids, the vocabulary, every chunk's token ids, the collection's generation token and
chunk count, and the tokenizer version. NumPy arrays only (``allow_pickle=False``); the texts are JSON in bytes.
A file whose generation matches the collection is used as it is (the BM25 scores are rebuilt from the tokens, no
text is read); an older one still gives the tokens of the chunks that did not change. Written beside and swapped in
(``os.replace``), so a killed write leaves the old file or none; a file that cannot be read is ignored and rebuilt.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

FORMAT = 1
TOKENIZER_VERSION = "jieba-search-1"
"""Bumped when ``knowledge.retrieval.tokenize`` changes: saved tokens of another version are not used."""


def index_path(directory: Path, collection: str) -> Path:
    """Where the saved index of ``collection`` lives (collection names are Chroma-safe ASCII)."""
    return directory / f"{collection}.npz"


def save_tokens(path: Path, generation: str, count: int, ids: list[str], vocab: dict[str, int],
                tokens: dict[str, np.ndarray]) -> None:  # fmt: skip
    """Write the tokens of one collection's index to ``path`` (beside, then swapped in)."""
    words = [""] * len(vocab)
    for word, number in vocab.items():
        words[number] = word
    arrays = [tokens[cid] for cid in ids]
    offsets = np.zeros(len(ids) + 1, dtype=np.int64)
    if arrays:
        offsets[1:] = np.cumsum([len(a) for a in arrays])
    flat = np.concatenate(arrays).astype(np.int32) if arrays else np.zeros(0, dtype=np.int32)
    meta = {"format": FORMAT, "tokenizer": TOKENIZER_VERSION, "generation": generation, "count": count}
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")
    try:
        with temp.open("wb") as handle:
            np.savez(handle, meta=_json_bytes(meta), ids=_json_bytes(ids), vocab=_json_bytes(words), tokens=flat,
                     offsets=offsets)  # fmt: skip
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)


def load_tokens(path: Path) -> tuple[dict, list[str], dict[str, int], dict[str, np.ndarray]] | None:
    """(meta, ids, vocab, tokens per chunk id) saved at ``path``; None when there is none, it cannot be read, or it
    was written by another format or tokenizer version."""
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = _from_json(data["meta"])
            if meta.get("format") != FORMAT or meta.get("tokenizer") != TOKENIZER_VERSION:
                return None
            ids = _from_json(data["ids"])
            words = _from_json(data["vocab"])
            flat, offsets = data["tokens"], data["offsets"]
    except (OSError, ValueError, KeyError, json.JSONDecodeError):
        return None
    if len(offsets) != len(ids) + 1:
        return None
    vocab = {word: number for number, word in enumerate(words)}
    tokens = {cid: flat[offsets[i] : offsets[i + 1]] for i, cid in enumerate(ids)}
    return meta, ids, vocab, tokens


def remove(path: Path) -> None:
    """Delete a saved index (the collection was dropped or replaced)."""
    path.unlink(missing_ok=True)


def _json_bytes(value: object) -> np.ndarray:
    return np.frombuffer(json.dumps(value, ensure_ascii=False).encode("utf-8"), dtype=np.uint8)


def _from_json(array: np.ndarray):  # noqa: ANN202 - whatever was saved
    return json.loads(array.tobytes().decode("utf-8"))
