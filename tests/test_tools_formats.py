"""Tool formats without a model: each family's calls are parsed (never evaluated), bad or unknown calls stay text,
earlier calls and results render the way the family expects (ChatGLM3's ``<|observation|>`` through our codec), the
stream holds back only what could open a call, and tool schemas are checked."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import InputError
from core.tools.formats import ChatGLM3Format, HermesFormat, JsonFallbackFormat, Llama3Format
from core.tools.spec import ToolSpec, check_tools
from core.tools.stream import ToolStream

WEATHER = ToolSpec("get_weather", "Weather of a city", {"type": "object", "properties": {
    "city": {"type": "string"}, "days": {"type": "integer"}}, "required": ["city"]})
TOOLS = [WEATHER, ToolSpec("add", "Add", {"type": "object", "properties": {"a": {"type": "number"}}})]


def test_hermes_blocks_parse_into_calls_and_leave_the_text() -> None:
    text = ('Let me check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "北京", "days": 3}}\n'
            '</tool_call>\n<tool_call>\n{"name": "add", "arguments": "{\\"a\\": 1.5}"}\n</tool_call>')
    content, calls = HermesFormat().parse(text, TOOLS)  # type: ignore[misc]
    assert content == "Let me check."
    assert [(c.name, c.arguments) for c in calls] == [("get_weather", {"city": "北京", "days": 3}), ("add", {"a": 1.5})]
    assert calls[0].id.startswith("call_") and calls[0].id != calls[1].id
    assert calls[0].arguments_json == '{"city": "北京", "days": 3}'


@pytest.mark.parametrize("text", [
    '<tool_call>{"name": "launch_rockets", "arguments": {}}</tool_call>',  # not offered
    '<tool_call>{"name": "get_weather", "arguments": {"city": </tool_call>',  # cut JSON
    "<tool_call>__import__('os').system('touch /tmp/inkstone-pwned')</tool_call>",  # code, never run
    '<tool_call>{"name": "get_weather", "arguments": [1, 2]}</tool_call>',  # arguments not an object
    "Just an answer.",
])
def test_calls_that_do_not_parse_are_none(text: str) -> None:
    assert HermesFormat().parse(text, TOOLS) is None
    assert JsonFallbackFormat().parse(text, TOOLS) is None
    assert not Path("/tmp/inkstone-pwned").exists()


def test_llama3_bare_json_calls() -> None:
    _, calls = Llama3Format().parse('<|python_tag|>{"name": "add", "parameters": {"a": 2}}', TOOLS)  # type: ignore[misc]
    assert (calls[0].name, calls[0].arguments) == ("add", {"a": 2})
    assert Llama3Format().parse('{"answer": 42}', TOOLS) is None


def test_chatglm3_calls_are_parsed_as_literals_never_evaluated() -> None:
    fmt = ChatGLM3Format()
    _, calls = fmt.parse('get_weather\n```python\ntool_call(city="北京", days=3)\n```', TOOLS)  # type: ignore[misc]
    assert (calls[0].name, calls[0].arguments) == ("get_weather", {"city": "北京", "days": 3})
    assert fmt.parse('get_weather\n```python\ntool_call(city=__import__("os").getcwd())\n```', TOOLS) is None
    assert fmt.parse('get_weather\n```python\ntool_call("北京")\n```', TOOLS) is None  # positional: not the format
    assert fmt.parse("rm_rf\n```python\ntool_call(path='/')\n```", TOOLS) is None  # not offered
    assert fmt.parse("北京今天晴。", TOOLS) is None


def test_chatglm3_renders_tools_calls_and_observations_in_its_codec() -> None:
    from core.chatglm3 import ChatGLM3Tokenizer

    messages = [{"role": "user", "content": "北京天气?"},
                {"role": "assistant", "content": "", "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "get_weather",
                                                                      "arguments": {"city": "北京"}}}]},
                {"role": "tool", "content": '{"temp": 25}', "tool_call_id": "call_1"}]
    rendered = ChatGLM3Format().render(messages, TOOLS)
    assert rendered[0]["role"] == "system" and rendered[0]["tools"][0]["name"] == "get_weather"
    assert rendered[2] == {"role": "assistant", "metadata": "get_weather",
                           "content": "```python\ntool_call(city='北京')\n```"}
    assert rendered[3] == {"role": "observation", "content": '{"temp": 25}'}
    from tests.chatglm3_fixture import FIXTURE  # the shared fixture, or one built here (a clone without shared/)

    tok = ChatGLM3Tokenizer(FIXTURE)
    ids = tok.prompt_ids(rendered)
    assert tok.special_ids["<|observation|>"] in ids
    shown = tok.decode(ids, skip_special_tokens=False)
    assert '"name": "get_weather"' in shown and "tool_call(city='北京')" in shown


def test_fallback_writes_the_convention_into_the_system_message() -> None:
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]
    rendered = JsonFallbackFormat().render(messages, TOOLS)
    assert rendered[0]["content"].startswith("Be brief.\n\nYou can call tools.")
    assert '"name": "get_weather"' in rendered[0]["content"] and len(rendered) == 2


def test_the_stream_shows_text_at_once_and_keeps_calls() -> None:
    stream = ToolStream(HermesFormat(), TOOLS)
    pieces = ["Sure", ", checking <tool", "_call>\n{\"name\": \"add\", ", "\"arguments\": {\"a\": 1}}\n</tool_call>"]
    shown = "".join(stream.feed(p) for p in pieces)
    rest, calls = stream.finish()
    assert shown + rest == "Sure, checking " and [c.name for c in calls] == ["add"]
    plain = ToolStream(HermesFormat(), TOOLS)
    assert plain.feed("a < b") == "a < b" and plain.finish() == ("", [])
    broken = ToolStream(HermesFormat(), TOOLS)
    broken.feed("<tool_call>{oops")
    assert broken.finish() == ("<tool_call>{oops", [])


def test_tool_specs_are_checked() -> None:
    with pytest.raises(InputError, match="not a valid JSON schema"):
        check_tools([{"name": "f", "parameters": {"type": "objekt"}}])
    with pytest.raises(InputError, match="too large"):
        check_tools([{"name": "f", "parameters": {"type": "object", "description": "x" * 40_000}}])
    with pytest.raises(InputError, match="tool name"):
        check_tools([{"name": "rm -rf /", "parameters": {}}])
    with pytest.raises(InputError, match="offered twice"):
        check_tools([{"name": "f"}, {"name": "f"}])
    assert check_tools([{"name": "f"}])[0].parameters == {"type": "object", "properties": {}}


def test_a_bare_json_call_in_a_code_fence_is_a_call_but_other_json_is_text() -> None:
    text = '```json\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n```'
    _, calls = HermesFormat().parse(text, TOOLS)  # type: ignore[misc]
    assert (calls[0].name, calls[0].arguments) == ("get_weather", {"city": "Paris"})
    assert HermesFormat().parse('```json\n{"city": "Paris"}\n```', TOOLS) is None
    stream = ToolStream(HermesFormat(), TOOLS)
    assert stream.feed("``") == "" and stream.feed("`python\nprint(1)\n```") == ""
    assert stream.finish() == ("```python\nprint(1)\n```", [])


def test_a_chatglm3_answer_streams_unless_its_first_line_names_a_tool() -> None:
    plain = ToolStream(ChatGLM3Format(), TOOLS)
    assert plain.feed("Sure") == "" and plain.feed("\nHere it is.") == "Sure\nHere it is."
    call = ToolStream(ChatGLM3Format(), TOOLS)
    assert call.feed("get_weather\n```python\ntool_call(city='巴黎')\n```") == ""
    _, calls = call.finish()
    assert calls[0].arguments == {"city": "巴黎"}


def test_a_schema_nested_too_deeply_is_refused_not_a_crash() -> None:
    schema: dict = {"type": "object"}
    for _ in range(3000):
        schema = {"type": "object", "properties": {"a": schema}}
    with pytest.raises(InputError, match="nested too deeply"):
        check_tools([{"name": "f", "parameters": schema}])


def test_grammars_close_objects_that_list_their_properties() -> None:
    """LangChain sends tool schemas without ``additionalProperties``: a small model under such a grammar invents
    keys until max_tokens. The grammar closes what is safe to close (the answer then matches the schema as sent)."""
    from core.generation.constrain import closed

    sent = {"type": "object", "properties": {"city": {"type": "string"}, "where": {
        "type": "object", "properties": {"lat": {"type": "number"}}}, "tags": {"type": "array", "items": {
            "type": "object", "properties": {"t": {"type": "string"}}}}}, "$defs": {"P": {"properties": {}}}}
    out = closed(sent)
    assert out["additionalProperties"] is False and out["properties"]["where"]["additionalProperties"] is False
    assert out["properties"]["tags"]["items"]["additionalProperties"] is False
    assert out["$defs"]["P"]["additionalProperties"] is False and "additionalProperties" not in sent  # a copy
    kept = {"type": "object", "properties": {"a": {}}, "additionalProperties": {"type": "integer"}}
    assert closed(kept) == kept
    mixed = {"allOf": [{"properties": {"a": {}}}, {"properties": {"b": {}}}], "properties": {"a": {}}}
    assert closed(mixed) == mixed  # closing a branch of allOf would refuse the keys of the other
    one = {"oneOf": [{"properties": {"a": {}}}, {"properties": {"b": {}}}]}
    assert closed(one) == one


def test_a_call_written_twice_in_a_row_ends_the_answer_with_one_call() -> None:
    block = '<tool_call>\n{"name": "add", "arguments": {"a": 1}}\n</tool_call>'
    stream = ToolStream(HermesFormat(), TOOLS, forced=True)
    stream.feed(block + "\n")
    assert not stream.repeated
    stream.feed(block.replace('"a": 1', '"a":1') + "\n<tool_")  # the same call (spacing aside)
    assert stream.repeated
    stream.feed('call>\n{"name": "add"')  # what the model writes after it is dropped
    rest, calls = stream.finish()
    assert rest == "" and [(c.name, c.arguments) for c in calls] == [("add", {"a": 1})]
    two = ToolStream(HermesFormat(), TOOLS, forced=True)
    two.feed(block + "\n" + block.replace('"a": 1', '"a": 2'))
    assert not two.repeated and len(two.finish()[1]) == 2  # two different calls are parallel calls


GLM_TOOL = ToolSpec("get_weather", "w", {"type": "object", "properties": {
    "city": {"type": "string"}, "days": {"type": "integer"}, "metric": {"type": "boolean"}}, "required": ["city"]})


@pytest.mark.parametrize(("text", "ok"), [
    (' get_weather\n ```python\ntool_call(city="北京", days=2)\n```', True),  # spaces as SentencePiece writes them
    ('get_weather\n```python\ntool_call(city="x", metric=true)\n```', True),  # optional ones may be left out
    ('get_weather\n```python\ntool_call(days=2)\n```', False),  # city is required
    ('get_weather\n```python\ntool_call(city="x", extra=1)\n```', False),  # not a property
    ('get_weather\n```python\ntool_call(city=__import__("os"))\n```', False),  # values are JSON, never code
    ('rm_rf\n```python\ntool_call()\n```', False),  # not offered
])
def test_the_chatglm3_grammar_allows_only_calls_of_offered_tools(text: str, ok: bool) -> None:
    """The grammar runs on ChatGLM3's own token bytes (the fixture's SentencePiece vocabulary through llguidance)."""
    from llguidance import LLMatcher

    from core.chatglm3 import ChatGLM3Tokenizer
    from core.generation.constrain import _tokenizer
    from core.models.codec import ChatGLM3Codec
    from tests.chatglm3_fixture import FIXTURE

    tokenizer = _tokenizer(ChatGLM3Codec(ChatGLM3Tokenizer(FIXTURE)))
    matcher = LLMatcher(tokenizer, ChatGLM3Format().grammar([GLM_TOOL], parallel=True).text, log_level=0)
    accepted = all(matcher.consume_token(t) for t in tokenizer.tokenize_str(text)) and matcher.is_accepting()
    assert accepted == ok
    if ok:
        _, calls = ChatGLM3Format().parse(text, [GLM_TOOL])  # type: ignore[misc]
        assert calls[0].arguments["city"] in ("北京", "x") and calls[0].arguments.get("metric", True) is True


def test_chatglm3_calls_read_json_literals_and_refuse_unwritable_argument_names() -> None:
    parsed = ChatGLM3Format().parse("get_weather\n```python\ntool_call(city=\"x\", metric=false, days=null)\n```",
                                    [GLM_TOOL])
    assert parsed is not None and parsed[1][0].arguments == {"city": "x", "metric": False, "days": None}
    bad = ToolSpec("f", "", {"type": "object", "properties": {"from": {"type": "string"}}})
    with pytest.raises(InputError, match="'from'.*Python identifier"):
        ChatGLM3Format().grammar([bad], parallel=False)


def test_an_answer_cut_inside_a_later_call_keeps_the_complete_calls() -> None:
    first = '<tool_call>\n{"name": "add", "arguments": {"a": 1}}\n</tool_call>'
    stream = ToolStream(HermesFormat(), TOOLS, forced=True)
    stream.feed(first + '\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Par')
    assert stream.finish() == (first + '\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Par', [])
    cut = ToolStream(HermesFormat(), TOOLS, forced=True)
    cut.feed(first + '\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Par')
    rest, calls = cut.finish(cut=True)
    assert rest == "" and [(c.name, c.arguments) for c in calls] == [("add", {"a": 1})]
    alone = ToolStream(HermesFormat(), TOOLS, forced=True)
    alone.feed('<tool_call>\n{"name": "add", "argu')
    assert alone.finish(cut=True) == ('<tool_call>\n{"name": "add", "argu', [])  # nothing complete: the text
