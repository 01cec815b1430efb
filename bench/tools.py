"""Tool-call benchmark on a real model (default: the bundled default model): 32 cases in English and Chinese, with one
or two tools offered, arguments with numbers and Chinese text.

Prints, never asserts:
1. exact rate: the call's name and arguments equal the expected ones, with ``tool_choice`` auto (free decoding,
   parsed) and with ``tool_choice`` required (grammar-constrained, llguidance);
2. decode tokens/s with the grammar vs without (the same cases; target ratio >= 0.9);
3. ``response_format`` json_schema: the share of answers that parse and match their schema (target 100%);
4. valid rate: answers whose call parsed, names an offered tool and whose arguments match its schema (what the
   grammar guarantees; with a random-weight model, such as the ChatGLM3 test fixture, only this rate and 3. mean
   anything).

    python bench/tools.py                 # the default model, the data dir's cache
    python bench/tools.py --cases 8       # a quick look
    python bench/tools.py --model DIR --temperature 1   # e.g. a ChatGLM3 checkpoint: its own call format
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import core  # noqa: E402,F401 - first: offline, no telemetry, no hub kernels (core/offline.py)


def fn(name: str, description: str, props: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    """An OpenAI ``tools`` entry."""
    return {"type": "function", "function": {"name": name, "description": description, "parameters": {
        "type": "object", "properties": props, "required": required or list(props)}}}


WEATHER = fn("get_weather", "Get the current weather of a city", {"city": {"type": "string"}})
CONVERT = fn("convert_currency", "Convert an amount of money", {
    "amount": {"type": "number"}, "from_currency": {"type": "string", "description": "ISO code such as USD"},
    "to_currency": {"type": "string", "description": "ISO code such as EUR"}})
TIMER = fn("set_timer", "Set a timer", {"minutes": {"type": "integer"}})
TRANSLATE = fn("translate", "Translate text", {"text": {"type": "string"},
                                               "target_language": {"type": "string", "description": "e.g. English"}})
SEARCH = fn("search_notes", "Search the user's notes", {"query": {"type": "string"}})
CALC = fn("calculator", "Evaluate an arithmetic expression", {"expression": {"type": "string"}})

CASES: list[tuple[str, list[dict[str, Any]], str, dict[str, Any]]] = [
    ("What's the weather in Paris?", [WEATHER], "get_weather", {"city": "Paris"}),
    ("北京今天天气怎么样？", [WEATHER], "get_weather", {"city": "北京"}),
    ("Is it raining in Tokyo right now?", [WEATHER, TIMER], "get_weather", {"city": "Tokyo"}),
    ("上海现在的天气如何？", [WEATHER, TIMER], "get_weather", {"city": "上海"}),
    ("Set a timer for 15 minutes.", [TIMER], "set_timer", {"minutes": 15}),
    ("帮我设置一个10分钟的计时器。", [TIMER], "set_timer", {"minutes": 10}),
    ("Please start a 45 minute timer.", [WEATHER, TIMER], "set_timer", {"minutes": 45}),
    ("定一个25分钟的番茄钟计时器。", [WEATHER, TIMER], "set_timer", {"minutes": 25}),
    ("Convert 100 USD to EUR.", [CONVERT], "convert_currency",
     {"amount": 100, "from_currency": "USD", "to_currency": "EUR"}),
    ("把250人民币换成美元，货币代码用CNY和USD。", [CONVERT], "convert_currency",
     {"amount": 250, "from_currency": "CNY", "to_currency": "USD"}),
    ("How much is 80 GBP in JPY?", [CONVERT, WEATHER], "convert_currency",
     {"amount": 80, "from_currency": "GBP", "to_currency": "JPY"}),
    ("Convert 12.5 EUR to USD please.", [CONVERT, TIMER], "convert_currency",
     {"amount": 12.5, "from_currency": "EUR", "to_currency": "USD"}),
    ("Translate 'good morning' into French.", [TRANSLATE], "translate",
     {"text": "good morning", "target_language": "French"}),
    ("把“你好，世界”翻译成英文，target_language 用 English。", [TRANSLATE], "translate",
     {"text": "你好，世界", "target_language": "English"}),
    ("Translate 'thank you' into Chinese.", [TRANSLATE, SEARCH], "translate",
     {"text": "thank you", "target_language": "Chinese"}),
    ("请把“谢谢”翻译成日语，target_language 用 Japanese。", [TRANSLATE, SEARCH], "translate",
     {"text": "谢谢", "target_language": "Japanese"}),
    ("Search my notes for 'project deadline'.", [SEARCH], "search_notes", {"query": "project deadline"}),
    ("在我的笔记里搜索“年度预算”。", [SEARCH], "search_notes", {"query": "年度预算"}),
    ("Find my notes about 'LoRA training'.", [SEARCH, WEATHER], "search_notes", {"query": "LoRA training"}),
    ("搜索笔记：会议纪要", [SEARCH, TIMER], "search_notes", {"query": "会议纪要"}),
    ("Calculate 23 * 47 with the calculator.", [CALC], "calculator", {"expression": "23 * 47"}),
    ("用计算器算一下 (15 + 27) / 6。", [CALC], "calculator", {"expression": "(15 + 27) / 6"}),
    ("What is 2 ** 10? Use the calculator.", [CALC, WEATHER], "calculator", {"expression": "2 ** 10"}),
    ("请用计算器计算 1234 - 567。", [CALC, SEARCH], "calculator", {"expression": "1234 - 567"}),
    ("Weather in 深圳 please.", [WEATHER, CONVERT], "get_weather", {"city": "深圳"}),
    ("Set a timer for 3 minutes for my tea.", [TIMER, TRANSLATE], "set_timer", {"minutes": 3}),
    ("请设置一个 90 分钟的计时器。", [TIMER, CALC], "set_timer", {"minutes": 90}),
    ("What is the weather like in Berlin today?", [WEATHER, SEARCH], "get_weather", {"city": "Berlin"}),
    ("广州天气", [WEATHER], "get_weather", {"city": "广州"}),
    ("Convert 5 BTC to USD.", [CONVERT], "convert_currency",
     {"amount": 5, "from_currency": "BTC", "to_currency": "USD"}),
    ("Look up 'quarterly report' in my notes.", [SEARCH, CALC], "search_notes", {"query": "quarterly report"}),
    ("翻译成德语：早上好。target_language 用 German。", [TRANSLATE], "translate",
     {"text": "早上好", "target_language": "German"}),
]

SCHEMAS: list[tuple[str, dict[str, Any]]] = [
    ("Describe a cat as JSON with name, age and indoor.", {"type": "object", "properties": {
        "name": {"type": "string"}, "age": {"type": "integer"}, "indoor": {"type": "boolean"}},
        "required": ["name", "age", "indoor"], "additionalProperties": False}),
    ("用JSON给出一本书：书名、作者、页数。", {"type": "object", "properties": {
        "title": {"type": "string"}, "author": {"type": "string"}, "pages": {"type": "integer"}},
        "required": ["title", "author", "pages"], "additionalProperties": False}),
    ("List three fruits as JSON.", {"type": "object", "properties": {
        "fruits": {"type": "array", "items": {"type": "string"}, "minItems": 3, "maxItems": 3}},
        "required": ["fruits"], "additionalProperties": False}),
    ("Classify the sentiment of 'I love this phone' as JSON.", {"type": "object", "properties": {
        "sentiment": {"enum": ["positive", "negative", "neutral"]}, "confidence": {"type": "number"}},
        "required": ["sentiment", "confidence"], "additionalProperties": False}),
    ("提取地址：北京市海淀区中关村大街1号，输出JSON。", {"type": "object", "properties": {
        "city": {"type": "string"}, "district": {"type": "string"}, "street": {"type": "string"}},
        "required": ["city", "district", "street"], "additionalProperties": False}),
    ("Give a user profile with email and tags as JSON.", {"type": "object", "properties": {
        "email": {"type": "string"}, "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 4}},
        "required": ["email", "tags"], "additionalProperties": False}),
    ("Weather report for Oslo as JSON: temperature_c and conditions.", {"type": "object", "properties": {
        "temperature_c": {"type": "number"}, "conditions": {"type": "string"}},
        "required": ["temperature_c", "conditions"], "additionalProperties": False}),
    ("给出一个菜谱JSON：菜名和配料列表。", {"type": "object", "properties": {
        "dish": {"type": "string"}, "ingredients": {"type": "array", "items": {"type": "string"}, "maxItems": 6}},
        "required": ["dish", "ingredients"], "additionalProperties": False}),
    ("A point in 2D as JSON.", {"type": "object", "properties": {"x": {"type": "number"}, "y": {"type": "number"}},
                                "required": ["x", "y"], "additionalProperties": False}),
    ("Answer yes or no as JSON: is the sky blue?", {"type": "object", "properties": {"answer": {"type": "boolean"}},
                                                    "required": ["answer"], "additionalProperties": False}),
]


def run_one(completions: Any, body: dict[str, Any]) -> tuple[str, Any]:
    """The answer's text and its ``Outcome`` (in-process, the API's own path)."""
    from core.api.completions import Outcome
    from core.api.schemas import ChatCompletionRequest

    prep = completions.prepare(ChatCompletionRequest.model_validate(body))
    text, outcome = [], None
    for item in completions.run(prep, threading.Event()):
        if isinstance(item, Outcome):
            outcome = item
        else:
            text.append(item)
    return "".join(text), outcome


def same(a: Any, b: Any) -> bool:
    """Equal arguments (numbers compared as numbers, strings stripped)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, int | float) and isinstance(b, int | float) and not isinstance(a, bool):
        return float(a) == float(b)
    if isinstance(a, str) and isinstance(b, str):
        return a.strip() == b.strip()
    return a == b


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="profile id or model dir (default: the default model)")
    parser.add_argument("--home", default=None, help="data dir (default: $INKSTONE_HOME or ./data)")
    parser.add_argument("--cases", type=int, default=len(CASES))
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument("--temperature", type=float, default=0.0, help="0: greedy (default); 1: sample")
    args = parser.parse_args()

    import jsonschema

    from core.api.completions import Completions
    from core.api.metrics import ApiMetrics
    from core.config import load_settings
    from core.engine import build_engine

    values: dict[str, Any] = {"temperature": args.temperature, "repetition_penalty": 1.0}
    if args.model:
        values["model"] = args.model
    if args.home:
        values["home"] = args.home
    started = time.perf_counter()
    engine = build_engine(load_settings(values))
    model = engine.backend.model_id
    print(f"model {model} on {engine.backend.info().device} (loaded in {time.perf_counter() - started:.1f} s)")
    completions = Completions(lambda: engine, ApiMetrics())
    results: dict[str, list[bool]] = {"auto": [], "required": []}
    valid_calls: dict[str, list[bool]] = {"auto": [], "required": []}
    cut: dict[str, int] = {"auto": 0, "required": 0}
    speeds: dict[str, list[float]] = {"auto": [], "required": []}
    for text, tools, name, expected in CASES[: args.cases]:
        for mode in ("auto", "required"):
            body = {"model": model, "messages": [{"role": "user", "content": text}], "tools": tools,
                    "tool_choice": mode, "parallel_tool_calls": False, "max_tokens": args.max_tokens}
            answer, outcome = run_one(completions, body)
            calls = outcome.tool_calls
            ok = len(calls) == 1 and calls[0].name == name and same(calls[0].arguments, expected)
            results[mode].append(ok)
            cut[mode] += outcome.finish_reason == "length"
            schemas = {t["function"]["name"]: t["function"]["parameters"] for t in tools}
            valid_calls[mode].append(bool(calls) and all(
                c.name in schemas and jsonschema.Draft202012Validator(schemas[c.name]).is_valid(c.arguments)
                for c in calls))
            if outcome.tokens_per_s:
                speeds[mode].append(outcome.tokens_per_s)
            got = [(c.name, c.arguments) for c in calls] or answer[:60]
            print(f"  {mode:8} {'ok ' if ok else 'BAD'} {text[:34]!r:38} -> {got}", flush=True)
    n = len(results["auto"])
    for mode, label in (("auto", "free (tool_choice auto, parsed)"), ("required", "constrained (required)")):
        print(f"exact name+arguments, {label}: {sum(results[mode])}/{n} = {sum(results[mode]) / n:.0%}; "
              f"valid call (parsed, offered tool, arguments match): {sum(valid_calls[mode])}/{n}, "
              f"{sum(valid_calls[mode])}/{n - cut[mode]} of those not cut by max_tokens")
    free, guided = statistics.median(speeds["auto"] or [0]), statistics.median(speeds["required"] or [0])
    print(f"decode tokens/s median: without grammar {free:.1f}, with grammar {guided:.1f}, ratio "
          f"{guided / free if free else float('nan'):.2f} (target >= 0.9)")
    valid, rates, cut_json = 0, [], 0
    for text, schema in SCHEMAS:
        body = {"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": 160,
                "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": schema,
                                                                           "strict": True}}}
        answer, outcome = run_one(completions, body)
        try:
            jsonschema.validate(json.loads(answer), schema)
            valid += 1
            mark = "ok "
        except (ValueError, jsonschema.ValidationError):
            mark = "BAD"
        if outcome.tokens_per_s:
            rates.append(outcome.tokens_per_s)
        cut_json += outcome.finish_reason == "length"
        print(f"  json {mark} {answer[:80]!r} ({outcome.finish_reason})", flush=True)
    print(f"response_format json_schema valid: {valid}/{len(SCHEMAS)} = {valid / len(SCHEMAS):.0%} (target 100%); "
          f"{valid}/{len(SCHEMAS) - cut_json} of those not cut by max_tokens")


if __name__ == "__main__":
    main()
