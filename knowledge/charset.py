"""Charset detection for text files: UTF-8, GB18030/GBK, Big5, UTF-16/32 with a BOM, and what charset-normalizer finds.

Detectors guess wrong on short Chinese texts (a few GBK characters read as cp949 or Big5), so every plausible
candidate is decoded strictly and scored by how ordinary the resulting characters are: common Hanzi (GB2312
level 1 or Big5 frequent characters), CJK punctuation and letters score, rare ideographs, private-use code
points, kana and hangul from a wrong guess, symbols and control characters do not. The best decoding wins;
one that is still mostly odd characters is refused rather than shown garbled.
"""

from __future__ import annotations

import codecs
import unicodedata
from functools import lru_cache

from knowledge.errors import LoaderError

SAMPLE_BYTES = 256 * 1024
_BOMS = (
    (codecs.BOM_UTF32_LE, "utf-32"),
    (codecs.BOM_UTF32_BE, "utf-32"),
    (codecs.BOM_UTF8, "utf-8-sig"),
    (codecs.BOM_UTF16_LE, "utf-16"),
    (codecs.BOM_UTF16_BE, "utf-16"),
)
_CONTROL_OK = {0x09, 0x0A, 0x0C, 0x0D, 0x1B}
_MIN_SCORE = 0.6


def decode_prefix(data: bytes, encoding: str) -> str | None:
    """``data`` decoded strictly, tolerating only a multi-byte character cut off at the end; None if invalid."""
    try:
        decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
        return decoder.decode(data, final=False)
    except (UnicodeDecodeError, LookupError):
        return None


@lru_cache(maxsize=65536)
def _weight(ch: str) -> float:
    """How ordinary a non-ASCII character is in real text: 1 common, 0.5 plausible, 0 a sign of a wrong charset."""
    cp = ord(ch)
    if 0x3400 <= cp <= 0x9FFF or 0xF900 <= cp <= 0xFAFF or cp >= 0x20000:
        return 1.0 if _common_hanzi(ch) else 0.0
    if 0x3000 <= cp <= 0x303F or 0xFF01 <= cp <= 0xFF5E or 0x2010 <= cp <= 0x2027 or 0x2030 <= cp <= 0x203A:
        return 1.0  # CJK punctuation, fullwidth forms, general punctuation
    if 0x3040 <= cp <= 0x30FF or 0xAC00 <= cp <= 0xD7AF:
        return 0.5  # kana, hangul: real in Japanese/Korean, but also what a wrong guess for Chinese yields
    if 0xE000 <= cp <= 0xF8FF or cp == 0xFFFD or cp < 0xA0:
        return 0.0  # private use, replacement character, C1 controls
    category = unicodedata.category(ch)
    if category.startswith("L") or category.startswith("M"):
        if cp <= 0xFF or 0x0370 <= cp <= 0x06FF or 0x0900 <= cp <= 0x0E7F:
            return 1.0
        return 0.95 if cp < 0x0250 else 0.5  # Latin Extended: real, but ties go to Western European
    if ch in "\u00a0\u00b7\u00b0\u00a9\u00ae\u00ab\u00bb\u00bf\u00a1\u00a7\u2022\u2026\u20ac\u00a3":
        return 1.0
    return 0.0


def _common_hanzi(ch: str) -> bool:
    """True for the ~3,755 level-1 GB2312 and ~5,400 frequent Big5 characters (simplified and traditional)."""
    try:
        if 0xB0 <= ch.encode("gb2312")[0] <= 0xD7:
            return True
    except UnicodeEncodeError:
        pass
    try:
        return 0xA4 <= ch.encode("big5")[0] <= 0xC6
    except UnicodeEncodeError:
        return False


def plausibility(text: str) -> float:
    """Share of non-ASCII characters in ``text`` that look like real text (1.0 when all ASCII)."""
    odd = [c for c in text if ord(c) > 0x7F or (ord(c) < 0x20 and ord(c) not in _CONTROL_OK)]
    if not odd:
        return 1.0
    return sum(_weight(c) if ord(c) > 0x7F else 0.0 for c in odd) / len(odd)


def looks_binary(sample: bytes) -> bool:
    """True when ``sample`` (without a UTF-16/32 BOM) holds NUL bytes or many control bytes."""
    if not sample:
        return False
    if b"\x00" in sample:
        return True
    controls = sum(1 for b in sample if b < 0x20 and b not in _CONTROL_OK)
    return controls / len(sample) > 0.02


def detect_encoding(sample: bytes, name: str) -> str:
    """The Python codec name that decodes ``sample`` (the start of file ``name``) into real text.

    Raises LoaderError for a binary sample or one no candidate decodes into plausible text.
    """
    for bom, encoding in _BOMS:
        if sample.startswith(bom):
            return encoding
    if looks_binary(sample):
        raise LoaderError(
            f"{name} looks like a binary file, not text (it contains NUL or control bytes); "
            "rename it to its real type (.pdf, .docx, ...) or export it as plain text"
        )
    if decode_prefix(sample, "utf-8") is not None:
        return "utf-8"
    candidates = ["gb18030", "big5", "cp1252"]
    try:
        from charset_normalizer import from_bytes

        for match in list(from_bytes(sample))[:3]:
            if match.encoding not in candidates:
                candidates.append(match.encoding)
    except Exception:  # noqa: BLE001 - the detector is a hint; our own candidates still decide
        pass
    best, best_score = None, -1.0
    for encoding in candidates:
        text = decode_prefix(sample, encoding)
        if text is None:
            continue
        score = plausibility(text)
        if score > best_score:
            best, best_score = encoding, score
    if best is None or best_score < _MIN_SCORE:
        raise LoaderError(
            f"cannot tell the character encoding of {name} (tried UTF-8, GB18030/GBK, Big5 and "
            f"{', '.join(candidates[2:])}); save it as UTF-8 and add it again"
        )
    return best
