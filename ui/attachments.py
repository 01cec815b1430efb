"""Pictures in the chat view: the message box takes attached or pasted pictures with the message, and messages show
theirs as thumbnails.

Every picture passes core's one gate (``core.images.read_image``: format, bytes, pixels, damage) before the chat
service sees it; the service refuses pictures a text-only model cannot see, before anything is stored. The page shows
either refusal with ``st.error`` and the chat goes on. Stored pictures come from the history store
(``HistoryStore.images_for``) as files under the data dir.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

import streamlit as st
from streamlit.typing import ChatInputValue

from core.history.images import check_count
from core.history.store import HistoryStore, Message, StoredImage
from core.images import MAX_BYTES, ImageInput, read_image

FILE_TYPES = ["png", "jpg", "jpeg", "webp", "gif", "bmp"]
"""What the message box lets the user attach (``core.images`` checks the bytes, whatever the name says)."""
THUMBNAIL_PX = 160


class Upload(Protocol):
    """An attached file (Streamlit's ``UploadedFile``): its name and bytes."""

    name: str

    def getvalue(self) -> bytes:
        """The file's bytes."""
        ...


def chat_input() -> ChatInputValue | None:
    """The message box (text, and pictures attached, dropped or pasted with it); what was sent, or None."""
    return st.chat_input("Message Inkstone", submit_mode="disable", accept_file="multiple", file_type=FILE_TYPES,
                         max_upload_size=MAX_BYTES // (1024 * 1024))  # fmt: skip


def read(files: Sequence[Upload]) -> list[ImageInput]:
    """The attached files as checked pictures; InputError naming the file and the fix for one that is not a
    picture chat takes (too many, too large, a bomb, damaged, another kind of file)."""
    check_count(len(files))
    return [read_image(file.getvalue(), file.name) for file in files]


def stored(store: HistoryStore, messages: Iterable[Message]) -> dict[str, list[StoredImage]]:
    """The stored pictures of ``messages``' user messages, by message id (one query for the whole chat)."""
    return store.images_for(m.id for m in messages if m.role == "user")


def thumbnails(pictures: Sequence[StoredImage | ImageInput]) -> None:
    """Draw ``pictures`` in a row of thumbnails (with their names); a stored file that is gone is named instead."""
    shown = [p for p in pictures if isinstance(p, ImageInput) or p.path.is_file()]
    if shown:
        st.image([p.data if isinstance(p, ImageInput) else str(p.path) for p in shown], width=THUMBNAIL_PX,
                 caption=[p.name for p in shown])  # fmt: skip
    if gone := [p.name for p in pictures if p not in shown]:
        st.caption(f"Picture no longer available: {', '.join(gone)} (its file was removed outside Inkstone).")
