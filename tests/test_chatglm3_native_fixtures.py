"""The tiny native checkpoints of ``tests/fixtures_native.py`` (llama, qwen2, glm) load and generate offline.

For each family: ``AutoModelForCausalLM`` / ``AutoTokenizer.from_pretrained`` work without hub access, the
saved tokenizer encodes like the one built in memory, ``apply_chat_template`` renders the family's real
prompt format, and greedy generation produces new tokens. (Named ``test_chatglm3_*`` because it lives
with the ChatGLM3 work: the ``glm`` family is the GLM-4 native format the ChatGLM3 loader targets.)
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fixtures_native import make_native_checkpoint, make_tokenizer  # noqa: E402

MESSAGES = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "你好 Hello"},
    {"role": "assistant", "content": "Hi!"},
    {"role": "user", "content": "What is LoRA?"},
]
EXPECTED_PROMPT = {
    "qwen2": "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\n你好 Hello<|im_end|>\n"
    "<|im_start|>assistant\nHi!<|im_end|>\n<|im_start|>user\nWhat is LoRA?<|im_end|>\n"
    "<|im_start|>assistant\n",
    "llama": "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: "
    "December 2023\nToday Date: 26 Jul 2024\n\nBe brief.<|eot_id|><|start_header_id|>user<|end_header_id|>"
    "\n\n你好 Hello"
    "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\nHi!<|eot_id|><|start_header_id|>user"
    "<|end_header_id|>\n\nWhat is LoRA?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n",
    "glm": "[gMASK]<sop><|system|>\nBe brief.<|user|>\n你好 Hello<|assistant|>\nHi!<|user|>\nWhat is LoRA?"
    "<|assistant|>",
}
CLASSES = {"llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM", "glm": "GlmForCausalLM"}


@pytest.mark.parametrize("family", ["llama", "qwen2", "glm"])
def test_native_checkpoint_loads_templates_and_generates(family: str, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    dst = make_native_checkpoint(family, tmp_path / family)
    assert not list(dst.glob("*.py"))
    model = AutoModelForCausalLM.from_pretrained(dst, local_files_only=True)
    tok = AutoTokenizer.from_pretrained(dst, local_files_only=True)
    assert type(model).__name__ == CLASSES[family]
    assert model.config.num_hidden_layers == 2 and model.config.hidden_size == 64
    assert model.config.vocab_size >= len(tok)
    text = "Hello 你好 😀 12345\tdef add(a, b):"
    assert tok(text)["input_ids"] == make_tokenizer(family)(text)["input_ids"]
    assert tok.decode(tok(text)["input_ids"]) == text

    prompt = tok.apply_chat_template(MESSAGES, add_generation_prompt=True, tokenize=False)
    assert prompt == EXPECTED_PROMPT[family]
    ids = tok.apply_chat_template(MESSAGES, add_generation_prompt=True, return_dict=True)["input_ids"]
    assert tok.decode(ids) == prompt
    eos = model.generation_config.eos_token_id
    assert eos and all(0 <= i < len(tok) for i in eos)
    out = model.generate(torch.tensor([ids]), max_new_tokens=4, do_sample=False,
                         pad_token_id=tok.pad_token_id)
    assert out.shape[1] > len(ids)
    assert isinstance(tok.decode(out[0, len(ids):], skip_special_tokens=True), str)


def test_unknown_family_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="mistral"):
        make_native_checkpoint("mistral", tmp_path)
