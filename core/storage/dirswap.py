"""Replace a directory safely: build the new one beside it, swap it in, delete the old one last.

Every directory Inkstone rebuilds (converted ChatGLM3 checkpoints, GGUF conversions, low-bit packs, personas,
merges) goes through :func:`replace_dir`, so a crash at any point leaves the old directory or the new one,
complete, never a half-written one under the target's name.

Names, all siblings of ``target`` (same parent, so every rename stays on one filesystem and is atomic):

- ``<name>.partial<pid>-<tag>``: the new directory being built by process ``pid``;
- ``<name>.old<pid>-<tag>``: the previous target, set aside by process ``pid`` while it swaps.

The swap takes two renames because a rename cannot replace a non-empty directory on Linux: ``target`` to
``.old``, then ``.partial`` to ``target``, then the ``.old`` copy is deleted. A crash...

- while building: ``target`` is untouched; the ``.partial`` copy is removed by a later recovery;
- between the two renames: ``target`` is missing and the complete old copy sits in ``.old``; the next
  :func:`recover` of that target (every :func:`replace_dir` starts with one) renames it back;
- after the second rename: the new ``target`` is in place; the ``.old`` copy is removed by a later recovery.

:func:`recover` rules, for the leftovers of one target:

1. a leftover of a running process (this one included) is kept: it may be building or swapping right now;
2. a dead process's ``.old`` copy whose target is missing is renamed back to the target (a crash between the
   two renames);
3. any other leftover of a dead process is deleted: a ``.partial`` copy may be half written, an ``.old`` copy
   whose target exists was superseded.

A pid reused by an unrelated process only delays the clean-up until that process ends. If another process
swaps in its own copy of the same target first, that complete copy is kept and this one is discarded.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

_LEFTOVER = re.compile(r"(?P<name>.+)\.(?:(?P<partial>partial)(?P<ppid>\d+)(?:-[0-9a-f]{8})?"
                       r"|old(?P<opid>\d+)-[0-9a-f]{8})")
"""A leftover's name; a ``.partial<pid>`` without a tag is what low-bit packs were staged as before this module."""


@contextlib.contextmanager
def replace_dir(target: Path) -> Iterator[Path]:
    """Yield a fresh, empty staging directory beside ``target``; when the block ends normally, swap it in.

    The parent of ``target`` is created if needed and leftovers of earlier crashes are recovered first
    (:func:`recover`). If the block raises, the staging directory is removed and ``target`` is left untouched.
    If another process put its own copy in place meanwhile, that copy is kept and this one is discarded.

    Raises:
        OSError: the staging directory cannot be created or the swap fails (the old ``target`` is restored).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    recover(target)
    tag = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"  # the tag keeps two threads of one process apart
    staging = target.with_name(f"{target.name}.partial{tag}")
    staging.mkdir()
    try:
        yield staging
    except BaseException:
        _remove(staging)
        raise
    _swap_in(staging, target, target.with_name(f"{target.name}.old{tag}"))


def recover(target: Path) -> None:
    """Restore or delete the leftovers of crashed swaps of ``target`` (the rules are in the module docstring)."""
    import psutil

    target = Path(target)
    if not target.parent.is_dir():
        return
    mine = [(m, path) for path in target.parent.iterdir()
            if (m := _LEFTOVER.fullmatch(path.name)) and m["name"] == target.name]
    for m, path in mine:
        pid = int(m["ppid"] or m["opid"])
        if pid == os.getpid() or psutil.pid_exists(pid):
            continue
        if not m["partial"] and not os.path.lexists(target):
            try:
                os.rename(path, target)
                continue
            except OSError:  # another process may be restoring a copy at the same moment
                if not os.path.lexists(target):
                    continue  # never delete what may be the only copy
        _remove(path)


def is_leftover(path: Path) -> bool:
    """Whether ``path`` is named like a staging (``.partial``) or set-aside (``.old``) copy of a swap."""
    return _LEFTOVER.fullmatch(Path(path).name) is not None


def _swap_in(staging: Path, target: Path, old: Path) -> None:
    """Rename ``target`` to ``old`` (if it exists), ``staging`` to ``target``, then delete ``old``."""
    try:
        os.rename(target, old)
        moved = True
    except FileNotFoundError:
        moved = False
    except BaseException:
        _remove(staging)
        raise
    try:
        os.rename(staging, target)
    except OSError:
        if not os.path.lexists(target):  # the rename itself failed: put the old copy back
            if moved:
                os.rename(old, target)
            _remove(staging)
            raise
        _remove(staging)  # another process swapped in its complete copy meanwhile: keep that one
    if moved:
        _remove(old)


def _remove(path: Path) -> None:
    """Delete a directory tree or a file, best effort (what stays is removed by a later :func:`recover`)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            path.unlink()
