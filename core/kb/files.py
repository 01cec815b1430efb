"""Which files an ingestion reads and the names they are stored under.

A name is what sources show (``report.pdf``, or ``sub/report.pdf`` for a file found inside a folder that
was given); it is display text only and never used as a path, but it is still sanitized: no folders
above it (``../../x`` becomes ``x``), no control characters (newlines become spaces), no leading dots,
at most 200 characters. Inkstone keeps no copies of ingested files.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

MAX_NAME_CHARS = 200
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


@dataclass(frozen=True)
class Candidate:
    """A file to ingest, the name it is stored under, or why it is skipped (``reason`` set)."""

    path: Path
    name: str
    reason: str | None = None


def clean_part(part: str) -> str:
    """One path segment made safe for display: control characters to spaces, no leading dots or spaces."""
    text = unicodedata.normalize("NFC", _CONTROL.sub(" ", part))
    return " ".join(text.split()).lstrip(". ").rstrip()


def sanitize_name(raw: str, *, keep_folders: bool = False) -> str:
    """A safe document name from a user-given file name (an upload's, or a path below an ingested folder).

    Without ``keep_folders`` only the last segment is kept; with it, the segments are cleaned and ``..``
    or empty ones dropped. Never empty (``document`` when nothing usable is left).
    """
    parts = [clean_part(p) for p in re.split(r"[\\/]", raw or "")]
    parts = [p for p in parts if p and p != ".."]
    if not keep_folders:
        parts = parts[-1:]
    name = "/".join(parts) or "document"
    if len(name) > MAX_NAME_CHARS:
        stem, dot, suffix = name.rpartition(".")
        keep = suffix if dot and len(suffix) <= 10 else ""
        name = name[: MAX_NAME_CHARS - len(keep) - 2].rstrip() + "…" + ("." + keep if keep else "")
    return name


def _hidden(path: Path, root: Path) -> bool:
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def collect(paths: list[Path], suffixes: frozenset[str]) -> list[Candidate]:
    """Files named directly, and files with a supported suffix anywhere below folders named (sorted).

    A file named directly is always tried (the loader says if its type is unsupported); inside a folder,
    hidden files are ignored and other suffixes are reported as skipped. A path that does not exist is a
    candidate with its ``reason``. Nothing is read here.
    """
    found: list[Candidate] = []
    seen: set[Path] = set()
    for given in paths:
        path = Path(given).expanduser()
        if path.is_file():
            if path.resolve() not in seen:
                seen.add(path.resolve())
                found.append(Candidate(path, sanitize_name(path.name)))
        elif path.is_dir():
            for child in sorted(p for p in path.rglob("*") if p.is_file() and not _hidden(p, path)):
                if child.resolve() in seen:
                    continue
                seen.add(child.resolve())
                name = sanitize_name(child.relative_to(path).as_posix(), keep_folders=True)
                kind = child.suffix.lower()
                reason = None if kind in suffixes else f"unsupported file type {kind or '(no suffix)'}"
                found.append(Candidate(child, name, reason))
        else:
            found.append(Candidate(path, sanitize_name(path.name), f"no such file or folder: {path}"))
    return found
