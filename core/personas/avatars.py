"""Persona avatars: what Streamlit's chat view can show without failing, decided without importing Streamlit.

An avatar is one emoji (``🪶``, ``👩‍🚀``, ``🇫🇷``), a Material icon (``:material/school:``), or an image file
(png, jpg, jpeg, gif, webp, svg) inside the persona's directory. Anything else (a long string, a path
outside the directory, plain text that Streamlit would try to open as an image file) is a problem reported by
persona validation, never a crash of the chat page.
"""

from __future__ import annotations

import re
from pathlib import Path

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".webp", ".svg")
MATERIAL = re.compile(r"^:material/[a-z0-9_]{1,64}:$")
_RANGES = (
    "0xA9 0xAE 0x203C 0x2049 0x2122 0x2139 0x2194-0x2199 0x21A9-0x21AA 0x231A-0x231B 0x2328 0x23CF 0x23E9-0x23F3 "
    "0x23F8-0x23FA 0x24C2 0x25AA-0x25AB 0x25B6 0x25C0 0x25FB-0x25FE 0x2600-0x2604 0x260E 0x2611 0x2614-0x2615 "
    "0x2618 0x261D 0x2620 0x2622-0x2623 0x2626 0x262A 0x262E-0x262F 0x2638-0x263A 0x2640 0x2642 0x2648-0x2653 "
    "0x265F-0x2660 0x2663 0x2665-0x2666 0x2668 0x267B 0x267E-0x267F 0x2692-0x2697 0x2699 0x269B-0x269C "
    "0x26A0-0x26A1 0x26A7 0x26AA-0x26AB 0x26B0-0x26B1 0x26BD-0x26BE 0x26C4-0x26C5 0x26C8 0x26CE-0x26CF 0x26D1 "
    "0x26D3-0x26D4 0x26E9-0x26EA 0x26F0-0x26F5 0x26F7-0x26FA 0x26FD 0x2702 0x2705 0x2708-0x270D 0x270F 0x2712 "
    "0x2714 0x2716 0x271D 0x2721 0x2728 0x2733-0x2734 0x2744 0x2747 0x274C 0x274E 0x2753-0x2755 0x2757 "
    "0x2763-0x2764 0x2795-0x2797 0x27A1 0x27B0 0x27BF 0x2934-0x2935 0x2B05-0x2B07 0x2B1B-0x2B1C 0x2B50 0x2B55 "
    "0x3030 0x303D 0x3297 0x3299 0x1F004 0x1F0CF 0x1F170-0x1F171 0x1F17E-0x1F17F 0x1F18E 0x1F191-0x1F19A "
    "0x1F201-0x1F202 0x1F21A 0x1F22F 0x1F232-0x1F23A 0x1F250-0x1F251 0x1F300-0x1F321 0x1F324-0x1F393 "
    "0x1F396-0x1F397 0x1F399-0x1F39B 0x1F39E-0x1F3F0 0x1F3F3-0x1F3F5 0x1F3F7-0x1F4FD 0x1F4FF-0x1F53D "
    "0x1F549-0x1F54E 0x1F550-0x1F567 0x1F56F-0x1F570 0x1F573-0x1F57A 0x1F587 0x1F58A-0x1F58D 0x1F590 "
    "0x1F595-0x1F596 0x1F5A4-0x1F5A5 0x1F5A8 0x1F5B1-0x1F5B2 0x1F5BC 0x1F5C2-0x1F5C4 0x1F5D1-0x1F5D3 "
    "0x1F5DC-0x1F5DE 0x1F5E1 0x1F5E3 0x1F5E8 0x1F5EF 0x1F5F3 0x1F5FA-0x1F64F 0x1F680-0x1F6C5 0x1F6CB-0x1F6D2 "
    "0x1F6D5-0x1F6D9 0x1F6DC-0x1F6E5 0x1F6E9 0x1F6EB-0x1F6EC 0x1F6F0 0x1F6F3-0x1F6FC 0x1F7E0-0x1F7EB 0x1F7F0 "
    "0x1F90C-0x1F93A 0x1F93C-0x1F945 0x1F947-0x1F9FF 0x1FA70-0x1FA7C 0x1FA80-0x1FAC6 0x1FAC8 0x1FACC-0x1FADD "
    "0x1FADF-0x1FAEB 0x1FAEF-0x1FAFA "
)
"""Code points that are an emoji on their own (Unicode's fully-qualified emoji, as Streamlit knows them)."""


def _parse(spec: str) -> set[int]:
    points: set[int] = set()
    for item in spec.split():
        low, _, high = item.partition("-")
        points.update(range(int(low, 16), int(high or low, 16) + 1))
    return points


_SINGLE = _parse(_RANGES)
_SKIN = set(range(0x1F3FB, 0x1F400))
_FLAG = set(range(0x1F1E6, 0x1F200))
_TAGS = set(range(0xE0020, 0xE007F))


def _one_emoji(text: str) -> bool:
    """True for one emoji: a single one, with a skin tone, ZWJ-joined ones, a flag, a keycap or a tag flag."""
    points = [ord(c) for c in text.replace("\ufe0f", "")]
    if not points or len(points) > 16:
        return False
    if len(points) == 2 and all(p in _FLAG for p in points):
        return True
    if len(points) == 2 and chr(points[0]) in "#*0123456789" and points[1] == 0x20E3:
        return True
    if points[0] == 0x1F3F4 and points[-1] == 0xE007F and all(p in _TAGS for p in points[1:-1]):
        return len(points) > 2
    parts: list[list[int]] = [[]]
    for p in points:
        if p == 0x200D:
            parts.append([])
        else:
            parts[-1].append(p)
    return all(_one_part(part) for part in parts)


def _one_part(part: list[int]) -> bool:
    """One emoji of a ZWJ sequence: a single emoji, optionally with a skin tone."""
    if not part or part[0] not in _SINGLE or part[0] in _FLAG:
        return False
    return len(part) == 1 or (len(part) == 2 and part[1] in _SKIN)


def avatar_problem(value: str, persona_dir: Path) -> str | None:
    """Why ``value`` cannot be a persona's avatar (None when it can)."""
    if _one_emoji(value) or MATERIAL.match(value):
        return None
    if len(value) <= 255 and value.lower().endswith(IMAGE_SUFFIXES) and "/" not in value and "\\" not in value:
        if (persona_dir / value).is_file():
            return None
        return f"`avatar` {value!r} is not a file in {persona_dir}: put the image there or use an emoji"
    shown = value if len(value) <= 40 else value[:37] + "..."
    return (
        f"`avatar` {shown!r} is not one emoji, a :material/name: icon or an image file name (png, jpg, gif, webp, "
        "svg) in the persona directory: use one of those"
    )


def avatar_value(value: str | None, persona_dir: Path) -> str | None:
    """What the chat view is given for a valid avatar: the emoji or icon, or the image file's full path."""
    if value is None or _one_emoji(value) or MATERIAL.match(value):
        return value
    return str(persona_dir / value)
