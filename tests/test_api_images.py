"""Pictures through the OpenAI-compatible API (real server, the official ``openai`` client): ``image_url`` parts with
``data:`` URLs reach a tiny Qwen2-VL and give the same answer as the backend in-process; the prompt usage counts
the image tokens; bad pictures, too many, http(s) URLs without the opt-in, pictures in a non-user message and
pictures sent to a text-only model are 400s in OpenAI's shape naming the part; the opt-in download fetches with
limits; ``Prepared.user_images`` holds the last user message's pictures."""

from __future__ import annotations

import base64
import http.server
import io
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from core.api.completions import Completions
from core.api.errors import ApiError
from core.api.images import request_images
from core.api.metrics import ApiMetrics
from core.api.schemas import ChatCompletionRequest
from core.api.server import ApiServer, free_port
from core.backends.base import TextDelta
from core.backends.fake import FakeBackend
from core.config import load_settings
from core.engine import Engine, build_engine
from core.images import MAX_IMAGES
from tests.test_images import _bomb_png
from tests.vlm_fixture import make_vlm_checkpoint


def png(width: int = 1024, height: int = 768, color: tuple[int, int, int] = (30, 90, 200)) -> bytes:
    from PIL import Image

    image = Image.new("RGB", (width, height), color)
    for x in range(0, width, 37):
        for y in range(0, height, 3):
            image.putpixel((x, y), (x % 256, y % 256, 0))
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def data_url(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def with_image(url: str, text: str = "What is in this picture?") -> list[dict[str, Any]]:
    return [{"role": "user", "content": [{"type": "text", "text": text},
                                         {"type": "image_url", "image_url": {"url": url}}]}]


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    root = tmp_path_factory.mktemp("api-vlm")
    model = make_vlm_checkpoint("qwen2_vl", root / "tiny-qwen2-vl")
    return build_engine(load_settings({"model": str(model), "home": str(root / "home"), "temperature": 0,
                                       "max_new_tokens": 8, "repetition_penalty": 1.0, "device": "cpu"},
                                      config_file=root / "absent.toml"))


@pytest.fixture(scope="module")
def client(engine: Engine) -> Iterator[Any]:
    from openai import OpenAI

    server = ApiServer(lambda: engine, port=free_port()).start()
    yield OpenAI(base_url=server.url, api_key="unused", max_retries=0)
    server.stop()


def test_a_data_url_picture_is_answered_like_in_process(engine: Engine, client: Any) -> None:
    from core.images import read_image

    picture = png()
    done = client.chat.completions.create(model=engine.backend.model_id, messages=with_image(data_url(picture)))
    messages = [{"role": "user", "content": "What is in this picture?", "images": [read_image(picture)]}]
    local = engine.backend.stream(messages, engine.settings.generation.with_updates(
        max_new_tokens=8, temperature=0, repetition_penalty=1.0), threading.Event())
    assert done.choices[0].message.content == "".join(e.text for e in local if isinstance(e, TextDelta))
    text_only = client.chat.completions.create(model=engine.backend.model_id,
                                               messages=[{"role": "user", "content": "What is in this picture?"}])
    assert done.usage.prompt_tokens > text_only.usage.prompt_tokens + 50  # the 1024x768 picture's image tokens
    chunks = list(client.chat.completions.create(model=engine.backend.model_id, messages=with_image(
        data_url(picture)), stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == done.choices[0].message.content


def test_a_picture_alone_is_a_question(engine: Engine, client: Any) -> None:
    only = [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": data_url(png(64, 48))}}]}]
    done = client.chat.completions.create(model=engine.backend.model_id, messages=only)
    assert done.choices[0].finish_reason in ("stop", "length")


def refused(client: Any, engine: Engine, messages: list[dict[str, Any]]) -> dict[str, Any]:
    from openai import BadRequestError

    with pytest.raises(BadRequestError) as info:
        client.chat.completions.create(model=engine.backend.model_id, messages=messages)
    assert info.value.status_code == 400
    return info.value.body  # type: ignore[return-value]


@pytest.mark.parametrize(("url", "words"), [
    ("data:image/png;base64,!!!notbase64", "base64"),
    ("data:image/png," + "x" * 20, "not base64"),
    (data_url(b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>', "image/svg+xml"), "not a picture"),
    (data_url(b"just some text, named like a picture\n" * 4), "not a picture"),
    (data_url(_bomb_png()), "limit"),
    (data_url(png(64, 48)[:-40]), "damaged"),
    ("https://example.com/cat.png", "api_image_downloads = true"),
    ("ftp://example.com/cat.png", "neither a data: URL"),
])
def test_bad_pictures_are_400s_naming_the_part(client: Any, engine: Engine, url: str, words: str) -> None:
    body = refused(client, engine, with_image(url))
    assert body["param"] == "messages[0].content[1]" and words in body["message"]
    assert body["code"] == "invalid_value"


def test_too_many_pictures_and_pictures_outside_user_messages(client: Any, engine: Engine) -> None:
    small = {"type": "image_url", "image_url": {"url": data_url(png(32, 32))}}
    body = refused(client, engine, [{"role": "user", "content": [{"type": "text", "text": "Hi"}] +
                                     [small] * (MAX_IMAGES + 1)}])
    assert body["param"] == "messages[0].content" and f"more than the {MAX_IMAGES}" in body["message"]
    body = refused(client, engine, [{"role": "user", "content": "Hi"},
                                    {"role": "assistant", "content": [small]}, {"role": "user", "content": "And?"}])
    assert body["param"] == "messages[1].content[0]" and "only user messages" in body["message"]


def test_a_text_only_model_refuses_pictures_naming_models_that_take_them(tmp_path: Path) -> None:
    from openai import BadRequestError, OpenAI

    fake = build_engine(load_settings({"model": "fake", "home": str(tmp_path)}, config_file=tmp_path / "absent"),
                        backend=FakeBackend(["hello"]))
    assert not fake.backend.capabilities.images
    server = ApiServer(lambda: fake, port=free_port()).start()
    try:
        client = OpenAI(base_url=server.url, api_key="unused", max_retries=0)
        with pytest.raises(BadRequestError) as info:
            client.chat.completions.create(model="fake", messages=with_image(data_url(png(32, 32))))
        body = info.value.body
        assert body["param"] == "messages[0].content[1]" and "does not read pictures" in body["message"]
        assert "Qwen2-VL" in body["message"] and "LLaVA" in body["message"]
        assert client.chat.completions.create(model="fake", messages=[{"role": "user", "content": "hi"}])
    finally:
        server.stop()


def test_prepared_carries_the_last_user_messages_pictures(engine: Engine) -> None:
    first, second = png(64, 48), png(80, 60, (200, 10, 10))
    req = ChatCompletionRequest.model_validate({"model": engine.backend.model_id, "messages": [
        *with_image(data_url(first), "One"), {"role": "assistant", "content": "A blue one."},
        *with_image(data_url(second), "Two")]})
    prep = Completions(lambda: engine, ApiMetrics()).prepare(req)
    import hashlib

    assert [i.sha256 for i in prep.user_images] == [hashlib.sha256(second).hexdigest()]
    assert prep.user_text == "Two" and [len(m.get("images", [])) for m in prep.messages][-3:] == [1, 0, 1]


class _Pictures(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (the standard library's name)
        body = {"/cat.png": png(64, 48), "/huge.png": b"\0" * 64}.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(30_000_000 if self.path == "/huge.png" else len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def test_opted_in_downloads_are_fetched_with_limits() -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Pictures)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        def ask(path: str, downloads: bool = True) -> Any:
            req = ChatCompletionRequest.model_validate({"model": "m", "messages": with_image(base + path)})
            return request_images(req, downloads)

        assert ask("/cat.png")[0][0].width == 64
        with pytest.raises(ApiError, match="api_image_downloads = true"):
            ask("/cat.png", downloads=False)
        with pytest.raises(ApiError, match="over the 20 MB limit") as info:
            ask("/huge.png")
        assert info.value.param == "messages[0].content[1]"
        with pytest.raises(ApiError, match="could not download"):
            ask("/missing.png")
    finally:
        server.shutdown()
