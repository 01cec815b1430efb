"""Files a user names for Inkstone to write (``sessions export -o``, and any other ``--output``): checked against
the data dir before anything is written, so no flag can overwrite the history database or Inkstone's own files.

Refused always: the history database and its ``-wal``, ``-shm`` and ``-journal`` files, and anything inside a
folder of the data dir (model cache, Chroma store, training runs); a path that is a folder. An existing file
elsewhere is replaced only with ``force`` (``--force``). Writes go to a temporary file next to the target and
are renamed over it, so a failed write never leaves half a file.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

from core.errors import ConfigError, StorageError

DB_NAME = "inkstone.db"
DB_SUFFIXES = ("", "-wal", "-shm", "-journal")


def check_output_path(path: Path, home: Path, *, force: bool = False, flag: str = "--output") -> Path:
    """The resolved ``path`` if Inkstone may write it; ConfigError naming the path and the fix otherwise."""
    target = Path(path).expanduser().resolve()
    data = Path(home).expanduser().resolve()
    protected = {data / f"{DB_NAME}{suffix}" for suffix in DB_SUFFIXES}
    inside = target.is_relative_to(data) and len(target.relative_to(data).parts) > 1
    if target in protected or inside or target == data:
        raise ConfigError(
            f"{flag} {path} is inside Inkstone's data dir {data} (its history database and files live there) and "
            "is never written by this command: choose a path outside it."
        )
    if target.is_dir():
        raise ConfigError(f"{flag} {path} is a folder: give a file name, for example {Path(path) / 'export.md'}.")
    if target.exists() and not force:
        raise ConfigError(f"{flag} {path} already exists: choose another name, or add --force to replace it.")
    return target


def write_text_file(path: Path, text: str, home: Path, *, force: bool = False, flag: str = "--output") -> Path:
    """Check ``path`` (see ``check_output_path``) and write ``text`` (UTF-8) to it in one step; return it."""
    target = check_output_path(path, home, force=force, flag=flag)
    tmp = None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        os.replace(tmp, target)
    except OSError as exc:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        raise StorageError(
            f"Cannot write {path} ({exc.strerror or exc}): check the path, free space and permissions."
        ) from None
    return target
