"""``python -m core train`` on tiny native checkpoints and the ChatGLM3-format fixture: a complete persona
directory that the persona loader accepts, metrics.csv per step, --resume continuing the step count, no
overwrite without --overwrite, --strict failing on bad lines, an adapter for another base refused naming both,
and ChatGLM3 training through the ChatGLM3 prompt format."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from core.cli import main
from core.config import load_settings
from core.engine import build_engine
from core.errors import ConfigError
from core.personas.store import load_persona
from core.training.data import file_sha256
from tests.chatglm3_fixture import FIXTURE
from tests.fixtures_native import make_native_checkpoint

QUESTIONS = ["Hello, how are you?", "What is LoRA?", "Say something nice.", "你好，世界。", "Tell me a fact.",
             "What is two plus two?", "Name a colour.", "What day is it?"]


def write_data(path: Path, answer: str = "ZEBRA ZEBRA.", extra: list[str] | None = None) -> Path:
    lines = [json.dumps({"instruction": q, "output": answer}, ensure_ascii=False) for q in QUESTIONS]
    path.write_text("\n".join(lines + (extra or [])) + "\n", encoding="utf-8")
    return path


def steps_in(csv_path: Path) -> list[int]:
    with open(csv_path, encoding="utf-8") as fh:
        return [int(row["step"]) for row in csv.DictReader(fh) if row["loss"]]  # training rows (not held-out ones)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_native_checkpoint("llama", tmp_path_factory.mktemp("m") / "tiny-llama")


def train(home: Path, adapters: Path, *args: str) -> int:
    return main(["train", "--home", str(home), "--adapters", str(adapters), "--max-length", "128",
                 "--batch-size", "4", "--lr", "5e-3", *args])


def test_train_writes_a_persona_and_resume_continues(home: Path, tmp_path: Path, tiny: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    adapters, data = tmp_path / "adapters", write_data(tmp_path / "d.jsonl")
    assert train(home, adapters, "--base", str(tiny), "--data", str(data), "--persona", "zebra", "--steps", "4",
                 "--save-steps", "2", "--system", "You are Zebra.", "--name", "Zebra") == 0
    persona = load_persona(adapters, "zebra")
    assert (persona.lora, persona.base_model, persona.system_prompt, persona.name) == (
        True, "tiny-llama", "You are Zebra.", "Zebra")
    for name in ("adapter_config.json", "adapter_model.safetensors", "metrics.csv", "persona.toml"):
        assert (adapters / "zebra" / name).is_file()
    import tomllib

    record = tomllib.loads((adapters / "zebra" / "persona.toml").read_text(encoding="utf-8"))["training"]
    assert record["data_sha256"] == file_sha256(data) and record["steps"] == 4 and record["base_model"] == "tiny-llama"
    assert record["final_loss"] > 0 and record["settings"]["rank"] == 8
    assert steps_in(adapters / "zebra" / "metrics.csv") == [1, 2, 3, 4]
    assert "step 4/4" in capsys.readouterr().err  # the progress line

    # An existing persona is not replaced without --overwrite.
    assert train(home, adapters, "--base", str(tiny), "--data", str(data), "--persona", "zebra", "--steps", "1") == 1
    assert "--overwrite" in capsys.readouterr().err
    # --resume continues from step 4 to 6.
    assert train(home, adapters, "--base", str(tiny), "--data", str(data), "--persona", "zebra", "--steps", "6",
                 "--resume") == 0
    assert steps_in(adapters / "zebra" / "metrics.csv") == [1, 2, 3, 4, 5, 6]
    record = tomllib.loads((adapters / "zebra" / "persona.toml").read_text(encoding="utf-8"))["training"]
    assert record["steps"] == 6


def test_strict_fails_on_bad_lines_and_lenient_skips_them(home: Path, tmp_path: Path, tiny: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    adapters = tmp_path / "adapters"
    data = write_data(tmp_path / "d.jsonl", extra=["{oops", json.dumps({"instruction": "x", "output": ""})])
    assert train(home, adapters, "--base", str(tiny), "--data", str(data), "--persona", "p", "--steps", "1",
                 "--strict") == 1
    err = capsys.readouterr().err
    assert "line 9: invalid JSON" in err and "line 10: empty answer" in err and not (adapters / "p").exists()
    assert train(home, adapters, "--base", str(tiny), "--data", str(data), "--persona", "p", "--steps", "1") == 0
    assert "2 records skipped" in capsys.readouterr().err
    import tomllib

    record = tomllib.loads((adapters / "p" / "persona.toml").read_text(encoding="utf-8"))["training"]
    assert record["skipped_records"] == 2 and record["examples"] == len(QUESTIONS)


def test_adapter_for_another_base_is_refused_naming_both(home: Path, tmp_path: Path, tiny: Path) -> None:
    adapters = tmp_path / "adapters"
    assert train(home, adapters, "--base", str(tiny), "--data", str(write_data(tmp_path / "d.jsonl")),
                 "--persona", "zebra", "--steps", "1") == 0
    other = make_native_checkpoint("qwen2", tmp_path / "tiny-qwen")
    engine = build_engine(load_settings({"model": str(other), "adapters": str(adapters)}))
    with pytest.raises(ConfigError) as err:
        list(engine.service.send(engine.new_session(persona="zebra"), "Hello"))
    assert "tiny-llama" in str(err.value) and "tiny-qwen" in str(err.value)
    assert all(engine.store.messages(s.id) == [] for s in engine.store.list_sessions())


def test_chatglm3_trains_through_its_own_prompt_format(home: Path, tmp_path: Path) -> None:
    from core.chatglm3 import ChatGLM3Tokenizer
    from core.models.codec import ChatGLM3Codec
    from core.training.data import load_data
    from core.training.formatting import IGNORE, encode_example

    data = write_data(tmp_path / "d.jsonl", answer="LoRA 是一种低秩适配方法。")
    codec = ChatGLM3Codec(ChatGLM3Tokenizer(FIXTURE))
    example = load_data(data, system="你是助手。").examples[0]
    item = encode_example(codec, example)
    prompt = codec.tokenizer.prompt_ids(example.context)
    assert item.input_ids == prompt + codec.tokenizer.answer_ids(example.answer)
    assert prompt[:2] == [codec.tokenizer.special_ids["[gMASK]"], codec.tokenizer.special_ids["sop"]]
    assert item.labels == [IGNORE] * len(prompt) + codec.tokenizer.answer_ids(example.answer)

    adapters = tmp_path / "adapters"
    assert main(["train", "--home", str(home), "--adapters", str(adapters), "--base", str(FIXTURE), "--data",
                 str(data), "--persona", "glm", "--steps", "12", "--lr", "3e-2", "--system", "你是助手。",
                 "--batch-size", "8"]) == 0
    losses = [float(r["loss"]) for r in csv.DictReader(open(adapters / "glm" / "metrics.csv", encoding="utf-8"))]
    assert len(losses) == 12 and losses[-1] < losses[0] - 1.0  # it learns the answers
    import tomllib

    record = tomllib.loads((adapters / "glm" / "persona.toml").read_text(encoding="utf-8"))["training"]
    assert record["settings"]["target_modules"] == ["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"]
    adapter = json.loads((adapters / "glm" / "adapter_config.json").read_text(encoding="utf-8"))
    assert set(adapter["target_modules"]) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_up_proj", "down_proj"}
    persona = load_persona(adapters, "glm")
    assert persona.base_model == FIXTURE.name
    engine = build_engine(load_settings({"model": str(FIXTURE), "adapters": str(adapters), "temperature": 0,
                                         "max_new_tokens": 6}))
    events = list(engine.service.send(engine.new_session(persona="glm"), "What is LoRA?"))
    assert type(events[-1]).__name__ == "Done"


def test_resume_after_a_kill_redoes_the_steps_past_the_checkpoint(tmp_path: Path) -> None:
    from core.training.callbacks import ProgressRecorder
    from core.training.trainer import trim_metrics

    metrics = tmp_path / "metrics.csv"
    metrics.write_text("step,epoch,loss,learning_rate,grad_norm,elapsed_s\n" + "".join(
        f"{i},0.1,{1 / i},0.001,1.0,{i}\n" for i in range(1, 8)))
    trim_metrics(metrics, 6)  # killed at step 7, last checkpoint at 6
    assert steps_in(metrics) == [1, 2, 3, 4, 5, 6]
    assert ProgressRecorder(metrics, print, resumed=True).last_loss == pytest.approx(1 / 6)
