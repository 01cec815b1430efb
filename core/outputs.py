"""Files a user names for Inkstone to write (``sessions export -o``, and any other ``--output``): checked against
the data dir before anything is written, so no flag can overwrite the history database or Inkstone's own files.

Refused always: the history database and its ``-wal``, ``-shm`` and ``-journal`` files, and anything inside a
folder of the data dir (model cache, Chroma store, training runs); a path that is a folder. An existing file
elsewhere is replaced only with ``force`` (``--force``). Writes go to a temporary file next to the target and
are renamed over it, so a failed write never leaves half a file.

Folders a command creates or replaces whole (``merge --out``, a trained persona's directory) are checked by
``check_output_folder``: never the data dir, a folder holding it, or one inside it, never overlapping the folders
the command must keep (the personas), never an existing file.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Sequence
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


def check_output_folder(
    path: Path, home: Path, *, flag: str = "--out", keep: Sequence[tuple[Path, str]] = (), top_level_only: bool = False
) -> Path:
    """The resolved folder ``path`` if a command may create or replace it whole; ConfigError naming it otherwise.

    Refused: the data dir, a folder that holds it, a folder inside it (``top_level_only``: only one directly in
    it, where Inkstone's own folders live, for a root the user placed in the data dir on purpose), a folder that
    is, holds or lies inside one of ``keep`` (``(folder, what it is)``), and an existing file.
    """
    target = Path(path).expanduser().resolve()
    data = Path(home).expanduser().resolve()
    holds = target == data or target in data.parents
    inside = data in target.parents and (target.parent == data or not top_level_only)
    if holds or inside:
        raise ConfigError(
            f"{flag} {path} {'holds' if holds else 'is inside'} Inkstone's data dir {data} (its history database and "
            "files live there), which this command never writes or replaces: choose a folder outside it."
        )
    for folder, what in keep:
        kept = Path(folder).expanduser().resolve()
        if target == kept or target in kept.parents or kept in target.parents:
            raise ConfigError(
                f"{flag} {path} overlaps {kept} ({what}), which this command never replaces: choose a folder "
                "outside it."
            )
    if target.exists() and not target.is_dir():
        raise ConfigError(f"{flag} {path} is a file: give a folder name, for example {Path(path).parent / 'merged'}.")
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
