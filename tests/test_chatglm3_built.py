"""The ChatGLM3 checkpoint the suite builds for itself (``tests/chatglm3_reference.py``) is checked in every run,
whether or not the shared fixture exists: its reference prompt ids, fp32 logits and greedy ids are reproduced by
the loader and tokenizer under test. Where the shared fixture (reference from the original implementation) exists,
the project's own reference is checked against it: the independent prompt builder gives the original prompt ids
with the shared tokenizer, and the pure-torch forward gives its logits, so a wrong reference cannot hide a bug."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.chatglm3_fixture import HAS_SHARED, SHARED, built_fixture, fixture_reference, logits_bound
from tests.chatglm3_reference import chatglm3_forward, reference_decode, reference_prompt_ids


@pytest.fixture(scope="module")
def built() -> Path:
    return built_fixture()


def test_built_checkpoint_is_reproduced_by_the_loader(built: Path, tmp_path: Path) -> None:
    from core.chatglm3 import ChatGLM3Tokenizer, load_chatglm3_model

    ref = fixture_reference(built)
    tok = ChatGLM3Tokenizer(built)
    model = load_chatglm3_model(built, cache_dir=tmp_path / "cache", dtype=torch.float32)
    assert len(ref["cases"]) >= 5
    for i, case in enumerate(ref["cases"]):
        assert tok.prompt_ids(case["messages"]) == case["prompt_ids"], f"case {i}"
        ids = torch.tensor([case["prompt_ids"]])
        with torch.no_grad():
            logits = model(ids).logits[0]
        expected = ref["logits"][case["logits_key"]]
        assert (logits - expected).abs().max().item() <= logits_bound(expected, 1e-5)
        out = model.generate(ids, do_sample=False, max_new_tokens=len(case["greedy_new_ids"]),
                             eos_token_id=tok.stop_ids, pad_token_id=tok.pad_token_id)
        assert out[0, ids.shape[1]:].tolist() == case["greedy_new_ids"], f"case {i}"
        assert tok.decode(case["greedy_new_ids"]) == case["greedy_text"]


if HAS_SHARED:  # collected only where the original implementation's reference exists (never a skip)

    def test_own_reference_agrees_with_the_original_implementation() -> None:
        import sentencepiece as spm

        from core.chatglm3 import read_chatglm3_state_dict

        ref = fixture_reference(SHARED)
        sp = spm.SentencePieceProcessor(model_file=str(SHARED / "tokenizer.model"))
        cfg = json.loads((SHARED / "config.json").read_text(encoding="utf-8"))
        sd = read_chatglm3_state_dict(SHARED)
        for i, case in enumerate(ref["cases"]):
            assert reference_prompt_ids(sp, case["messages"]) == case["prompt_ids"], f"case {i}"
            assert reference_decode(sp, case["greedy_new_ids"]) == case["greedy_text"], f"case {i}"
            expected = ref["logits"][case["logits_key"]]
            got = chatglm3_forward(sd, cfg, case["prompt_ids"])
            assert (got - expected).abs().max().item() <= logits_bound(expected, 1e-5)
