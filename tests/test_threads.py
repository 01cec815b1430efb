"""``core.generation.threads``: a thread that waits on another thread's model work frees its idle OpenMP workers.

GNU OpenMP keeps a team of workers per OS thread that ran a parallel kernel; once the teams hold more threads
than there are cores, every worker sleeps between kernels and CPU decoding slows by about a third. The checks
count the process's OS threads (``/proc/self/task``): what a user would see in ``top -H``.
"""

from __future__ import annotations

import gc
import os
import threading
from pathlib import Path

import pytest
import torch

from core.backends.transformers_backend import TransformersBackend
from core.config import GenerationSettings, load_settings
from core.generation.scheduler import QueuedBackend
from core.generation.threads import release_idle_workers
from core.models.loader import load_model
from core.models.registry import resolve
from tests.fixtures_native import make_native_checkpoint

pytestmark = pytest.mark.skipif(
    not Path("/proc/self/task").is_dir() or torch.get_num_threads() < 2
    or "OpenMP" not in torch.__config__.parallel_info(),
    reason="needs Linux, torch on OpenMP and at least 2 threads",
)


def os_threads() -> int:
    return len(os.listdir("/proc/self/task"))


def parallel_work() -> None:
    """A kernel big enough for torch to split across its OpenMP workers."""
    torch.randn(1 << 22).sin_()


def test_release_frees_the_calling_threads_workers_and_they_come_back_when_needed() -> None:
    counts: list[int] = []
    gc.collect()  # an earlier test's unreferenced batcher stops its thread now, not in the middle of the counts

    def run() -> None:
        before = os_threads()
        parallel_work()
        counts.append(os_threads() - before)  # this thread's new team
        assert release_idle_workers()
        counts.append(os_threads() - before)
        parallel_work()  # the next kernel builds a team again
        counts.append(os_threads() - before)
        release_idle_workers()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(60)
    workers = torch.get_num_threads() - 1
    assert counts == [workers, 0, workers]


def test_after_a_batched_answer_no_idle_workers_are_left(tmp_path: Path) -> None:
    """The caller (which loaded the model) and the decode thread both hand their workers back: after an answer,
    the process holds only the decode thread beside what it had before the model ran anything."""
    model_dir = make_native_checkpoint("llama", tmp_path / "tiny-llama")
    settings = load_settings({"model": str(model_dir), "home": str(tmp_path / "home"), "dtype": "float32"},
                             config_file=tmp_path / "absent.toml")
    gc.collect()  # an earlier test's unreferenced batcher stops its thread now, not in the middle of the counts
    release_idle_workers()
    before = os_threads()
    queued = QueuedBackend(TransformersBackend(load_model(resolve(str(model_dir)), settings)), batch=4)
    assert queued.batcher is not None
    parallel_work()  # this thread now has a team, as after loading a real model
    assert os_threads() > before
    greedy = GenerationSettings(temperature=0, repetition_penalty=1.0, max_new_tokens=8)
    for _ in range(2):
        events = list(queued.stream([{"role": "user", "content": "Hello there"}], greedy, threading.Event()))
        assert events[-1].completion_tokens > 0
        queued.batcher.wait_idle()
        assert os_threads() == before + 1  # the decode thread, with no workers of its own left idle
    queued.batcher.close()
