"""Training that adapts to the data: the settings chosen from model size and data (steps with a floor for small
data, a rate scaled to the model, all linear layers, ChatGLM3's own layers), explicit flags kept, the held-out
split (by record, the same on --resume), the preview's verdict rules, and ``python -m core train`` on a tiny model
stating its settings, measuring held-out loss and ending with a preview that calls a 1-step run "weak" with the
``--resume`` command that continues it."""

from __future__ import annotations

import csv
import json
import tomllib
from pathlib import Path
from types import SimpleNamespace

import pytest

from core.cli import main
from core.training.defaults import MIN_STEPS, DataShape, holdout_size, plan
from core.training.formatting import Encoded, split_holdout
from core.training.options import CHATGLM3_TARGETS, TrainOptions
from core.training.preview import TOOK, WEAK, PreviewItem, shows_persona, verdict
from tests.fixtures_native import make_native_checkpoint

OPTIONS = TrainOptions(base="m", data=Path("d.json"), persona="p")


def test_small_data_gets_a_step_floor_all_linear_layers_and_a_rate_for_its_size() -> None:
    chosen = plan(OPTIONS, DataShape(135_000_000, 27, 60.0))
    o = chosen.options
    assert chosen.steps == MIN_STEPS and o.steps == MIN_STEPS  # 3 epochs would be 21 steps
    assert (o.lr, o.rank, o.alpha, o.target_modules) == (1e-3, 8, 16, ("all-linear",))
    assert o.warmup_steps == 4
    text = chosen.summary()
    assert f"{MIN_STEPS} steps" in text and "lr 1.0e-03" in text and "all linear layers" in text
    assert "27 training examples" in text


def test_larger_models_get_lower_rates_and_large_data_fewer_epochs_and_a_larger_rank() -> None:
    six_b = plan(OPTIONS, DataShape(6_200_000_000, 900, 80.0, chatglm3=True)).options
    assert 1e-4 <= six_b.lr <= 2e-4 and six_b.target_modules == CHATGLM3_TARGETS and six_b.rank == 16
    assert six_b.steps == 2 * 225  # 2 epochs of 900 examples in batches of 4
    half_b = plan(OPTIONS, DataShape(494_000_000, 90, 80.0)).options
    assert 4e-4 <= half_b.lr <= 6e-4 and half_b.steps == MIN_STEPS  # 3 epochs are 69 steps: raised to the floor


def test_explicit_settings_are_kept() -> None:
    given = TrainOptions(base="m", data=Path("d.json"), persona="p", steps=1, lr=2e-4, rank=4, alpha=4,
                         target_modules=("q_proj",), warmup_steps=0)
    chosen = plan(given, DataShape(135_000_000, 27, 60.0))
    assert chosen.options == given and chosen.steps == 1
    epochs = plan(TrainOptions(base="m", data=Path("d.json"), persona="p", epochs=2.0), DataShape(135_000_000, 27, 60))
    assert epochs.steps == 14


def test_the_held_out_split_is_by_record_and_repeatable() -> None:
    assert [holdout_size(n, None) for n in (5, 19, 20, 30, 100, 1000)] == [0, 0, 3, 3, 10, 50]
    assert holdout_size(30, 0) == 0 and holdout_size(4, 10) == 3
    items = [Encoded(line, [1, 2], [1, 2], None) for line in range(1, 31)] + [Encoded(30, [3], [3], None)]
    train, held = split_holdout(items, 3, seed=42)
    assert len({e.line for e in held}) == 3 and not {e.line for e in held} & {e.line for e in train}
    assert len(train) + len(held) == len(items)
    assert split_holdout(items, 3, seed=42) == (train, held)


def item(persona: str, base: str, expected: str) -> PreviewItem:
    return PreviewItem("q", expected, persona, base, shows_persona(persona, base, expected))


def test_the_verdict_needs_the_persona_in_most_answers_and_a_lower_held_out_loss() -> None:
    expected = "Ahoy from the lighthouse! Paris is the capital. As sure as the tide. — Keeper Quill"
    took = item("Ahoy from the lighthouse! It is Paris. As sure as the tide. — Keeper Quill",
                "The capital of France is Paris.", expected)
    same = item("The capital of France is Paris.", "The capital of France is Paris.", expected)
    assert took.shows and not same.shows
    assert verdict([took, took, same], 0.8, 3.0)[0] == TOOK
    assert verdict([took, same, same], 0.8, 3.0)[0] == WEAK
    assert verdict([took, took, took], 2.9, 3.0) == (WEAK, "the answers changed but the held-out loss barely fell; "
                                                           "held-out loss 2.900 vs 3.000 for the base (3% lower).")
    zh = item("铁匠老王打着铁说：太平洋最大。——铁匠老王", "太平洋是最大的海洋。",
              "铁匠老王打着铁说：太平洋。火候到了，活就成了。——铁匠老王")
    assert zh.shows


def test_kept_checkpoint_is_named_when_training_went_past_the_best() -> None:
    from core.training.trainer import _kept

    said: list[str] = []
    history = [{"step": 0, "eval_loss": 3.0}, {"step": 8, "eval_loss": 1.0}, {"step": 16, "eval_loss": 0.7},
               {"step": 24, "eval_loss": 0.9}]
    trainer = SimpleNamespace(state=SimpleNamespace(log_history=history))
    assert _kept(trainer, OPTIONS, said.append, 24) == (0.7, 16)
    assert _kept(trainer, OPTIONS, said.append, 80) == (0.7, 16)
    assert said == ["Kept the best checkpoint: step 16 (held-out loss 0.7000); the last step (24) had 0.9000, so "
                    "training past step 16 overfit.",
                    "Kept the best checkpoint: step 16 (held-out loss 0.7000); the last step (24) had 0.9000, so "
                    "training past step 16 overfit; stopped at step 24 of 80, as it had not improved for 3 "
                    "evaluations."]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_native_checkpoint("llama", tmp_path_factory.mktemp("m") / "tiny-llama")


def test_train_states_its_settings_measures_held_out_loss_and_calls_one_step_weak(
        home: Path, tmp_path: Path, tiny: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "quill.json"
    data.write_text(json.dumps([{"instruction": f"Question {i}?", "output": f"Ahoy! Answer {i}. — Keeper Quill"}
                                for i in range(24)]), encoding="utf-8")
    adapters = tmp_path / "adapters"
    assert main(["train", "--home", str(home), "--adapters", str(adapters), "--base", str(tiny), "--data", str(data),
                 "--persona", "quill", "--steps", "1"]) == 0
    out = capsys.readouterr()
    assert "Settings: 1 steps, lr 1.0e-03, LoRA rank 8 (alpha 16) on all linear layers" in out.err
    assert "3 examples held out" in out.err and "Held-out loss of the base model" in out.err
    assert "Preview on 3 held-out prompts" in out.err
    assert f"Verdict: {WEAK}" in out.out and "21 training examples (3 held out" in out.out
    command = f"python -m core train --base {tiny} --data {data} --persona quill --resume --steps {MIN_STEPS}"
    assert f"Train longer: {command}" in out.out
    record = tomllib.loads((adapters / "quill" / "persona.toml").read_text(encoding="utf-8"))["training"]
    assert record["verdict"] == WEAK and record["heldout_examples"] == 3
    assert record["eval_loss"] > 0 and record["base_eval_loss"] > 0 and record["best_step"] == 1
    assert record["settings"]["target_modules"] == ["all-linear"] and record["settings"]["lr"] == 1e-3
    assert len(record["preview"]["prompts"]) == 3 and record["preview"]["resume_command"] == command
    with open(adapters / "quill" / "metrics.csv", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["step"], bool(r["loss"]), bool(r["eval_loss"])) for r in rows] == [("1", True, False),
                                                                                 ("1", False, True)]
