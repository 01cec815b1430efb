"""ChatGLM3 on the native GLM architecture takes a PEFT LoRA adapter: training on answer tokens only lowers the
loss, the adapter saves as safetensors and loads back, and disabling it restores the base model's logits."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from core.chatglm3 import ChatGLM3Tokenizer, load_chatglm3_model
from tests.chatglm3_fixture import FIXTURE

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_up_proj", "down_proj"]


def example(tok: ChatGLM3Tokenizer) -> tuple[torch.Tensor, torch.Tensor]:
    """One chat example: prompt ids (masked out of the loss) + answer ids (with eos)."""
    prompt = tok.prompt_ids([{"role": "user", "content": "What is LoRA?"}])
    answer = tok.answer_ids("LoRA 是一种低秩适配方法。")
    ids = torch.tensor([prompt + answer])
    labels = torch.tensor([[-100] * len(prompt) + answer])
    return ids, labels


def test_lora_trains_saves_and_switches(tmp_path: Path) -> None:
    from peft import LoraConfig, PeftModel, get_peft_model

    torch.manual_seed(0)
    tok = ChatGLM3Tokenizer(FIXTURE)
    base = load_chatglm3_model(FIXTURE, dtype=torch.float32, cache_dir=tmp_path / "cache")
    ids, labels = example(tok)
    with torch.no_grad():
        base_logits = base(input_ids=ids).logits.clone()

    model = get_peft_model(base, LoraConfig(r=8, lora_alpha=16, target_modules=TARGETS, lora_dropout=0.0))
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert {t for t in TARGETS if any(f".{t}." in n for n in trainable)} == set(TARGETS)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    for _ in range(40):
        loss = model(input_ids=ids, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0] * 0.6
    with torch.no_grad():
        trained_loss = model(input_ids=ids, labels=labels).loss.item()

    model.save_pretrained(tmp_path / "adapter")
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()
    fresh = load_chatglm3_model(FIXTURE, dtype=torch.float32, cache_dir=tmp_path / "cache")
    loaded = PeftModel.from_pretrained(fresh, tmp_path / "adapter", adapter_name="persona")
    with torch.no_grad():
        tuned = loaded(input_ids=ids).logits
        assert not torch.allclose(tuned, base_logits, atol=1e-4)
        with loaded.disable_adapter():
            assert torch.allclose(loaded(input_ids=ids).logits, base_logits, atol=1e-5)
    tuned_loss = torch.nn.functional.cross_entropy(tuned[0, :-1], labels[0, 1:], ignore_index=-100).item()
    assert tuned_loss == pytest.approx(trained_loss, abs=1e-4)  # the saved adapter is the trained one
