"""PDF tables in retrieval: hit@4 for the questions about the two table documents of tests/data/rag_hard/ when they
are Markdown/HTML (as committed) vs the same documents printed to PDF, with and without table detection.

The Brightwater kettle range (Markdown) and the Lanting parking notice (HTML, Chinese) are printed to PDF with
reportlab (title, paragraphs, the table with a grid, the closing line), and three knowledge bases are built over
every document of tests/data/rag/ and tests/data/rag_hard/ with the default embedder: the committed files; the two
files replaced by their PDFs; the same with PDF table detection turned off (pypdf's plain text, as before). Then
every question of dev.jsonl, heldout.jsonl and answer_heldout.jsonl about those two documents is asked (follow-ups
searched as a chat searches them). "hit": one of the first 4 hits is from the document and holds the answer;
"with header": that hit also holds the table's header line. Prints figures only; the question files are read,
never changed.

    .venv/bin/python bench/pdf_tables.py
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import core  # noqa: E402,F401 - first: offline, no telemetry (core/offline.py)

os.environ.setdefault("INKSTONE_ONNX_CACHE", str(Path.home() / ".cache" / "inkstone" / "e5-small-onnx"))
from bench.rag_eval import DATA, HARD, followup_query, squash  # noqa: E402
from knowledge import DEFAULT_CHUNK_OVERLAP, DEFAULT_CHUNK_SIZE, DEFAULT_EMBEDDER, KnowledgeLibrary  # noqa: E402

KETTLES, PARKING = "brightwater_kettle_range.md", "lanting_parking_notice.html"
HEADERS = {KETTLES: "Power rating", PARKING: "临时停车每小时"}
QUESTION_FILES = ("dev.jsonl", "heldout.jsonl", "answer_heldout.jsonl")


def print_pdf(path: Path, blocks: list[str | list[list[str]]], font: str) -> Path:
    """A PDF of paragraphs (str) and tables (rows of cells) in ``font``."""
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Table, TableStyle

    style = ParagraphStyle("body", fontName=font, fontSize=10, leading=14, spaceAfter=6)
    story = []
    for block in blocks:
        if isinstance(block, str):
            story.append(Paragraph(block, style))
        else:
            table = Table(block)
            table.setStyle(
                TableStyle([("FONT", (0, 0), (-1, -1), font, 9), ("GRID", (0, 0), (-1, -1), 0.5, colors.grey)])
            )
            story.append(table)
    SimpleDocTemplate(str(path), pagesize=A4).build(story)
    return path


def markdown_blocks(text: str) -> list[str | list[list[str]]]:
    """Paragraphs and tables of a simple Markdown file."""
    blocks: list[str | list[list[str]]] = []
    for part in re.split(r"\n\s*\n", text.strip()):
        lines = part.strip().split("\n")
        if lines[0].startswith("|"):
            rows = [[c.strip() for c in ln.strip().strip("|").split("|")] for ln in lines if not set(ln) <= set("|-: ")]
            blocks.append(rows)
        else:
            blocks.append(" ".join(ln.lstrip("# ") for ln in lines))
    return blocks


def html_blocks(text: str) -> list[str | list[list[str]]]:
    """Headings, paragraphs and tables of a simple HTML page, in order."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(text, "html.parser")
    blocks: list[str | list[list[str]]] = []
    for tag in soup.body.find_all(("h1", "h2", "p", "table"), recursive=False):
        if tag.name == "table":
            blocks.append([[c.get_text(strip=True) for c in tr.find_all(("td", "th"))] for tr in tag.find_all("tr")])
        else:
            blocks.append(tag.get_text(strip=True))
    return blocks


def build_corpus(lib: KnowledgeLibrary, name: str, replaced: dict[str, Path]) -> float:
    """Ingest every evaluation document (``replaced``: file name -> the file to add instead); seconds taken."""
    start = time.perf_counter()
    for folder in (DATA / "docs", HARD / "docs"):
        for path in sorted(folder.iterdir()):
            actual = replaced.get(path.name, path)
            lib.add_document(name, DEFAULT_EMBEDDER, actual.name, actual, actual.name, DEFAULT_CHUNK_SIZE,
                             DEFAULT_CHUNK_OVERLAP)  # fmt: skip
    return time.perf_counter() - start


def ask(lib: KnowledgeLibrary, name: str, questions: list[dict], sources: dict[str, str]) -> dict[str, list]:
    """Per kind (and "all"): (hit, hit with the header) for each question."""
    results: dict[str, list] = {}
    for q in questions:
        source = sources.get(q["source"], q["source"])
        hits = lib.search([(name, DEFAULT_EMBEDDER)], followup_query(q, "app"), k=4)
        good = [h for h in hits if h.source == source and squash(q["answer"]) in squash(h.text)]
        outcome = (bool(good), any(HEADERS[q["source"]] in h.text for h in good))
        for kind in (q["kind"], "all"):
            results.setdefault(kind, []).append(outcome)
        if not good:
            print(f"    miss ({name}): {q['question']} -> {[(h.source, round(h.score, 2)) for h in hits]}")
    return results


def speed(folder: Path, formats) -> None:  # formats: the module knowledge.formats
    """Milliseconds per page to read a 40-page PDF of tables and one of prose, with table detection and without."""
    from knowledge.loaders import open_document
    from knowledge.pdf_tables import tabulate_page

    rows = [[f"BW-{n}", f"{n * 10} W", f"{n / 100:.1f} litres", "stainless steel", f"{n} euros"] for n in range(800)]
    prose = "The keeper's cottage now houses a small museum, open from April to October, where visitors can see " * 9
    files = {
        "tables": print_pdf(folder / "long_table.pdf", [[["Model", "Power", "Capacity", "Body", "Price"], *rows]],
                            "Helvetica"),
        "prose": print_pdf(folder / "prose.pdf", [prose] * 120, "Helvetica"),
    }  # fmt: skip
    for label, path in files.items():
        times = {}
        for mode, tabulate in (("on", tabulate_page), ("off", lambda text, page, before: (text, None))):
            formats.tabulate_page = tabulate
            start = time.perf_counter()
            pages = len(list(open_document(path).segments()))
            times[mode] = (time.perf_counter() - start) * 1000 / pages
        print(f"reading {label} ({pages} pages): {times['on']:.1f} ms/page with table detection, "
              f"{times['off']:.1f} ms/page without (load average {os.getloadavg()[0]:.1f})")  # fmt: skip


def main() -> None:
    """Print the PDFs, build the three knowledge bases, ask, print hit@4 per kind."""
    import knowledge.formats as formats

    questions = [
        json.loads(line)
        for file in QUESTION_FILES
        for line in (HARD / file).read_text(encoding="utf-8").splitlines()
        if line.strip() and json.loads(line).get("source") in HEADERS
    ]
    print(f"{len(questions)} questions about {KETTLES} and {PARKING} in {', '.join(QUESTION_FILES)}")
    with tempfile.TemporaryDirectory() as tmp:
        from reportlab.pdfbase import pdfmetrics
        from reportlab.pdfbase.cidfonts import UnicodeCIDFont

        pdfmetrics.registerFont(UnicodeCIDFont("STSong-Light"))
        pdfs = {
            KETTLES: print_pdf(Path(tmp) / "brightwater_kettle_range.pdf",
                               markdown_blocks((HARD / "docs" / KETTLES).read_text(encoding="utf-8")), "Helvetica"),
            PARKING: print_pdf(Path(tmp) / "lanting_parking_notice.pdf",
                               html_blocks((HARD / "docs" / PARKING).read_text(encoding="utf-8")), "STSong-Light"),
        }  # fmt: skip
        sources = {name: path.name for name, path in pdfs.items()}
        lib = KnowledgeLibrary(Path(tmp) / "chroma")
        runs = [("source", "md-html", {}, {}), ("pdf+tables", "pdf-tables", pdfs, sources)]
        runs.append(("pdf plain", "pdf-plain", pdfs, sources))
        figures = {}
        for label, name, replaced, mapping in runs:
            if label == "pdf plain":  # the loader as it was: pypdf's plain text, no table rows
                formats.tabulate_page = lambda text, page, before: (text, None)
            seconds = build_corpus(lib, name, replaced)
            print(f"{label}: ingested in {seconds:.1f} s (load average {os.getloadavg()[0]:.1f})")
            figures[label] = ask(lib, name, questions, mapping)
        lib.close()
        speed(Path(tmp), formats)
    kinds = sorted({k for r in figures.values() for k in r if k != "all"}) + ["all"]
    print("hit@4 (hit@4 with the table's header in the same hit) per kind; n = questions")
    print(f"{'documents':12} " + " ".join(f"{k + ' (' + str(len(figures['source'][k])) + ')':>16}" for k in kinds))
    for label, result in figures.items():
        cells = []
        for kind in kinds:
            outcomes = result[kind]
            hit = sum(h for h, _ in outcomes) / len(outcomes)
            header = sum(w for _, w in outcomes) / len(outcomes)
            cells.append(f"{hit:.2f} ({header:.2f})")
        print(f"{label:12} " + " ".join(f"{c:>16}" for c in cells))


if __name__ == "__main__":
    main()
