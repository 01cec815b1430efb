"""Upload staging: browser uploads become temporary files that ingestion reads, then disappear.

Each upload is copied to a temporary folder under the data dir (``knowledge/uploads/``) under a neutral name
that keeps only its (sanitized) suffix, never under the name the browser gave; the document is stored under
that name sanitized. The folder and the copies are deleted when staging ends: Inkstone keeps no copy.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from core.errors import InputError, KnowledgeBaseError
from core.kb.files import Candidate, sanitize_name

_SUFFIX = re.compile(r"\.[a-z0-9]{1,10}")


@contextmanager
def staged_uploads(home: Path, uploads: Sequence[tuple[str, BinaryIO | bytes]]) -> Iterator[list[Path]]:
    """Copy ``uploads`` (browser name, content) to a temporary folder under ``home / "knowledge/uploads"``;
    yields one path per upload, in order, and deletes them all on exit. KnowledgeBaseError when the folder
    cannot be made.
    """
    uploads_dir = home / "knowledge" / "uploads"
    try:
        uploads_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise KnowledgeBaseError(f"Cannot create {uploads_dir} for uploads ({exc}): check the data dir.") from exc
    with tempfile.TemporaryDirectory(prefix="upload-", dir=uploads_dir) as folder:
        paths: list[Path] = []
        for index, (raw_name, content) in enumerate(uploads):
            suffix = Path(sanitize_name(raw_name)).suffix.lower()
            suffix = suffix if _SUFFIX.fullmatch(suffix) else ""
            path = Path(folder) / f"upload-{index}{suffix}"
            with path.open("wb") as out:
                if isinstance(content, bytes):
                    out.write(content)
                else:
                    shutil.copyfileobj(content, out, 1024 * 1024)
            paths.append(path)
        yield paths


def rename_uploads(candidates: list[Candidate], paths: Sequence[Path], names: Sequence[str]) -> list[Candidate]:
    """The candidates of staged upload ``paths`` stored under their browser ``names`` (sanitized), one name per
    file; InputError when the counts differ or a path is a folder.
    """
    if len(names) != len(paths) or any(Path(p).is_dir() for p in paths):
        raise InputError("Give one name per uploaded file.")
    return [Candidate(c.path, sanitize_name(n), c.reason) for c, n in zip(candidates, names, strict=True)]
