"""Ingestion orchestration through ``KnowledgeService`` (real Chroma folder, real ``minilm`` embedder):
an interrupted ingestion is finished by rerunning and never shows half a document, a broken new version
keeps the old one, uploads get safe names, progress is reported, and an embedder mismatch is refused with
the re-embed action until the knowledge base is re-embedded."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from core.config import load_settings
from core.errors import InputError, NotFoundError, ReembedRequired
from core.kb import IngestProgress, KnowledgeService

EMBEDDER = "minilm"


@pytest.fixture
def service(home: Path) -> KnowledgeService:
    svc = KnowledgeService.open(load_settings())
    yield svc
    svc.close()


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


LONG = " ".join(f"Paragraph {i} of the orchard log says the pear trees on row {i} were pruned." for i in range(120))


def test_interrupted_ingestion_is_finished_by_rerunning(service: KnowledgeService, tmp_path: Path) -> None:
    log = write(tmp_path, "orchard.txt", LONG)
    short = write(tmp_path, "bees.txt", "The beehives stand at the north fence of the orchard.")
    service.create("farm", EMBEDDER, chunk_size=200, chunk_overlap=20)
    service.ingest("farm", [short])

    def crash(update: IngestProgress) -> None:
        if update.name == "orchard.txt" and update.chunks_done:
            raise KeyboardInterrupt  # Ctrl-C after the first batch of chunks was stored

    with pytest.raises(KeyboardInterrupt):
        service.ingest("farm", [log], progress=crash)
    [doc] = [d for d in service.documents("farm") if d.name == "orchard.txt"]
    assert doc.status == "ingesting"
    hits = service.query(service.resolve("farm"), "pear trees pruned on row 7", k=4)
    assert all(h.source != "orchard.txt" for h in hits)  # no half-document is searchable

    report = service.ingest("farm", [log])
    assert [(r.name, r.status) for r in report.results] == [("orchard.txt", "added")]
    [doc] = [d for d in service.documents("farm") if d.name == "orchard.txt"]
    assert doc.status == "ready" and doc.chunks == report.chunks > 1
    kb = service.get("farm")
    assert service.handle.get().count(kb.collection) == doc.chunks + 1  # exactly one copy of each chunk
    assert service.query([kb], "pear trees pruned on row 7", k=1)[0].source == "orchard.txt"


def test_a_broken_new_version_keeps_the_old_one(service: KnowledgeService, tmp_path: Path) -> None:
    path = write(tmp_path, "menu.txt", "The soup of the day is pumpkin with roasted seeds.")
    service.ingest("food", [path], embedder=EMBEDDER)
    path.write_bytes(b"")  # the file is replaced by an empty one
    report = service.ingest("food", [path])
    assert report.results[0].status == "error" and "empty" in report.results[0].detail.lower()
    docs = service.documents("food")
    assert sorted((d.status, bool(d.error)) for d in docs) == [("error", True), ("ready", False)]
    assert service.query(service.resolve("food"), "soup of the day")[0].source == "menu.txt"
    path.write_text("The soup of the day is tomato.", encoding="utf-8")
    assert service.ingest("food", [path]).results[0].status == "replaced"
    [doc] = service.documents("food")  # the old version and the failed attempt are both gone
    assert doc.status == "ready"
    assert "tomato" in service.query(service.resolve("food"), "soup of the day")[0].text


def test_uploads_are_copied_under_the_data_dir_and_removed(service: KnowledgeService, home: Path,
                                                           tmp_path: Path) -> None:  # fmt: skip
    before = {p for p in tmp_path.rglob("*") if not p.is_relative_to(home)}
    report = service.ingest_uploads("web", [("../../../evil\n.txt", b"Upload one talks about comets."),
                                            ("notes.md", io.BytesIO(b"# Notes\n\nUpload two is about moons."))],
                                    embedder=EMBEDDER)  # fmt: skip
    assert [(r.name, r.status) for r in report.results] == [("evil .txt", "added"), ("notes.md", "added")]
    assert {p for p in tmp_path.rglob("*") if not p.is_relative_to(home)} == before  # nothing outside the data dir
    assert list((home / "knowledge" / "uploads").iterdir()) == []  # the temporary copies are gone
    assert service.query(service.resolve("web"), "comets")[0].source == "evil .txt"


def test_uploads_get_safe_names_and_progress_is_reported(service: KnowledgeService, tmp_path: Path) -> None:
    temp = write(tmp_path, "upload-1.tmp.txt", "Saturn's moon Titan has lakes of liquid methane.")
    updates: list[IngestProgress] = []
    report = service.ingest("space", [temp], embedder=EMBEDDER, names=["../../etc/ti\ntan.txt"],
                            progress=updates.append)  # fmt: skip
    assert report.results[0].name == "ti tan.txt"
    assert [d.name for d in service.documents("space")] == ["ti tan.txt"]
    assert service.query(service.resolve("space"), "methane lakes")[0].source == "ti tan.txt"
    assert updates[0] == IngestProgress(0, 1, "ti tan.txt")
    assert updates[-1].files_done == 1 and updates[-1].result is not None
    assert any(u.chunks_done for u in updates if u.result is None)
    assert not (tmp_path.parent / "etc").exists()
    with pytest.raises(InputError):
        service.ingest("space", [temp], names=["a.txt", "b.txt"])


def test_names_of_any_language_and_their_errors(service: KnowledgeService) -> None:
    kb = service.create("  研究 \n 笔记 ", EMBEDDER)
    assert kb.name == "研究 笔记" and service.get("研究 笔记").id == kb.id
    with pytest.raises(InputError, match="needs a name"):
        service.create(" \n ")
    with pytest.raises(NotFoundError, match="'研究 笔记'"):
        service.get("研究")
    assert [k.name for k in service.resolve("研究 笔记")] == ["研究 笔记"]


@pytest.mark.slow
def test_embedder_mismatch_is_refused_until_reembedded(service: KnowledgeService, tmp_path: Path) -> None:
    path = write(tmp_path, "birds.txt", "Puffins dig burrows on grassy cliff tops to lay a single egg.")
    service.ingest("birds", [path], embedder=EMBEDDER)
    with pytest.raises(ReembedRequired, match="kb reembed birds --embedder e5-small"):
        service.ingest("birds", [path], embedder="e5-small")

    # Another Inkstone sharing the store re-embeds the collection; this one's rows still say minilm.
    kb = service.get("birds")
    service.handle.get().reembed(kb.collection, "e5-small")
    with pytest.raises(ReembedRequired, match="Re-embed the knowledge base 'birds'"):
        service.query([kb], "where do puffins nest")

    kb = service.reembed("birds", "e5-small")
    assert (kb.embedder, kb.dimension) == ("e5-small", 384)
    assert {d.embedder for d in service.documents("birds")} == {"e5-small"}
    assert service.query([kb], "where do puffins nest")[0].source == "birds.txt"
    assert service.ingest("birds", [path]).results[0].status == "unchanged"
