"""The OpenAI-compatible API on a real server (uvicorn in a thread, real HTTP) over a tiny random Llama checkpoint
with a real PEFT LoRA persona: wire format through the official ``openai`` client, personas as model ids, stop
strings, seeds, sessions, errors in OpenAI's shape, auth, metrics, client disconnects and the fair queue."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from core.api.server import ApiServer, check_binding, free_port
from core.backends.base import AdapterSpec, Finished, TextDelta
from core.config import load_settings
from core.engine import Engine, build_engine
from core.errors import ConfigError, ModelError
from core.generation.scheduler import FairQueue
from tests.fixtures_native import make_native_checkpoint

MESSAGES = [{"role": "user", "content": "Hello there, how are you today?"}]


def write_persona(adapters: Path, pid: str, toml: str) -> Path:
    path = adapters / pid
    path.mkdir(parents=True, exist_ok=True)
    (path / "persona.toml").write_text(toml, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A tiny Llama and two LoRA personas: ``pirate`` made for it, ``other`` for another model."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    root = tmp_path_factory.mktemp("api")
    model_dir = make_native_checkpoint("llama", root / "tiny-llama")
    adapters = root / "adapters"
    torch.manual_seed(1)
    peft_model = get_peft_model(AutoModelForCausalLM.from_pretrained(model_dir), LoraConfig(
        r=8, lora_alpha=64, target_modules=["q_proj", "v_proj", "down_proj"], init_lora_weights=False))
    peft_model.save_pretrained(write_persona(adapters, "pirate", 'name = "Pirate"\nsystem_prompt = "Arr."\n'
                                                                  'lora = true\nbase_model = "tiny-llama"\n'))
    peft_model.save_pretrained(write_persona(adapters, "other", 'name = "Other"\nlora = true\n'
                                                                 'base_model = "some-other-model"\n'))
    return model_dir, adapters


@pytest.fixture(scope="module")
def engine(setup: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Engine:
    model_dir, adapters = setup
    home = tmp_path_factory.mktemp("home")
    return build_engine(load_settings({"model": str(model_dir), "adapters": str(adapters), "home": str(home),
                                       "temperature": 0, "max_new_tokens": 12, "repetition_penalty": 1.0,
                                       "dtype": "float32"},
                                      config_file=home / "absent.toml"))


@pytest.fixture(scope="module")
def server(engine: Engine) -> Iterator[ApiServer]:
    srv = ApiServer(lambda: engine, port=free_port()).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def client(server: ApiServer):  # noqa: ANN201
    from openai import OpenAI

    return OpenAI(base_url=server.url, api_key="unused", max_retries=0)


def local_answer(engine: Engine, messages: list[dict[str, str]], max_new: int = 12,
                 adapter: AdapterSpec | None = None) -> tuple[str, Finished]:
    """The same generation in-process, for comparison."""
    settings = engine.settings.generation.with_updates(max_new_tokens=max_new)
    events = list(engine.backend.inner.stream(messages, settings, threading.Event(), adapter))  # plain generate
    return "".join(e.text for e in events if isinstance(e, TextDelta)), events[-1]


def post(server: ApiServer, body: object, **kwargs: object) -> httpx.Response:
    return httpx.post(f"{server.url}/chat/completions", json=body, timeout=60, **kwargs)  # type: ignore[arg-type]


def test_models_lists_the_loaded_model_and_fitting_personas(client, engine: Engine) -> None:  # noqa: ANN001
    ids = [m.id for m in client.models.list().data]
    assert ids == [engine.backend.model_id, "pirate"]  # "other" was made for another model


def test_completion_and_stream_match_the_in_process_answer(client, engine: Engine) -> None:  # noqa: ANN001
    expected, finished = local_answer(engine, MESSAGES, 12)
    reply = client.chat.completions.create(model=engine.backend.model_id, messages=MESSAGES, max_tokens=12)
    assert reply.choices[0].message.content == expected and expected
    assert reply.usage.prompt_tokens == finished.prompt_tokens
    assert reply.usage.completion_tokens == finished.completion_tokens
    assert reply.choices[0].finish_reason == ("length" if finished.completion_tokens == 12 else "stop")

    chunks = list(client.chat.completions.create(model="tiny-llama", messages=MESSAGES, max_tokens=12, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == expected
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == finished.completion_tokens
    assert any(c.choices and c.choices[0].finish_reason for c in chunks)


def test_persona_id_applies_its_adapter_and_system_prompt(client, engine: Engine, setup) -> None:  # noqa: ANN001
    adapter = AdapterSpec("pirate", setup[1] / "pirate")
    with_persona = [{"role": "system", "content": "Arr."}, *MESSAGES]
    expected, _ = local_answer(engine, with_persona, 12, adapter)
    base, _ = local_answer(engine, with_persona, 12)
    reply = client.chat.completions.create(model="pirate", messages=MESSAGES, max_tokens=12)
    assert reply.choices[0].message.content == expected != base
    plain = client.chat.completions.create(model="tiny-llama", messages=MESSAGES, max_tokens=12)
    assert plain.choices[0].message.content == local_answer(engine, MESSAGES, 12)[0]  # adapter off again


def test_stop_strings_cut_the_answer(client, engine: Engine) -> None:  # noqa: ANN001
    full, _ = local_answer(engine, MESSAGES, 12)
    cut = full[len(full) // 2: len(full) // 2 + 2]
    assert cut.strip()
    reply = client.chat.completions.create(model="tiny-llama", messages=MESSAGES, max_tokens=12, stop=[cut])
    assert reply.choices[0].message.content == full[: full.index(cut)]
    assert reply.choices[0].finish_reason == "stop"


def test_same_seed_same_sample(client) -> None:  # noqa: ANN001
    def sample(seed: int) -> str:
        return client.chat.completions.create(model="tiny-llama", messages=MESSAGES, max_tokens=12,
                                              temperature=1.5, seed=seed).choices[0].message.content

    first = sample(7)
    assert sample(7) == first
    assert any(sample(s) != first for s in (8, 9, 10))


def test_inkstone_session_stores_the_exchange(server: ApiServer, engine: Engine) -> None:
    body = {"model": "pirate", "messages": MESSAGES, "max_tokens": 6, "inkstone_session": "new"}
    reply = post(server, body).json()
    sid = reply["inkstone_session"]
    user, answer = engine.store.messages(sid)
    assert (user.role, user.content) == ("user", MESSAGES[0]["content"])
    assert answer.content == reply["choices"][0]["message"]["content"] and answer.status == "complete"
    assert answer.completion_tokens == reply["usage"]["completion_tokens"] and answer.tokens_per_s
    assert engine.store.get_session(sid).persona == "pirate"
    again = post(server, {**body, "inkstone_session": sid}).json()
    assert again["inkstone_session"] == sid and len(engine.store.messages(sid)) == 4
    missing = post(server, {**body, "inkstone_session": "nope", "stream": True})  # refused before streaming
    assert missing.status_code == 404 and missing.json()["error"]["param"] == "inkstone_session"


@pytest.mark.parametrize(("body", "status", "code", "param"), [
    (b"{not json", 400, "invalid_json", None),
    (b"[" * 100_000 + b"]" * 100_000, 400, "invalid_json", None),  # nested past Python's recursion limit
    ({"model": "tiny-llama"}, 400, "invalid_value", "messages"),
    ({"model": "tiny-llama", "messages": MESSAGES, "temperature": 9}, 400, "invalid_value", "temperature"),
    ({"model": "ghost", "messages": MESSAGES}, 404, "model_not_found", "model"),
    ({"model": "other", "messages": MESSAGES}, 404, "model_not_found", "model"),
    ({"model": "tiny-llama", "messages": [{"role": "user", "content": "word " * 600}]}, 400,
     "context_length_exceeded", "messages"),
    ({"model": "tiny-llama", "messages": MESSAGES, "max_tokens": 600}, 400, "context_length_exceeded", "max_tokens"),
])
def test_errors_have_openai_shape_and_status(server: ApiServer, body: object, status: int, code: str,
                                             param: str | None) -> None:
    kwargs = {"content": body, "headers": {"content-type": "application/json"}} if isinstance(body, bytes) else {}
    response = httpx.post(f"{server.url}/chat/completions", timeout=30,
                          **(kwargs or {"json": body}))  # type: ignore[arg-type]
    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == code and error["param"] == param and error["message"] and error["type"]


def test_model_that_failed_to_load_is_a_503(engine: Engine) -> None:
    def broken() -> Engine:
        raise ModelError("Model 'big' does not fit in memory: use --quantize 4bit.")

    srv = ApiServer(broken, port=free_port()).start()
    try:
        response = post(srv, {"model": "big", "messages": MESSAGES})
        assert response.status_code == 503 and "does not fit" in response.json()["error"]["message"]
        assert httpx.get(f"{srv.url.removesuffix('/v1')}/health").status_code == 503
    finally:
        srv.stop()


def test_api_key_is_required_when_set_and_for_other_hosts(engine: Engine) -> None:
    with pytest.raises(ConfigError, match="without an API key"):
        check_binding("0.0.0.0", None)
    check_binding("0.0.0.0", "k")
    check_binding("::1", None)
    srv = ApiServer(lambda: engine, port=free_port(), api_key="s3cret").start()
    try:
        assert httpx.get(f"{srv.url}/models").status_code == 401
        assert httpx.get(f"{srv.url}/models", headers={"Authorization": "Bearer wrong"}).json()["error"]["code"] \
            == "invalid_api_key"
        assert httpx.get(f"{srv.url}/models", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert httpx.get(f"{srv.url.removesuffix('/v1')}/health").status_code == 200
    finally:
        srv.stop()


def test_cli_refuses_a_public_host_without_a_key(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from core.cli import main

    assert main(["serve", "--host", "0.0.0.0", "--model", "fake"]) == 1
    assert "--api-key" in capsys.readouterr().err


def test_disconnect_mid_stream_stops_generation_and_frees_the_model(server: ApiServer, engine: Engine) -> None:
    body = {"model": "tiny-llama", "messages": MESSAGES, "max_tokens": 400, "stream": True,
            "inkstone_session": "new", "stop": ["\u2603never"]}
    with httpx.stream("POST", f"{server.url}/chat/completions", json=body, timeout=60) as response:
        lines = response.iter_lines()
        got = [line for line, _ in zip(lines, range(6), strict=False)]
        assert response.status_code == 200
    assert any('"content"' in line for line in got)
    deadline = time.monotonic() + 30
    while engine.backend.queue.active and time.monotonic() < deadline:
        time.sleep(0.05)
    assert engine.backend.queue.active == 0  # the model is free: its generation ended
    latest = engine.store.list_sessions(limit=1)[0]
    while engine.store.messages(latest.id)[-1].status == "streaming" and time.monotonic() < deadline:
        time.sleep(0.05)  # the row is settled just after the model is freed
    answer = engine.store.messages(latest.id)[-1]
    assert answer.status == "stopped" and answer.content  # the partial answer is kept
    assert 0 < answer.completion_tokens < 400


def test_concurrent_clients_are_batched_and_a_persona_runs_alone(client, engine: Engine, setup) -> None:  # noqa: ANN001
    """Five clients at once: the four base-model answers share one continuous batch, the persona's LoRA answer
    runs alone (its adapter must not leak into the batch); every answer equals the same request run alone."""
    prompts = [[{"role": "user", "content": f"Question number {i}?"}] for i in range(5)]
    models = ["tiny-llama"] * 4 + ["pirate"]
    pirate = AdapterSpec("pirate", setup[1] / "pirate")
    expected = [local_answer(engine, p, 8)[0] for p in prompts[:4]]
    expected.append(local_answer(engine, [{"role": "system", "content": "Arr."}, *prompts[4]], 8, pirate)[0])
    results: dict[int, str] = {}
    peak = [0]
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], engine.backend.queue.active)
            time.sleep(0.002)

    def ask(i: int) -> None:
        stream = client.chat.completions.create(model=models[i], messages=prompts[i], max_tokens=8, stream=True)
        results[i] = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)

    watcher = threading.Thread(target=watch)
    watcher.start()
    threads = [threading.Thread(target=ask, args=(i,)) for i in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    done.set()
    watcher.join()
    assert [results.get(i) for i in range(5)] == expected
    assert engine.backend.batcher is not None and peak[0] > 1  # answers really ran together


def test_fair_queue_admits_in_arrival_order_and_lets_a_stopped_waiter_go() -> None:
    queue = FairQueue()
    order: list[int] = []
    gate = threading.Event()
    stops = [threading.Event() for _ in range(5)]

    def holder() -> None:
        with queue.turn(threading.Event()):
            gate.wait(10)

    def waiter(i: int) -> None:
        with queue.turn(stops[i]) as admitted:
            if admitted:
                order.append(i)

    first = threading.Thread(target=holder)
    first.start()
    while queue.active == 0:
        time.sleep(0.01)
    threads = []
    for i in range(5):
        threads.append(threading.Thread(target=waiter, args=(i,)))
        threads[-1].start()
        while queue.depth < i + 1:
            time.sleep(0.01)
    stops[2].set()  # this caller gives up while waiting
    while queue.depth > 4:
        time.sleep(0.01)
    gate.set()
    for t in [first, *threads]:
        t.join(10)
    assert order == [0, 1, 3, 4] and queue.depth == 0 and queue.active == 0


def test_metrics_count_requests_tokens_and_errors(server: ApiServer, client) -> None:  # noqa: ANN001
    reply = client.chat.completions.create(model="tiny-llama", messages=MESSAGES, max_tokens=5)
    post(server, {"model": "ghost", "messages": MESSAGES})
    text = httpx.get(f"{server.url.removesuffix('/v1')}/metrics").text
    samples = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line and not line.startswith("#")}
    assert samples['inkstone_requests_total{model="tiny-llama",route="/v1/chat/completions",status="200"}'] >= 1
    assert samples['inkstone_request_errors_total{code="model_not_found",model="ghost",route="/v1/chat/completions"}'] \
        >= 1
    assert samples['inkstone_completion_tokens_total{model="tiny-llama"}'] >= reply.usage.completion_tokens
    assert samples['inkstone_time_to_first_token_seconds_count{model="tiny-llama"}'] >= 1
    for gauge in ("inkstone_queue_depth", "inkstone_active_generations", "inkstone_model_load_seconds",
                  "inkstone_gpu_memory_bytes"):
        assert gauge in samples
    assert samples["inkstone_model_load_seconds"] > 0


def test_health(server: ApiServer, engine: Engine) -> None:
    health = httpx.get(f"{server.url.removesuffix('/v1')}/health").json()
    assert health == {"status": "ok", "model": engine.backend.model_id, "busy": False}
    assert json.loads(httpx.get(f"{server.url}/nope").text)["error"]["code"] == "not_found"


def test_batching_for_in_process_models_only(engine: Engine) -> None:
    from core.backends.fake import FakeBackend
    from core.generation.batching import ContinuousBatcher

    assert ContinuousBatcher.supported(engine.backend.inner)
    assert not ContinuousBatcher.supported(FakeBackend())  # no model to batch: the fair queue alone
