"""The BM25 index saved next to the Chroma directory: a fresh library searches from it without tokenizing the
stored texts again, a changed knowledge base rebuilds it (reusing unchanged chunks' tokens), a damaged or foreign
file is ignored, and dropping the collection removes it. Uses the hashed fake embedder."""

from __future__ import annotations

from pathlib import Path

import pytest

import knowledge.retrieval as retrieval
from knowledge import KnowledgeLibrary
from knowledge.bm25_file import index_path, load_tokens
from tests.knowledge_fakes import FakeEmbedder

DOCS = {
    "kettle.md": "The BW-170 kettle costs 89 euros and holds 1.8 litres.",
    "tea.txt": "青岚茶园始建于1958年，共有茶农八十六户。",
    "bridge.txt": "The Qingshi stone bridge is forty-two metres long.",
}


def library(tmp_path: Path) -> KnowledgeLibrary:
    lib = KnowledgeLibrary(tmp_path / "chroma")
    lib.register_embedder(FakeEmbedder())
    return lib


def add(lib: KnowledgeLibrary, tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_text(DOCS[name], encoding="utf-8")
    lib.add_document("kb-test", "fake-64", name, path, name, 500, 50)


def counting_tokenize(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    seen: list[str] = []
    real = retrieval.tokenize

    def tokenize(text: str) -> list[str]:
        seen.append(text)
        return real(text)

    monkeypatch.setattr(retrieval, "tokenize", tokenize)
    return seen


def test_a_fresh_library_searches_from_the_saved_index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    lib = library(tmp_path)
    for name in DOCS:
        add(lib, tmp_path, name)
    first = lib.search([("kb-test", "fake-64")], "茶农有多少户", k=1, floor=0.0)
    lib.close()
    saved = index_path(tmp_path / "chroma-bm25", "kb-test")
    assert first[0].source == "tea.txt" and saved.is_file()

    texts = counting_tokenize(monkeypatch)
    fresh = library(tmp_path)
    again = fresh.search([("kb-test", "fake-64")], "茶农有多少户", k=1, floor=0.0)
    assert [h.source for h in again] == ["tea.txt"] and again[0].text == first[0].text
    assert texts == []  # no stored text was tokenized again

    add(fresh, tmp_path, "kettle.md")  # re-ingested: new chunk ids, a new generation
    texts.clear()
    assert fresh.search([("kb-test", "fake-64")], "BW-170 price", k=1, floor=0.0)[0].source == "kettle.md"
    assert [t for t in texts if "BW-170 kettle" in t]  # the new chunk was tokenized...
    assert not [t for t in texts if "青岚" in t or "Qingshi" in t]  # ...the unchanged ones came from the file
    meta = load_tokens(saved)[0]
    assert meta["count"] == fresh.count("kb-test")
    fresh.drop_collection("kb-test")
    assert not saved.exists()
    fresh.close()


def test_a_damaged_file_is_ignored_and_rebuilt(tmp_path: Path) -> None:
    lib = library(tmp_path)
    add(lib, tmp_path, "bridge.txt")
    saved = index_path(tmp_path / "chroma-bm25", "kb-test")
    saved.parent.mkdir(parents=True, exist_ok=True)
    saved.write_bytes(b"not an index")
    assert lib.search([("kb-test", "fake-64")], "stone bridge", k=1, floor=0.0)[0].source == "bridge.txt"
    assert load_tokens(saved) is not None  # rewritten whole
    lib.close()
