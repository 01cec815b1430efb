"""Loading a chat model keeps stderr clean: ``python -m core chat --model smollm2-135m`` (a real subprocess on a
fresh data dir, offline) prints its answer without torchao's import noise (its CUDA-only kernels "Failed to
load ..._C_mxfp8...", "_C_cutlass_90a", torch's pytree ``register_constant`` deprecation warnings).

Any other line in torch's warning format (``W1201 16:47:45 ... file.py:630] ...``) fails the test too.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
NOISE = ("Failed to load", "_C_mxfp8", "_C_cutlass_90a", "register_constant")
GLOG_WARNING = re.compile(r"^[WE]\d{4} ")  # torch's own logging format: W1201 16:47:45.897000 ...


@pytest.mark.slow
def test_chat_one_shot_stderr_has_no_torchao_import_noise(home: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "core", "chat", "--model", "smollm2-135m", "--max-new-tokens", "4", "hi"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, encoding="utf-8", timeout=600, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()  # it answered
    lines = [line for line in re.split(r"[\r\n]+", result.stderr) if line.strip()]
    noisy = [line for line in lines if any(n in line for n in NOISE) or GLOG_WARNING.match(line)]
    assert noisy == [], "\n".join(noisy)
