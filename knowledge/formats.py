"""Loaders for PDF (pypdf text layer, 1-based pages, tables as ``cell | cell`` rows; pages without one are
OCR'd), images (OCR), DOCX (python-docx paragraphs and tables) and HTML (bs4).

Imports only ``knowledge.documents`` for the data types (never ``knowledge.loaders``, which imports this).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path

from knowledge.charset import detect_encoding, plausibility
from knowledge.documents import Document, Segment
from knowledge.errors import LoaderError
from knowledge.pdf_tables import Table, tabulate_page

_BLANK_RUNS = re.compile(r"\n[ \t]*(?:\n[ \t]*)+")
_HTML_DROP = ("script", "style", "noscript", "template", "svg", "head")
_HTML_BLOCKS = (
    "p", "div", "li", "ul", "ol", "h1", "h2", "h3", "h4", "h5", "h6", "tr", "table", "section", "article",
    "header", "footer", "aside", "nav", "blockquote", "pre", "dt", "dd", "figcaption", "main", "form", "hr",
)
_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.IGNORECASE)


def open_pdf(path: Path, name: str, sample: bytes) -> Document:
    """Open a PDF, decrypting with the empty password if needed; LoaderError if it is not a readable PDF."""
    reader = _pdf_reader(path, name, sample)
    try:
        pages = len(reader.pages)
    except Exception as exc:  # noqa: BLE001 - pypdf raises many types for damaged files
        raise LoaderError(f"{name}: the PDF is damaged ({exc}); re-export or repair it") from exc
    if pages == 0:
        raise LoaderError(f"{name}: the PDF has no pages; there is nothing to index")
    return Document(path, name, "pdf", pages=pages, reader=pdf_segments)


def _pdf_reader(path: Path, name: str, sample: bytes):  # -> pypdf.PdfReader
    """A PdfReader over ``path`` that is ready to extract text."""
    if b"%PDF" not in sample[:1024]:
        raise LoaderError(f"{name} is not a PDF (no %PDF header); rename it to its real type")
    import pypdf

    logging.getLogger("pypdf").setLevel(logging.ERROR)
    try:
        reader = pypdf.PdfReader(str(path))
    except Exception as exc:  # noqa: BLE001 - pypdf raises many types for damaged files
        raise LoaderError(f"{name}: the PDF cannot be parsed ({exc}); re-export or repair it") from exc
    if reader.is_encrypted:
        try:
            opened = reader.decrypt("")
        except Exception as exc:  # noqa: BLE001 - e.g. DependencyError for AES without `cryptography`
            raise LoaderError(
                f"{name} is encrypted and cannot be opened here ({exc}); save an unencrypted copy and add that"
            ) from exc
        if not opened:
            raise LoaderError(f"{name} is encrypted with a password; save an unencrypted copy and add that instead")
    return reader


def pdf_segments(doc: Document) -> Iterator[Segment]:
    """One segment per page with text, its tables as ``cell | cell`` rows under their header
    (``knowledge.pdf_tables``). A page without a text layer (a scan), or with one that does not decode to
    readable text, is read by OCR (its segment marked ``ocr``); a page OCR cannot read becomes a warning, and a
    file where no page gives text is a LoaderError that says why for each page."""
    with open(doc.path, "rb") as fh:
        head = fh.read(1024)
    reader = _pdf_reader(doc.path, doc.name, head)
    unread: list[str] = []  # why each page without text gave none
    table: Table | None = None  # the last table of the page before, which may go on over this page
    for number, page in enumerate(reader.pages, start=1):
        try:
            text = page.extract_text() or ""
        except Exception as exc:  # noqa: BLE001 - one broken page must not stop the others
            text, why, table = "", f"its text could not be extracted ({exc})", None
        else:
            text, table = _tables(text, page, table) if text.strip() else (text, None)
            text = join_cjk_wraps(_tidy(text))
            why = "it has no text layer"
        if text.strip() and plausibility(text) < 0.5:
            text, why = "", "its text layer does not decode to readable text (a font without a Unicode map?)"
        if text.strip():
            doc.page_done(number, False)
            yield Segment(text, number, 0)
            continue
        scanned = _ocr_page(page, number, doc, why)
        doc.page_done(number, True)
        if scanned is None:
            unread.append(f"page {number}")
        else:
            yield Segment(scanned, number, 0, ocr=True)
    if len(unread) >= doc.pages:
        problems = "; ".join(w for w in doc.warnings[-5:])
        raise LoaderError(
            f"{doc.name} has no text that could be read on any of its {doc.pages} page(s) ({problems}); "
            "check that it is the right file, or scan it again at 300 dpi"
        )


def _ocr_page(page, number: int, doc: Document, why: str) -> str | None:  # page: pypdf.PageObject
    """The OCR'd text of a page without usable text (``why``), or None with a warning that says why not."""
    from knowledge.ocr import OcrUnavailable, pdf_page_images, read_text

    before = len(doc.warnings)
    texts: list[str] = []
    pictures = 0
    try:
        for picture in pdf_page_images(page, number, doc.name, doc.warnings):
            pictures += 1
            read = read_text(picture)
            if read.text.strip():
                texts.append(read.text)
    except OcrUnavailable as exc:
        doc.warnings.append(f"page {number} of {doc.name}: {why}, and {exc}; its text is not searchable")
        return None
    except Exception as exc:  # noqa: BLE001 - OpenCV or ONNX Runtime failing on one odd picture skips that page only
        doc.warnings.append(f"page {number} of {doc.name}: {why}, and OCR failed on it ({type(exc).__name__}: {exc})")
        return None
    text = join_cjk_wraps(_tidy("\n\n".join(texts)))
    if text.strip():
        return text
    if pictures == 0 and len(doc.warnings) > before:  # its pictures were refused: those warnings say why
        doc.warnings.append(f"page {number} of {doc.name}: {why}, and none of its pictures could be OCR'd")
    elif pictures == 0:
        doc.warnings.append(f"page {number} of {doc.name}: {why}, and no picture to OCR (a blank page?); it is skipped")
    else:
        doc.warnings.append(
            f"page {number} of {doc.name}: {why}, and OCR found no text on it; it is skipped (a blank page, a "
            "drawing, or a scan too faint to read)"
        )
    return None


def open_image(path: Path, name: str) -> Document:
    """An image file to OCR (PNG, JPEG, WebP, BMP, GIF); its header is checked (type, size) before any decoding."""
    from knowledge.ocr import check_image

    _width, _height, fmt, frames = check_image(path, name)
    document = Document(path, name, "image", reader=image_segments)
    if frames > 1:
        document.warnings.append(f"{name} is an animated {fmt}: only its first frame was read")
    return document


def image_segments(doc: Document) -> Iterator[Segment]:
    """The OCR'd text of an image file, as one segment marked ``ocr``; LoaderError when it holds no text."""
    from knowledge.ocr import decode, read_text

    read = read_text(decode(doc.path, doc.name))
    doc.page_done(1, True)
    text = join_cjk_wraps(_tidy(read.text))
    if not text.strip():
        raise LoaderError(f"OCR found no text in {doc.name} (a photo or drawing, or text too small or faint to read)")
    yield Segment(text, None, 0, ocr=True)


def _tables(text: str, page, before: Table | None) -> tuple[str, Table | None]:  # page: pypdf.PageObject
    """``tabulate_page``, or the plain text when table detection fails on an odd page (never the file)."""
    try:
        return tabulate_page(text, page, before)
    except Exception:  # noqa: BLE001 - detection is a bonus; the page's plain text is still right
        return text, None


def join_cjk_wraps(text: str) -> str:
    """Undo PDF line wrapping inside Chinese sentences: a full-width line ending in a CJK character and followed
    by one starting with a CJK character is joined without a break (Chinese has no spaces between words, so the
    break would split a word for search). Short lines such as headings keep their break."""
    lines = text.split("\n")
    widest = max((len(line) for line in lines if " | " not in line), default=0)  # table rows are no measure
    out: list[str] = []
    previous = ""
    for line in lines:
        wrapped = (
            previous
            and line
            and len(previous) >= 0.8 * widest
            and _is_cjk(previous[-1])
            and previous[-1] not in _CJK_STOPS
            and _is_cjk(line[0])
            and " | " not in previous
            and " | " not in line  # table rows (``cell | cell``) keep their lines
        )
        if wrapped and out:
            out[-1] += line
        else:
            out.append(line)
        previous = line
    return "\n".join(out)


_CJK_STOPS = set("。！？；：」』）》")


def _is_cjk(ch: str) -> bool:
    cp = ord(ch)
    return 0x3000 <= cp <= 0x30FF or 0x3400 <= cp <= 0x9FFF or 0xF900 <= cp <= 0xFAFF or 0xFF00 <= cp <= 0xFFEF


def check_docx(path: Path, name: str, sample: bytes) -> Document:
    """A DOCX must be a zip archive that python-docx can open."""
    if not sample.startswith(b"PK"):
        raise LoaderError(f"{name} is not a .docx file (not a zip archive); rename it to its real type")
    _open_docx(path, name)
    return Document(path, name, "docx", reader=docx_segments)


def _open_docx(path: Path, name: str):  # -> docx.document.Document
    import docx

    try:
        return docx.Document(str(path))
    except Exception as exc:  # noqa: BLE001 - python-docx raises KeyError, BadZipFile, ValueError, ...
        raise LoaderError(
            f"{name} cannot be opened as a Word document ({type(exc).__name__}: {exc}); "
            "save it again as .docx (old .doc files are not supported)"
        ) from exc


def docx_segments(doc: Document) -> Iterator[Segment]:
    """Paragraphs and tables in document order (table cells joined by ' | ', one row per line)."""
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    document = _open_docx(doc.path, doc.name)
    parts: list[str] = []
    for block in document.iter_inner_content():
        if isinstance(block, Paragraph):
            parts.append(block.text)
        elif isinstance(block, Table):
            for row in block.rows:
                cells: list[str] = []
                for cell in row.cells:
                    value = cell.text.strip()
                    if not cells or cells[-1] != value:  # merged cells repeat their text
                        cells.append(value)
                parts.append(" | ".join(cells))
            parts.append("")
    text = _tidy("\n".join(parts))
    if not text.strip():
        raise LoaderError(f"{doc.name} has no text (images only?); there is nothing to index")
    yield Segment(text, None, 0)


def html_encoding(sample: bytes, name: str) -> str:
    """The HTML's charset: a BOM; else UTF-8 if the bytes are valid UTF-8 (pages saved as UTF-8 often still
    declare gb2312); else its <meta charset> if Python knows it and it decodes; else detection."""
    import codecs

    from knowledge.charset import decode_prefix

    if not sample.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) and decode_prefix(sample, "utf-8"):
        return "utf-8-sig" if sample.startswith(codecs.BOM_UTF8) else "utf-8"
    match = _META_CHARSET.search(sample[:4096])
    if match and not sample.startswith((codecs.BOM_UTF8, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        declared = match.group(1).decode("ascii", "replace").lower()
        if declared in {"gbk", "gb2312", "gb_2312-80"}:
            declared = "gb18030"
        try:
            codecs.lookup(declared)
            sample.decode(declared, errors="strict")
            return declared
        except (LookupError, UnicodeDecodeError):
            pass
    return detect_encoding(sample, name)


def html_segments(doc: Document) -> Iterator[Segment]:
    """Visible text of the page (no scripts, styles or head), block elements on their own lines, table rows as
    ``cell | cell`` lines."""
    from bs4 import BeautifulSoup

    markup = doc.path.read_text(encoding=doc.encoding or "utf-8", errors="replace")
    soup = BeautifulSoup(markup, "html.parser")
    title = soup.title.get_text(" ", strip=True) if soup.title else ""
    for tag in soup(_HTML_DROP):
        tag.decompose()
    for tag in soup.find_all(_is_hidden):
        tag.decompose()
    for tag in soup.find_all("br"):
        tag.replace_with("\n")
    for row in soup.find_all("tr"):  # one line per table row, cells joined by " | " (splitting keeps the header)
        cells = [cell.get_text(" ", strip=True) for cell in row.find_all(("td", "th"))]
        row.replace_with("\n" + " | ".join(cells) + "\n")
    for tag in soup.find_all(("td", "th")):
        tag.insert_after(" ")
    for tag in soup.find_all(_HTML_BLOCKS):
        tag.insert_before("\n")
        tag.insert_after("\n")
    body = soup.get_text()
    text = _tidy(f"{title}\n\n{body}" if title else body)
    if not text.strip():
        raise LoaderError(f"{doc.name} has no visible text; there is nothing to index")
    yield Segment(text, None, 0)


def _is_hidden(tag) -> bool:  # tag: bs4.Tag
    """An element the page hides itself (``hidden`` attribute or inline ``display: none``)."""
    style = (tag.get("style") or "").replace(" ", "").lower()
    return tag.has_attr("hidden") or "display:none" in style or tag.get("aria-hidden") == "true"


def _tidy(text: str) -> str:
    """Strip spaces around lines and collapse runs of blank lines to one blank line."""
    text = "\n".join(line.strip() for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n"))
    return _BLANK_RUNS.sub("\n\n", text).strip()
