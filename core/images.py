"""Pictures attached to a chat message: checked once, from their bytes, before anything stores or decodes them.

``read_image(data, name)`` is the one gate every way in passes (the chat view's attachments, the API's ``image_url``
data URLs, an imported export): it refuses what is not a PNG/JPEG/WEBP/GIF/BMP picture, a picture over the byte or
pixel limits (decompression bombs are refused from the header, before decoding), and a damaged or cut-off file, each
with an ``InputError`` that names the picture and the fix. What it returns (``ImageInput``) is what a message carries
to the backend: ``{"role": "user", "content": "...", "images": [ImageInput, ...]}``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import re
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from core.errors import InputError

if TYPE_CHECKING:  # pragma: no cover
    from PIL.Image import Image

MAX_IMAGES = 8
"""Pictures one message may carry."""
MAX_BYTES = 20 * 1024 * 1024
"""Bytes of one picture file (OpenAI's own limit for an image input is 20 MB)."""
MAX_PIXELS = 40_000_000
"""Pixels of one picture (width x height); a 20,000 x 20,000 PNG is a decompression bomb, refused from its header."""
MIN_SIDE = 2
FORMATS = {"PNG": "image/png", "JPEG": "image/jpeg", "MPO": "image/jpeg", "WEBP": "image/webp", "GIF": "image/gif",
           "BMP": "image/bmp", "DIB": "image/bmp"}
"""Pillow format -> the MIME type stored and sent (MPO: JPEGs from some cameras)."""
_FIX = "attach it as PNG or JPEG"


@dataclass(frozen=True)
class ImageInput:
    """One checked picture: its original bytes (stored and forwarded as they came), MIME type, content hash and size."""

    data: bytes = field(repr=False)
    mime: str
    sha256: str
    width: int
    height: int
    name: str = "image"
    animated: bool = False
    """A GIF/WEBP with several frames: only the first is used (the caller may tell the user)."""

    def pil(self) -> Image:
        """The first frame, decoded, in RGB (what vision models' processors take)."""
        return decode(self.data, self.name)

    def data_url(self) -> str:
        """``data:<mime>;base64,...``: the picture as OpenAI ``image_url`` parts and exports carry it."""
        return f"data:{self.mime};base64,{base64.b64encode(self.data).decode('ascii')}"


def read_image(data: bytes, name: str = "image") -> ImageInput:
    """Check ``data`` as a picture without decoding its pixels; InputError naming ``name`` and the fix if it is
    empty, too large (bytes or pixels), not a supported picture (SVG, TIFF, HEIC, text...), or damaged."""
    from PIL import Image as PILImage
    from PIL import UnidentifiedImageError

    if not data:
        raise InputError(f"{name} is empty (0 bytes); {_FIX}")
    if len(data) > MAX_BYTES:
        raise InputError(f"{name} is {len(data) / 1e6:.1f} MB, over the {MAX_BYTES // (1024 * 1024)} MB limit for a "
                         "picture; scale it down or save it as JPEG")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PILImage.DecompressionBombWarning)
            with PILImage.open(io.BytesIO(data)) as image:
                width, height = image.size
                fmt = image.format or "?"
                animated = bool(getattr(image, "is_animated", False))
    except PILImage.DecompressionBombError as exc:
        raise InputError(f"{name} has far more than the {MAX_PIXELS / 1e6:.0f} million pixel limit (a decompression "
                         "bomb, or a huge scan); it was not decoded: scale it down") from exc
    except UnidentifiedImageError as exc:
        raise InputError(f"{name} is not a picture that can be read (damaged, or another kind of file); "
                         f"{_FIX}") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"{name}: the picture's header is damaged ({exc}); {_FIX}") from exc
    if fmt not in FORMATS:
        raise InputError(f"{name} is a {fmt} picture, which chat does not take; {_FIX}")
    if width * height > MAX_PIXELS:
        raise InputError(f"{name} is {width} x {height} pixels ({width * height / 1e6:.0f} million), over the "
                         f"{MAX_PIXELS / 1e6:.0f} million limit; it was not decoded: scale it down")
    if width < MIN_SIDE or height < MIN_SIDE:
        raise InputError(f"{name} is only {width} x {height} pixels; {_FIX}")
    image_input = ImageInput(data, FORMATS[fmt], hashlib.sha256(data).hexdigest(), width, height, name, animated)
    decode(data, name)  # a truncated file passes the header check: decode once so nothing damaged is stored
    return image_input


def decode(data: bytes, name: str = "image") -> Image:
    """The first frame of checked picture bytes, decoded to RGB; InputError if the data is damaged or cut off."""
    from PIL import Image as PILImage

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PILImage.DecompressionBombWarning)
            with PILImage.open(io.BytesIO(data)) as opened:
                opened.seek(0)
                opened.load()
                return opened.convert("RGB")
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise InputError(f"{name} is damaged or cut off ({exc}); {_FIX}") from exc


_DATA_URL = re.compile(r"data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(?:;[\w.+-]+=[^;,]*)*)(?P<b64>;base64)?,",
                       re.IGNORECASE)


def from_data_url(url: str, name: str = "image") -> ImageInput:
    """A picture from a ``data:image/...;base64,...`` URL; InputError for another scheme, a non-base64 payload or
    a picture ``read_image`` refuses."""
    match = _DATA_URL.match(url)
    if match is None:
        shown = url[:40] + ("..." if len(url) > 40 else "")
        raise InputError(f"{name}: {shown!r} is not a data: URL; send the picture as data:image/png;base64,...")
    if not match.group("b64"):
        raise InputError(f"{name}: the data URL is not base64 (';base64,' is missing); encode the picture in base64")
    payload = url[match.end():]
    if len(payload) > MAX_BYTES * 4 // 3 + 4:
        raise InputError(f"{name} is over the {MAX_BYTES // (1024 * 1024)} MB limit for a picture; scale it down")
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InputError(f"{name}: the data URL's base64 payload is damaged ({exc}); encode the picture again") from exc
    return read_image(data, name)
