"""Scanned-looking pages for OCR tests and ``bench/ocr.py``: known text rendered with Pillow, turned a little,
with grey noise, saved as PNG or as an image-only PDF (no text layer), plus hand-made bad image files.

Fonts: DejaVu Sans for English (Pillow's own scalable font when it is missing), Noto Sans CJK for Chinese
(``cjk_font()`` is None where no CJK font is installed; Chinese tests skip then).
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

LATIN_FONTS = ["/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf", "/usr/share/fonts/TTF/DejaVuSans.ttf"]
CJK_FONTS = [
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",
    "/usr/share/fonts/opentype/noto/NotoSerifCJK-Regular.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
]

ENGLISH = [
    "Harvest notice for the Pellworm orchard",
    "The pear harvest begins on 12 September.",
    "Pickers meet at the north gate at seven.",
    "Bring gloves; ladders are kept in barn B.",
]
CHINESE = [
    "果园采摘通知",
    "梨子的采摘从九月十二日开始。",
    "采摘工人早上七点在北门集合。",
    "请自带手套，梯子放在二号仓库。",
]


def cjk_font() -> str | None:
    """A font file with Chinese glyphs, or None."""
    return next((f for f in CJK_FONTS if Path(f).is_file()), None)


def font(size: int, cjk: bool = False) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """A font of ``size`` pixels: a CJK one when ``cjk`` (the caller checks ``cjk_font()`` first)."""
    path = cjk_font() if cjk else next((f for f in LATIN_FONTS if Path(f).is_file()), None)
    if path is None:
        return ImageFont.load_default(size)
    return ImageFont.truetype(path, size)


def render(lines: list[str], *, cjk: bool = False, size: int = 30, width: int = 1100, rotate: float = 1.2,
           noise: float = 18.0, seed: int = 0) -> Image.Image:  # fmt: skip
    """A greyscale page with ``lines`` of text, turned by ``rotate`` degrees, with Gaussian grey ``noise``."""
    face = font(size, cjk)
    step = int(size * 1.8)
    page = Image.new("L", (width, 80 + step * len(lines)), 255)
    draw = ImageDraw.Draw(page)
    for i, line in enumerate(lines):
        draw.text((50, 40 + i * step), line, font=face, fill=20)
    page = page.rotate(rotate, resample=Image.Resampling.BICUBIC, fillcolor=255)
    pixels = np.asarray(page).astype(np.float32)
    pixels += np.random.default_rng(seed).normal(0.0, noise, pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def save_pdf(path: Path, pages: list[Image.Image]) -> Path:
    """An image-only PDF (each page one picture, no text layer), as a scanner writes it."""
    first, *rest = [p.convert("RGB") for p in pages]
    first.save(path, "PDF", save_all=True, append_images=rest, resolution=150.0)
    return path


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares ``width`` x ``height`` pixels but holds a tiny image stream (a decompression bomb's
    header: decoding it would allocate width * height pixels)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit greyscale
    body = chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")
    return b"\x89PNG\r\n\x1a\n" + body
