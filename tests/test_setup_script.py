"""``scripts/setup.sh`` run for real on a copy of the repo's setup files, with a recording stand-in for the venv's
Python (so no package is installed): which torch it asks pip for, from which index, with and without a GPU.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
DEFAULT_INDEX = "/".join(["pypi.org", "simple"])  # spelled in pieces so that this file does not contain it

# Stands in for .venv/bin/python: torch is "not installed", every pip call is logged one per line.
FAKE_PYTHON = """#!/bin/sh
if [ "$1" = "-c" ]; then exit 1; fi
echo "$*" >> "$(dirname "$0")/pip.log"
"""


def run_setup(tmp_path: Path, gpu: bool) -> list[str]:
    """Run a copy of setup.sh in ``tmp_path``; return the pip calls it made (``-m pip install ...``)."""
    (tmp_path / "scripts").mkdir()
    shutil.copy(ROOT / "scripts" / "setup.sh", tmp_path / "scripts" / "setup.sh")
    for name in ("requirements.txt", "requirements-models.txt"):
        shutil.copy(ROOT / name, tmp_path / name)
    venv_bin = tmp_path / ".venv" / "bin"
    venv_bin.mkdir(parents=True)
    python = venv_bin / "python"
    python.write_text(FAKE_PYTHON, encoding="utf-8")
    python.chmod(0o755)
    tools = tmp_path / "tools"
    tools.mkdir()
    if gpu:
        smi = tools / "nvidia-smi"
        smi.write_text("#!/bin/sh\necho 'GPU 0: NVIDIA H100 (UUID: GPU-0)'\n", encoding="utf-8")
        smi.chmod(0o755)
    path = os.pathsep.join([str(tools), "/usr/bin", "/bin"])  # no nvidia-smi of this machine's own
    subprocess.run(
        ["bash", str(tmp_path / "scripts" / "setup.sh")],
        cwd=tmp_path, env={"PATH": path, "HOME": str(tmp_path)}, check=True, capture_output=True, text=True,
    )  # fmt: skip
    return (venv_bin / "pip.log").read_text(encoding="utf-8").splitlines()


def torch_call(calls: list[str]) -> list[str]:
    [call] = [c for c in calls if " torch==" in f" {c}"]
    return call.split()


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_without_a_gpu_pytorch_cpu_index_is_an_extra_index_only(tmp_path: Path) -> None:
    args = torch_call(run_setup(tmp_path, gpu=False))
    assert args[:3] == ["-m", "pip", "install"] and args[3].endswith("+cpu")
    assert args[args.index("--extra-index-url") + 1] == TORCH_CPU_INDEX
    assert "--index-url" not in args  # pip keeps its own default (or the user's configured) index


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_with_a_gpu_a_cuda_torch_comes_from_the_default_index(tmp_path: Path) -> None:
    args = torch_call(run_setup(tmp_path, gpu=True))
    assert args[3].startswith("torch==") and "+cpu" not in args[3]
    assert "--index-url" not in args and "--extra-index-url" not in args


def test_the_repository_does_not_spell_out_the_default_package_index() -> None:
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True)
    offenders = [
        name
        for name in tracked.stdout.splitlines()
        if (ROOT / name).is_file() and DEFAULT_INDEX in (ROOT / name).read_text(errors="ignore")
    ]
    assert offenders == []
