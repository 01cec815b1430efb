"""The llama.cpp engine end to end on the bundled SmolLM2: chat turns stored in history, Stop, seeds, several answers
at once, LoRA personas converted from PEFT (checked against PEFT on PyTorch), grammar answers on PyTorch, a crashed
server started again, and the fallback to PyTorch with a notice. Skipped where set-up could not build llama.cpp."""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path

import pytest

from core.backends.base import AdapterSpec, Finished, TextDelta
from core.chat.service import Done
from core.config import GenerationSettings, Settings
from core.engine import build_engine
from core.llamacpp.build import find_binary

pytestmark = pytest.mark.skipif(find_binary() is None, reason="llama.cpp is not built here (`make setup` builds it "
                                "where cmake and a C++ compiler exist)")
MODEL = "smollm2-135m"
QUESTION = [{"role": "user", "content": "What is the capital of France? Answer in one sentence."}]
GREEDY = GenerationSettings(temperature=0, max_new_tokens=24, repetition_penalty=1.0)


def answer(backend, messages=QUESTION, settings=GREEDY, adapter=None, **kw) -> tuple[str, Finished]:  # noqa: ANN001
    events = list(backend.stream(messages, settings, threading.Event(), adapter, **kw))
    assert isinstance(events[-1], Finished), events[-1]
    return "".join(e.text for e in events if isinstance(e, TextDelta)), events[-1]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory, smollm2_cached) -> Path:  # noqa: ANN001
    home = tmp_path_factory.mktemp("llama") / "data"
    smollm2_cached(home, "float")  # the PyTorch side of the comparisons (and of grammar answers)
    return home


@pytest.fixture(scope="module")
def engine(data: Path, tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    adapters = tmp_path_factory.mktemp("adapters")
    settings = Settings(home=data, model=MODEL, engine="llama.cpp", adapters=adapters, cpu_weights="fp32",
                        generation=GREEDY)
    made = build_engine(settings)
    yield made
    made.backend.inner.server.stop()


def test_the_default_engine_on_a_cpu_is_llama_cpp(engine) -> None:  # noqa: ANN001
    info = engine.backend.info()
    assert info.backend == "llama.cpp"
    assert "llama.cpp" in info.engine_note and 'engine = "torch"' in info.engine_note
    assert engine.backend.capabilities.max_concurrent == 8
    assert Settings().engine == "torch"  # this suite's default (conftest); a user's is auto:
    from core.config import default_engine

    assert default_engine({}) == "auto"


def test_a_chat_turn_streams_and_is_stored(engine) -> None:  # noqa: ANN001
    sid = engine.new_session()
    events = list(engine.service.send(sid, QUESTION[0]["content"]))
    done = events[-1]
    assert isinstance(done, Done), done
    assert "Paris" in done.stats.text
    stored = engine.store.messages(sid)[-1]
    assert stored.status == "complete" and stored.content == done.stats.text
    assert stored.completion_tokens and stored.prompt_tokens == engine.backend.count_prompt_tokens(QUESTION)
    follow = list(engine.service.send(sid, "And of Germany?"))[-1]  # the second turn reuses the cached prefix
    assert isinstance(follow, Done) and follow.stats.text


def test_stop_ends_the_answer_and_keeps_what_was_written(engine) -> None:  # noqa: ANN001
    sid = engine.new_session(overrides={"max_new_tokens": 400})
    stop = threading.Event()
    pieces = []
    for event in engine.service.send(sid, "Write a long story about a dragon.", stop):
        if getattr(event, "text", None) and not isinstance(event, Done):
            pieces.append(event.text)
            if len(pieces) == 5:
                stop.set()
    stored = engine.store.messages(sid)[-1]
    assert stored.status == "stopped"
    assert stored.content and stored.completion_tokens < 60


def test_a_seed_samples_the_same_answer(engine) -> None:  # noqa: ANN001
    warm = GenerationSettings(temperature=1.2, top_p=0.95, top_k=0, max_new_tokens=30)
    first, _ = answer(engine.backend, settings=warm, seed=11)
    assert answer(engine.backend, settings=warm, seed=11)[0] == first
    others = {answer(engine.backend, settings=warm, seed=s)[0] for s in (1, 2, 3)}
    assert len(others | {first}) > 1


def test_several_answers_run_at_once(engine) -> None:  # noqa: ANN001
    texts: dict[int, tuple[str, Finished]] = {}
    active, most = [0], [0]
    lock = threading.Lock()

    def ask(i: int) -> None:
        events = []
        for event in engine.backend.stream(QUESTION, GREEDY, threading.Event()):
            with lock:
                if not events:
                    active[0] += 1
                    most[0] = max(most[0], active[0])
            events.append(event)
        with lock:
            active[0] -= 1
        texts[i] = ("".join(e.text for e in events if isinstance(e, TextDelta)), events[-1])

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert len(texts) == 4 and all(text and done.reason in ("stop", "length") for text, done in texts.values())
    assert most[0] > 1  # answers overlapped: the queue admitted them together, the server batched them


def _random_lora(data: Path, dest: Path, seed: int, targets: object = "all-linear") -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    (converted,) = [p for p in (data / "cache" / "models").glob(f"{MODEL}-*") if (p / "config.json").is_file()
                    and "." not in p.name]
    torch.manual_seed(seed)
    peft = get_peft_model(AutoModelForCausalLM.from_pretrained(converted), LoraConfig(
        r=8, lora_alpha=16, target_modules=targets, init_lora_weights=False))
    peft.save_pretrained(dest)
    (dest / "persona.toml").write_text(f'name = "{dest.name}"\nlora = true\nbase_model = "{MODEL}"\n')
    return dest


def test_a_lora_persona_answers_as_it_does_on_pytorch(engine, data: Path) -> None:  # noqa: ANN001
    """The GGUF LoRA converted from PEFT (q/k rows permuted for llama) gives PEFT's own greedy tokens."""
    path = _random_lora(data, engine.settings.adapters / "poet", seed=3)
    spec = AdapterSpec("poet", path)
    torch_side = engine.backend.inner.torch()
    ids = engine.backend.codec.tokenizer.encode
    poem = [{"role": "user", "content": "Write a short poem about the sea."}]
    with_lora, _ = answer(engine.backend, poem, adapter=spec)
    assert ids(with_lora)[:12] == ids(answer(torch_side, poem, adapter=spec)[0])[:12]
    assert with_lora != answer(engine.backend, poem)[0]
    pid = engine.backend.inner.server._proc.pid
    assert answer(engine.backend, poem, adapter=spec)[0] == with_lora  # switching back: no restart
    assert engine.backend.inner.server._proc.pid == pid


def test_a_retrained_persona_is_converted_again(engine, data: Path) -> None:  # noqa: ANN001
    path = _random_lora(data, engine.settings.adapters / "retrained", seed=5)
    spec = AdapterSpec("retrained", path)
    before, _ = answer(engine.backend, adapter=spec)
    _random_lora(data, path, seed=6)
    assert answer(engine.backend, adapter=spec)[0] != before


def test_an_adapter_llama_cpp_cannot_apply_runs_on_pytorch(engine, data: Path) -> None:  # noqa: ANN001
    path = _random_lora(data, engine.settings.adapters / "embed", seed=4, targets=["q_proj", "lm_head"])
    text, done = answer(engine.backend, adapter=AdapterSpec("embed", path))
    assert done.reason in ("stop", "length") and text


def test_a_broken_adapter_is_named_with_the_fix(engine, tmp_path: Path) -> None:  # noqa: ANN001
    from core.errors import ModelError

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "adapter_config.json").write_text('{"r": 8, "lora_alpha": 16}')
    (broken / "adapter_model.safetensors").write_bytes(b"\x80not safetensors at all" * 4)
    with pytest.raises(ModelError, match="could not be converted for llama.cpp.*retrain the persona"):
        answer(engine.backend, adapter=AdapterSpec("broken", broken))
    assert "Paris" in answer(engine.backend)[0]  # the engine goes on answering


def test_a_json_schema_answer_runs_constrained_on_pytorch(engine) -> None:  # noqa: ANN001
    from core.generation.constrain import Grammar, compile_for

    schema = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20}}, "required": ["city"]}
    constraint = compile_for(engine.backend.codec, Grammar.json_schema(schema))
    text, done = answer(engine.backend, settings=GREEDY.with_updates(max_new_tokens=40), constraint=constraint)
    assert done.reason == "stop"
    assert isinstance(json.loads(text)["city"], str)


def test_a_crashed_server_is_started_again(engine) -> None:  # noqa: ANN001
    server = engine.backend.inner.server
    os.kill(server._proc.pid, signal.SIGKILL)
    server._proc.wait(timeout=10)
    text, done = answer(engine.backend)
    assert "Paris" in text and server.running


def test_without_llama_cpp_pytorch_answers_and_says_why(data: Path, monkeypatch: pytest.MonkeyPatch,
                                                        tmp_path: Path) -> None:
    monkeypatch.setenv("INKSTONE_LLAMA_SERVER", str(tmp_path / "missing-llama-server"))
    made = build_engine(Settings(home=data, model=MODEL, engine="llama.cpp", cpu_weights="fp32", generation=GREEDY))
    info = made.backend.info()
    assert info.backend == "transformers"
    assert "not built" in info.engine_note and "make setup" in info.engine_note
    broken = tmp_path / "llama-server"
    broken.write_text("#!/bin/sh\necho 'cannot open model' >&2\nexit 3\n")
    broken.chmod(0o755)
    monkeypatch.setenv("INKSTONE_LLAMA_SERVER", str(broken))
    made = build_engine(Settings(home=data, model=MODEL, engine="llama.cpp", cpu_weights="fp32", generation=GREEDY))
    note = made.backend.info().engine_note
    assert made.backend.info().backend == "transformers" and "did not start" in note and "cannot open model" in note
    assert "Paris" in answer(made.backend)[0]


def test_openai_clients_on_the_llama_cpp_engine(engine, data: Path) -> None:  # noqa: ANN001
    """The API over the engine: a completion equals the engine's own answer, streamed too; a persona id applies its
    adapter; a json_schema answer parses; 8 clients at once all get answers."""
    from openai import OpenAI

    from core.api.server import ApiServer, free_port

    path = _random_lora(data, engine.settings.adapters / "api-poet", seed=8)
    expected, finished = answer(engine.backend)
    server = ApiServer(lambda: engine, port=free_port()).start()
    try:
        client = OpenAI(base_url=server.url, api_key="unused", max_retries=0)
        reply = client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=24, temperature=0)
        assert reply.choices[0].message.content == expected
        assert reply.usage.prompt_tokens == finished.prompt_tokens
        chunks = client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=24, temperature=0,
                                                stream=True)
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == expected
        persona = client.chat.completions.create(model="api-poet", messages=QUESTION, max_tokens=24, temperature=0)
        direct = answer(engine.backend, adapter=AdapterSpec("api-poet", path))[0]
        # the random adapter makes the model chaotic: a reused cached prompt may change a late token, not the start
        assert persona.choices[0].message.content[:30] == direct[:30] and direct[:30] != expected[:30]
        schema = {"type": "object", "properties": {"capital": {"type": "string", "maxLength": 20}},
                  "required": ["capital"]}
        shaped = client.chat.completions.create(
            model=MODEL, messages=QUESTION, max_tokens=40, temperature=0,
            response_format={"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}})
        assert isinstance(json.loads(shaped.choices[0].message.content)["capital"], str)
        replies: list[str] = []

        def ask(i: int) -> None:
            out = client.chat.completions.create(model=MODEL, max_tokens=16, temperature=0, messages=[
                {"role": "user", "content": f"Name a colour. ({i})"}])
            replies.append(out.choices[0].message.content)

        threads = [threading.Thread(target=ask, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=300)
        assert len(replies) == 8 and all(replies)
    finally:
        server.stop()


def test_a_replaced_engine_ends_its_server(data: Path) -> None:
    """Picking another model drops the engine (the app keeps one): its llama-server process ends with it."""
    import gc

    made = build_engine(Settings(home=data, model=MODEL, engine="llama.cpp", cpu_weights="fp32"))
    proc = made.backend.inner.server._proc
    assert answer(made.backend)[0]
    del made
    gc.collect()
    assert proc.wait(timeout=15) is not None


def test_a_new_chat_reuses_the_system_prompt_a_slot_already_computed(engine) -> None:  # noqa: ANN001
    inner = engine.backend.inner
    system = "You are Captain Quill, a retired sea captain who answers plainly, briefly and kindly."
    filler = " The harbour log lists every ship, its cargo, its crew and the weather on the day it came in." * 25
    cached = []
    for first in ("Which knots do sailors tie?", "How deep is the Baltic Sea?", "Why is the sea salty?"):
        messages = [{"role": "system", "content": system}, {"role": "user", "content": first + filler}]
        ids = inner.codec.prompt_ids(messages)
        body = {"prompt": ids, "n_predict": 2, "temperature": 0, "cache_prompt": True}
        last = [batch for batch in inner.server.stream(body, threading.Event())][-1][-1]
        cached.append(last["timings"]["cache_n"])
    shared = len(inner.codec.prompt_ids([{"role": "system", "content": system}, {"role": "user", "content": ""}]))
    assert shared < 0.1 * len(ids)  # a small part of each prompt (below llama.cpp's own 10% rule)
    assert cached[1] >= shared - 8 and cached[2] >= shared - 8, (cached, shared)  # and is not computed again
