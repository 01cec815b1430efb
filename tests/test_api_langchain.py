"""Real clients against the server on the bundled SmolLM2-135M: LangChain's ``ChatOpenAI`` (``bind_tools``,
``with_structured_output`` with each of its three methods, streaming) and one agent framework end to end (LangGraph's
``create_react_agent`` with a Python tool). A 135M model rarely decides to call a tool by itself, so the tests force
the call (``tool_choice``) where the point is the wire format; what they check is what a LangChain user gets back:
parsed calls, parsed objects, an agent that ran the tool and answered from its result. Slow (a real model)."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from typing import Any, Literal

import pytest
from pydantic import BaseModel

from core.api.server import ApiServer, free_port
from core.config import load_settings
from core.engine import build_engine

pytestmark = pytest.mark.slow
MODEL = "smollm2-135m"


class Person(BaseModel):
    """A person."""

    name: str
    age: int


class Verdict(BaseModel):
    """A verdict."""

    ok: bool
    colour: Literal["red", "blue"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, smollm2_cached: Callable[..., None]) -> Iterator[ApiServer]:
    home = tmp_path_factory.mktemp("langchain-home")
    smollm2_cached(home, "int8")
    engine = build_engine(load_settings({"model": MODEL, "home": str(home), "device": "cpu", "temperature": 0,
                                         "max_new_tokens": 96}, config_file=home / "absent.toml"))
    srv = ApiServer(lambda: engine, port=free_port()).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def llm(server: ApiServer) -> Any:
    from langchain_openai import ChatOpenAI

    return ChatOpenAI(base_url=server.url, api_key="x", model=MODEL, temperature=0, max_retries=0, timeout=600)


def weather_tool(calls: list[str] | None = None) -> Any:
    from langchain_core.tools import tool

    @tool
    def get_weather(city: str) -> str:
        """Get the current weather of a city."""
        if calls is not None:
            calls.append(city)
        return f"It is sunny and 25 degrees in {city}."

    return get_weather


@pytest.mark.parametrize("choice", ["required", "get_weather", "any"])
def test_bind_tools_returns_parsed_tool_calls(llm: Any, choice: str) -> None:
    """LangChain sends the tool with an open schema and no ``parallel_tool_calls``: the grammar closes the object
    (no invented keys until max_tokens) and a call written twice in a row ends the answer (one call, not a loop)."""
    answer = llm.bind_tools([weather_tool()], tool_choice=choice).invoke("What is the weather in Paris?")
    assert answer.response_metadata["finish_reason"] == "tool_calls"
    assert [(c["name"], sorted(c["args"])) for c in answer.tool_calls] == [("get_weather", ["city"])]
    assert isinstance(answer.tool_calls[0]["args"]["city"], str) and answer.tool_calls[0]["id"].startswith("call_")


def test_bind_tools_streams_the_call_in_chunks(llm: Any) -> None:
    bound = llm.bind_tools([weather_tool()], tool_choice="required", parallel_tool_calls=False, stream_usage=True)
    total = None
    for chunk in bound.stream("What is the weather in Paris?"):
        total = chunk if total is None else total + chunk
    assert total is not None and [c["name"] for c in total.tool_calls] == ["get_weather"]
    assert total.usage_metadata["output_tokens"] > 0


@pytest.mark.parametrize("strict", [None, True])
@pytest.mark.parametrize("method", ["json_schema", "function_calling"])
def test_structured_output_parses(llm: Any, method: str, strict: bool | None) -> None:
    structured = llm.with_structured_output(Person, method=method, strict=strict, include_raw=True)
    result = structured.invoke("Ada Lovelace is 36 years old. Who is she?")
    assert result["parsing_error"] is None and isinstance(result["parsed"], Person), result["raw"]
    verdict = llm.with_structured_output(Verdict, method=method, strict=strict).invoke("Is the sky blue?")
    assert isinstance(verdict, Verdict) and verdict.colour in ("red", "blue")


def test_structured_output_json_mode_parses(llm: Any) -> None:
    """``json_mode`` sends no schema (only ``{"type": "json_object"}``): the grammar guarantees a JSON object, and the
    prompt (which must mention JSON, as LangChain requires) says which keys."""
    structured = llm.with_structured_output(Person, method="json_mode", include_raw=True)
    result = structured.invoke('Ada is 36 years old. Reply in JSON with the keys "name" and "age".')
    assert result["parsing_error"] is None and isinstance(result["parsed"], Person), result["raw"]
    assert result["raw"].content.startswith("{")


def test_langgraph_agent_calls_the_tool_and_answers_from_it(llm: Any) -> None:
    """LangGraph's prebuilt ReAct agent with a Python tool: the model calls it, LangGraph runs it and sends the
    result back as a ``tool`` message, the model answers. A 135M model needs the choice spelled out per step (a
    dynamic model: call a tool first, answer once a result is in), which LangGraph supports as is."""
    from langchain_core.messages import AIMessage, ToolMessage

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from langgraph.prebuilt import create_react_agent

    calls: list[str] = []
    tool = weather_tool(calls)

    def model(state: dict[str, Any], runtime: Any) -> Any:
        answered = isinstance(state["messages"][-1], ToolMessage)
        return llm.bind_tools([tool], tool_choice="none" if answered else "required", parallel_tool_calls=False)

    agent = create_react_agent(model, [tool])
    out = agent.invoke({"messages": [("user", "What is the weather in Paris?")]})["messages"]
    kinds = [type(m).__name__ for m in out]
    assert kinds == ["HumanMessage", "AIMessage", "ToolMessage", "AIMessage"], kinds
    assert calls and out[2].content == f"It is sunny and 25 degrees in {calls[0]}."
    final = out[-1]
    assert isinstance(final, AIMessage) and not final.tool_calls and final.content.strip()
    assert "sunny" in final.content or "25" in final.content  # answered from the tool's result


def test_tool_results_as_content_parts_and_null_content(server: ApiServer) -> None:
    """What agent SDKs send back: an assistant message with ``content: null`` beside its calls, and a ``tool``
    message whose content is a list of text parts."""
    import httpx

    messages = [{"role": "user", "content": "Weather in Paris?"},
                {"role": "assistant", "content": None, "tool_calls": [{"id": "call_1", "type": "function", "function": {
                    "name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": [{"type": "text", "text": "Sunny, "},
                                                                       {"type": "text", "text": "25 degrees."}]}]
    tool = {"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}, "strict": True}}
    response = httpx.post(f"{server.url}/chat/completions", timeout=600, json={
        "model": MODEL, "messages": messages, "tools": [tool], "tool_choice": "none", "max_tokens": 16,
        "stream": True, "stream_options": {"include_usage": True}})
    assert response.status_code == 200, response.text
    assert response.text.rstrip().endswith("data: [DONE]") and '"usage"' in response.text
