"""OCR quality and speed on this CPU: character accuracy on rendered scanned-looking pages, and pages per second.

Pages: a paragraph of known English and of known Chinese text rendered with Pillow at ``--size`` pixels (DejaVu
Sans, Noto Sans CJK), turned by ``--rotate`` degrees, with Gaussian grey noise of ``--noise`` (the same pages
the tests use, ``tests/ocr_pages.py``), read by ``knowledge.ocr.read_text`` (RapidOCR, PP-OCRv4 from the
``rapidocr-onnxruntime`` wheel). Character accuracy = 1 - edit distance / reference length, whitespace left out
(Chinese has none, and a dropped space between English words counts in ``words right`` instead). Pages per second
is timed over ``--repeat`` readings of each page after one warm-up (engine built beforehand; its load time is
printed apart). Prints figures only; it asserts nothing.

    .venv/bin/python bench/ocr.py [--size 28] [--rotate 1.2] [--noise 18] [--repeat 3] [--a4]
    --a4 adds a full A4 page at 300 dpi (2480 x 3508 pixels, 10-point print) in each language.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from knowledge.ocr import OCR_THREADS, engine, read_text  # noqa: E402
from tests.ocr_pages import cjk_font, render  # noqa: E402

EN_TEXT = [
    "Harvest notice for the Pellworm orchard, season 2025.",
    "The pear harvest begins on 12 September and ends in October.",
    "Pickers meet at the north gate at seven; the foreman signs them in.",
    "Bring gloves and a hat. Ladders are kept in barn B, crates in barn C.",
    "Wages are paid every Friday by bank transfer (rate: 14.50 per hour).",
    "Questions go to the office: orchard@example.org or 0123 456 789.",
]
ZH_TEXT = [
    "果园采摘通知（二〇二五年度）",
    "梨子的采摘从九月十二日开始，十月底结束。",
    "采摘工人早上七点在北门集合，由工头登记签到。",
    "请自带手套和帽子。梯子放在二号仓库，箱子放在三号仓库。",
    "工资每周五通过银行转账发放，每小时十四元五角。",
    "如有问题请联系办公室，电话零一二三四五六七八九。",
]


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance (insert, delete, substitute: 1 each)."""
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, start=1):
        current = [i]
        for j, cb in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def char_accuracy(reference: str, read: str) -> float:
    """1 - edit distance / length, whitespace left out of both."""
    ref, got = "".join(reference.split()), "".join(read.split())
    return max(0.0, 1.0 - edit_distance(ref, got) / max(len(ref), 1))


def words_right(reference: str, read: str) -> float:
    """Share of the reference's words found as words in what was read (dropped spaces cost their words)."""
    ref, got = reference.split(), set(read.split())
    return sum(w in got for w in ref) / max(len(ref), 1)


def a4_page(lines: list[str], cjk: bool, seed: int, rotate: float, noise: float):  # -> PIL.Image.Image
    """An A4 page at 300 dpi (2480 x 3508) with the lines repeated down it in 10-point print (42 pixels)."""
    from PIL import Image

    body = render(lines * 6, cjk=cjk, size=42, width=2480, rotate=rotate, noise=noise, seed=seed)
    page = Image.new("L", (2480, 3508), 255)
    page.paste(body, (0, 150))
    return page, "\n".join(lines * 6)


def main() -> None:
    """Render, read, print."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=28, help="font size in pixels (28 is 10 pt at 200 dpi)")
    parser.add_argument("--rotate", type=float, default=1.2, help="degrees the page is turned")
    parser.add_argument("--noise", type=float, default=18.0, help="standard deviation of the grey noise")
    parser.add_argument("--repeat", type=int, default=3, help="timed readings of each page")
    parser.add_argument("--a4", action="store_true", help="also a full A4 page at 300 dpi per language")
    args = parser.parse_args()

    started = time.perf_counter()
    engine()
    load = time.perf_counter() - started
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"CPU: {platform.processor() or platform.machine()}, {cores} cores usable, OCR threads {OCR_THREADS}; "
          f"load average {os.getloadavg()[0]:.1f}" if hasattr(os, "getloadavg") else "")  # fmt: skip
    print(f"engine load: {load:.2f} s")
    pages = [("English", EN_TEXT, False)]
    if cjk_font():
        pages.append(("Chinese", ZH_TEXT, True))
    else:
        print("Chinese: skipped (no CJK font installed: fonts-noto-cjk)")
    cases = []
    for label, lines, cjk in pages:
        width = 1400 if not cjk else 1300
        image = render(lines, cjk=cjk, size=args.size, width=width, rotate=args.rotate, noise=args.noise, seed=7)
        cases.append((f"{label}, {image.width}x{image.height}, {args.size}px", image, "\n".join(lines), cjk))
        if args.a4:
            page, text = a4_page(lines, cjk, 8, args.rotate, args.noise)
            cases.append((f"{label}, A4 300 dpi 2480x3508, 42px", page, text, cjk))
    print(f"pages turned {args.rotate} degrees, grey noise sd {args.noise}, {args.repeat} timed readings each")
    for label, image, reference, cjk in cases:
        read_text(image)  # warm-up
        started = time.perf_counter()
        for _ in range(args.repeat):
            result = read_text(image)
        per_page = (time.perf_counter() - started) / args.repeat
        words = "" if cjk else f", words right {words_right(reference, result.text):.1%}"
        print(f"{label}: characters right {char_accuracy(reference, result.text):.1%}{words}, "
              f"{1 / per_page:.2f} pages/s ({per_page:.2f} s/page), {result.lines} lines read")  # fmt: skip


if __name__ == "__main__":
    main()
