"""Pictures of chat messages on disk: one file per content hash under the data dir's ``images/`` folder
(``images/ab/abcdef....png``), never in the SQLite file; table ``message_images`` (migration ``m009``) links each
message to its pictures in order.

The same picture attached twice is one file. A file is written atomically (a temp file beside it, then a rename), so a
file at its final name is always whole. Every write or removal of a file happens while the store holds the database's
write lock (inside one of its transactions), and a file is removed only when no committed row names it: a process
that links a picture and one that deletes a chat never remove a file the other still needs. A crash between writing a
file and committing its row leaves a file no row names; the next open of the store removes it (``collect``).
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import uuid
from collections.abc import Iterable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

from sqlite_utils import Database

from core.errors import InputError, StorageError
from core.images import MAX_IMAGES, ImageInput

EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp", "image/gif": "gif", "image/bmp": "bmp"}
"""MIME type -> the file extension a stored picture gets (``core.images.FORMATS`` gives the MIME types)."""
_NAME = re.compile(r"^(?P<sha>[0-9a-f]{64})\.(?P<ext>[a-z]+)$")
_TEMP = re.compile(r"^\.[0-9a-f]{64}\.[0-9a-f]{32}\.tmp$")
_FIX = "check the folder's permissions and free space, or point INKSTONE_HOME at a writable folder"


def check_count(count: int) -> None:
    """InputError when ``count`` pictures are more than one message may carry (checked before any is read)."""
    if count > MAX_IMAGES:
        raise InputError(f"{count} pictures are attached, but a message takes at most {MAX_IMAGES}: send the "
                         "others in a second message.")


def check_pictures(role: str, images: Sequence[ImageInput]) -> None:
    """InputError for pictures on anything but a user message, or more than one message may carry."""
    if images and role != "user":
        raise InputError(f"Only your own messages carry pictures, not a {role} message.")
    check_count(len(images))


def hashes_of(db: Database, ids_sql: str, params: list) -> set[str]:
    """The picture hashes of the messages ``ids_sql`` selects (read before they are deleted)."""
    return {row[0] for row in db.execute(f"SELECT sha256 FROM message_images WHERE message_id IN ({ids_sql})", params)}


@dataclass(frozen=True)
class StoredImage:
    """One picture of a stored message: what its row says, and the file it lives in."""

    sha256: str
    mime: str
    width: int
    height: int
    name: str
    path: Path

    def read(self) -> ImageInput:
        """The picture's bytes as an ``ImageInput`` (checked when it was stored); StorageError naming the file and
        the fix when it is missing or was changed outside Inkstone."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            raise StorageError(f"Picture {self.name!r} of this chat is missing ({self.path} was deleted outside "
                               "Inkstone): restore the file, or delete the message that holds it.") from None
        except OSError as exc:
            raise StorageError(f"Picture {self.name!r} cannot be read from {self.path} ({exc}): {_FIX}.") from None
        if hashlib.sha256(data).hexdigest() != self.sha256:
            raise StorageError(f"Picture {self.name!r} was changed on disk ({self.path} no longer matches its hash): "
                               "restore the file, or delete the message that holds it.")
        return ImageInput(data, self.mime, self.sha256, self.width, self.height, self.name)


class ImageFiles:
    """The ``images/`` folder of one history database. Callers hold the database's write lock around ``link`` and
    ``collect`` (see the module docstring)."""

    def __init__(self, root: Path, *, temporary: tempfile.TemporaryDirectory | None = None) -> None:
        self.root = root
        self._temporary = temporary

    @classmethod
    def beside(cls, db_path: str) -> ImageFiles:
        """The ``images/`` folder next to the database file (a temporary folder for an in-memory database)."""
        if db_path in ("", ":memory:") or db_path.startswith("file::memory:"):
            temporary = tempfile.TemporaryDirectory(prefix="inkstone-images-")
            return cls(Path(temporary.name), temporary=temporary)
        return cls(Path(db_path).parent / "images")

    def close(self) -> None:
        """Remove the temporary folder of an in-memory database (a real data dir's folder stays)."""
        if self._temporary is not None:
            self._temporary.cleanup()

    def path(self, sha256: str, mime: str) -> Path:
        """Where the picture with this hash and MIME type lives; StorageError for a row that is not Inkstone's."""
        if not re.fullmatch(r"[0-9a-f]{64}", sha256) or mime not in EXTENSIONS:
            raise StorageError(f"A picture row names {sha256[:70]!r} ({mime[:40]!r}), which is not a stored picture: "
                               "the history database was changed outside Inkstone; delete the message that holds it.")
        return self.root / sha256[:2] / f"{sha256}.{EXTENSIONS[mime]}"

    def write(self, image: ImageInput) -> Path | None:
        """Store ``image``'s bytes under its hash unless a whole copy is there; the path if this call created it."""
        final = self.path(image.sha256, image.mime)
        try:
            if final.is_file() and final.stat().st_size == len(image.data):
                return None
            final.parent.mkdir(parents=True, exist_ok=True)
            temp = final.with_name(f".{image.sha256}.{uuid.uuid4().hex}.tmp")
            try:
                with open(temp, "wb") as out:
                    out.write(image.data)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(temp, final)
            finally:
                temp.unlink(missing_ok=True)
        except OSError as exc:
            raise StorageError(f"Picture {image.name!r} could not be saved in {self.root} ({exc}): {_FIX}.") from None
        return final

    def link(self, db: Database, message_id: str, images: Sequence[ImageInput]) -> list[Path]:
        """Write ``images``' files and the rows that give them to ``message_id``, in order (inside the caller's
        transaction); returns the files this call created (the caller collects them if the transaction fails)."""
        created: list[Path] = []
        try:
            for position, image in enumerate(images):
                if (made := self.write(image)) is not None:
                    created.append(made)
                db.execute("INSERT INTO message_images (message_id, position, sha256, mime, width, height, name) "
                           "VALUES (?, ?, ?, ?, ?, ?, ?)",
                           [message_id, position, image.sha256, image.mime, image.width, image.height, image.name])
        except BaseException:
            for path in created:  # the transaction rolls back: no row will name them
                path.unlink(missing_ok=True)
            raise
        return created

    def rows(self, db: Database, message_ids: Iterable[str]) -> dict[str, list[StoredImage]]:
        """The pictures of each of ``message_ids`` that has any, in order."""
        ids = list(dict.fromkeys(message_ids))
        out: dict[str, list[StoredImage]] = {}
        for start in range(0, len(ids), 500):  # SQLite's limit on parameters
            chunk = ids[start:start + 500]
            marks = ", ".join("?" * len(chunk))
            sql = (f"SELECT message_id, sha256, mime, width, height, name FROM message_images WHERE message_id IN "
                   f"({marks}) ORDER BY message_id, position")
            for message_id, sha256, mime, width, height, name in db.execute(sql, chunk):
                out.setdefault(message_id, []).append(
                    StoredImage(sha256, mime, width, height, name, self.path(sha256, mime)))
        return out

    def collect(self, db: Database, hashes: Iterable[str] | None = None) -> int:
        """Remove the files of ``hashes`` (None: every file in the folder, and temp files a crash left) that no row
        names any more, inside the caller's transaction; returns how many went. Files Inkstone did not write stay."""
        if not self.root.is_dir():
            return 0
        named = {row[0] for row in db.execute("SELECT DISTINCT sha256 FROM message_images")}
        removed = 0
        if hashes is not None:
            candidates = [p for sha in set(hashes) - named if len(sha) == 64
                          for p in (self.root / sha[:2]).glob(f"{sha}.*")]  # fmt: skip
        else:
            candidates = [p for folder in self.root.iterdir() if folder.is_dir() for p in folder.iterdir()]
        for path in candidates:
            match = _NAME.match(path.name)
            if (match is None or match["sha"] in named) and not _TEMP.match(path.name):
                continue
            try:
                path.unlink()
                removed += 1
            except OSError:
                continue  # removed by someone else, or not ours to remove: the next open tries again
            with suppress(OSError):
                path.parent.rmdir()  # only when it is empty
        return removed
