"""Loaders: every format and text encoding gives the exact text (and PDF page numbers); every bad file is refused.

Real files built in the test: Chinese text in UTF-8, GBK, GB18030, Big5 and UTF-16 with a BOM; PDFs made with
reportlab (multi-page, Chinese CID font, a page without text, image-only, password-protected); a DOCX with a
table; HTML with scripts and styles. Bad input: empty, whitespace, binary renamed .txt, unsupported suffix.
"""

from __future__ import annotations

import codecs
import re
from pathlib import Path

import pytest

from knowledge import SUPPORTED_SUFFIXES, LoaderError, file_sha256
from knowledge.loaders import TEXT_BLOCK_CHARS, open_document

ZH_SIMPLIFIED = (
    "青岚茶园位于浙江省云溪县，始建于1958年。茶园海拔在六百米到九百米之间，常年云雾缭绕。"
    "每年清明前十天左右开始采摘，一名熟练的采茶工一天大约能采两斤鲜叶。"
)
ZH_TRADITIONAL = "海風博物館位於臺南安平港邊，由一座舊海關倉庫改建而成。全票一百五十元，學生票八十元。"


def text_of(path: Path) -> str:
    """All segment texts of ``path`` joined."""
    return "".join(s.text for s in open_document(path).segments())


def squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


@pytest.mark.parametrize(
    ("encoding", "text"),
    [
        ("utf-8", ZH_SIMPLIFIED),
        ("utf-8-sig", ZH_SIMPLIFIED),
        ("gbk", ZH_SIMPLIFIED),
        ("gb18030", ZH_SIMPLIFIED + "𠀀"),  # a character outside GBK
        ("big5", ZH_TRADITIONAL),
        ("utf-16", ZH_SIMPLIFIED),  # BOM, platform byte order
        ("utf-16-be", ZH_TRADITIONAL),  # with an explicit big-endian BOM below
    ],
)
def test_chinese_text_in_every_encoding_reads_back_exactly(tmp_path: Path, encoding: str, text: str) -> None:
    data = text.encode(encoding)
    if encoding == "utf-16-be":
        data = codecs.BOM_UTF16_BE + data
    path = tmp_path / "doc.txt"
    path.write_bytes(data)
    assert text_of(path) == text


@pytest.mark.parametrize(
    ("encoding", "text"),
    [("gbk", "你好，世界。"), ("gbk", "台北"), ("big5", "台北"), ("gbk", "资料库说明"), ("big5", "資料庫說明")],
)
def test_short_chinese_texts_are_not_misdetected(tmp_path: Path, encoding: str, text: str) -> None:
    """charset detectors alone read these as cp949/Big5/johab; the plausibility check must still get them right."""
    path = tmp_path / "short.md"
    path.write_bytes(text.encode(encoding))
    assert text_of(path) == text


def test_latin1_text_is_decoded(tmp_path: Path) -> None:
    text = "Café crème brûlée, déjà vu à Noël. " * 20
    path = tmp_path / "fr.txt"
    path.write_bytes(text.encode("cp1252"))
    assert text_of(path) == text


def test_big_text_file_is_streamed_in_bounded_segments_with_offsets(tmp_path: Path) -> None:
    paragraph = "Line of the big file with some words in it.\n" * 40 + "\n"
    text = paragraph * 400  # about 700k characters
    path = tmp_path / "big.txt"
    path.write_text(text, encoding="utf-8")
    segments = list(open_document(path).segments())
    assert len(segments) >= 3
    assert all(len(s.text) <= TEXT_BLOCK_CHARS * 2 for s in segments)
    assert "".join(s.text for s in segments) == text
    for segment in segments:
        assert text[segment.offset : segment.offset + len(segment.text)] == segment.text
        assert segment.page is None


def test_binary_file_renamed_txt_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "photo.txt"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 20)
    with pytest.raises(LoaderError, match="photo.txt.*binary"):
        open_document(path)


@pytest.mark.parametrize("content", [b"", b"   \n\n\t  \n"])
def test_empty_or_blank_file_is_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "empty.txt"
    path.write_bytes(content)
    with pytest.raises(LoaderError, match="empty"):
        open_document(path)


def test_unsupported_suffix_is_refused_with_the_supported_list(tmp_path: Path) -> None:
    path = tmp_path / "sheet.xlsx"
    path.write_bytes(b"PK\x03\x04 not really")
    with pytest.raises(LoaderError, match=r"unsupported file type '\.xlsx'.*\.pdf"):
        open_document(path)
    assert ".docx" in SUPPORTED_SUFFIXES and ".htm" in SUPPORTED_SUFFIXES


def test_missing_file_is_a_loader_error(tmp_path: Path) -> None:
    with pytest.raises(LoaderError, match="no such file"):
        open_document(tmp_path / "gone.md")


def make_pdf(path: Path, pages: list[str | None], font: str = "Helvetica") -> None:
    """A PDF with one page per entry; None makes a page with only a drawn rectangle (no text layer)."""
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.cidfonts import UnicodeCIDFont
    from reportlab.pdfgen import canvas

    if font == "STSong-Light":
        pdfmetrics.registerFont(UnicodeCIDFont(font))
    pdf = canvas.Canvas(str(path))
    for text in pages:
        if text is None:
            pdf.rect(100, 100, 300, 300, fill=1)
        else:
            pdf.setFont(font, 12)
            for i, line in enumerate(text.split("\n")):
                pdf.drawString(60, 780 - 16 * i, line)
        pdf.showPage()
    pdf.save()


def test_pdf_pages_keep_their_numbers_and_a_textless_page_is_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "handbook.pdf"
    make_pdf(path, ["Page one: core hours.", None, "Page three: 27 days of holiday."])
    doc = open_document(path)
    segments = list(doc.segments())
    assert doc.pages == 3
    assert [(s.page, s.text) for s in segments] == [
        (1, "Page one: core hours."),
        (3, "Page three: 27 days of holiday."),
    ]
    assert doc.warnings == ["page 2 of handbook.pdf: it has no text layer, and no picture to OCR (a blank page?); "
                            "it is skipped"]  # a page with a scanned picture is OCR'd (tests/test_knowledge_ocr.py)


def test_chinese_pdf_text_is_extracted_correctly(tmp_path: Path) -> None:
    path = tmp_path / "zh.pdf"
    make_pdf(path, ["星河科技员工手册", "正式员工每年享有十五天带薪年假。"], font="STSong-Light")
    segments = list(open_document(path).segments())
    assert [(s.page, s.text) for s in segments] == [(1, "星河科技员工手册"), (2, "正式员工每年享有十五天带薪年假。")]


def test_pdf_without_text_or_pictures_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "scan.pdf"
    make_pdf(path, [None, None])
    with pytest.raises(LoaderError, match="scan.pdf has no text that could be read on any of its 2 page"):
        list(open_document(path).segments())


def encrypted_pdf(tmp_path: Path, user_password: str) -> Path:
    import pypdf

    plain = tmp_path / "plain.pdf"
    make_pdf(plain, ["Secret salary table."])
    writer = pypdf.PdfWriter(clone_from=str(plain))
    writer.encrypt(user_password=user_password, owner_password="owner", algorithm="RC4-128")
    path = tmp_path / "locked.pdf"
    with open(path, "wb") as fh:
        writer.write(fh)
    return path


def test_password_protected_pdf_is_refused(tmp_path: Path) -> None:
    with pytest.raises(LoaderError, match="locked.pdf is encrypted with a password"):
        open_document(encrypted_pdf(tmp_path, "s3cret"))


def test_pdf_encrypted_with_an_empty_user_password_opens(tmp_path: Path) -> None:
    assert text_of(encrypted_pdf(tmp_path, "")) == "Secret salary table."


def test_text_renamed_pdf_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "notes.pdf"
    path.write_text("just some notes", encoding="utf-8")
    with pytest.raises(LoaderError, match="notes.pdf is not a PDF"):
        open_document(path)


def test_docx_paragraphs_and_tables_in_order(tmp_path: Path) -> None:
    import docx

    document = docx.Document()
    document.add_paragraph("Orbit K2 kettle.")
    table = document.add_table(rows=2, cols=2)
    table.rows[0].cells[0].text, table.rows[0].cells[1].text = "Power", "2200 watts"
    table.rows[1].cells[0].text, table.rows[1].cells[1].text = "容量", "1.5升"
    document.add_paragraph("After the table.")
    path = tmp_path / "spec.docx"
    document.save(str(path))
    assert text_of(path) == "Orbit K2 kettle.\nPower | 2200 watts\n容量 | 1.5升\n\nAfter the table."


def test_broken_docx_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "broken.docx"
    path.write_bytes(b"PK\x03\x04" + b"\x00" * 100)
    with pytest.raises(LoaderError, match="broken.docx cannot be opened as a Word document"):
        open_document(path)


def test_html_text_without_scripts_styles_or_hidden_parts(tmp_path: Path) -> None:
    html = (
        "<html><head><title>Bakery</title><style>p{color:red}</style><script>var x='SECRET';</script></head>"
        "<body><h1>About</h1><p>We opened in <b>2009</b>.</p><div style='display: none'>HIDDEN</div>"
        "<script>document.write('ALSO SECRET')</script><p>Line<br>break</p></body></html>"
    )
    path = tmp_path / "page.html"
    path.write_text(html, encoding="utf-8")
    text = text_of(path)
    assert "We opened in 2009." in text
    assert "About" in text and "Bakery" in text and "Line\nbreak" in text
    assert "SECRET" not in text and "color" not in text and "HIDDEN" not in text


def test_gbk_html_with_meta_charset(tmp_path: Path) -> None:
    html = f"<html><head><meta charset='gb2312'></head><body><p>{ZH_SIMPLIFIED}</p></body></html>"
    path = tmp_path / "zh.htm"
    path.write_bytes(html.encode("gbk"))
    assert text_of(path) == ZH_SIMPLIFIED


def test_file_sha256_matches_hashlib(tmp_path: Path) -> None:
    import hashlib

    path = tmp_path / "x.bin"
    data = bytes(range(256)) * 9000
    path.write_bytes(data)
    assert file_sha256(path) == hashlib.sha256(data).hexdigest()


def test_the_evaluation_documents_all_load(tmp_path: Path) -> None:
    docs = Path(__file__).parent / "data" / "rag" / "docs"
    found = {p.name: squash(text_of(p)) for p in docs.iterdir()}
    assert "青岚茶园位于浙江省云溪县的青岚山南坡" in found["qinglan_tea_gbk.txt"]
    assert "海風博物館位於臺南安平港邊" in found["haifeng_museum_big5.txt"]
    assert "青石桥是云溪县城里最古老的石拱桥" in found["qingshi_bridge_utf16.txt"]
    assert "如对手册内容有疑问，请联系人力资源部。" in found["xinghe_handbook_zh.pdf"]


def test_pdf_page_whose_text_layer_is_garbage_is_skipped_with_a_warning(tmp_path: Path) -> None:
    """A text layer that extracts to control characters (a font without a Unicode map) is not indexed as text."""
    path = tmp_path / "garbled.pdf"
    garbage = "".join(chr(i) for i in range(1, 31) if i not in (9, 10, 12, 13)) * 3
    make_pdf(path, [garbage, "Readable page two."])
    doc = open_document(path)
    assert [(s.page, s.text) for s in doc.segments()] == [(2, "Readable page two.")]
    assert len(doc.warnings) == 1 and "page 1 of garbled.pdf" in doc.warnings[0] and "OCR" in doc.warnings[0]
    only_garbage = tmp_path / "only.pdf"
    make_pdf(only_garbage, [garbage])
    with pytest.raises(LoaderError, match="text layer does not decode to readable text"):
        list(open_document(only_garbage).segments())


def test_utf8_html_that_declares_gb2312_is_read_as_utf8(tmp_path: Path) -> None:
    html = f"<html><head><meta charset='gb2312'></head><body><p>{ZH_SIMPLIFIED}</p></body></html>"
    path = tmp_path / "mislabeled.html"
    path.write_bytes(html.encode("utf-8"))
    assert text_of(path) == ZH_SIMPLIFIED


STREAM_SCRIPT = r"""
import sys
from pathlib import Path
from knowledge.loaders import open_document
from knowledge.splitting import split_segments

def rss(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) * 1024

path = Path(sys.argv[1])
with open(path, "w", encoding="gb18030") as fh:
    for i in range(int(sys.argv[2])):
        fh.write(f"第{i}段：青岚茶园的茶农每天清晨上山采茶，一天大约能采两斤鲜叶。Line {i}.\n\n")
before = rss("VmRSS")
chunks = chars = 0
for chunk in split_segments(open_document(path).segments(), 500, 80):
    chunks += 1
    chars = max(chars, chunk.end)
print(path.stat().st_size, chunks, chars, rss("VmHWM") - before)
"""


@pytest.mark.slow
def test_a_large_text_file_streams_in_bounded_memory(tmp_path: Path) -> None:
    """A 64 MB GB18030 file is loaded and split while the process grows by far less than the file's size."""
    import subprocess
    import sys

    if not Path("/proc/self/status").exists():
        pytest.skip("needs /proc to read the process's peak memory")
    out = subprocess.run(
        [sys.executable, "-c", STREAM_SCRIPT, str(tmp_path / "big.txt"), "850000"],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[1],
    ).stdout.split()
    size, chunks, last_offset, growth = (int(x) for x in out)
    assert size > 60_000_000
    assert chunks > 50_000 and last_offset > 20_000_000
    assert growth < 40_000_000, f"peak memory grew by {growth / 1e6:.0f} MB while streaming a {size / 1e6:.0f} MB file"
