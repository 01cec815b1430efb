"""Training data: Alpaca JSON/JSONL and chat JSONL become examples; every bad record is reported with its line
number (invalid JSON, missing fields, empty answers, too long); formatting goes through the chat codec the
backend uses, so the prompt part is the chat prompt token for token and only answer tokens carry labels."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.models.codec import HFChatCodec
from core.training.data import load_data
from core.training.formatting import IGNORE, encode_example, encode_report
from tests.fixtures_native import make_native_checkpoint


def test_alpaca_json_array_with_history_and_system(tmp_path: Path) -> None:
    data = tmp_path / "a.json"
    data.write_text(json.dumps([
        {"instruction": "Say hi", "input": "", "output": "Hi!"},
        {"instruction": "Translate", "input": "cat", "output": "猫", "system": "You translate.",
         "history": [["Translate dog", "狗"]]},
    ], ensure_ascii=False, indent=2), encoding="utf-8")
    report = load_data(data, system="Default system.")
    assert report.problems == [] and report.records == 2
    first, second, third = report.examples
    assert first.context == [{"role": "system", "content": "Default system."}, {"role": "user", "content": "Say hi"}]
    assert first.answer == "Hi!" and first.line == 2
    assert second.context == [{"role": "system", "content": "You translate."},
                              {"role": "user", "content": "Translate dog"}] and second.answer == "狗"
    assert third.context[-1] == {"role": "user", "content": "Translate\ncat"} and third.answer == "猫"
    assert third.context[-2] == {"role": "assistant", "content": "狗"}


def test_bad_records_are_reported_with_line_numbers(tmp_path: Path) -> None:
    lines = [
        json.dumps({"instruction": "ok", "output": "fine"}),
        "{not json",
        json.dumps({"instruction": "no answer"}),
        json.dumps({"instruction": "blank", "output": "   "}),
        "",
        json.dumps({"question": "wrong keys"}),
        json.dumps({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}),
        json.dumps({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": ""}]}),
        json.dumps([1, 2]),
    ]
    data = tmp_path / "d.jsonl"
    data.write_text("\n".join(lines) + "\n", encoding="utf-8")
    report = load_data(data)
    assert [e.line for e in report.examples] == [1, 7]
    by_line = {p.line: p.message for p in report.problems}
    assert set(by_line) == {2, 3, 4, 6, 8, 9}
    assert "invalid JSON" in by_line[2]
    assert "missing `output`" in by_line[3]
    assert "empty answer" in by_line[4] and "empty answer" in by_line[8]
    assert "missing fields" in by_line[6] and "question" in by_line[6]
    assert "JSON object" in by_line[9]
    summary = report.summary()
    assert "line 2:" in summary and "6 records skipped" in summary


def test_broken_json_array_names_the_line(tmp_path: Path) -> None:
    data = tmp_path / "broken.json"
    data.write_text('[\n {"instruction": "a", "output": "b"},\n {"instruction": "c", "output": }\n]\n')
    report = load_data(data)
    assert len(report.examples) == 1 and report.problems[0].line == 3


def test_deeply_nested_records_are_reported_not_a_crash(tmp_path: Path) -> None:
    """A record nested past Python's recursion limit is a problem on its line, in JSONL and in a JSON array."""
    deep = "[" * 100_000 + "]" * 100_000
    ok = json.dumps({"instruction": "ok", "output": "fine"})
    lines = tmp_path / "deep.jsonl"
    lines.write_text(f"{ok}\n{deep}\n{ok}\n", encoding="utf-8")
    report = load_data(lines)
    assert [e.line for e in report.examples] == [1, 3]
    assert [(p.line, "nested too deeply" in p.message) for p in report.problems] == [(2, True)]
    array = tmp_path / "deep.json"
    array.write_text(f"[\n{ok},\n{deep}\n]\n", encoding="utf-8")
    report = load_data(array)
    assert len(report.examples) == 1 and report.problems[0].line == 3
    assert "nested too deeply" in report.problems[0].message


@pytest.fixture(scope="module")
def codec(tmp_path_factory: pytest.TempPathFactory) -> HFChatCodec:
    from transformers import AutoTokenizer

    path = make_native_checkpoint("qwen2", tmp_path_factory.mktemp("qwen2"))
    return HFChatCodec(AutoTokenizer.from_pretrained(path))


def test_prompt_part_is_the_chat_prompt_and_labels_cover_only_the_answer(codec: HFChatCodec, tmp_path: Path) -> None:
    data = tmp_path / "c.jsonl"
    data.write_text(json.dumps({"messages": [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello there"},
        {"role": "assistant", "content": "Hi, fine."}, {"role": "user", "content": "What is LoRA?"},
        {"role": "assistant", "content": "A low-rank adaptation."}]}) + "\n", encoding="utf-8")
    examples = load_data(data).examples
    assert len(examples) == 2  # one per assistant answer
    for example in examples:
        item = encode_example(codec, example)
        prompt = codec.prompt_ids(example.context)
        assert item.input_ids[: len(prompt)] == prompt
        assert item.labels[: len(prompt)] == [IGNORE] * len(prompt)
        answer = item.input_ids[len(prompt):]
        assert item.labels[len(prompt):] == answer
        assert answer[-1] in codec.stop_ids  # the model learns to stop where chat stops
        assert codec.decode(answer).strip() == example.answer
    # The second example's prompt holds the first turn exactly as chat history renders it.
    assert codec.decode(encode_example(codec, examples[1]).input_ids).count("Hi, fine.") == 1


def test_too_long_examples_are_reported(codec: HFChatCodec, tmp_path: Path) -> None:
    data = tmp_path / "long.jsonl"
    data.write_text("\n".join(json.dumps({"instruction": q, "output": a}) for q, a in [
        ("short", "ok"), ("long " * 200, "ok"), ("short again", "fine " * 300)]) + "\n", encoding="utf-8")
    report = load_data(data)
    encoded = encode_report(codec, report, max_length=150)
    assert [e.line for e in encoded] == [1]
    assert [p.line for p in report.problems] == [2, 3]
    assert all("longer than --max-length 150" in p.message for p in report.problems)


def test_records_of_a_one_line_json_array_are_reported_and_dropped_one_by_one(codec: HFChatCodec,
                                                                              tmp_path: Path) -> None:
    """`json.dump` without indent writes a whole Alpaca array on line 1: problems name the record, each bad
    record counts once, and one too-long example does not drop its good neighbours on the same line."""
    path = tmp_path / "one-line.json"
    path.write_text(json.dumps(["a", 1, {"instruction": "hi"}, {"instruction": "q", "output": "ok"},
                                {"instruction": "long", "output": "word " * 400}]), encoding="utf-8")
    report = load_data(path)
    assert report.records == 5 and report.skipped == 3
    assert "record 1 (line 1): a record must be a JSON object, got str" in report.summary()
    assert "record 3 (line 1): missing `output`" in report.summary()
    fits = len(encode_example(codec, report.examples[0]).input_ids)  # the short record's length
    encoded = encode_report(codec, report, max_length=fits)
    assert len(encoded) == 1 and report.skipped == 4
    assert "record 5 (line 1): example is" in report.summary()
    assert "5 records, 1 examples usable, 4 records skipped" in report.summary()
