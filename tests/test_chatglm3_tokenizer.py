"""ChatGLM3Tokenizer (SentencePiece only, no checkpoint code) against the fixture's reference.json.

Checks: the exact prompt ids of every reference case, the plain ``encode`` facts, ``greedy_text`` from
``decode``, the special/stop ids, special-token rendering, byte-fallback decoding, and that transformers'
``TextIteratorStreamer`` can stream with this tokenizer.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from core.errors import InputError, ModelError
from tests.chatglm3_fixture import FIXTURE, fixture_config


@pytest.fixture(scope="module")
def ref() -> dict:
    return json.loads((FIXTURE / "reference.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def tok():
    from core.chatglm3 import ChatGLM3Tokenizer

    return ChatGLM3Tokenizer(FIXTURE)


def test_prompt_ids_match_every_reference_case(tok, ref) -> None:
    assert ref["cases"], "reference.json has no cases"
    for i, case in enumerate(ref["cases"]):
        assert tok.prompt_ids(case["messages"]) == case["prompt_ids"], f"case {i}: {case['messages']}"
        assert tok.count_tokens(case["messages"]) == len(case["prompt_ids"])


def test_plain_encode_facts(tok, ref) -> None:
    for fact in ref["encode"]:
        assert tok.encode(fact["text"]) == fact["ids"], fact["text"]


def test_greedy_text_decodes_like_reference(tok, ref) -> None:
    for case in ref["cases"]:
        assert tok.decode(case["greedy_new_ids"]) == case["greedy_text"]


def test_special_and_stop_ids(tok, ref) -> None:
    n = tok.sp.vocab_size()
    for name, value in ref["special_ids"].items():
        assert tok.special_ids[name] == value
    assert list(tok.special_ids.values()) == list(range(n, n + 9))
    cfg = fixture_config()
    assert tok.eos_token_id == ref["eos_token_id"] == cfg.get("eos_token_id", 2)
    assert tok.pad_token_id == cfg.get("pad_token_id", 0)
    assert tok.stop_ids == [ref["eos_token_id"], ref["special_ids"]["<|user|>"], ref["special_ids"]["<|observation|>"]]
    assert tok.vocab_size == n + 9


def test_decode_special_tokens_bytes_and_padding_ids(tok) -> None:
    sp = tok.special_ids
    ids = [sp["[gMASK]"], sp["sop"], sp["<|user|>"], *tok.encode("你好"), tok.eos_token_id]
    assert tok.decode(ids) == "你好"
    assert tok.decode(ids, skip_special_tokens=False) == "[gMASK]sop<|user|>你好</s>"
    # "😀" is four byte-fallback pieces; a cut-off sequence becomes U+FFFD, like the reference greedy_text.
    emoji = tok.encode("😀")
    assert tok.decode(emoji) == "😀"
    assert tok.decode(emoji[:-1]).endswith("\ufffd")
    # Ids in the model's padded vocabulary (>= tokenizer vocab) are dropped, never an exception.
    assert tok.decode([*tok.encode("Hello"), tok.vocab_size + 3]) == "Hello"
    import torch

    assert tok.decode(torch.tensor(tok.encode("Hello world"))) == "Hello world"


def test_metadata_tools_and_answer_ids(tok) -> None:
    sp = tok.special_ids
    with_meta = tok.prompt_ids([{"role": "observation", "metadata": "weather", "content": "21"}])
    assert with_meta == [sp["[gMASK]"], sp["sop"], sp["<|observation|>"], *tok.encode("weather\n"),
                         *tok.encode("21"), sp["<|assistant|>"]]
    tools = [{"name": "get_weather", "parameters": {}}]
    sys_ids = tok.prompt_ids([{"role": "system", "content": "S", "tools": tools}])
    expected = "S\n" + json.dumps(tools, indent=4, ensure_ascii=False)
    assert sys_ids[3:-1] == [*tok.encode("\n"), *tok.encode(expected)]
    assert tok.answer_ids("好的") == [*tok.encode("好的"), tok.eos_token_id]


def test_bad_role_and_bad_content_are_input_errors(tok) -> None:
    with pytest.raises(InputError, match="'tool'"):
        tok.prompt_ids([{"role": "tool", "content": "x"}])
    with pytest.raises(InputError, match="string"):
        tok.prompt_ids([{"role": "user", "content": None}])


def test_missing_tokenizer_model_is_model_error(tmp_path: Path) -> None:
    from core.chatglm3 import ChatGLM3Tokenizer

    with pytest.raises(ModelError, match="tokenizer.model"):
        ChatGLM3Tokenizer(tmp_path)


def test_streams_through_transformers_text_iterator_streamer(tok) -> None:
    import torch
    from transformers import TextIteratorStreamer

    text = "emoji 😀 and 数字 2024, 你好，世界\nnext line"
    ids = tok.encode(text)
    streamer = TextIteratorStreamer(tok, skip_prompt=True, skip_special_tokens=True)
    streamer.put(torch.tensor([[tok.special_ids["<|assistant|>"]]]))  # the prompt, skipped
    for token in [*ids, tok.eos_token_id]:
        streamer.put(torch.tensor([token]))
    streamer.end()
    streamed = "".join(streamer)
    assert streamed == tok.decode(ids) and "\ufffd" not in streamed
