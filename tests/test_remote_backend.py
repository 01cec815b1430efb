"""The remote (``openai``) backend against a real Inkstone API server started by the test: real HTTP, the real
``openai`` client, a tiny random Llama with a real PEFT LoRA persona. Chat turns, persona adapters selected by
model name, token counts from the server's usage chunk, stop, and a server killed mid-answer."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from core.api.server import ApiServer, free_port
from core.backends.base import AdapterSpec, TextDelta
from core.backends.openai_backend import OpenAIBackend
from core.chat.service import Done, Failed, Token
from core.config import load_settings
from core.engine import Engine, build_engine
from core.errors import ConfigError
from core.models.remote import profile_options
from tests.test_api import MESSAGES, local_answer, setup  # noqa: F401  (module fixture reused)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def server_engine(setup: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Engine:  # noqa: F811
    model_dir, adapters = setup
    home = tmp_path_factory.mktemp("server-home")
    return build_engine(load_settings({"model": str(model_dir), "adapters": str(adapters), "home": str(home),
                                       "temperature": 0, "max_new_tokens": 10, "repetition_penalty": 1.0,
                                       "dtype": "float32"},
                                      config_file=home / "absent.toml"))


@pytest.fixture(scope="module")
def server(server_engine: Engine) -> Iterator[ApiServer]:
    srv = ApiServer(lambda: server_engine, port=free_port()).start()
    yield srv
    srv.stop()


def remote_engine(home: Path, adapters: Path, url: str, monkeypatch: pytest.MonkeyPatch,
                  **generation: object) -> Engine:
    """An Inkstone whose model is the ``[models.tiny-llama]`` profile pointing at ``url``."""
    config = home.parent / "inkstone.toml"
    config.write_text(f'[models.tiny-llama]\nbackend = "openai"\nbase_url = "{url}"\nmodel = "tiny-llama"\n'
                      'context_window = 512\napi_key = "unused"\n', encoding="utf-8")
    monkeypatch.setenv("INKSTONE_CONFIG", str(config))
    settings = {"model": "tiny-llama", "adapters": str(adapters), "temperature": 0, "max_new_tokens": 10,
                "repetition_penalty": 1.0, **generation}
    return build_engine(load_settings(settings))


def test_turn_through_the_remote_backend_matches_the_server(home: Path, setup, server: ApiServer,  # noqa: F811
                                                            server_engine: Engine, monkeypatch) -> None:
    engine = remote_engine(home, setup[1], server.url, monkeypatch)
    assert engine.backend.info().backend == "openai" and engine.backend.loaded is None
    sid = engine.new_session()
    events = list(engine.service.send(sid, MESSAGES[0]["content"]))
    done = events[-1]
    assert isinstance(done, Done), done
    expected, finished = local_answer(server_engine, MESSAGES, 10)
    assert done.stats.text == expected == "".join(e.text for e in events if isinstance(e, Token))
    assert done.stats.prompt_tokens == finished.prompt_tokens  # the server's usage, not the estimate
    assert done.stats.completion_tokens == finished.completion_tokens
    assert done.stats.ttft_ms and done.stats.ttft_ms > 0 and done.stats.tokens_per_s
    stored = engine.store.messages(sid)[-1]
    assert (stored.status, stored.content, stored.completion_tokens) == ("complete", expected,
                                                                         finished.completion_tokens)


def test_persona_adapter_is_selected_by_model_name(home: Path, setup, server: ApiServer,  # noqa: F811
                                                   server_engine: Engine, monkeypatch) -> None:
    engine = remote_engine(home, setup[1], server.url, monkeypatch)
    sid = engine.new_session(persona="pirate")
    done = list(engine.service.send(sid, MESSAGES[0]["content"]))[-1]
    assert isinstance(done, Done), done
    with_system = [{"role": "system", "content": "Arr."}, *MESSAGES]
    expected, _ = local_answer(server_engine, with_system, 10, AdapterSpec("pirate", setup[1] / "pirate"))
    assert done.stats.text == expected != local_answer(server_engine, with_system, 10)[0]
    metrics = httpx.get(f"{server.url.removesuffix('/v1')}/metrics").text
    assert 'inkstone_completion_tokens_total{model="pirate"}' in metrics


def test_stop_event_ends_the_remote_answer_and_frees_the_server(home: Path, setup, server: ApiServer,  # noqa: F811
                                                                server_engine: Engine, monkeypatch) -> None:
    engine = remote_engine(home, setup[1], server.url, monkeypatch, max_new_tokens=400)
    stop = threading.Event()
    sid = engine.new_session()
    events = []
    for event in engine.service.send(sid, MESSAGES[0]["content"], stop):
        events.append(event)
        if isinstance(event, Token) and len(events) > 3:
            stop.set()
    assert isinstance(events[-1], Done) and events[-1].stats.status == "stopped"
    assert 0 < len(events[-1].stats.text)
    deadline = time.monotonic() + 30
    while server_engine.backend.queue.active and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server_engine.backend.queue.active == 0


def test_server_killed_mid_answer_gives_a_clear_error_and_keeps_the_partial_answer(
        home: Path, setup, tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001, F811
    model_dir, adapters = setup
    port = free_port()
    env = {**os.environ, "INKSTONE_HOME": str(tmp_path / "srv"), "INKSTONE_CONFIG": str(tmp_path / "none.toml"),
           "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "core", "serve", "--model", str(model_dir), "--port", str(port)],
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        else:
            pytest.fail(f"the server did not start: {proc.stderr.read().decode() if proc.stderr else ''}")
        engine = remote_engine(home, adapters, f"http://127.0.0.1:{port}/v1", monkeypatch, max_new_tokens=400,
                               temperature=0.0)
        sid = engine.new_session()
        events = []
        for event in engine.service.send(sid, MESSAGES[0]["content"]):
            events.append(event)
            if isinstance(event, Token) and proc.poll() is None:
                proc.kill()  # the server goes down mid-answer
    finally:
        proc.kill()
        proc.wait(10)
    failed = events[-1]
    assert isinstance(failed, Failed), failed
    assert f"127.0.0.1:{port}" in failed.error and "kept" in failed.error
    stored = engine.store.messages(sid)[-1]
    partial = "".join(e.text for e in events if isinstance(e, Token))
    assert stored.status == "error" and stored.content == partial and partial
    assert engine.store.messages(sid)[0].content == MESSAGES[0]["content"]


def test_unreachable_server_is_a_generation_error(home: Path) -> None:
    backend = OpenAIBackend(model_id="gone", base_url=f"http://127.0.0.1:{free_port()}/v1", model="m")
    from core.config import GenerationSettings
    from core.errors import GenerationError

    with pytest.raises(GenerationError, match="Lost the connection"):
        list(backend.stream(MESSAGES, GenerationSettings(), threading.Event()))
    assert not backend.busy


def test_profile_table_problems_are_named_together() -> None:
    with pytest.raises(ConfigError) as info:
        profile_options("x", {"base_url": "gpu-box:8000", "context_window": "big", "colour": 1})
    message = str(info.value)
    assert all(part in message for part in ("colour", "base_url", "model", "context_window", "[models.x]"))
    assert profile_options("x", {"base_url": "http://h/v1", "model": "m"})["context_window"] == 4096


def test_streaming_events_come_as_they_arrive(setup, server: ApiServer) -> None:  # noqa: F811
    backend = OpenAIBackend(model_id="tiny-llama", base_url=server.url, model="tiny-llama", context_window=512)
    from core.config import GenerationSettings

    events = list(backend.stream(MESSAGES, GenerationSettings(max_new_tokens=10, temperature=0), threading.Event()))
    assert sum(isinstance(e, TextDelta) for e in events) > 1 and events[-1].reason in ("stop", "length")


@pytest.mark.slow
def test_bundled_model_answers_through_a_remote_profile(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       smollm2_cached: Callable[..., None]) -> None:  # fmt: skip
    """The small bundled model behind an Inkstone server, used by a second Inkstone as a remote profile."""
    smollm2_cached(tmp_path / "server", "int8")  # converted once per run (tests/model_cache.py)
    served = build_engine(load_settings({"model": "smollm2-135m", "home": str(tmp_path / "server"),
                                         "temperature": 0, "max_new_tokens": 24},
                                        config_file=tmp_path / "absent.toml"))
    srv = ApiServer(lambda: served, port=free_port()).start()
    try:
        config = tmp_path / "inkstone.toml"
        config.write_text(f'[models.smol-remote]\nbase_url = "{srv.url}"\nmodel = "smollm2-135m"\n'
                          'context_window = 8192\n', encoding="utf-8")
        monkeypatch.setenv("INKSTONE_CONFIG", str(config))
        engine = build_engine(load_settings({"model": "smol-remote", "home": str(tmp_path / "client"),
                                             "temperature": 0, "max_new_tokens": 24}))
        sid = engine.new_session()
        done = list(engine.service.send(sid, "What is the capital of France?"))[-1]
        assert isinstance(done, Done), done
        assert "Paris" in done.stats.text and done.stats.completion_tokens > 0
        assert engine.store.get_session(sid).model == "smol-remote"
    finally:
        srv.stop()


def test_remote_profiles_from_inkstone_toml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from core.models.registry import profiles, resolve

    config = tmp_path / "inkstone.toml"
    config.write_text('[models.bad]\nbase_url = "gpu-box"\n\n[models.vllm]\nbase_url = "http://gpu:8000/v1"\n'
                      'model = "Qwen/Qwen2.5-7B-Instruct"\ncontext_window = 32768\nadapters = { quill = "quill-v2" }\n',
                      encoding="utf-8")
    monkeypatch.setenv("INKSTONE_CONFIG", str(config))
    assert [p.id for p in profiles() if p.source == "remote"] == ["vllm"]  # a broken table breaks no list
    profile = resolve("vllm")
    assert profile.backend == "openai" and dict(profile.backend_options)["context_window"] == 32768
    with pytest.raises(ConfigError, match=r"\[models.bad\].*base_url"):
        resolve("bad")
    backend = OpenAIBackend(model_id="vllm", **dict(profile.backend_options))
    assert backend.server_model(AdapterSpec("quill", tmp_path)) == "quill-v2"
    assert backend.server_model(AdapterSpec("concise", tmp_path)) == "concise"
    assert backend.server_model(None) == "Qwen/Qwen2.5-7B-Instruct"


COUNT = {"type": "function", "function": {"name": "count", "description": "Count", "parameters": {
    "type": "object", "properties": {"n": {"type": "integer", "minimum": 0, "maximum": 9}}, "required": ["n"]}}}


@pytest.fixture(scope="module")
def long_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    """A tiny random Llama with room for tool prompts (its byte-level tokenizer spells them out)."""
    import json

    from tests.fixtures_native import make_native_checkpoint

    root = tmp_path_factory.mktemp("long-llama")
    model_dir = make_native_checkpoint("llama", root / "tiny-llama")
    config = json.loads((model_dir / "config.json").read_text())
    config["max_position_embeddings"] = 2048
    (model_dir / "config.json").write_text(json.dumps(config))
    engine = build_engine(load_settings({"model": str(model_dir), "home": str(root / "home"), "dtype": "float32"},
                                        config_file=root / "absent.toml"))
    srv = ApiServer(lambda: engine, port=free_port()).start()
    yield srv
    srv.stop()


@pytest.fixture
def remote_api(tmp_path: Path, long_server: ApiServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The OpenAI client of a second Inkstone whose model is the first one, through the remote backend."""
    from openai import OpenAI

    config = tmp_path / "inkstone.toml"
    config.write_text(f'[models.tiny-llama]\nbase_url = "{long_server.url}"\nmodel = "tiny-llama"\n'
                      'context_window = 2048\n', encoding="utf-8")
    monkeypatch.setenv("INKSTONE_CONFIG", str(config))
    engine = build_engine(load_settings({"model": "tiny-llama", "home": str(tmp_path / "front"),
                                         "max_new_tokens": 80, "temperature": 1.0, "repetition_penalty": 1.0}))
    front = ApiServer(lambda: engine, port=free_port()).start()
    yield OpenAI(base_url=front.url, api_key="unused", max_retries=0)
    front.stop()


def test_tools_and_response_format_are_forwarded_and_calls_come_back(remote_api: Any) -> None:
    """The remote server (an Inkstone that constrains its tiny random model) renders, forces and parses the call;
    the front returns its calls as its own, as JSON and as a stream, and sends results back in OpenAI's shape."""
    import json

    import jsonschema

    user = {"role": "user", "content": "n?"}
    answer = remote_api.chat.completions.create(model="tiny-llama", messages=[user], tools=[COUNT],
                                                tool_choice="required", parallel_tool_calls=False)
    assert answer.choices[0].finish_reason == "tool_calls", answer.choices[0].message.content
    (call,) = answer.choices[0].message.tool_calls
    assert call.function.name == "count" and call.id.startswith("call_")
    jsonschema.validate(json.loads(call.function.arguments), COUNT["function"]["parameters"])
    streamed = [c.choices[0].delta for c in remote_api.chat.completions.create(
        model="tiny-llama", messages=[user], tools=[COUNT], stream=True,
        tool_choice={"type": "function", "function": {"name": "count"}}) if c.choices]
    pieces = [d.tool_calls[0] for d in streamed if d.tool_calls]
    assert pieces[0].function.name == "count"
    jsonschema.validate(json.loads("".join(p.function.arguments or "" for p in pieces)),
                        COUNT["function"]["parameters"])
    result = remote_api.chat.completions.create(model="tiny-llama", tools=[COUNT], max_tokens=4, messages=[
        user, answer.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "3"}])  # the remote server checks the id
    assert result.choices[0].finish_reason in ("stop", "length")
    schema = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
    shaped = remote_api.chat.completions.create(model="tiny-llama", messages=[user], response_format={
        "type": "json_schema", "json_schema": {"name": "x", "schema": schema, "strict": True}})
    jsonschema.validate(json.loads(shaped.choices[0].message.content), schema)


def test_a_remote_server_that_cannot_constrain_says_so_plainly(tmp_path: Path, monkeypatch) -> None:  # noqa: ANN001
    from openai import BadRequestError, OpenAI

    from core.backends.fake import FakeBackend

    served = build_engine(load_settings({"model": "fake", "home": str(tmp_path / "server")},
                                        config_file=tmp_path / "absent.toml"), backend=FakeBackend())
    remote = ApiServer(lambda: served, port=free_port()).start()
    config = tmp_path / "inkstone.toml"
    config.write_text(f'[models.far]\nbase_url = "{remote.url}"\nmodel = "fake"\n', encoding="utf-8")
    monkeypatch.setenv("INKSTONE_CONFIG", str(config))
    engine = build_engine(load_settings({"model": "far", "home": str(tmp_path / "client")}))
    front = ApiServer(lambda: engine, port=free_port()).start()
    try:
        client = OpenAI(base_url=front.url, api_key="unused", max_retries=0)
        with pytest.raises(BadRequestError) as caught:
            client.chat.completions.create(model="far", messages=[{"role": "user", "content": "hi"}], tools=[COUNT],
                                           tool_choice="required")
        error = caught.value.body
        assert error["param"] == "tool_choice" and remote.url in error["message"] and "refused" in error["message"]
        assert "constrained decoding" in error["message"]  # the remote server's own reason, passed on
        ok = client.chat.completions.create(model="far", messages=[{"role": "user", "content": "hi"}])
        assert ok.choices[0].message.content  # still usable
    finally:
        front.stop()
        remote.stop()
