"""The one gate for chat pictures (``core.images``): what it takes, and what it refuses with a message that names
the picture and the fix, before anything is decoded or stored."""

from __future__ import annotations

import base64
import io
import struct
import zlib

import pytest
from PIL import Image

from core.errors import InputError
from core.images import from_data_url, read_image


def _png(width: int = 32, height: int = 24, color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, "PNG")
    return buffer.getvalue()


def _bomb_png(side: int = 20_000) -> bytes:
    """A valid PNG header declaring side x side pixels, with a tiny (truncated) body: refused from the header."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)) + \
        chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_a_png_is_read_with_its_size_hash_and_data_url() -> None:
    data = _png()
    image = read_image(data, "red.png")
    assert (image.width, image.height, image.mime) == (32, 24, "image/png")
    assert len(image.sha256) == 64
    assert image.pil().getpixel((3, 3)) == (200, 30, 30)
    again = from_data_url(image.data_url())
    assert again.sha256 == image.sha256 and again.data == data


@pytest.mark.parametrize(("data", "words"), [
    (b"", "empty"),
    (b"hello, this is text", "not a picture"),
    (b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>', "not a picture"),
    (_png()[:60], "damaged"),
    (_bomb_png(), "limit"),
])
def test_bad_pictures_are_refused_naming_the_file(data: bytes, words: str) -> None:
    with pytest.raises(InputError) as caught:
        read_image(data, "photo.png")
    assert "photo.png" in str(caught.value) and words in str(caught.value)


def test_a_gif_with_many_frames_keeps_its_first() -> None:
    frames = [Image.new("RGB", (16, 16), (i, 0, 0)) for i in range(0, 250, 5)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:])
    image = read_image(buffer.getvalue(), "anim.gif")
    assert image.animated and image.mime == "image/gif"
    assert image.pil().getpixel((0, 0))[0] < 5


@pytest.mark.parametrize(("url", "words"), [
    ("https://example.com/cat.png", "not a data: URL"),
    ("data:image/png,rawbytes", "not base64"),
    ("data:image/png;base64,@@@not base64@@@", "damaged"),
])
def test_bad_data_urls_are_refused(url: str, words: str) -> None:
    with pytest.raises(InputError, match=words):
        from_data_url(url, "messages[0].content[1]")


def test_a_data_url_of_a_text_file_is_refused() -> None:
    url = "data:image/png;base64," + base64.b64encode(b"just text, named as a png").decode()
    with pytest.raises(InputError, match="not a picture"):
        from_data_url(url)
