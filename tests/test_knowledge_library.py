"""KnowledgeLibrary over a real Chroma directory with a tiny fake embedder (semantics do not matter here).

Checks what a user relies on: a rerun of the same document replaces (never duplicates) its chunks, removing a
document removes its chunks, an interrupted ingestion leaves nothing half-done, a collection built with one
embedder refuses another (and re-embedding fixes it), a Chroma directory deleted behind the library's back
is reported as StoreUnavailable, collection names are valid for any display name, and hits carry source,
page and scores in [0, 1], best first.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
from knowledge_fakes import FakeEmbedder

from knowledge import (
    DEFAULT_EMBEDDER,
    EMBEDDERS,
    EmbedderError,
    EmbedderMismatch,
    KnowledgeLibrary,
    LoaderError,
    StoreUnavailable,
    collection_name,
)

FAKE = "fake-64"


@pytest.fixture
def lib(tmp_path: Path):
    library = KnowledgeLibrary(tmp_path / "chroma")
    library.register_embedder(FakeEmbedder(FAKE))
    yield library
    library.close()


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def add(lib: KnowledgeLibrary, path: Path, doc_id: str | None = None, collection: str = "kb-test") -> int:
    return lib.add_document(collection, FAKE, doc_id or path.name, path, path.name, 200, 20).chunks


def test_same_document_twice_adds_nothing_and_a_changed_file_replaces_its_chunks(lib, tmp_path: Path) -> None:
    doc = write(tmp_path / "notes.md", "Paragraph about apples and pears. " * 30)
    first = add(lib, doc)
    assert first > 1 and lib.count("kb-test") == first
    assert add(lib, doc) == first
    assert lib.count("kb-test") == first
    write(doc, "Now the file talks only about bananas.")
    assert add(lib, doc) == 1
    assert lib.count("kb-test") == 1
    hits = lib.search([("kb-test", FAKE)], "bananas", floor=0.0)
    assert [h.text for h in hits] == ["Now the file talks only about bananas."]


def test_remove_document_removes_only_its_chunks(lib, tmp_path: Path) -> None:
    a = add(lib, write(tmp_path / "a.txt", "Alpha document text. " * 20))
    b = add(lib, write(tmp_path / "b.txt", "Beta document text. " * 20))
    lib.remove_document("kb-test", "a.txt")
    assert lib.count("kb-test") == b
    assert all(h.source == "b.txt" for h in lib.search([("kb-test", FAKE)], "document text", floor=0.0))
    lib.remove_document("kb-test", "a.txt")  # twice is fine
    lib.remove_document("no-such-collection", "a.txt")
    assert a > 0


def test_unreadable_file_adds_nothing_and_keeps_the_old_chunks(lib, tmp_path: Path) -> None:
    doc = write(tmp_path / "keep.txt", "Stored text about turtles.")
    add(lib, doc)
    doc.write_bytes(b"\x00\x01\x02binary" * 50)
    with pytest.raises(LoaderError, match="binary"):
        add(lib, doc)
    assert lib.count("kb-test") == 1


def test_interrupted_ingestion_leaves_no_half_document_and_a_rerun_finishes(lib, tmp_path: Path) -> None:
    doc = write(tmp_path / "long.txt", "\n\n".join(f"Paragraph {i} about rivers and hills." for i in range(400)))
    calls = []

    def stop_after_first_batch(done: int, total: int | None) -> None:
        calls.append(done)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        lib.add_document("kb-test", FAKE, "long", doc, "long.txt", 100, 0, progress=stop_after_first_batch)
    assert calls and lib.count("kb-test") == 0
    progress: list[tuple[int, int | None]] = []
    chunks = lib.add_document(
        "kb-test", FAKE, "long", doc, "long.txt", 100, 0, progress=lambda d, t: progress.append((d, t))
    )
    assert chunks.chunks == lib.count("kb-test") > 64
    assert progress[-1] == (chunks.chunks, chunks.chunks)
    assert [d for d, _ in progress] == sorted(d for d, _ in progress)


def test_other_embedder_is_refused_and_reembed_switches(lib, tmp_path: Path) -> None:
    add(lib, write(tmp_path / "a.txt", "Some text about owls. " * 15))
    before = lib.count("kb-test")
    other = FakeEmbedder("fake-32", dimension=32)
    lib.register_embedder(other)
    with pytest.raises(EmbedderMismatch, match=r"'fake-64' \(64-d\).*'fake-32' \(32-d\).*re-embed"):
        lib.search([("kb-test", "fake-32")], "owls")
    with pytest.raises(EmbedderMismatch):
        lib.add_document("kb-test", "fake-32", "b", tmp_path / "a.txt", "b.txt", 200, 20)
    with pytest.raises(EmbedderMismatch):
        lib.create_collection("kb-test", "fake-32")
    done: list[int] = []
    info = lib.reembed("kb-test", "fake-32", progress=lambda d, t: done.append(d))
    assert (info.id, info.dimension) == ("fake-32", 32)
    assert lib.count("kb-test") == before and done[-1] == before
    assert lib.search([("kb-test", "fake-32")], "owls", floor=0.0)[0].source == "a.txt"
    with pytest.raises(EmbedderMismatch):
        lib.search([("kb-test", FAKE)], "owls")


def test_deleted_chroma_directory_is_store_unavailable(lib, tmp_path: Path) -> None:
    add(lib, write(tmp_path / "a.txt", "Text about lighthouses."))
    shutil.rmtree(tmp_path / "chroma")
    with pytest.raises(StoreUnavailable, match="is gone"):
        lib.search([("kb-test", FAKE)], "lighthouses")
    with pytest.raises(StoreUnavailable, match="is gone"):
        add(lib, tmp_path / "a.txt")
    fresh = KnowledgeLibrary(tmp_path / "chroma")  # a restart makes a new, empty store
    fresh.register_embedder(FakeEmbedder(FAKE))
    assert fresh.count("kb-test") == 0
    add(fresh, tmp_path / "a.txt")
    assert fresh.count("kb-test") == 1


def test_unusable_chroma_path_is_store_unavailable(tmp_path: Path) -> None:
    blocker = write(tmp_path / "file", "not a directory")
    with pytest.raises(StoreUnavailable, match="Chroma directory"):
        KnowledgeLibrary(blocker / "chroma")


@pytest.mark.parametrize(
    "name", ["我的知识库", "Docs", "docs", "a", "../../etc/passwd", "name with\nnewline", "x" * 600, "1.2.3.4", "--"]
)
def test_collection_name_is_valid_stable_and_distinct(lib, name: str) -> None:
    cname = collection_name(name)
    assert re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9._-]{1,510}[a-zA-Z0-9]", cname) and ".." not in cname
    assert collection_name(name) == cname
    assert cname not in {collection_name(other) for other in ["我的知识库 ", "Docs2", "DOCS", "b"]}
    lib.create_collection(cname, FAKE)  # Chroma itself accepts it
    assert cname in lib.store.list_names()


def test_hits_have_source_page_and_scores_best_first(lib, tmp_path: Path) -> None:
    from reportlab.pdfgen import canvas

    pdf = tmp_path / "guide.pdf"
    c = canvas.Canvas(str(pdf))
    for text in ["Cover page of the guide", "Parking rules: park only in zone B", "Lunch is served at noon"]:
        c.drawString(60, 780, text)
        c.showPage()
    c.save()
    stats = lib.add_document("kb-test", FAKE, "g", pdf, "guide.pdf", 200, 20)
    add(lib, write(tmp_path / "other.txt", "Completely different words here."))
    assert (stats.pages, stats.chunks, stats.warnings) == (3, 3, [])
    hits = lib.search([("kb-test", FAKE)], "where can I park? zone B", k=2, floor=0.0)
    assert (hits[0].source, hits[0].page, hits[0].doc_id) == ("guide.pdf", 2, "g")
    assert all(0.0 <= h.score <= 1.0 for h in hits)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert lib.search([("kb-test", FAKE)], "where can I park? zone B", floor=1.01) == []
    assert lib.search([("kb-test", FAKE)], "   ") == []


def test_search_over_two_collections_and_empty_ones(lib, tmp_path: Path) -> None:
    add(lib, write(tmp_path / "cats.txt", "Cats sleep sixteen hours a day."), collection="kb-one")
    add(lib, write(tmp_path / "dogs.txt", "Dogs bark at the postman."), collection="kb-two")
    lib.create_collection("kb-empty", FAKE)
    hits = lib.search([("kb-one", FAKE), ("kb-two", FAKE), ("kb-empty", FAKE)], "dogs bark postman", floor=0.0)
    assert hits[0].source == "dogs.txt" and hits[0].collection == "kb-two"
    assert {h.collection for h in hits} == {"kb-one", "kb-two"}


def test_drop_collection_removes_everything(lib, tmp_path: Path) -> None:
    add(lib, write(tmp_path / "a.txt", "Something to forget."))
    lib.drop_collection("kb-test")
    lib.drop_collection("kb-test")
    assert lib.count("kb-test") == 0
    with pytest.raises(StoreUnavailable, match="kb-test"):
        lib.search([("kb-test", FAKE)], "forget")


def test_bm25_index_follows_changes_of_the_collection(lib, tmp_path: Path) -> None:
    add(lib, write(tmp_path / "a.txt", "The zebra crossing is near the school."))
    assert lib.search([("kb-test", FAKE)], "zebra", mode="bm25", floor=0.0)[0].source == "a.txt"
    add(lib, write(tmp_path / "a.txt", "Now about giraffes only."))
    assert lib.search([("kb-test", FAKE)], "zebra", mode="bm25", floor=0.0) == []
    assert lib.search([("kb-test", FAKE)], "giraffes", mode="bm25", floor=0.0)[0].source == "a.txt"


def test_unknown_embedder_spec_is_refused(lib, tmp_path: Path) -> None:
    with pytest.raises(EmbedderError, match="unknown embedder 'nope'"):
        lib.embedder_info("nope")
    (tmp_path / "empty-model").mkdir()
    with pytest.raises(EmbedderError, match="not a sentence-transformers model directory"):
        lib.embedder_info(str(tmp_path / "empty-model"))
    assert DEFAULT_EMBEDDER in EMBEDDERS
