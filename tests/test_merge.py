"""``python -m core merge`` on tiny checkpoints: the merged directory loads in plain transformers and gives the same
greedy tokens as base + adapter, Inkstone loads it with ``--model DIR``; for a ChatGLM3-format base the output is
the native GLM checkpoint (``GlmForCausalLM``) with ChatGLM3's tokenizer.model; prompt-only personas and occupied
output directories are refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from core.cli import main
from core.config import load_settings
from core.engine import build_engine
from tests.chatglm3_fixture import FIXTURE
from tests.fixtures_native import make_native_checkpoint


def train(home: Path, adapters: Path, base: Path, persona: str, data: Path) -> None:
    assert main(["train", "--home", str(home), "--adapters", str(adapters), "--base", str(base), "--data", str(data),
                 "--persona", persona, "--steps", "6", "--lr", "3e-2", "--batch-size", "4", "--max-length", "128",
                 "--target-modules", "all-linear"]) == 0


def dataset(path: Path) -> Path:
    path.write_text("\n".join(json.dumps({"instruction": q, "output": "The quick brown fox."})
                              for q in ("Hello?", "What is LoRA?", "你好", "Numbers?")) + "\n", encoding="utf-8")
    return path


def greedy(model, ids: list[int]) -> list[int]:  # noqa: ANN001
    tensor = torch.tensor([ids])
    with torch.inference_mode():
        out = model.generate(input_ids=tensor, attention_mask=torch.ones_like(tensor), max_new_tokens=10,
                             do_sample=False, eos_token_id=None, pad_token_id=0)
    return out[0, len(ids):].tolist()


def test_merged_hf_model_matches_base_plus_adapter(home: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base_dir = make_native_checkpoint("qwen2", tmp_path / "tiny-qwen")
    adapters, out = tmp_path / "adapters", tmp_path / "merged"
    train(home, adapters, base_dir, "fox", dataset(tmp_path / "d.jsonl"))
    assert main(["merge", "--home", str(home), "--adapters", str(adapters), "--persona", "fox", "--out", str(out)]) == 0
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert tokenizer.chat_template and (out / "model.safetensors").is_file()
    ids = tokenizer.apply_chat_template([{"role": "user", "content": "Tell me"}], add_generation_prompt=True,
                                        tokenize=True, return_dict=False)
    merged = AutoModelForCausalLM.from_pretrained(out)
    adapted = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base_dir), adapters / "fox")
    assert greedy(merged, ids) == greedy(adapted, ids)
    assert greedy(merged, ids) != greedy(AutoModelForCausalLM.from_pretrained(base_dir), ids)  # the adapter is in it

    engine = build_engine(load_settings({"model": str(out), "temperature": 0, "max_new_tokens": 4}))
    events = list(engine.service.send(engine.new_session(), "Hello?"))
    assert type(events[-1]).__name__ == "Done"

    # An occupied output directory needs --overwrite; a prompt-only persona has nothing to merge.
    assert main(["merge", "--home", str(home), "--adapters", str(adapters), "--persona", "fox", "--out", str(out)]) == 1
    assert "--overwrite" in capsys.readouterr().err
    (adapters / "plain").mkdir()
    (adapters / "plain" / "persona.toml").write_text('name = "Plain"\n')
    assert main(["merge", "--adapters", str(adapters), "--persona", "plain", "--out", str(tmp_path / "x")]) == 1
    assert "nothing to merge" in capsys.readouterr().err


def test_chatglm3_merges_into_the_native_glm_checkpoint(home: Path, tmp_path: Path) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from core.chatglm3 import ChatGLM3Tokenizer, load_chatglm3_model

    adapters, out = tmp_path / "adapters", tmp_path / "merged-glm"
    train(home, adapters, FIXTURE, "glm", dataset(tmp_path / "d.jsonl"))
    assert main(["merge", "--home", str(home), "--adapters", str(adapters), "--persona", "glm", "--out", str(out)]) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "glm" and (out / "tokenizer.model").is_file()
    ids = ChatGLM3Tokenizer(out).prompt_ids([{"role": "user", "content": "What is LoRA?"}])
    assert ids == ChatGLM3Tokenizer(FIXTURE).prompt_ids([{"role": "user", "content": "What is LoRA?"}])
    merged = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    base = load_chatglm3_model(FIXTURE, dtype=torch.float32, cache_dir=home / "cache" / "chatglm3")
    adapted = PeftModel.from_pretrained(base, adapters / "glm")
    assert greedy(merged, ids) == greedy(adapted, ids)
    engine = build_engine(load_settings({"model": str(out), "temperature": 0, "max_new_tokens": 4}))
    assert type(engine.backend.loaded.codec).__name__ == "ChatGLM3Codec"  # Inkstone loads it with the ChatGLM3 format
    events = list(engine.service.send(engine.new_session(), "What is LoRA?"))
    assert type(events[-1]).__name__ == "Done"


def test_merge_and_train_never_replace_the_data_dir_or_the_personas(home: Path, tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    base_dir = make_native_checkpoint("qwen2", tmp_path / "tiny-qwen")
    adapters = tmp_path / "adapters"
    train(home, adapters, base_dir, "fox", dataset(tmp_path / "d.jsonl"))
    from core.history.store import HistoryStore

    store = HistoryStore.open(home / "inkstone.db")
    kept = store.create_session(model="fake", title="Kept")
    store.close()
    chroma = home / "chroma" / "keep.bin"
    chroma.parent.mkdir(parents=True)
    chroma.write_bytes(b"vectors")
    persona = (adapters / "fox" / "adapter_model.safetensors").read_bytes()
    for out, named in ((home, "data dir"), (home / "chroma", "data dir"), (tmp_path, "data dir"),
                       (adapters / "fox", "personas folder"), (adapters, "personas folder")):  # fmt: skip
        code = main(["merge", "--home", str(home), "--adapters", str(adapters), "--persona", "fox", "--out", str(out),
                     "--overwrite"])  # fmt: skip
        assert code == 1 and named in capsys.readouterr().err, out
    # train --overwrite replaces the persona folder whole: --adapters pointing at the data dir cannot reach its folders
    code = main(["train", "--home", str(home), "--adapters", str(home), "--base", str(base_dir), "--data",
                 str(dataset(tmp_path / "d.jsonl")), "--persona", "chroma", "--steps", "1", "--overwrite"])
    assert code == 1 and "The persona folder" in capsys.readouterr().err
    store = HistoryStore.open(home / "inkstone.db")
    assert store.get_session(kept.id).title == "Kept" and chroma.read_bytes() == b"vectors"
    store.close()
    assert (adapters / "fox" / "adapter_model.safetensors").read_bytes() == persona
