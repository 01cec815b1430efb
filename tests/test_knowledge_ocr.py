"""OCR of scanned documents through the service the app uses (``KnowledgeService``, real Chroma folder, the fake
hashed embedder, the real RapidOCR engine with the models from its wheel): text rendered on a turned, noisy page,
saved as PNG and as an image-only PDF, is found by a query with its page and the OCR mark; a PDF with a text
layer on one page and a scan on the other reads each the right way; progress counts the OCR'd pages; and every
kind of bad picture (corrupt, cut off, a decompression bomb, SVG, a 500-frame GIF, a picture named .txt, a scanned
page without text) gets a message naming the file and the problem while the other files of the upload go in and
nothing half-stored stays behind. The OCR engine is built once per process (``knowledge.ocr.engine``).
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from core.config import load_settings
from core.history.export import source_label
from core.kb import IngestProgress, KnowledgeService
from core.kb.naming import QueryHit
from tests.knowledge_fakes import FakeEmbedder
from tests.ocr_pages import CHINESE, ENGLISH, cjk_font, font, png_header_only, render, save_pdf

EMBEDDER = "fake-64"


@pytest.fixture
def service(home: Path) -> KnowledgeService:
    svc = KnowledgeService.open(load_settings())
    svc.handle.get().register_embedder(FakeEmbedder())
    svc.create("scans", EMBEDDER)
    yield svc
    svc.close()


def png_bytes(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def test_a_scanned_png_and_pdf_are_found_with_page_and_ocr_mark(service: KnowledgeService, tmp_path: Path) -> None:
    notice = render(ENGLISH)
    other = render(["Beekeeping log for the orchard", "The hives by the fence were opened on 3 May."], seed=1)
    pdf = save_pdf(tmp_path / "scan.pdf", [other, notice])
    updates: list[IngestProgress] = []
    report = service.ingest_uploads("scans", [("notice.png", png_bytes(notice)), ("scan.pdf", pdf.read_bytes())],
                                    progress=updates.append)  # fmt: skip
    assert [(r.name, r.status, r.ocr_pages) for r in report.results] == [("notice.png", "added", 1),
                                                                        ("scan.pdf", "added", 2)]  # fmt: skip
    hits = service.query(service.resolve("scans"), "When does the pear harvest begin?", k=4)
    by_name: dict[str, QueryHit] = {}
    for hit in hits:  # the best hit of each file
        by_name.setdefault(hit.source, hit)
    assert "12 September" in by_name["notice.png"].text and "Pickers meet" in by_name["notice.png"].text
    assert by_name["notice.png"].page is None and by_name["notice.png"].ocr
    assert by_name["scan.pdf"].page == 2 and by_name["scan.pdf"].ocr  # the notice is the PDF's second page
    assert by_name["scan.pdf"].where == "scan.pdf, p. 2 (OCR)"
    assert by_name["scan.pdf"].to_dict()["ocr"] is True
    assert source_label({"source": "scan.pdf", "page": 2, "ocr": True}, 1) == "[1] scan.pdf, p. 2 (OCR)"
    hives = service.query(service.resolve("scans"), "When were the hives opened?", k=1)[0]
    assert (hives.source, hives.page, hives.ocr) == ("scan.pdf", 1, True) and "3 May" in hives.text
    # the progress bar moved page by page through the scan
    pdf_pages = [(u.pages_done, u.pages_total, u.ocr_pages) for u in updates if u.name == "scan.pdf" and u.ocr_pages]
    assert pdf_pages[:2] == [(1, 2, 1), (2, 2, 2)]
    fractions = [u.fraction for u in updates]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0


@pytest.mark.skipif(cjk_font() is None, reason="no CJK font installed (fonts-noto-cjk) to render a Chinese page")
def test_a_chinese_scan_is_read_and_found(service: KnowledgeService, tmp_path: Path) -> None:
    page = render(CHINESE, cjk=True, rotate=-1.0, seed=2)
    path = tmp_path / "通知.jpg"
    page.convert("RGB").save(path, "JPEG", quality=85)
    report = service.ingest("scans", [path])
    assert report.results[0].status == "added", report.results[0]
    hit = service.query(service.resolve("scans"), "梨子什么时候开始采摘？", k=1)[0]
    assert hit.source == "通知.jpg" and hit.ocr and hit.where == "通知.jpg (OCR)"
    assert "九月十二日开始" in hit.text and "二号仓库" in hit.text  # (门 of 北门 may come out as 内)


def test_a_pdf_with_a_text_layer_and_a_scanned_page_reads_each_its_own_way(
    service: KnowledgeService, tmp_path: Path
) -> None:
    from reportlab.lib.utils import ImageReader
    from reportlab.pdfgen import canvas

    path = tmp_path / "mixed.pdf"
    pdf = canvas.Canvas(str(path), pagesize=(600, 300))
    pdf.drawString(40, 250, "Typed page: the cider press is cleaned every Friday.")
    pdf.showPage()
    scan = render(ENGLISH, seed=3)
    pdf.drawImage(ImageReader(scan.convert("RGB")), 0, 0, width=600, height=600 * scan.height / scan.width)
    pdf.showPage()
    pdf.save()
    [result] = service.ingest("scans", [path]).results
    assert (result.status, result.pages, result.ocr_pages, result.warnings) == ("added", 2, 1, ())
    typed = service.query(service.resolve("scans"), "When is the cider press cleaned?", k=1)[0]
    assert (typed.page, typed.ocr, typed.where) == (1, False, "mixed.pdf, p. 1")
    scanned = service.query(service.resolve("scans"), "Where do pickers meet?", k=1)[0]
    assert (scanned.page, scanned.ocr) == (2, True) and "north gate" in scanned.text


def gif_with_frames(frames: int) -> bytes:
    first = Image.new("L", (520, 90), 255)
    ImageDraw.Draw(first).text((20, 25), "Lantern festival on Friday", font=font(32), fill=0)
    pictures = [first]
    for i in range(1, frames):  # every frame differs, so Pillow keeps them all
        frame = first.copy()
        frame.putpixel((i % 520, 80 + i // 520), 0)
        pictures.append(frame)
    out = io.BytesIO()
    first.save(out, "GIF", save_all=True, append_images=pictures[1:], duration=20, loop=0)
    return out.getvalue()


def test_bad_pictures_each_get_a_clear_message_and_the_rest_goes_in(service: KnowledgeService) -> None:
    good = png_bytes(render(ENGLISH[:2], seed=4))
    blank = io.BytesIO()
    Image.new("RGB", (800, 600), "white").save(blank, "PDF")
    uploads = [
        ("corrupt.png", b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8),
        ("cut.png", good[: len(good) * 2 // 3]),
        ("bomb.png", png_header_only(20_000, 20_000)),
        ("drawing.svg", b'<svg xmlns="http://www.w3.org/2000/svg"><text x="1" y="9">Hi</text></svg>'),
        ("photo.txt", good),
        ("blank-scan.pdf", blank.getvalue()),
        ("festival.gif", gif_with_frames(500)),
        ("notes.txt", b"The orchard gate is locked at dusk."),
    ]
    report = service.ingest_uploads("scans", uploads)
    results = {r.name: r for r in report.results}
    assert report.aborted is None and len(results) == len(uploads)
    expected = {
        "corrupt.png": "not a picture that can be read",
        "cut.png": "damaged or cut off",
        "bomb.png": "400 million pixels",
        "drawing.svg": "SVG is a drawing",
        "blank-scan.pdf": "OCR found no text",
    }
    for name, words in expected.items():
        assert results[name].status == "error", results[name]
        assert name in results[name].detail and words in results[name].detail, results[name].detail
    assert "it was not decoded" in results["bomb.png"].detail
    assert results["photo.txt"].status == "error" and "photo.txt" in results["photo.txt"].detail
    assert results["notes.txt"].status == "added"
    gif = results["festival.gif"]
    assert gif.status == "added" and gif.warnings == ("festival.gif is an animated GIF: only its first frame was read",)
    # nothing half stored: the collection holds exactly the chunks of the ready documents
    docs = service.documents("scans")
    assert {d.name for d in docs if d.status == "ready"} == {"notes.txt", "festival.gif"}
    kb = service.get("scans")
    assert service.handle.get().count(kb.collection) == sum(d.chunks for d in docs if d.status == "ready")
    hit = service.query([kb], "When is the lantern festival?", k=1)[0]
    assert hit.where == "festival.gif (OCR)" and "Friday" in hit.text


def test_the_size_of_a_picture_is_checked_before_it_is_decoded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import ImageFile

    from knowledge.errors import LoaderError
    from knowledge.loaders import open_document

    path = tmp_path / "huge.png"
    path.write_bytes(png_header_only(20_000, 20_000))

    def no_decoding(self: ImageFile.ImageFile) -> None:
        raise AssertionError("the picture was decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    with pytest.raises(LoaderError, match=r"huge\.png is 400 million pixels, over the 50 million OCR reads"):
        open_document(path)
    path.write_bytes(png_header_only(9_000, 9_000))  # over Inkstone's limit, under Pillow's
    with pytest.raises(LoaderError, match=r"huge\.png is 9000 x 9000 pixels \(81 million\), .* not decoded"):
        open_document(path)
