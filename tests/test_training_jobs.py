"""Background training jobs (``core.training.jobs``): a real ``python -m core train`` process per job, its progress
in SQLite; a finished job leaves its persona, a cancelled job's process ends, a killed process is marked failed
with its log, and the state survives reopening the store (what a page refresh or an app restart does)."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from core.config import load_settings
from core.history.store import HistoryStore
from core.personas.store import load_persona
from core.training.jobs import JobStore, process_alive
from tests.fixtures_native import make_native_checkpoint

pytestmark = pytest.mark.slow


def wait_for(check, timeout: float = 240.0):  # noqa: ANN001, ANN201
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.5)
    raise AssertionError("condition not reached in time")


@pytest.fixture
def setup(home: Path, tmp_path: Path) -> tuple[JobStore, object, list[str]]:
    model = make_native_checkpoint("llama", tmp_path / "tiny-llama")
    data = tmp_path / "d.jsonl"
    data.write_text("\n".join(json.dumps({"instruction": f"Question {i}?", "output": "ZEBRA."}) for i in range(8)))
    settings = load_settings({"adapters": str(tmp_path / "adapters")})
    jobs = JobStore(HistoryStore.open(settings.db_path))
    return jobs, settings, ["--base", str(model), "--data", str(data), "--batch-size", "2", "--max-length", "128"]


def test_job_runs_to_the_end_and_survives_reopening(setup) -> None:  # noqa: ANN001
    jobs, settings, args = setup
    job = jobs.start([*args, "--persona", "bg", "--steps", "3"], settings, "bg", "tiny-llama")
    assert job.active and job.pid
    done = wait_for(lambda: (j := jobs.get(job.id)).status != "running" and j)
    assert done.status == "done", done.error or done.log_tail()
    assert (done.step, done.max_steps) == (3, 3) and done.loss is not None
    assert load_persona(settings.adapters, "bg").lora
    reopened = JobStore(HistoryStore.open(settings.db_path))  # a restart sees the same row
    assert reopened.get(job.id).status == "done" and [j.id for j in reopened.list()] == [job.id]


def test_cancel_ends_the_process_and_a_killed_job_is_marked_failed(setup) -> None:  # noqa: ANN001
    jobs, settings, args = setup
    first = jobs.start([*args, "--persona", "c1", "--steps", "5000"], settings, "c1", "tiny-llama")
    second = jobs.start([*args, "--persona", "c2", "--steps", "5000"], settings, "c2", "tiny-llama")
    wait_for(lambda: jobs.get(first.id).step >= 1 and jobs.get(second.id).step >= 1)

    cancelled = jobs.cancel(first.id)
    assert cancelled.status == "cancelled"
    wait_for(lambda: not process_alive(first.pid, first.id), timeout=30)
    assert jobs.get(first.id).status == "cancelled" and not (settings.adapters / "c1").exists()

    os.kill(second.pid, signal.SIGKILL)
    wait_for(lambda: not process_alive(second.pid, second.id), timeout=30)
    failed = JobStore(HistoryStore.open(settings.db_path)).get(second.id)  # as after an app restart
    assert failed.status == "failed" and "ended without finishing" in failed.error
    assert "step " in failed.error  # the tail of its log shows where it was
