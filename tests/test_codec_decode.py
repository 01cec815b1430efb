"""The chat codec's decode (run a few times per streamed token) gives exactly the text transformers' own decode
gives, for the bundled SmolLM2 tokenizer: plain and special ids, Chinese split mid-character, and a tokenizer that
asks for transformers' space clean-up."""

from __future__ import annotations

import random

import pytest

from core.models.bundled import source_for
from core.models.codec import HFChatCodec


@pytest.fixture(scope="module")
def tokenizer():  # noqa: ANN201
    from transformers import AutoTokenizer

    gguf = source_for("smollm2-135m").parts[0]
    return AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)


def test_decode_matches_transformers_for_any_ids(tokenizer) -> None:  # noqa: ANN001
    codec = HFChatCodec(tokenizer, None, "smollm2")
    rng = random.Random(3)
    text = "Hello, world! 你好，世界。 Ünïcödé — emoji 🙂 and  double  spaces .,;"
    ids = tokenizer.encode(text, add_special_tokens=False)
    specials = [i for i in (tokenizer.bos_token_id, tokenizer.eos_token_id) if i is not None]
    cases = [ids, ids[:3], ids[1:-1], [], specials + ids + specials]
    cases += [[rng.randrange(len(tokenizer)) for _ in range(rng.randrange(1, 40))] for _ in range(200)]
    for case in cases:
        assert codec.decode(case) == tokenizer.decode(case, skip_special_tokens=True)
    assert codec.decode(specials + ids) == tokenizer.decode(ids)  # the special tokens are left out


def test_a_tokenizer_with_space_clean_up_keeps_transformers_decode(tokenizer) -> None:  # noqa: ANN001
    tokenizer.clean_up_tokenization_spaces = True
    try:
        codec = HFChatCodec(tokenizer, None, "smollm2")
        ids = tokenizer.encode("It is , isn 't it ?", add_special_tokens=False)
        assert codec.decode(ids) == tokenizer.decode(ids, skip_special_tokens=True)
    finally:
        tokenizer.clean_up_tokenization_spaces = False
