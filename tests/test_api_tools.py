"""Tools and structured output on the real server through the official ``openai`` client.

A scripted backend (the JSON fallback format) checks the wire format: calls in ``message.tool_calls`` and in streamed
``delta.tool_calls`` pieces, ``role: tool`` messages rendered into the prompt, legacy ``functions``, calls that do not
parse coming back as text, and bad input answered with OpenAI-shaped 400s. A tiny random Qwen2 checkpoint with
Qwen2.5's own chat template checks constrained decoding for real: ``tool_choice`` required / named and
``response_format`` json_schema always parse and match, alone and inside the shared batch."""

from __future__ import annotations

import json
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest

from core.api.server import ApiServer, free_port
from core.backends.fake import FakeBackend
from core.config import load_settings
from core.engine import Engine, build_engine
from tests.fixtures_native import make_native_checkpoint

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather of a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "enum": ["北京", "Paris"]},
                                                    "days": {"type": "integer", "minimum": 1, "maximum": 7}},
                   "required": ["city", "days"], "additionalProperties": False}}}
ADD = {"type": "function", "function": {
    "name": "add", "description": "Add two numbers",
    "parameters": {"type": "object", "properties": {"a": {"type": "integer", "minimum": 0, "maximum": 9},
                                                    "b": {"type": "boolean"}},
                   "required": ["a", "b"], "additionalProperties": False}}}
CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "北京", "days": 2}}\n</tool_call>'


PWNED = Path(tempfile.gettempdir()) / f"inkstone-api-pwned-{os.getpid()}"
"""The file a tool call written as code would create, were it ever run."""


def scripted(messages: list[dict[str, Any]]) -> str:
    last = messages[-1]["content"]
    if "<tool_response>" in last:
        return "It is sunny in 北京."
    for word, reply in {
        "weather": CALL,
        "both": f'Checking.\n{CALL}\n<tool_call>\n{{"name": "add", "arguments": {{"a": 1, "b": true}}}}\n</tool_call>',
        "unknown": '<tool_call>{"name": "launch_rockets", "arguments": {}}</tool_call>',
        "broken": '<tool_call>{"name": "get_weather", "arguments": {"city": </tool_call>',
        "code": f"<tool_call>__import__('os').system('touch {PWNED}')</tool_call>",
    }.items():
        if word in last:
            return reply
    return "Hello there."


def serve(engine: Engine) -> Iterator[ApiServer]:
    srv = ApiServer(lambda: engine, port=free_port()).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def fake_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    home = tmp_path_factory.mktemp("tools-home")
    engine = build_engine(load_settings({"model": "fake", "home": str(home)}, config_file=home / "absent.toml"),
                          backend=FakeBackend(scripted))
    yield from serve(engine)


@pytest.fixture(scope="module")
def fake(fake_server: ApiServer):  # noqa: ANN201
    from openai import OpenAI

    return OpenAI(base_url=fake_server.url, api_key="unused", max_retries=0)


def ask(client: Any, text: str, **kwargs: Any) -> Any:
    return client.chat.completions.create(model=kwargs.pop("model", "fake"),
                                          messages=[{"role": "user", "content": text}], **kwargs)


def test_a_call_and_its_result_round_trip(fake: Any, fake_server: ApiServer) -> None:
    first = ask(fake, "What is the weather?", tools=[WEATHER, ADD])
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    call = choice.message.tool_calls[0]
    assert (call.type, call.function.name, json.loads(call.function.arguments)) == \
        ("function", "get_weather", {"city": "北京", "days": 2})
    messages = [{"role": "user", "content": "What is the weather?"}, choice.message.model_dump(exclude_none=True),
                {"role": "tool", "tool_call_id": call.id, "content": '{"sky": "sunny", "temp_c": 25}'}]
    second = fake.chat.completions.create(model="fake", messages=messages, tools=[WEATHER, ADD])
    assert second.choices[0].finish_reason == "stop"
    assert second.choices[0].message.content == "It is sunny in 北京."
    assert second.choices[0].message.tool_calls is None


def test_streamed_calls_come_in_pieces_with_their_index(fake: Any) -> None:
    content, calls, finish = "", {}, None
    for chunk in ask(fake, "both please", tools=[WEATHER, ADD], stream=True):
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        content += delta.content or ""
        for piece in delta.tool_calls or []:
            entry = calls.setdefault(piece.index, {"id": piece.id, "name": piece.function.name, "arguments": ""})
            entry["arguments"] += piece.function.arguments or ""
        finish = chunk.choices[0].finish_reason or finish
    assert content.strip() == "Checking." and finish == "tool_calls"
    assert [(c["name"], json.loads(c["arguments"])) for c in calls.values()] == \
        [("get_weather", {"city": "北京", "days": 2}), ("add", {"a": 1, "b": True})]
    assert all(c["id"].startswith("call_") for c in calls.values())


@pytest.mark.parametrize("text", ["unknown tool", "broken call", "code call"])
def test_calls_that_do_not_parse_come_back_as_text(fake: Any, text: str) -> None:
    answer = ask(fake, text, tools=[WEATHER])
    assert answer.choices[0].finish_reason == "stop" and answer.choices[0].message.tool_calls is None
    assert answer.choices[0].message.content.startswith("<tool_call>")
    assert not PWNED.exists()


def test_tool_choice_none_keeps_the_call_as_text(fake: Any) -> None:
    answer = ask(fake, "weather", tools=[WEATHER], tool_choice="none")
    assert answer.choices[0].finish_reason == "stop" and answer.choices[0].message.content == CALL


def test_legacy_functions_answer_with_function_call(fake: Any) -> None:
    answer = ask(fake, "weather", functions=[WEATHER["function"]])
    assert answer.choices[0].finish_reason == "function_call"
    assert answer.choices[0].message.function_call.name == "get_weather"
    assert json.loads(answer.choices[0].message.function_call.arguments) == {"city": "北京", "days": 2}


@pytest.mark.parametrize(("body", "param", "says"), [
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "objekt"}}}]},
     "tools", "not a valid JSON schema"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {
        f"p{i}": {"type": "string", "description": "x" * 100} for i in range(400)}}}}]},
     "tools", "too large"),
    ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
     "tool_choice", "not offered"),
    ({"tool_choice": "required"}, "tool_choice", "needs tools"),
    ({"tools": [WEATHER], "tool_choice": "required"}, "tool_choice", "constrained decoding"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}}, "response_format", "schema"),
    ({"messages": [{"role": "user", "content": "hi"}, {"role": "tool", "tool_call_id": "call_x", "content": "1"}]},
     "messages.1.tool_call_id", "answers no tool call"),
    ({"messages": [{"role": "user", "content": "hi"},
                   {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function",
                                                         "function": {"name": "f", "arguments": "{oops"}}]}]},
     "messages.1.tool_calls", "not a JSON object"),
    ({"messages": [{"role": "user", "content": "hi"},
                   {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function",
                                                         "function": {"name": "f", "arguments": "{}"}}]},
                   {"role": "tool", "tool_call_id": "c1", "content": "x" * 1_000_001}]},
     "messages.2.content", "tool result of 1,000,001 characters"),
])
def test_bad_tool_input_gets_an_openai_error(fake_server: ApiServer, body: dict[str, Any], param: str,
                                             says: str) -> None:
    request = {"model": "fake", "messages": [{"role": "user", "content": "weather"}], **body}
    response = httpx.post(f"{fake_server.url}/chat/completions", json=request, timeout=60)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param and says in error["message"] and error["type"] == "invalid_request_error"
    assert httpx.post(f"{fake_server.url}/chat/completions", timeout=60, json={
        "model": "fake", "messages": [{"role": "user", "content": "hi"}]}).status_code == 200  # still usable


# -- constrained decoding on a real (tiny, random) model with Qwen2.5's chat template --------------------------------


@pytest.fixture(scope="module")
def qwen_engine(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    from transformers import AutoTokenizer

    root = tmp_path_factory.mktemp("qwen-tools")
    model_dir = make_native_checkpoint("qwen2", root / "tiny-qwen2")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    tokenizer.chat_template = (Path(__file__).parent / "data" / "qwen25_template.jinja").read_text(encoding="utf-8")
    tokenizer.save_pretrained(model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    config["max_position_embeddings"] = 4096  # the byte-level tokenizer makes tool prompts long
    (model_dir / "config.json").write_text(json.dumps(config))
    home = root / "home"
    return build_engine(load_settings({"model": str(model_dir), "home": str(home), "temperature": 1.0,
                                       "max_new_tokens": 160, "repetition_penalty": 1.0, "dtype": "float32"},
                                      config_file=home / "absent.toml"))


@pytest.fixture(scope="module")
def qwen(qwen_engine: Engine) -> Iterator[Any]:
    from openai import OpenAI

    for srv in serve(qwen_engine):
        yield OpenAI(base_url=srv.url, api_key="unused", max_retries=0)


def test_the_template_renders_tools_and_results(qwen_engine: Engine) -> None:
    from core.api.completions import Completions
    from core.api.metrics import ApiMetrics
    from core.api.schemas import ChatCompletionRequest

    prep = Completions(lambda: qwen_engine, ApiMetrics()).prepare(ChatCompletionRequest.model_validate({
        "model": "tiny-qwen2", "tools": [WEATHER], "messages": [
            {"role": "user", "content": "北京天气?"},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "get_weather",
                                                              "arguments": '{"city": "北京", "days": 1}'}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "晴"}]}))
    codec = qwen_engine.backend.loaded.codec
    prompt = codec.tokenizer.decode(codec.prompt_ids(prep.messages))
    assert prep.tool_format.name == "hermes"
    assert "<tools>\n" in prompt and '"name": "get_weather"' in prompt
    assert '<tool_call>\n{"name": "get_weather", "arguments": {"city": "北京", "days": 1}}\n</tool_call>' in prompt
    assert "<|im_start|>user\n<tool_response>\n晴\n</tool_response><|im_end|>" in prompt


@pytest.mark.parametrize("seed", range(3))
def test_required_and_named_tool_choice_always_give_valid_calls(qwen: Any, seed: int) -> None:
    required = ask(qwen, f"Use a tool {seed}", model="tiny-qwen2", tools=[WEATHER, ADD], tool_choice="required",
                   parallel_tool_calls=False)
    named = ask(qwen, f"Add {seed}", model="tiny-qwen2", tools=[WEATHER, ADD],
                tool_choice={"type": "function", "function": {"name": "add"}})
    for answer in (required, named):
        assert answer.choices[0].finish_reason == "tool_calls", answer.choices[0].message.content
        call = answer.choices[0].message.tool_calls[0]
        schema = {"get_weather": WEATHER, "add": ADD}[call.function.name]["function"]["parameters"]
        jsonschema.validate(json.loads(call.function.arguments), schema)
    assert named.choices[0].message.tool_calls[0].function.name == "add"


def test_a_forced_call_streams_as_deltas(qwen: Any) -> None:
    pieces = [c.choices[0].delta for c in ask(qwen, "weather", model="tiny-qwen2", tools=[WEATHER], stream=True,
                                              tool_choice="required", parallel_tool_calls=False) if c.choices]
    calls = [p.tool_calls[0] for p in pieces if p.tool_calls]
    assert calls[0].function.name == "get_weather" and calls[0].id
    jsonschema.validate(json.loads("".join(c.function.arguments or "" for c in calls)),
                        WEATHER["function"]["parameters"])
    assert not any(p.content for p in pieces)


SCHEMA = {"type": "object", "properties": {"ok": {"type": "boolean"}, "tag": {"enum": ["红", "blue", "绿"]},
                                           "n": {"type": "integer", "minimum": 0, "maximum": 99}},
          "required": ["ok", "tag", "n"], "additionalProperties": False}


def test_response_format_json_schema_is_valid_alone_and_in_the_batch(qwen: Any, qwen_engine: Engine) -> None:
    results: list[Any] = []

    def one(i: int) -> None:
        fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": SCHEMA, "strict": True}}
        results.append((i, ask(qwen, f"Give JSON {i}", model="tiny-qwen2", response_format=fmt)))

    one(0)  # alone
    batcher = qwen_engine.backend.batcher
    before = dict(batcher.stats)
    threads = [threading.Thread(target=one, args=(i,)) for i in range(1, 5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 5
    for _, answer in results:
        assert answer.choices[0].finish_reason == "stop"
        jsonschema.validate(json.loads(answer.choices[0].message.content), SCHEMA)
    rows = batcher.stats["rows"] - before["rows"]
    steps = batcher.stats["steps"] - before["steps"]
    assert steps and rows > steps  # some steps decoded several constrained answers at once


def test_a_schema_llguidance_cannot_use_is_a_400(qwen: Any) -> None:
    from openai import BadRequestError

    with pytest.raises(BadRequestError) as caught:
        ask(qwen, "x", model="tiny-qwen2",
            response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {
                "type": "object", "properties": {"a": {"$ref": "#/$defs/missing"}}}}})
    assert caught.value.body["param"] == "response_format"


def test_structured_output_through_the_clients_own_helpers(qwen: Any) -> None:
    """What LangChain's ``with_structured_output`` sends, through the openai client's helpers: a pydantic model as
    ``response_format`` (json_schema) parsed back, and ``json_object`` mode starting a JSON object."""
    from typing import Literal

    from pydantic import BaseModel

    class Verdict(BaseModel):
        ok: bool
        colour: Literal["红", "blue"]

    parsed = qwen.chat.completions.parse(model="tiny-qwen2", response_format=Verdict,
                                         messages=[{"role": "user", "content": "Verdict?"}])
    assert isinstance(parsed.choices[0].message.parsed, Verdict)
    mode = ask(qwen, "JSON please", model="tiny-qwen2", response_format={"type": "json_object"}, max_tokens=24)
    content = mode.choices[0].message.content
    assert content.startswith("{")  # a random model starts a JSON object only because the grammar says so
    if mode.choices[0].finish_reason == "stop":
        assert isinstance(json.loads(content), dict)


# -- ChatGLM3: constrained decoding on our own SentencePiece codec (the tiny fixture, random weights) ----------------


@pytest.fixture(scope="module")
def glm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    import shutil

    from openai import OpenAI

    from tests.chatglm3_fixture import FIXTURE

    root = tmp_path_factory.mktemp("glm-tools")
    model_dir = root / "chatglm3-tiny"
    shutil.copytree(FIXTURE, model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    config["seq_length"] = 2048  # the fixture's small vocabulary spells tool JSON nearly byte by byte
    (model_dir / "config.json").write_text(json.dumps(config))
    home = root / "home"
    engine = build_engine(load_settings({"model": str(model_dir), "home": str(home), "temperature": 1.0,
                                         "max_new_tokens": 200, "repetition_penalty": 1.0, "dtype": "float32"},
                                        config_file=home / "absent.toml"))
    for srv in serve(engine):
        yield OpenAI(base_url=srv.url, api_key="unused", max_retries=0)


@pytest.mark.parametrize("seed", range(3))
def test_chatglm3_json_schema_answers_parse_and_match_with_random_weights(glm: Any, seed: int) -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": SCHEMA, "strict": True}}
    answer = ask(glm, f"JSON {seed}", model="chatglm3-tiny", response_format=fmt, seed=seed)
    assert answer.choices[0].finish_reason == "stop"
    jsonschema.validate(json.loads(answer.choices[0].message.content), SCHEMA)  # no leading whitespace either
    assert answer.choices[0].message.content.startswith("{")


@pytest.mark.parametrize("seed", range(3))
def test_chatglm3_forced_calls_parse_in_its_own_format(glm: Any, seed: int) -> None:
    named = ask(glm, f"天气 {seed}", model="chatglm3-tiny", tools=[WEATHER, ADD], seed=seed,
                tool_choice={"type": "function", "function": {"name": "get_weather"}})
    required = ask(glm, f"add {seed}", model="chatglm3-tiny", tools=[WEATHER, ADD], tool_choice="required",
                   seed=seed)
    for answer in (named, required):
        assert answer.choices[0].finish_reason == "tool_calls", answer.choices[0].message.content
        (call,) = answer.choices[0].message.tool_calls
        schema = {"get_weather": WEATHER, "add": ADD}[call.function.name]["function"]["parameters"]
        jsonschema.validate(json.loads(call.function.arguments), schema)
    assert named.choices[0].message.tool_calls[0].function.name == "get_weather"


def test_chatglm3_forced_call_with_an_unwritable_argument_name_is_a_400(glm: Any) -> None:
    from openai import BadRequestError

    tool = {"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"class": {"type": "string"}}}}}
    with pytest.raises(BadRequestError) as caught:
        ask(glm, "x", model="chatglm3-tiny", tools=[tool], tool_choice="required")
    assert caught.value.body["param"] == "tool_choice" and "Python identifier" in caught.value.body["message"]
