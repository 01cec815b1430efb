"""Cold start: seconds from a fresh process to the first streamed token, on the first start (GGUF conversion,
then packing for the CPU weights) and on a cached start, for the default ``cpu_weights`` and for fp32 in the
same run (targets for the default model: first start not slower than fp32's, cached start under ~10 s).
Figures only.

    .venv/bin/python bench/coldstart.py [--models smollm2-135m qwen2.5-coder-0.5b] [--weights int4 fp32]
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
sys.path.insert(0, str(REPO))
import core  # noqa: E402,F401 - first: offline, no telemetry, no hub kernels (core/offline.py)


def first_token_seconds(home: Path, model_id: str, weights: str) -> float:
    """Start ``python -m core chat`` with ``cpu_weights = weights`` and time until its first byte of answer."""
    config = home / "inkstone.toml"
    config.write_text(f'cpu_weights = "{weights}"\n', encoding="utf-8")
    env = {**os.environ, "INKSTONE_HOME": str(home), "INKSTONE_CONFIG": str(config), "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "core", "chat", "--model", model_id, "--device", "cpu", "--temperature", "0",
           "--max-new-tokens", "8", "Say hello."]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    proc.stdout.read(1)
    elapsed = time.perf_counter() - start
    proc.wait()
    return elapsed


def main() -> None:
    """Measure each model and setting cold (empty data dir) and cached (same dir again)."""
    from core.config import Settings

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["smollm2-135m", "qwen2.5-coder-0.5b"])
    p.add_argument("--weights", nargs="+", default=[Settings().cpu_weights, "fp32"])
    args = p.parse_args()
    for model_id in args.models:
        for weights in args.weights:
            with tempfile.TemporaryDirectory() as tmp:
                home = Path(tmp)
                cold = first_token_seconds(home, model_id, weights)
                warm = first_token_seconds(home, model_id, weights)
            print(f"{model_id} cpu_weights={weights}: first token {cold:6.1f} s on first start "
                  f"(GGUF -> cache), {warm:6.1f} s cached", flush=True)


if __name__ == "__main__":
    main()
