"""Loaders for PDF (pypdf text layer, 1-based pages), DOCX (python-docx paragraphs and tables) and HTML (bs4).

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
    """One segment per page with text; pages without a text layer become warnings, all of them a LoaderError."""
    with open(doc.path, "rb") as fh:
        head = fh.read(1024)
    reader = _pdf_reader(doc.path, doc.name, head)
    empty: list[int] = []
    garbled = 0
    for number, page in enumerate(reader.pages, start=1):
        try:
            text = page.extract_text() or ""
        except Exception as exc:  # noqa: BLE001 - one broken page must not stop the others
            doc.warnings.append(f"page {number} of {doc.name} could not be read ({exc}); it is skipped")
            garbled += 1
            continue
        text = join_cjk_wraps(_tidy(text))
        if text.strip() and plausibility(text) < 0.5:
            garbled += 1
            doc.warnings.append(
                f"page {number} of {doc.name} has a text layer that does not decode to readable text (a font "
                "without a Unicode map?); it is skipped: run OCR on the file to make it searchable"
            )
        elif text.strip():
            yield Segment(text, number, 0)
        else:
            empty.append(number)
    if len(empty) + garbled >= doc.pages:
        what = "no text layer" if not garbled else "no readable text layer"
        raise LoaderError(
            f"{doc.name} has {what} on any of its {doc.pages} page(s) (scanned images?); "
            "run OCR on it (for example ocrmypdf) and add the result"
        )
    for number in empty:
        doc.warnings.append(f"page {number} has no text layer (scanned image?); its text is not searchable")


def join_cjk_wraps(text: str) -> str:
    """Undo PDF line wrapping inside Chinese sentences: a full-width line ending in a CJK character and followed
    by one starting with a CJK character is joined without a break (Chinese has no spaces between words, so the
    break would split a word for search). Short lines such as headings keep their break."""
    lines = text.split("\n")
    widest = max((len(line) for line in lines), default=0)
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
