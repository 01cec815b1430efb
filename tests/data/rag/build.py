"""Build the generated files of the RAG evaluation set from ``sources/`` into ``docs/``.

Run with ``.venv/bin/python tests/data/rag/build.py``; the outputs are committed, so tests and benches do not
need to run this. Text sources are UTF-8; a line holding only ``\\f`` starts a new PDF page.

- ``qinglan_tea_gbk.txt``: GBK;  ``haifeng_museum_big5.txt``: Big5;  ``qingshi_bridge_utf16.txt``: UTF-16 + BOM
- ``nimbus_handbook.pdf`` (English, 5 pages) and ``xinghe_handbook_zh.pdf`` (Chinese, 4 pages, CID font
  STSong-Light, which pypdf extracts correctly)
- ``orbit_kettle_spec.docx``: paragraphs and a table;  ``wetland_park_zh.docx``: a longer Chinese report
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCES, DOCS = HERE / "sources", HERE / "docs"
ENCODED = {"qinglan_tea_gbk.txt": "gbk", "haifeng_museum_big5.txt": "big5", "qingshi_bridge_utf16.txt": "utf-16"}
PDFS = {"nimbus_handbook.txt": "Helvetica", "xinghe_handbook_zh.txt": "STSong-Light"}


def write_pdf(source: Path, target: Path, font: str) -> None:
    """One PDF page per ``\\f``-separated part; lines wrapped to the page width."""
    from reportlab.lib.pagesizes import A4
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont
    from reportlab.pdfgen import canvas

    if font == "STSong-Light":
        pdfmetrics.registerFont(UnicodeCIDFont(font))
    pages = source.read_text(encoding="utf-8").split("\\f\n")
    pdf = canvas.Canvas(str(target), pagesize=A4, invariant=1)
    width, height = A4
    for page in pages:
        pdf.setFont(font, 11)
        y = height - 60
        for paragraph in page.strip().split("\n"):
            for line in _wrap(paragraph, font, width - 120) or [""]:
                pdf.drawString(60, y, line)
                y -= 16
            y -= 6
        pdf.showPage()
    pdf.save()


def _wrap(text: str, font: str, width: float) -> list[str]:
    """Lines that fit ``width``: at spaces for Latin text, between any two characters for Chinese."""
    from reportlab.lib.utils import simpleSplit
    from reportlab.pdfbase.pdfmetrics import stringWidth

    if font != "STSong-Light":
        return simpleSplit(text, font, 11, width)
    lines, line = [], ""
    for ch in text:
        if stringWidth(line + ch, font, 11) > width:
            lines.append(line)
            line = ""
        line += ch
    return lines + [line] if line else lines


def write_docx(target: Path) -> None:
    """The Orbit kettle product sheet: headings, paragraphs and a specification table."""
    import docx

    document = docx.Document()
    document.add_heading("Orbit K2 Smart Kettle - product sheet", 1)
    document.add_paragraph(
        "The Orbit K2 is a 1.5 litre electric kettle with a brushed steel body and a glass window. "
        "It was designed in Gothenburg by the studio Lind & Ek and went on sale in September 2022."
    )
    document.add_paragraph(
        "Five temperature presets (40, 70, 80, 90 and 100 degrees Celsius) make it suitable for baby formula, "
        "green tea and coffee. The keep-warm mode holds the chosen temperature for up to 45 minutes."
    )
    table = document.add_table(rows=1, cols=2)
    table.rows[0].cells[0].text, table.rows[0].cells[1].text = "Property", "Value"
    for key, value in [
        ("Capacity", "1.5 litres"),
        ("Power", "2200 watts"),
        ("Boil time for a full kettle", "about 4 minutes"),
        ("Weight", "1.1 kg"),
        ("Warranty", "3 years"),
    ]:
        row = table.add_row()
        row.cells[0].text, row.cells[1].text = key, value
    document.add_paragraph("The base unit has a 75 cm cable and can be descaled with citric acid once a month.")
    document.core_properties.author = "Inkstone tests"
    document.save(str(target))


def write_text_docx(source: Path, target: Path) -> None:
    """One DOCX paragraph per source line."""
    import docx

    document = docx.Document()
    for line in source.read_text(encoding="utf-8").splitlines():
        document.add_paragraph(line)
    document.core_properties.author = "Inkstone tests"
    document.save(str(target))


def main() -> None:
    """Write every generated file into docs/."""
    for name, encoding in ENCODED.items():
        (DOCS / name).write_bytes((SOURCES / name).read_text(encoding="utf-8").encode(encoding))
    for name, font in PDFS.items():
        write_pdf(SOURCES / name, DOCS / name.replace(".txt", ".pdf"), font)
    write_docx(DOCS / "orbit_kettle_spec.docx")
    write_text_docx(SOURCES / "wetland_park_zh.txt", DOCS / "wetland_park_zh.docx")


if __name__ == "__main__":
    main()
