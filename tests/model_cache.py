"""Helpers (not tests): the bundled SmolLM2 converted once per test run, handed to data dirs as hard links.

Converting the GGUF of the bundled model (and packing its int8/int4 CPU weights) takes 10-20 s each time a test
starts from an empty data dir. Tests whose subject is not that first start (answers, batching, training, RAG,
offline checks) get the converted copy instead: ``seed(home, kinds)`` builds it once per run, through the real
loader in a ``python -m core model generate`` child, into one shared cache (shared by pytest-xdist workers too,
under a file lock), and hard-links the copies of the named kinds into ``home/cache/models``. The first-start
tests (``test_lowbit``, ``test_real_model``, ``test_model_load_quiet``) still convert from nothing.

Kinds: ``int8`` and ``int4`` (the packed CPU weights), ``float`` (the converted float32 directory that
``--quantize``, ``bf16``/``fp32`` weights and training load). A seeded data dir holds only the kinds asked for,
so the loader takes the same path a user's data dir with those caches would.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MODEL = "smollm2-135m"
WEIGHTS = {"int8": "int8", "int4": "int4", "float": "fp32"}  # kind -> the cpu_weights setting that builds it
SUFFIX = {"int8": ".int8", "int4": ".int4-g"}


def _dirs(models: Path, kind: str) -> list[Path]:
    found = [p for p in models.glob(f"{MODEL}-*") if p.is_dir() and ".partial" not in p.name]
    if kind == "float":
        return [p for p in found if "." not in p.name and (p / "config.json").is_file()]
    return [p for p in found if p.name.split(".", 1)[-1].startswith(SUFFIX[kind].lstrip("."))]


def _build(root: Path, kind: str) -> None:
    config = root / f"{kind}.toml"
    config.write_text(f'cpu_weights = "{WEIGHTS[kind]}"\ndevice = "cpu"\n', encoding="utf-8")
    messages = root / "hi.json"
    messages.write_text(json.dumps([{"role": "user", "content": "Hi"}]), encoding="utf-8")
    env = {**os.environ, "INKSTONE_HOME": str(root / "home"), "INKSTONE_CONFIG": str(config)}
    done = subprocess.run([sys.executable, "-m", "core", "model", "generate", MODEL, "--messages", str(messages),
                           "--greedy", "--max-new-tokens", "1"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=900, check=False)  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"building the shared {kind} cache of {MODEL} failed:\n{done.stderr}")


def shared_root(basetemp: Path) -> Path:
    """The run's shared cache: under pytest's base temp dir (the controller's one when running under xdist), which
    pytest rotates away with the run's other temp dirs."""
    base = basetemp.parent if "PYTEST_XDIST_WORKER" in os.environ else basetemp
    root = base / "shared-models"
    root.mkdir(parents=True, exist_ok=True)
    return root


def seed(root: Path, home: Path, *kinds: str) -> None:
    """Give the data dir ``home`` the converted SmolLM2 copies of ``kinds`` (built once per run in ``root``)."""
    models = root / "home" / "cache" / "models"
    with open(root / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for kind in kinds:
            if kind == "float" and not _dirs(models, "float"):
                _build(root, "float")
            elif kind != "float" and not _dirs(models, kind):
                # Packed straight from the GGUF only while no float copy is there: build them in a side home.
                side = root / f"side-{kind}"
                side.mkdir(exist_ok=True)
                _build(side, kind)
                for src in _dirs(side / "home" / "cache" / "models", kind):
                    dest = models / src.name
                    if not dest.exists():
                        dest.parent.mkdir(parents=True, exist_ok=True)
                        src.rename(dest)
        target = home / "cache" / "models"
        target.mkdir(parents=True, exist_ok=True)
        for kind in kinds:
            for src in _dirs(models, kind):
                dest = target / src.name
                if not dest.exists():
                    _link_tree(src, dest)
        _pin_auto(target, kinds[0])


def _pin_auto(models: Path, kind: str) -> None:
    """``cpu_weights = "auto"`` (the default) picks the first seeded kind in this data dir without timing."""
    from core.models import autoweights

    for src in _dirs(models, kind):
        base = models / src.name.split(".", 1)[0]
        autoweights.save_choice(Path(f"{base}.auto.json"), autoweights.pinned(WEIGHTS[kind]))


def _link_tree(src: Path, dest: Path) -> None:
    import shutil

    shutil.copytree(src, dest, copy_function=os.link)
