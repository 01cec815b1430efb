"""PDF tables: a table in a PDF's text layer is stored as ``cell | cell`` rows with its header, so a search for one
row's question returns the header line and that row, on the right page.

PDFs are built with reportlab in the test: an English spec table, a Chinese table (the built-in CID font
STSong-Light), a table running over two pages with and without its header repeated, a page of prose with a list,
and a two-column page. Prose and columns must come out exactly as pypdf's plain text (no false tables), and
damaged or odd files must load or fail with the loaders' usual messages.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from knowledge import KnowledgeLibrary, LoaderError
from knowledge.formats import _tidy, join_cjk_wraps
from knowledge.loaders import open_document
from tests.knowledge_fakes import FakeEmbedder

FAKE = "fake-64"
HEADER = ["Model", "Power rating", "Capacity", "Body", "Keep-warm", "Price"]
BODIES = ["plastic", "stainless steel", "glass", "brushed copper", "ceramic"]
ROWS = [
    [
        f"BW-{n}",
        f"{1000 + 10 * n} W",
        f"{n / 100:.1f} litres",
        BODIES[n % 5],
        f"{n % 4 * 30} minutes",
        f"{n // 2} euros",
    ]
    for n in range(110, 330, 10)
]
ZH_HEADER = ["车位类型", "月租", "临时停车每小时", "每日封顶"]
ZH_ROWS = [
    ["地面车位", "300元", "5元", "40元"],
    ["地下车位", "450元", "8元", "60元"],
    ["新能源充电车位", "520元", "10元", "70元"],
    ["摩托车位", "80元", "2元", "15元"],
]
PROSE = (
    "The lighthouse at Harrow Point was built in 1871 by the harbour board. Its lamp was first lit with whale oil, "
    "later with paraffin, and since 1954 with electricity. The keeper's cottage now houses a small museum, open "
    "from April to October, where visitors can see the original Fresnel lens and the logbooks of three keepers. "
)


@pytest.fixture
def lib(tmp_path: Path):
    library = KnowledgeLibrary(tmp_path / "chroma")
    library.register_embedder(FakeEmbedder(FAKE))
    yield library
    library.close()


def build(path: Path, story: list, columns: int = 1) -> Path:
    """A PDF of reportlab flowables in one or two columns of an A4 page."""
    from reportlab.lib.pagesizes import A4
    from reportlab.platypus import BaseDocTemplate, Frame, PageTemplate

    width, height = A4
    gutter, margin = 20, 50
    column = (width - 2 * margin - gutter * (columns - 1)) / columns
    frames = [Frame(margin + i * (column + gutter), margin, column, height - 2 * margin) for i in range(columns)]
    doc = BaseDocTemplate(str(path), pagesize=A4)
    doc.addPageTemplates([PageTemplate(frames=frames)])
    doc.build(story)
    return path


def table(rows: list[list[str]], repeat: int = 1, font: str = "Helvetica", widths: list[float] | None = None):
    from reportlab.lib import colors
    from reportlab.platypus import Table, TableStyle

    flowable = Table(rows, colWidths=widths, repeatRows=repeat)
    flowable.setStyle(TableStyle([("FONT", (0, 0), (-1, -1), font), ("GRID", (0, 0), (-1, -1), 0.5, colors.grey)]))
    return flowable


def para(text: str, font: str = "Helvetica"):
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.platypus import Paragraph

    return Paragraph(text, ParagraphStyle("body", fontName=font, fontSize=10, leading=14))


def spec_story(rows: list[list[str]], repeat: int = 1) -> list:
    return [
        para("Brightwater Kettle Range 2025"),
        para("Brightwater makes electric kettles for homes and offices. The table lists the whole range."),
        table([HEADER, *rows], repeat),
        para("Spare lids and filters for every model are sold in the Brightwater web shop."),
    ]


def plain_pages(path: Path) -> list[str]:
    """What pypdf's plain text gives for each page, tidied as the loader tidies it (the text before tables)."""
    import pypdf

    return [join_cjk_wraps(_tidy(page.extract_text())) for page in pypdf.PdfReader(str(path)).pages]


def line(cells: list[str]) -> str:
    return " | ".join(cells)


def test_a_spec_table_row_is_found_with_its_column_names(lib, tmp_path: Path) -> None:
    pdf = build(tmp_path / "kettles.pdf", spec_story(ROWS[:11]))
    lib.add_document("kb-test", FAKE, "k", pdf, "kettles.pdf", 200, 20)
    hits = lib.search([("kb-test", FAKE)], "What is the power rating of the BW-170?", k=4, floor=0.0)
    row = line(ROWS[6])
    assert ROWS[6][0] == "BW-170"
    best = next(h for h in hits if row in h.text)
    assert best.text.split("\n")[0] == line(HEADER) and best.page == 1
    text = "\n".join(s.text for s in open_document(pdf).segments())
    assert "Brightwater makes electric kettles for homes and offices." in text  # the prose around it is unchanged
    assert "Spare lids and filters for every model are sold in the Brightwater web shop." in text


def test_a_chinese_table_row_is_found_with_its_header(lib, tmp_path: Path) -> None:
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont

    pdfmetrics.registerFont(UnicodeCIDFont("STSong-Light"))
    story = [
        para("兰亭花园小区停车收费标准通知", "STSong-Light"),
        para("各位业主：根据业主大会决议，自二零二五年七月一日起，小区停车场执行以下收费标准。", "STSong-Light"),
        table([ZH_HEADER, *ZH_ROWS], font="STSong-Light"),
        para("访客车辆首半小时免费。如有疑问，请联系物业服务中心。", "STSong-Light"),
    ]
    pdf = build(tmp_path / "parking.pdf", story)
    lib.add_document("kb-test", FAKE, "p", pdf, "parking.pdf", 60, 0)
    hits = lib.search([("kb-test", FAKE)], "新能源充电车位临时停车每小时收费多少？", k=4, floor=0.0)
    best = next(h for h in hits if line(ZH_ROWS[2]) in h.text)
    assert best.text.split("\n")[0] == line(ZH_HEADER)


@pytest.mark.parametrize("repeat", [1, 0], ids=["header-repeated", "header-not-repeated"])
def test_a_table_over_two_pages_gives_every_row_its_header(lib, tmp_path: Path, repeat: int) -> None:
    pdf = build(tmp_path / "range.pdf", spec_story(ROWS * 2, repeat))
    segments = list(open_document(pdf).segments())
    assert [s.page for s in segments] == [1, 2]
    for segment in segments:
        rows = [text for text in segment.text.split("\n") if " | " in text]
        assert rows[0] == line(HEADER) and rows.count(line(HEADER)) == 1
        assert len(rows) > 2
    lib.add_document("kb-test", FAKE, "r", pdf, "range.pdf", 200, 20)
    last = ROWS[-1]  # on page 2
    hits = lib.search([("kb-test", FAKE)], f"How much does the {last[0]} cost?", k=4, floor=0.0)
    best = next(h for h in hits if line(last) in h.text)
    assert best.page == 2 and best.text.split("\n")[0] == line(HEADER)


def test_prose_lists_and_two_columns_are_not_turned_into_tables(lib, tmp_path: Path) -> None:
    from reportlab.platypus import ListFlowable, ListItem

    items = ["Fill the kettle to the MAX line", "Close the lid", "Press the switch", "Wait for the click. " + PROSE]
    lists = [ListFlowable([ListItem(para(item)) for item in items], bulletType=kind) for kind in ("1", "a", "bullet")]
    story = [para(PROSE * 2), para("- first item of a short list"), para("- second item"), *lists, para(PROSE)]
    prose = build(tmp_path / "prose.pdf", story)
    columns = build(tmp_path / "columns.pdf", [para(PROSE * 2) for _ in range(6)], columns=2)
    for pdf in (prose, columns):
        texts = [s.text for s in open_document(pdf).segments()]
        assert texts == plain_pages(pdf)
        assert " | " not in "".join(texts)
    lib.add_document("kb-test", FAKE, "c", columns, "columns.pdf", 200, 20)
    hits = lib.search([("kb-test", FAKE)], "When was the lighthouse at Harrow Point built?", k=4, floor=0.0)
    assert hits and all(" | " not in h.text for h in hits)


def test_a_page_with_a_table_keeps_its_other_text_exactly(tmp_path: Path) -> None:
    pdf = build(tmp_path / "mixed.pdf", [para(PROSE), table([HEADER, *ROWS[:4]]), para(PROSE)])
    (text,) = [s.text for s in open_document(pdf).segments()]
    (before,) = plain_pages(pdf)
    table_lines = [line(cells) for cells in [HEADER, *ROWS[:4]]]
    assert "\n".join(table_lines) in text
    rest = text.replace("\n".join(table_lines), "")
    cells = {cell for cells in [HEADER, *ROWS[:4]] for cell in cells}
    assert [x for x in rest.split() if x] == [x for x in before.split() if x and x not in " ".join(cells).split()]


def test_damaged_or_odd_pdfs_with_tables_load_or_fail_with_the_usual_messages(tmp_path: Path) -> None:
    pdf = build(tmp_path / "kettles.pdf", spec_story(ROWS[:6]))
    data = pdf.read_bytes()
    cut = tmp_path / "cut.pdf"
    cut.write_bytes(data[: len(data) * 2 // 3])
    try:
        texts = [s.text for s in open_document(cut).segments()]
    except LoaderError as exc:
        assert "cut.pdf" in str(exc) and ("damaged" in str(exc) or "cannot be parsed" in str(exc))
    else:
        assert any("Brightwater" in t for t in texts)
    # Odd content streams: a font the page does not have, an operator with an operand missing.
    from reportlab.pdfgen import canvas

    odd = tmp_path / "odd.pdf"
    page = canvas.Canvas(str(odd), pageCompression=0)
    page.setFont("Helvetica", 10)
    for i, cells in enumerate([HEADER, *ROWS[:3]]):
        for j, cell in enumerate(cells):
            page.drawString(50 + 85 * j, 700 - 18 * i, cell)
    page.showPage()
    page.save()
    raw = odd.read_bytes()
    assert b"/F1 10 Tf" in raw and b"1 0 0 1 50 700 Tm" in raw
    odd.write_bytes(raw.replace(b"/F1 10 Tf", b"/Nope 10 Tf", 1))
    with pytest.raises(LoaderError, match="odd.pdf has no text that could be read.*does not decode to readable text"):
        list(open_document(odd).segments())
    odd.write_bytes(raw.replace(b"1 0 0 1 50 700 Tm", b"1 0 0 1 50 Tm", 1))
    text = "".join(s.text for s in open_document(odd).segments())
    words = [word for cells in [HEADER, *ROWS[:3]] for cell in cells for word in cell.split()]
    assert all(word in text for word in words)


def test_wrapped_and_empty_cells_stay_in_their_row(tmp_path: Path) -> None:
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.platypus import Paragraph, Table

    cell = ParagraphStyle("cell", fontName="Helvetica", fontSize=10, leading=12)
    rows = [
        ["", "BW-110", "BW-120", "BW-130"],
        ["Power", "1200 W", "", "1800 W"],
        ["Capacity", "0.8 l", "1.0 l", "1.2 l"],
        [
            "Note",
            Paragraph("Comes with a long cable and a spare filter for hard water", cell),
            "none",
            Paragraph("Sold only in the web shop", cell),
        ],  # fmt: skip
        ["Price", "29 euros", "34 euros", "45 euros"],
    ]
    pdf = build(tmp_path / "compare.pdf", [para("Comparison"), Table(rows, colWidths=[70, 120, 70, 120])])
    (text,) = [s.text for s in open_document(pdf).segments()]
    assert text.split("\n")[-5:] == [
        "- | BW-110 | BW-120 | BW-130",
        "Power | 1200 W | - | 1800 W",
        "Capacity | 0.8 l | 1.0 l | 1.2 l",
        "Note | Comes with a long cable and a spare filter for hard water | none | Sold only in the web shop",
        "Price | 29 euros | 34 euros | 45 euros",
    ]


def draw_words(page, x: float, y: float, text: str, width: float | None = None) -> None:
    """``text`` drawn one word at a time (as some PDF writers do), spread to ``width`` points when given."""
    from reportlab.pdfbase.pdfmetrics import stringWidth

    words = text.split()
    natural = sum(stringWidth(w, "Helvetica", 10) for w in words)
    space = (width - natural) / (len(words) - 1) if width and len(words) > 1 else stringWidth(" ", "Helvetica", 10)
    for word in words:
        page.drawString(x, y, word)
        x += stringWidth(word, "Helvetica", 10) + space


def test_text_drawn_word_by_word_is_a_table_only_where_its_columns_line_up(tmp_path: Path) -> None:
    from reportlab.pdfgen import canvas

    words = (PROSE * 3).split()
    path = tmp_path / "words.pdf"
    page = canvas.Canvas(str(path))
    page.setFont("Helvetica", 10)
    y = 780.0
    for paragraph in range(8):  # short justified paragraphs: their word gaps may line up by chance
        page.drawString(60, y, f"Section {paragraph + 1}")
        y -= 14
        for number in range(3):
            start = (paragraph * 3 + number) * 9 % (len(words) - 12)
            draw_words(page, 60, y, " ".join(words[start : start + 9 + number % 3]), 330)
            y -= 12
        y -= 8
    page.showPage()
    rows = [["Model", "Body", "Price"], ["BW-110", "stainless steel", "29 euros"], ["BW-120", "brushed copper",
            "134 euros"], ["BW-130", "glass", "1045 euros"]]  # fmt: skip
    page.setFont("Helvetica", 10)
    page.drawString(60, 780, "The range, drawn word by word, prices aligned right.")
    for i, (model, body, price) in enumerate(rows):
        draw_words(page, 60, 750 - 14 * i, model)
        draw_words(page, 130, 750 - 14 * i, body)
        page.drawRightString(330, 750 - 14 * i, price)
    page.showPage()
    page.save()
    prose, table = [s.text for s in open_document(path).segments()]
    assert prose == plain_pages(path)[0] and " | " not in prose
    assert [text for text in table.split("\n") if " | " in text] == [line(row) for row in rows]


def test_chinese_lines_wrapped_around_a_wide_table_are_still_joined(tmp_path: Path) -> None:
    from reportlab.lib.styles import ParagraphStyle
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont
    from reportlab.platypus import Paragraph

    pdfmetrics.registerFont(UnicodeCIDFont("STSong-Light"))
    sentence = "兰亭花园小区停车场自二零二五年七月一日起执行新的收费标准，月租车位需在物业服务中心办理登记手续。" * 3
    header = ["车位类型名称", "每月租金标准", "临时停车每时", "每日封顶金额", "夜间停车收费", "是否可以充电"]
    rows = [header] + [
        [f"{kind}车位类型", "三百元每月", "五元每小时", "四十元每日", "十元每晚", "可以充电"] for kind in "甲乙丙"
    ]
    story = [Paragraph(sentence, ParagraphStyle("big", fontName="STSong-Light", fontSize=16, leading=22)),
             table(rows, font="STSong-Light")]  # fmt: skip
    pdf = build(tmp_path / "wide.pdf", story)
    (text,) = [s.text for s in open_document(pdf).segments()]
    assert [t for t in text.split("\n") if " | " in t] == [line(r) for r in rows]
    assert max(len(line(r)) for r in rows) > len(sentence) / 3  # rows wider than the prose lines
    assert sentence in text


def test_kb_ingest_and_query_show_the_row_under_its_header(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The user's path: ``kb ingest`` a PDF spec sheet, ``kb query`` a row's question (bundled minilm embedder)."""
    import json

    from core.cli import main

    pdf = build(tmp_path / "kettles.pdf", spec_story(ROWS))
    assert main(["kb", "ingest", "--kb", "specs", "--embedder", "minilm", str(pdf)]) == 0
    capsys.readouterr()
    assert main(["kb", "query", "--kb", "specs", "--json", "What is the power rating of the BW-170?"]) == 0
    hits = json.loads(capsys.readouterr().out.splitlines()[0])["hits"]
    best = next(h for h in hits if line(ROWS[6]) in h["text"])
    assert best["page"] == 1 and best["text"].split("\n")[0] == line(HEADER)


def test_a_new_table_at_the_top_of_a_page_keeps_its_own_header(tmp_path: Path) -> None:
    from reportlab.platypus import PageBreak

    widths = [80, 90, 80]
    first = [["Model", "Power rating", "Price"], *[[r[0], r[1], r[5]] for r in ROWS[:5]]]
    second = [
        ["Part", "Material", "Weight"],
        ["Lid", "glass", "120 g"],
        ["Filter", "nylon", "8 g"],
        ["Base", "steel", "300 g"],
    ]
    tables = [table(rows, widths=widths) for rows in (first, second)]  # the same columns on both pages
    pdf = build(tmp_path / "two.pdf", [tables[0], PageBreak(), tables[1]])
    pages = [[t for t in s.text.split("\n") if " | " in t] for s in open_document(pdf).segments()]
    assert pages == [[line(r) for r in first], [line(r) for r in second]]
