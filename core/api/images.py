"""Pictures in an API request: the ``image_url`` parts of user messages, checked once and turned into
``core.images.ImageInput`` before anything runs or is stored.

A ``data:`` URL is decoded and checked by ``core.images`` (format, bytes, pixels, damage). An ``http(s)`` URL is
refused unless the user opted in with ``api_image_downloads = true``; then it is fetched with a time limit and a
byte limit. Every problem is an ``ApiError`` 400 whose ``param`` names the part (``messages[0].content[1]``).
"""

from __future__ import annotations

from typing import Any

from core.api.errors import ApiError
from core.api.schemas import ChatCompletionRequest, ImagePart
from core.errors import InputError
from core.images import MAX_BYTES, MAX_IMAGES, ImageInput, from_data_url, read_image

DOWNLOAD_TIMEOUT_S = 10.0
"""Seconds one picture download may take (connect and read), when downloads are allowed."""


def request_images(req: ChatCompletionRequest, downloads: bool = False) -> dict[int, list[ImageInput]]:
    """The checked pictures of each message that has any (message index -> pictures, in order)."""
    found: dict[int, list[ImageInput]] = {}
    for i, message in enumerate(req.messages):
        if not isinstance(message.content, list):
            continue
        parts = [(j, part) for j, part in enumerate(message.content) if isinstance(part, ImagePart)]
        if not parts:
            continue
        if message.role != "user":
            raise ApiError(400, f"messages[{i}] is a {message.role} message with a picture; only user messages may "
                           "carry image_url parts: move the picture to a user message.", code="invalid_value",
                           param=f"messages[{i}].content[{parts[0][0]}]")
        if len(parts) > MAX_IMAGES:
            raise ApiError(400, f"messages[{i}] has {len(parts)} pictures, more than the {MAX_IMAGES} one message may "
                           "carry: send fewer pictures per message.", code="invalid_value",
                           param=f"messages[{i}].content")
        found[i] = [_picture(part.image_url.url, f"messages[{i}].content[{j}]", downloads) for j, part in parts]
    return found


def _picture(url: str, where: str, downloads: bool) -> ImageInput:
    """One part's picture; ApiError 400 naming ``where``."""
    scheme = url.split(":", 1)[0].strip().lower() if ":" in url else ""
    try:
        if scheme == "data":
            return from_data_url(url, where)
        if scheme in ("http", "https"):
            if not downloads:
                raise ApiError(400, f"{where}: this server does not download pictures from URLs (it works offline); "
                               "send the picture as a data: URL (data:image/png;base64,...), or let it download them "
                               "with api_image_downloads = true in inkstone.toml.", code="invalid_value", param=where)
            return read_image(download(url, where), where)
    except InputError as exc:
        raise ApiError(400, str(exc), code="invalid_value", param=where) from None
    raise ApiError(400, f"{where}: {url[:40]!r} is neither a data: URL nor an http(s) URL; send the picture as "
                   "data:image/png;base64,...", code="invalid_value", param=where)


def download(url: str, where: str) -> bytes:
    """The bytes at ``url`` (at most ``MAX_BYTES``, within ``DOWNLOAD_TIMEOUT_S`` per read); InputError naming
    ``where`` for an unreachable URL, an error status or a file over the limit."""
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, headers={"User-Agent": "Inkstone"})
    try:
        with urllib.request.urlopen(request, timeout=DOWNLOAD_TIMEOUT_S) as response:  # noqa: S310 (scheme checked)
            declared = response.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > MAX_BYTES:
                raise InputError(f"{where}: the picture at {url[:80]} is {int(declared) / 1e6:.1f} MB, over the "
                                 f"{MAX_BYTES // (1024 * 1024)} MB limit; send a smaller picture")
            data = response.read(MAX_BYTES + 1)
    except (urllib.error.URLError, TimeoutError, OSError, ValueError) as exc:
        reason: Any = getattr(exc, "reason", None) or exc
        raise InputError(f"{where}: could not download {url[:80]} ({reason}); send the picture as a data: URL "
                         "instead") from None
    if len(data) > MAX_BYTES:
        raise InputError(f"{where}: the picture at {url[:80]} is over the {MAX_BYTES // (1024 * 1024)} MB limit; "
                         "send a smaller picture")
    return data

