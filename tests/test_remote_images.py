"""Pictures through the remote (``openai``) backend: a second ``python -m core serve`` runs a tiny Qwen2-VL, the
remote backend forwards a user message's pictures as ``image_url`` data URLs and gets the answer the model gives
in-process; a server whose model reads no pictures refuses, and its error reaches the user as it said it."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from core.api.server import ApiServer, free_port
from core.backends import create_backend
from core.backends.base import Finished, TextDelta
from core.backends.fake import FakeBackend
from core.backends.openai_backend import OpenAIBackend, wire_messages
from core.config import GenerationSettings, load_settings
from core.engine import build_engine
from core.errors import GenerationError
from core.images import ImageInput, read_image
from core.models.registry import resolve
from tests.vlm_fixture import make_vlm_checkpoint

REPO = Path(__file__).resolve().parents[1]
GREEDY = GenerationSettings().with_updates(temperature=0, repetition_penalty=1.0, max_new_tokens=8, top_k=0,
                                           top_p=1.0)


def picture() -> ImageInput:
    from PIL import Image

    image = Image.new("RGB", (1024, 768), (20, 120, 60))
    for x in range(0, 1024, 29):
        for y in range(0, 768, 2):
            image.putpixel((x, y), (x % 256, y % 256, 200))
    buf = io.BytesIO()
    image.save(buf, "JPEG")
    return read_image(buf.getvalue(), "field.jpg")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """A tiny Qwen2-VL served by ``python -m core serve`` in a child process: (model dir, base URL)."""
    root = tmp_path_factory.mktemp("remote-vlm")
    model = make_vlm_checkpoint("qwen2_vl", root / "tiny-qwen2-vl")
    port = free_port()
    env = {**os.environ, "INKSTONE_HOME": str(root / "srv"), "INKSTONE_CONFIG": str(root / "none.toml")}
    proc = subprocess.Popen([sys.executable, "-m", "core", "serve", "--model", str(model), "--port", str(port),
                             "--device", "cpu"], cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        else:
            pytest.fail(f"the server did not start: {proc.stderr.read().decode() if proc.stderr else ''}")
        yield model, f"http://127.0.0.1:{port}/v1"
    finally:
        proc.kill()
        proc.wait(10)


def run(backend: object, messages: list[dict[str, object]]) -> tuple[str, Finished]:
    events = list(backend.stream(messages, GREEDY, threading.Event()))  # type: ignore[attr-defined]
    assert isinstance(events[-1], Finished)
    return "".join(e.text for e in events if isinstance(e, TextDelta)), events[-1]


def test_pictures_are_forwarded_and_answered_as_in_process(served: tuple[Path, str]) -> None:
    model, url = served
    remote = OpenAIBackend(model_id="tiny-vlm", base_url=url, model=str(model))
    assert remote.capabilities.images
    image = picture()
    messages = [{"role": "user", "content": "What grows here?", "images": [image]}]
    wire = wire_messages(messages)
    assert wire[0]["content"][1] == {"type": "image_url", "image_url": {"url": image.data_url()}}
    local = create_backend(resolve(str(model)), load_settings({"device": "cpu"}))
    text, done = run(remote, messages)
    expected, local_done = run(local, messages)
    assert text == expected and done.prompt_tokens == local_done.prompt_tokens  # the server counted the image
    plain_text, plain = run(remote, [{"role": "user", "content": "What grows here?"}])
    assert plain.prompt_tokens < done.prompt_tokens
    assert remote.count_prompt_tokens(messages) > remote.count_prompt_tokens([messages[0] | {"images": []}])


def test_a_text_only_server_refuses_and_says_why(tmp_path: Path) -> None:
    engine = build_engine(load_settings({"model": "fake", "home": str(tmp_path)}, config_file=tmp_path / "none"),
                          backend=FakeBackend(["hello"]))
    server = ApiServer(lambda: engine, port=free_port()).start()
    try:
        remote = OpenAIBackend(model_id="text-only", base_url=server.url, model="fake")
        with pytest.raises(GenerationError, match=r"HTTP 400: The model 'fake' does not read pictures"):
            run(remote, [{"role": "user", "content": "Look", "images": [picture()]}])
        assert run(remote, [{"role": "user", "content": "Hi"}])[0] == "hello"  # text still works
    finally:
        server.stop()
