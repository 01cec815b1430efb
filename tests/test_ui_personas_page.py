"""The Personas page (AppTest, fake model for the app): personas listed with avatar, base model and training
record; a prompt-only persona created through the form lands on disk; a running training job (a real
``python -m core train`` process on a tiny model, its row in the app's database) is shown with its step and loss,
survives a rerun, and its Cancel button ends the process."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.config import load_settings
from core.history.store import HistoryStore
from core.personas.store import load_persona
from core.training.jobs import JobStore, process_alive
from tests.fixtures_native import make_native_checkpoint

APP = Path(__file__).resolve().parents[1] / "app.py"


def open_page(monkeypatch: pytest.MonkeyPatch, adapters: Path) -> AppTest:
    monkeypatch.setenv("INKSTONE_ADAPTERS", str(adapters))
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.run()
    at.switch_page("ui/personas_page.py").run()
    assert not at.exception, at.exception
    return at


def test_list_and_create_prompt_persona(app_store: HistoryStore, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    adapters = tmp_path / "adapters"
    (adapters / "cat").mkdir(parents=True)
    (adapters / "cat" / "persona.toml").write_text(
        'name = "Cat"\navatar = "🐱"\nbase_model = "tiny"\n[training]\nsteps = 7\nfinal_loss = 0.5\n'
        'data_file = "cat.jsonl"\nexamples = 9\n', encoding="utf-8")
    at = open_page(monkeypatch, adapters)
    labels = [e.label for e in at.expander]
    assert any("🐱 **Cat**" in label and "prompt only" in label for label in labels)
    assert any("Trained 7 steps on cat.jsonl (9 examples)" in c.value for c in at.caption)
    at.text_input(key="pp-id").set_value("poet")
    at.text_input(key="pp-name").set_value("Poet")
    at.text_input(key="pp-avatar").set_value("🪶")
    at.text_area(key="pp-system").set_value("Answer in verse.")
    next(b for b in at.button if b.label == "Save").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    poet = load_persona(adapters, "poet")
    assert (poet.name, poet.avatar, poet.system_prompt, poet.lora) == ("Poet", "🪶", "Answer in verse.", False)
    assert any("**Poet**" in e.label for e in at.expander)


def test_a_trained_persona_shows_its_settings_preview_and_verdict(app_store: HistoryStore, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    adapters = tmp_path / "adapters"
    (adapters / "quill").mkdir(parents=True)
    (adapters / "quill" / "persona.toml").write_text(
        'name = "Quill"\n[training]\nsteps = 1\nfinal_loss = 3.1\nheldout_examples = 3\neval_loss = 3.0\n'
        'base_eval_loss = 3.2\n[training.settings]\nlr = 0.001\nrank = 8\ntarget_modules = ["all-linear"]\n'
        '[training.preview]\nverdict = "weak, train longer"\nreason = "the persona shows in only 0 of 1 answers."\n'
        'prompts = ["Largest ocean?"]\npersona = ["The Pacific."]\nbase = ["The Pacific Ocean."]\n'
        'resume_command = "python -m core train --base m --data q.json --persona quill --resume --steps 80"\n',
        encoding="utf-8")
    at = open_page(monkeypatch, adapters)
    assert any("lr 0.001 · rank 8 on all linear layers · 3 held out · held-out loss 3.000 (base 3.200)" in c.value
               for c in at.caption)
    table = at.table[0].value
    assert list(table.iloc[0]) == ["Largest ocean?", "The Pacific.", "The Pacific Ocean."]
    assert any("Verdict: weak, train longer — the persona shows in only 0 of 1 answers." in w.value
               for w in at.warning)
    assert at.code[0].value.endswith("--persona quill --resume --steps 80")


@pytest.mark.slow
def test_running_job_shows_progress_survives_rerun_and_cancels(app_home: Path, app_store: HistoryStore,
                                                             tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    adapters = tmp_path / "adapters"
    model = make_native_checkpoint("llama", tmp_path / "tiny-llama")
    data = tmp_path / "d.jsonl"
    data.write_text("\n".join(json.dumps({"instruction": f"Q{i}?", "output": "ZEBRA."}) for i in range(8)))
    settings = load_settings({"home": str(app_home), "adapters": str(adapters)})
    jobs = JobStore(app_store)
    job = jobs.start(["--base", str(model), "--data", str(data), "--persona", "bg", "--steps", "5000",
                      "--batch-size", "2", "--max-length", "128"], settings, "bg", "tiny-llama")
    deadline = time.monotonic() + 240
    while jobs.get(job.id).step < 1 and time.monotonic() < deadline:
        time.sleep(0.5)
    at = open_page(monkeypatch, adapters)
    running = jobs.get(job.id)
    assert at.get("progress"), (running, running.log_tail(30), [e.value for e in at.error])  # why, if it ever fails
    progress = at.get("progress")[0].proto.text
    assert "Training **bg** on tiny-llama: step" in progress and "loss" in progress and "ETA" in progress
    at.run()  # a rerun (or a refresh) still shows the job from its SQLite row
    assert "Training **bg**" in at.get("progress")[0].proto.text
    next(b for b in at.button if b.label == "Cancel training").click().run()
    assert jobs.get(job.id).status == "cancelled"
    deadline = time.monotonic() + 30
    while process_alive(job.pid, job.id) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not process_alive(job.pid, job.id)
    assert any("cancelled" in e.value for e in at.error)
