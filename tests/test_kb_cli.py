"""``python -m core kb ...`` run for real (``core.cli.main``) on a temp data dir with the bundled ``minilm``
embedder and a real Chroma folder: create/list/show, ingest with its summary, dedup, replace, remove, drop,
query output (plain, ``--json``, stdin), unknown names, a deleted Chroma folder, a server that is down, and a
real ``chroma run`` server through the ``chroma_url`` setting."""

from __future__ import annotations

import io
import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from core.cli import main
from core.cli.kb import ProgressBar
from core.config import load_settings
from core.kb import FileResult, IngestProgress, KnowledgeService

EMBEDDER = "minilm"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Run ``python -m core kb ARGV``; returns exit status, stdout, stderr."""
    code = main(["kb", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def query_json(capsys: pytest.CaptureFixture[str], kb: str, *queries: str, k: int = 4) -> list[dict]:
    code, out, err = run(capsys, "query", "--kb", kb, "--k", str(k), "--json", *queries)
    assert code == 0, err
    return [json.loads(line) for line in out.splitlines()]


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    folder = tmp_path / "docs"
    (folder / "notes").mkdir(parents=True)
    (folder / "volcano.txt").write_text(
        "Mount Korvath is a dormant volcano. Its last eruption happened in the year 1822 and buried the "
        "village of Selm under ash.", encoding="utf-8")  # fmt: skip
    (folder / "notes" / "tea.md").write_text(
        "# Tea\n\nThe Lunwick tea garden harvests its first flush in early April, at an altitude of 1,900 metres.",
        encoding="utf-8",
    )
    (folder / "clip.mp3").write_bytes(b"ID3\x04" + bytes(64))
    return folder


def test_create_list_and_show(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "create", "产品手册", "--embedder", EMBEDDER)
    assert code == 0, err
    assert "产品手册" in out
    code, out, _ = run(capsys, "list", "--json")
    [kb] = json.loads(out)
    assert (kb["name"], kb["embedder"], kb["dimension"], kb["documents"]) == ("产品手册", EMBEDDER, 384, 0)
    code, out, err = run(capsys, "create", "产品手册")
    assert code == 1 and "already exists" in err
    code, out, _ = run(capsys, "show", "产品手册")
    assert code == 0 and "No documents yet" in out


def test_ingest_summary_dedup_and_query(home: Path, docs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "ingest", "--kb", "facts", "--embedder", EMBEDDER, str(docs))
    assert code == 0, err
    assert "3 files, 2 added, 0 replaced, 0 unchanged, 1 skipped, 0 errors" in out
    assert "clip.mp3: skipped (unsupported file type .mp3)" in err  # the per-file progress lines
    code, out, err = run(capsys, "ingest", "--kb", "facts", str(docs), str(docs / "volcano.txt"))
    assert code == 0 and "2 unchanged" in out and "0 chunks added" in out
    copy = docs.parent / "copy-of-volcano.txt"
    shutil.copy(docs / "volcano.txt", copy)
    code, out, err = run(capsys, "ingest", "--kb", "facts", str(copy))
    assert "1 unchanged" in out and "same content already ingested as 'volcano.txt'" in err

    [result] = query_json(capsys, "facts", "When did the volcano last erupt?")
    top = result["hits"][0]
    assert result["query"] == "When did the volcano last erupt?"
    assert set(top) == {"rank", "score", "source", "page", "ocr", "date", "text"} and top["ocr"] is False
    assert (top["rank"], top["source"], top["page"]) == (1, "volcano.txt", None)
    assert "1822" in top["text"] and 0 < top["score"] <= 1
    names = {h["source"] for h in query_json(capsys, "facts", "first flush of the tea garden")[0]["hits"]}
    assert "notes/tea.md" in names  # a file below an ingested folder keeps its relative name

    code, out, _ = run(capsys, "query", "--kb", "facts", "volcano eruption")
    assert code == 0 and "1. [" in out and "volcano.txt" in out


def test_kb_query_in_a_fresh_process_keeps_stderr_clean(home: Path, docs: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    # Loading the sentence-transformers embedder imports torch, torchao and bitsandbytes, which warn about
    # kernels an embedder never uses, and transformers draws a "Loading weights" bar: none of it is for the user.
    assert run(capsys, "ingest", "--kb", "facts", "--embedder", EMBEDDER, str(docs))[0] == 0
    done = subprocess.run([sys.executable, "-m", "core", "kb", "query", "--home", str(home), "--kb", "facts",
                           "volcano eruption"], capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "volcano.txt" in done.stdout
    for noise in ("Failed to load", "register_constant", "Loading weights", "kernels-community"):
        assert noise not in done.stderr, done.stderr


def test_query_reads_one_query_per_line_from_stdin(home: Path, docs: Path, capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    assert run(capsys, "ingest", "--kb", "facts", "--embedder", EMBEDDER, str(docs))[0] == 0
    monkeypatch.setattr("sys.stdin", io.StringIO("volcano eruption year\n\ntea harvest altitude\n"))
    lines = query_json(capsys, "facts", "-", k=1)
    assert [r["query"] for r in lines] == ["volcano eruption year", "tea harvest altitude"]
    assert [r["hits"][0]["source"] for r in lines] == ["volcano.txt", "notes/tea.md"]
    assert all(len(r["hits"]) == 1 for r in lines)


def test_pdf_hits_carry_their_page(home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from reportlab.pdfgen import canvas

    pdf = tmp_path / "manual.pdf"
    c = canvas.Canvas(str(pdf))
    c.drawString(72, 720, "Chapter one is about installing the device on a wall.")
    c.showPage()
    c.drawString(72, 720, "The reset button of the Quillfeather router sits under a rubber flap.")
    c.showPage()
    c.save()
    assert run(capsys, "ingest", "--kb", "manuals", "--embedder", EMBEDDER, str(pdf))[0] == 0
    top = query_json(capsys, "manuals", "Where is the reset button of the router?")[0]["hits"][0]
    assert (top["source"], top["page"]) == ("manual.pdf", 2)
    code, out, _ = run(capsys, "show", "manuals", "--json")
    assert json.loads(out)[0]["pages"] == 2


def test_bad_files_are_reported_and_the_others_go_on(home: Path, tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "empty.txt").write_bytes(b"")
    (folder / "binary.txt").write_bytes(bytes(range(256)) * 40)
    (folder / "good.txt").write_text("Otters hold hands while they sleep so they do not drift apart.")
    code, out, err = run(capsys, "ingest", "--kb", "mixed", "--embedder", EMBEDDER, str(folder),
                         str(tmp_path / "absent.txt"))  # fmt: skip
    assert code == 1
    assert "4 files, 1 added" in out and "3 errors" in out
    assert "error: empty.txt:" in err and "error: binary.txt:" in err and "no such file or folder" in err
    code, out, _ = run(capsys, "show", "mixed", "--json")
    status = {d["name"]: (d["status"], bool(d["error"])) for d in json.loads(out)}
    assert status == {"binary.txt": ("error", True), "empty.txt": ("error", True), "good.txt": ("ready", False)}
    assert query_json(capsys, "mixed", "otters sleeping")[0]["hits"][0]["source"] == "good.txt"
    [kb] = json.loads(run(capsys, "list", "--json")[1])
    assert (kb["documents"], kb["ready"], kb["errors"]) == (3, 1, 2)
    code, out, _ = run(capsys, "list")
    assert code == 0 and "1 documents" in out and "2 with errors" in out


def test_changed_file_replaces_and_remove_deletes(home: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    doc = tmp_path / "policy.txt"
    doc.write_text("Refunds are accepted within 14 days of purchase.")
    other = tmp_path / "other.txt"
    other.write_text("The office cat is named Biscuit and likes cardboard boxes.")
    assert run(capsys, "ingest", "--kb", "hr", "--embedder", EMBEDDER, str(doc), str(other))[0] == 0
    doc.write_text("Refunds are accepted within 30 days of purchase.")
    code, out, _ = run(capsys, "ingest", "--kb", "hr", str(doc))
    assert code == 0 and "1 replaced" in out
    texts = [h["text"] for h in query_json(capsys, "hr", "how many days for a refund")[0]["hits"]]
    assert any("30 days" in t for t in texts) and not any("14 days" in t for t in texts)
    code, out, _ = run(capsys, "show", "hr", "--json")
    assert sorted(d["name"] for d in json.loads(out)) == ["other.txt", "policy.txt"]  # one row per name

    code, out, err = run(capsys, "remove", "--kb", "hr", "policy.txt")
    assert code == 0, err
    sources = {h["source"] for h in query_json(capsys, "hr", "refund days")[0]["hits"]}
    assert sources <= {"other.txt"}
    code, _, err = run(capsys, "remove", "--kb", "hr", "policy.txt")
    assert code == 1 and "no document 'policy.txt'" in err and "other.txt" in err


def test_unknown_kb_lists_the_existing_ones_and_drop(home: Path, docs: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    code, _, err = run(capsys, "query", "--kb", "nothing", "hello")
    assert code == 1 and "No knowledge base named 'nothing'" in err and "none yet" in err
    assert run(capsys, "ingest", "--kb", "facts", "--embedder", EMBEDDER, str(docs))[0] == 0
    code, _, err = run(capsys, "query", "--kb", "fact", "hello")
    assert code == 1 and "the existing ones are 'facts'" in err
    code, out, err = run(capsys, "drop", "facts")
    assert code == 0, err
    assert json.loads(run(capsys, "list", "--json")[1]) == []
    assert not list((home / "chroma").rglob("*volcano*"))  # nothing named after files is written to disk


def test_deleted_chroma_folder_is_explained_and_reingest_repairs(
    home: Path, docs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(capsys, "ingest", "--kb", "facts", "--embedder", EMBEDDER, str(docs))[0] == 0
    shutil.rmtree(home / "chroma")
    code, _, err = run(capsys, "query", "--kb", "facts", "volcano")
    assert code == 1 and "ingest its files again" in err
    code, out, err = run(capsys, "ingest", "--kb", "facts", str(docs))
    assert code == 0 and "2 added" in out, (out, err)
    assert query_json(capsys, "facts", "volcano eruption")[0]["hits"][0]["source"] == "volcano.txt"


def test_a_chroma_server_that_is_down(home: Path, docs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # closed again when the block ends: nothing listens there
    url = f"http://127.0.0.1:{port}"
    code, out, err = run(capsys, "ingest", "--kb", "facts", "--chroma-url", url, str(docs))
    assert code == 1 and url.split("//")[1] in err and "Traceback" not in err
    code, out, err = run(capsys, "list", "--chroma-url", url)  # rows only: works without Chroma
    assert code == 0 and "No knowledge bases yet" in out


@pytest.fixture
def chroma_server(tmp_path: Path) -> Iterator[str]:
    """A real ``chroma run`` on a free port (its data in a temp folder); yields its URL."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    chroma = Path(sys.executable).parent / "chroma"
    command = [str(chroma), "run", "--path", str(tmp_path / "server"), "--host", "127.0.0.1", "--port", str(port)]
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{url}/api/v2/heartbeat", timeout=2):
                    break
            except OSError:
                assert server.poll() is None, "chroma run exited"
                time.sleep(0.3)
        else:
            pytest.fail("chroma run did not answer within 60 s")
        yield url
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_a_real_chroma_server(home: Path, docs: Path, chroma_server: str, capsys: pytest.CaptureFixture[str],
                              monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.setenv("INKSTONE_CHROMA_URL", chroma_server)
    code, out, err = run(capsys, "ingest", "--kb", "团队资料", "--embedder", EMBEDDER, str(docs))
    assert code == 0 and "2 added" in out, err
    assert not (home / "chroma").exists()  # everything went to the server
    top = query_json(capsys, "团队资料", "When did the volcano last erupt?")[0]["hits"][0]
    assert top["source"] == "volcano.txt" and "1822" in top["text"]
    code, out, err = run(capsys, "remove", "--kb", "团队资料", "volcano.txt")
    assert code == 0, err
    assert all(h["source"] != "volcano.txt" for h in query_json(capsys, "团队资料", "volcano eruption")[0]["hits"])


@pytest.mark.slow
def test_chinese_gbk_file_with_the_default_embedder(home: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    doc = tmp_path / "保修说明.txt"
    doc.write_bytes("本产品的保修期为三年，自购买之日起计算。电池属于易耗品，保修期为六个月。".encode("gbk"))
    other = tmp_path / "配送.txt"
    other.write_text("订单在工作日下午四点前付款，当天从杭州仓库发货。", encoding="utf-8")
    code, out, err = run(capsys, "ingest", "--kb", "客服资料", str(doc), str(other))  # created with the default
    assert code == 0 and "2 added" in out, err
    [kb] = json.loads(run(capsys, "list", "--json")[1])
    assert kb["embedder"] == KnowledgeService.open(load_settings()).default_embedder
    code, out, _ = run(capsys, "query", "--kb", "客服资料", "--json", "电池可以保修多久？")
    top = json.loads(out)["hits"][0]  # printed as UTF-8, not \\u escapes
    assert "六个月" in out and top["source"] == "保修说明.txt" and top["page"] is None


def test_progress_bar_on_a_terminal() -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    stream = Terminal()
    bar = ProgressBar(stream)
    bar(IngestProgress(1, 4, "b.pdf", 5, 10))
    bar(IngestProgress(2, 4, "b.pdf", 10, 10, FileResult("b.pdf", "added", 10, 2, warnings=("page 2 has no text",))))
    text = stream.getvalue()
    assert "\r\x1b[K[#########---------------] 1/4 b.pdf 5/10 chunks" in text  # 1.5 of 4 files: 9 of 24
    assert "[2/4] b.pdf: added, 10 chunks\n" in text and "    warning: page 2 has no text\n" in text
    bar(IngestProgress(2, 4, "scan.pdf", pages_done=3, pages_total=4, ocr_pages=3))  # a scan moves page by page
    bar(IngestProgress(3, 4, "scan.pdf", 6, 6, FileResult("scan.pdf", "added", 6, 4, ocr_pages=3)))
    text = stream.getvalue()
    assert "\r\x1b[K[################--------] 2/4 scan.pdf page 3/4 (3 by OCR)" in text  # 2.75 of 4: 16 of 24
    assert "[3/4] scan.pdf: added, 6 chunks (3 page(s) read by OCR)\n" in text


@pytest.mark.slow
def test_the_embedder_setting_refuses_a_kb_built_with_another(home: Path, docs: Path, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    assert run(capsys, "ingest", "--kb", "facts", "--embedder", EMBEDDER, str(docs))[0] == 0
    (tmp_path / "absent.toml").write_text('embedder = "e5-small"\n', encoding="utf-8")  # the config file (conftest)
    code, _, err = run(capsys, "query", "--kb", "facts", "volcano")
    assert code == 1 and "the embedder setting is 'e5-small'" in err
    assert "python -m core kb reembed facts --embedder e5-small" in err
    code, _, err = run(capsys, "ingest", "--kb", "facts", str(docs))
    assert code == 1 and "reembed" in err
    code, out, err = run(capsys, "reembed", "facts", "--embedder", "e5-small")
    assert code == 0 and "Re-embedded 'facts' with e5-small" in out, err
    assert query_json(capsys, "facts", "When did the volcano last erupt?")[0]["hits"][0]["source"] == "volcano.txt"


@pytest.mark.slow
def test_a_killed_ingestion_is_finished_by_running_it_again(home: Path, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    import os
    import signal
    import sqlite3

    big = tmp_path / "orchard-log.txt"
    big.write_text("\n\n".join(f"Entry {i}: the pear trees on row {i} were pruned and {i % 9} hives were checked."
                               * 4 for i in range(1200)), encoding="utf-8")  # fmt: skip
    small = tmp_path / "bees.txt"
    small.write_text("The beehives stand at the north fence of the orchard.", encoding="utf-8")
    assert run(capsys, "ingest", "--kb", "farm", "--embedder", EMBEDDER, str(small))[0] == 0
    command = [sys.executable, "-m", "core", "kb", "ingest", "--kb", "farm", str(big)]
    child = subprocess.Popen(command, cwd=Path(__file__).resolve().parents[1], env=os.environ.copy(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    seen_chunks = False
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and child.poll() is None:
        with sqlite3.connect(home / "inkstone.db") as db:
            row = db.execute("SELECT status FROM documents WHERE name = 'orchard-log.txt'").fetchone()
        if row and row[0] == "ingesting":
            time.sleep(1.5)  # let it store a batch or two of its ~1,200 chunks (seconds of embedding), not all
            seen_chunks = True
            break
        time.sleep(0.2)
    assert seen_chunks and child.poll() is None, "the ingestion ended before it could be killed"
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)

    code, out, _ = run(capsys, "show", "farm", "--json")
    status = {d["name"]: d["status"] for d in json.loads(out)}
    assert status == {"bees.txt": "ready", "orchard-log.txt": "ingesting"}
    hits = query_json(capsys, "farm", "which pear trees were pruned on row 12", k=4)[0]["hits"]
    assert all(h["source"] != "orchard-log.txt" for h in hits)  # half a document is never searchable

    code, out, err = run(capsys, "ingest", "--kb", "farm", str(big))
    assert code == 0 and "1 added" in out, err
    [doc] = [d for d in json.loads(run(capsys, "show", "farm", "--json")[1]) if d["name"] == "orchard-log.txt"]
    assert doc["status"] == "ready" and doc["chunks"] > 64
    [kb] = json.loads(run(capsys, "list", "--json")[1])
    assert kb["chunks"] == doc["chunks"] + 1
    service = KnowledgeService.open(load_settings())
    try:
        assert service.handle.get().count(service.get("farm").collection) == kb["chunks"]  # no leftovers
    finally:
        service.close()
    assert query_json(capsys, "farm", "pear trees pruned on row 12", k=1)[0]["hits"][0]["source"] == "orchard-log.txt"


def test_quiet_embedder_load_still_shows_errors_and_restores_the_levels(caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from transformers.utils import logging as hf_logging

    from knowledge.embedders import quiet_load

    torchao = logging.getLogger("torchao")
    before, bar = torchao.level, hf_logging.is_progress_bar_enabled()
    with caplog.at_level(logging.WARNING), quiet_load():
        torchao.warning("Failed to load an optional kernel")
        torchao.error("a real problem")
    assert "a real problem" in caplog.text and "optional kernel" not in caplog.text
    assert torchao.level == before and hf_logging.is_progress_bar_enabled() == bar


def test_sync_adds_new_reingests_changed_removes_deleted_and_is_idempotent(
    home: Path, docs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "sync", "mirror", str(docs), "--embedder", EMBEDDER)
    assert code == 0, err
    assert "2 added" in out and "0 removed" in out
    (docs / "volcano.txt").write_text("Mount Ember last erupted in 1911, covering the valley in ash.")
    (docs / "notes" / "tea.md").unlink()
    (docs / "bridge.txt").write_text("The Corran bridge opened in 1932 and has nine arches.")
    code, out, err = run(capsys, "sync", "mirror", str(docs))
    assert code == 0, err
    assert "1 added, 1 replaced" in out and "1 removed: notes/tea.md" in out
    [result] = query_json(capsys, "mirror", "When did the volcano last erupt?")
    assert "1911" in result["hits"][0]["text"]
    assert {h["source"] for h in result["hits"]} <= {"volcano.txt", "bridge.txt"}
    code, out, err = run(capsys, "sync", "mirror", str(docs))  # a second run changes nothing
    assert code == 0 and "0 added, 0 replaced, 2 unchanged" in out and "0 removed" in out
    code, out, err = run(capsys, "sync", "mirror", str(docs / "missing"))
    assert code == 1 and "is not a folder" in err
    code, out, err = run(capsys, "show", "mirror")
    assert "volcano.txt" in out and "bridge.txt" in out and "tea.md" not in out
