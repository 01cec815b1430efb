"""OCR of scanned PDF pages and image files, offline: RapidOCR with the PP-OCRv4 Chinese/English ONNX models that
ship inside the ``rapidocr-onnxruntime`` wheel (nothing is downloaded, ever).

Images are checked before anything is decoded: Pillow reads only the header, and a picture of more than
``MAX_PIXELS`` pixels (a decompression bomb, or a scan at an absurd resolution) is refused with its size in the
message. The engine is built once per process (``engine()``) and serialized by a lock; its ONNX Runtime sessions
use at most ``OCR_THREADS`` intra-op threads, one inter-op thread, and threads that sleep instead of spinning
when idle, so OCR in an ingestion leaves no busy thread team beside a chat that is decoding on the same cores.
"""

from __future__ import annotations

import os
import re
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from knowledge.errors import LoaderError

if TYPE_CHECKING:
    from PIL.Image import Image

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif"})
IMAGE_FORMATS = frozenset({"PNG", "JPEG", "MPO", "WEBP", "BMP", "DIB", "GIF"})  # MPO: JPEGs from some cameras
MAX_PIXELS = 50_000_000  # an A4 page at 600 dpi is 35 million; Pillow's own bomb limit is 89 million
MIN_SIDE = 8  # smaller pictures hold no readable text (icons, spacers)
MAX_IMAGES_PER_PAGE = 16  # a scanned page holds one or a few; hundreds are tiles of a drawing, not text
OCR_THREADS = max(1, min(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1, 8))
MAX_SIDE = 4096  # pixels: larger pages are shrunk to this before their lines are read
DETECT_SIDE = 1600  # pixels: the text detector runs on a copy at most this long
TARGET_LINE_HEIGHT = 56  # pixels: small print is enlarged to this line height before recognition (``_upscale``)

_lock = threading.Lock()
_engine: Any = None


class OcrUnavailable(LoaderError):
    """The OCR engine cannot be loaded (rapidocr-onnxruntime or OpenCV missing or broken)."""


@dataclass(frozen=True)
class OcrText:
    """What OCR read from one picture: its lines in reading order joined into text, and their mean confidence."""

    text: str
    lines: int
    score: float


def engine() -> Any:  # -> rapidocr_onnxruntime.RapidOCR
    """The process's OCR engine, built on first use (about a second); OcrUnavailable naming the fix."""
    global _engine
    with _lock:
        if _engine is None:
            os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")  # before ONNX Runtime starts: no 1DS telemetry
            try:
                import cv2
                from rapidocr_onnxruntime import RapidOCR
            except ImportError as exc:  # also OpenCV without its libGL (a server without graphics libraries)
                raise OcrUnavailable(
                    f"OCR is not available ({exc}): install it with `pip install rapidocr-onnxruntime` (on a server "
                    "without graphics libraries also `apt install libgl1`, or use opencv-python-headless)"
                ) from exc
            cv2.setNumThreads(1)  # resizes and crops are small; no second thread pool beside ONNX Runtime's
            _sleeping_threads()
            # Text lines are cut from the page at up to MAX_SIDE pixels (RapidOCR's default, 2000, shrinks a 300 dpi
            # A4 scan to 57% and its print below what the recognizer reads well); the detector looks at a copy
            # whose longer side is at most DETECT_SIDE (its default, "shorter side at least 736", blows a wide
            # strip of text up to several megapixels).
            # No line-orientation classifier: on clean pages it turned good lines upside down (4 of 36 lines of a
            # 300 dpi A4 page came out as garbage with it, none without), and it costs time.
            _engine = RapidOCR(intra_op_num_threads=OCR_THREADS, inter_op_num_threads=1, max_side_len=MAX_SIDE,
                               use_cls=False, det_limit_type="max", det_limit_side_len=DETECT_SIDE)  # fmt: skip
        return _engine


def _sleeping_threads() -> None:
    """Make RapidOCR's ONNX Runtime sessions park idle threads instead of spinning (RapidOCR has no option)."""
    try:
        from rapidocr_onnxruntime.utils import infer_engine

        session = infer_engine.OrtInferSession
        if getattr(session, "_inkstone_no_spin", False):
            return
        build = session._init_sess_opts
    except (ImportError, AttributeError):  # another RapidOCR layout: keep its defaults
        return

    def options(config: dict) -> Any:
        opts = build(config)
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.add_session_config_entry("session.inter_op.allow_spinning", "0")
        return opts

    session._init_sess_opts = staticmethod(options)
    session._inkstone_no_spin = True


def read_text(image: Image) -> OcrText:
    """OCR one Pillow image (any mode): lines top to bottom, boxes on one line joined by a space. A first pass
    finds the text lines; a page of small print is enlarged before the lines are read (``_upscale``)."""
    rgb = _flatten(image)
    ocr = engine()
    with _lock:  # one page at a time: the sessions already use every core
        boxes_only, _elapsed = ocr(_bgr(rgb), use_cls=False, use_rec=False)
        if not boxes_only:
            return OcrText("", 0, 0.0)
        heights = sorted(_box_height(box) for box in boxes_only)
        scale = _upscale(heights[len(heights) // 2], rgb.width * rgb.height, max(rgb.size))
        if scale > 1.0:
            rgb = rgb.resize((round(rgb.width * scale), round(rgb.height * scale)), _lanczos())
        result, _elapsed = ocr(_bgr(rgb), use_cls=False)
    if not result:
        return OcrText("", 0, 0.0)
    boxes = [(box, str(text), float(score)) for box, text, score in result if str(text).strip()]
    return OcrText(_reading_order(boxes), len(boxes), sum(s for _, _, s in boxes) / max(len(boxes), 1))


def _upscale(line_height: float, pixels: int, longest: int) -> float:
    """How much to enlarge a page whose text lines are ``line_height`` pixels tall (detection box, padding
    included): the recognizer drops the spaces between English words on lines under ~50 pixels (measured: 20-40
    pixel lines lose most of them, 56-pixel lines none), so small print is enlarged to 56, at most 3 times and
    to at most MAX_PIXELS and MAX_SIDE."""
    if line_height <= 0 or line_height >= TARGET_LINE_HEIGHT - 4:
        return 1.0
    scale = min(TARGET_LINE_HEIGHT / line_height, 3.0, (MAX_PIXELS / max(pixels, 1)) ** 0.5, MAX_SIDE / longest)
    return scale if scale > 1.05 else 1.0


def _box_height(box: Any) -> float:
    """A detected line's height across the line (its left and right edges), not its upright extent: a line on a
    page turned 1.2 degrees spans 27 more pixels upright over 1,300 pixels of width."""
    (x0, y0), (x1, y1), (x2, y2), (x3, y3) = [(float(p[0]), float(p[1])) for p in box]
    return (((x3 - x0) ** 2 + (y3 - y0) ** 2) ** 0.5 + ((x2 - x1) ** 2 + (y2 - y1) ** 2) ** 0.5) / 2


def _bgr(rgb: Image) -> Any:  # -> numpy array, height x width x 3, BGR as OpenCV wants
    import numpy as np

    return np.ascontiguousarray(np.asarray(rgb)[:, :, ::-1])


def _lanczos() -> Any:
    from PIL import Image as PILImage

    return PILImage.Resampling.LANCZOS


def _flatten(image: Image) -> Image:
    """RGB on a white background (transparent PNGs, palettes, 16-bit greyscale)."""
    from PIL import Image as PILImage

    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = PILImage.new("RGBA", rgba.size, (255, 255, 255, 255))
        return PILImage.alpha_composite(white, rgba).convert("RGB")
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        import numpy as np

        values = np.asarray(image, dtype=np.float64)
        span = float(values.max() - values.min()) or 1.0
        return PILImage.fromarray(((values - values.min()) * 255.0 / span).astype("uint8")).convert("RGB")
    return image.convert("RGB")


def _reading_order(boxes: list[tuple[Any, str, float]]) -> str:
    """Group boxes whose vertical centres lie within half a line height into one line, left to right."""
    placed = []
    for box, text, _score in boxes:
        ys = [float(p[1]) for p in box]
        xs = [float(p[0]) for p in box]
        placed.append(((min(ys) + max(ys)) / 2, max(ys) - min(ys), min(xs), text))
    placed.sort()
    lines: list[list[tuple[float, str]]] = []
    centre = height = None
    for y, h, x, text in placed:
        if lines and centre is not None and height is not None and abs(y - centre) <= 0.5 * max(height, h):
            lines[-1].append((x, text))
        else:
            lines.append([(x, text)])
            centre, height = y, h
    return "\n".join(" ".join(text for _, text in sorted(line)) for line in lines)


def check_image(path: Path, name: str) -> tuple[int, int, str, int]:
    """Read only the header of an image file: (width, height, format, frames>1 ? 2 : 1); LoaderError naming the
    file when it is not a supported picture or too large to decode safely. Nothing is decoded here."""
    from PIL import Image as PILImage
    from PIL import UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PILImage.DecompressionBombWarning)
            with PILImage.open(path) as image:
                width, height = image.size
                fmt = image.format or "?"
                animated = bool(getattr(image, "is_animated", False))
    except PILImage.DecompressionBombError as exc:  # Pillow refuses over twice its own limit, from the header too
        pixels = re.search(r"\((\d+) pixels\)", str(exc))
        size = f"{int(pixels.group(1)) / 1e6:.0f} million pixels" if pixels else "too many pixels"
        raise LoaderError(f"{name} is {size}, {_TOO_LARGE}") from exc
    except UnidentifiedImageError as exc:
        raise LoaderError(
            f"{name} is not a picture that can be read (damaged, or another type under an image name); "
            "save it again as PNG or JPEG"
        ) from exc
    except (OSError, SyntaxError, ValueError) as exc:  # Pillow's header parsers raise these for damaged files
        raise LoaderError(f"{name}: the image header is damaged ({exc}); save it again as PNG or JPEG") from exc
    if fmt not in IMAGE_FORMATS:
        raise LoaderError(
            f"{name} is a {fmt} image under an image name OCR does not take; save it as PNG or JPEG"
        )
    check_size(width, height, name)
    return width, height, fmt, 2 if animated else 1


_TOO_LARGE = (
    f"over the {MAX_PIXELS / 1e6:.0f} million OCR reads (a decompression bomb, or a scan at a very high "
    "resolution); it was not decoded: scale it down (300 dpi is plenty) and add it again"
)


def check_size(width: int, height: int, what: str) -> None:
    """LoaderError when a picture of ``width`` x ``height`` is too large to decode safely, or too small to read."""
    if width * height > MAX_PIXELS:
        raise LoaderError(f"{what} is {width} x {height} pixels ({width * height / 1e6:.0f} million), {_TOO_LARGE}")
    if width < MIN_SIDE or height < MIN_SIDE:
        raise LoaderError(f"{what} is only {width} x {height} pixels; there is no text to read in it")


def decode(path: Path, name: str) -> Image:
    """The first frame of an already checked image file, fully decoded; LoaderError if it is damaged or cut off."""
    from PIL import Image as PILImage

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PILImage.DecompressionBombWarning)
            with PILImage.open(path) as opened:
                opened.seek(0)
                opened.load()
                image = opened.copy() if getattr(opened, "is_animated", False) else opened
                image.load()
    except (OSError, SyntaxError, ValueError, EOFError) as exc:  # "image file is truncated", broken chunks
        raise LoaderError(f"{name} is damaged or cut off ({exc}); nothing was added: save it again and add it") from exc
    return image


def pdf_page_images(page: Any, number: int, name: str, warnings_out: list[str]) -> Iterator[Image]:
    """The pictures of one PDF page (a scanned page holds one), each checked for size before it is decoded;
    pictures that are too large or cannot be decoded become warnings."""
    images = page.images
    try:
        keys = list(images.keys())
    except Exception as exc:  # noqa: BLE001 - pypdf raises many types for damaged resources
        warnings_out.append(f"page {number} of {name}: its pictures cannot be listed ({exc})")
        return
    for key in keys[:MAX_IMAGES_PER_PAGE]:
        size = _declared_size(page, key)
        if size is not None:
            try:
                check_size(*size, f"a picture on page {number} of {name}")
            except LoaderError as exc:
                if size[0] >= MIN_SIDE and size[1] >= MIN_SIDE:
                    warnings_out.append(str(exc))
                continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                picture = images[key].image
            if picture is None:
                continue
            if size is None:  # inline or unusual images: their size is known only now
                check_size(*picture.size, f"a picture on page {number} of {name}")
            picture.load()
        except LoaderError as exc:
            warnings_out.append(str(exc))
            continue
        except Exception as exc:  # noqa: BLE001 - pypdf and Pillow raise many types for damaged image streams
            warnings_out.append(f"a picture on page {number} of {name} cannot be decoded ({type(exc).__name__}: {exc})")
            continue
        yield picture


def _declared_size(page: Any, key: Any) -> tuple[int, int] | None:
    """/Width and /Height of the image XObject ``key`` names (a name, or a path through forms), or None."""
    try:
        path = [key] if isinstance(key, str) else list(key)
        obj = page
        for part in path:
            obj = obj["/Resources"].get_object()["/XObject"].get_object()[part].get_object()
        return int(obj["/Width"]), int(obj["/Height"])
    except Exception:  # noqa: BLE001 - inline images ("~0~") and odd resources: size checked after decoding
        return None
