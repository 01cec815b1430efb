"""Cold start: seconds from a fresh process to the first streamed token, on the first load (GGUF conversion)
and on a cached load. Figures only.

    .venv/bin/python bench/coldstart.py [--models smollm2-135m qwen2.5-coder-0.5b]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def first_token_seconds(home: Path, model_id: str) -> float:
    """Start ``python -m core chat`` and time until its first byte of answer on stdout."""
    env = {**os.environ, "INKSTONE_HOME": str(home), "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "core", "chat", "--model", model_id, "--temperature", "0", "--max-new-tokens", "8",
           "Say hello."]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    proc.stdout.read(1)
    elapsed = time.perf_counter() - start
    proc.wait()
    return elapsed


def main() -> None:
    """Measure each model cold (empty data dir) and cached (same dir again)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["smollm2-135m", "qwen2.5-coder-0.5b"])
    args = p.parse_args()
    for model_id in args.models:
        with tempfile.TemporaryDirectory() as tmp:
            home = Path(tmp)
            cold = first_token_seconds(home, model_id)
            warm = first_token_seconds(home, model_id)
        print(f"{model_id}: first token {cold:6.1f} s on first load (GGUF -> cache), {warm:6.1f} s cached")


if __name__ == "__main__":
    main()
