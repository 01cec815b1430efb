"""Quality of the llama.cpp engine: perplexity of the bundled GGUF as the engine runs it against the same weights
in float32, both measured by llama.cpp's own ``llama-perplexity`` on the same held text. Figures only.

The float32 reference is the GGUF requantized to F32 by ``llama-quantize`` (the 4/5/6-bit blocks dequantized, the
same numbers ``transformers`` computes from them), so the difference is what the engine's low-bit kernels cost
(weights in their blocks, activations quantized to 8 bits in the dot products). Target (issue 19): within 0.5%.
Text: ``bench/quality_data/cpu_quality_heldout.txt`` (English and Chinese prose, held out), chunks of 256 tokens.

    .venv/bin/python bench/engine_quality.py [--models smollm2-135m qwen2.5-coder-0.5b]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import core  # noqa: E402,F401 - first: offline, no telemetry, no hub kernels (core/offline.py)
from core.llamacpp.build import ensure, find_binary  # noqa: E402
from core.llamacpp.server import default_threads  # noqa: E402

TEXT = Path(__file__).with_name("quality_data") / "cpu_quality_heldout.txt"


def perplexity(binary: Path, gguf: Path, threads: int, ctx: int = 256) -> float:
    """llama-perplexity's final estimate on the held text."""
    done = subprocess.run([str(binary), "-m", str(gguf), "-f", str(TEXT), "-c", str(ctx), "-b", str(ctx),
                           "-t", str(threads)], capture_output=True, text=True, check=False)
    found = re.search(r"Final estimate: PPL = ([0-9.]+)", done.stdout + done.stderr)
    if found is None:
        raise SystemExit(f"llama-perplexity failed on {gguf}:\n{(done.stdout + done.stderr)[-1500:]}")
    return float(found.group(1))


def main() -> None:
    """Parse flags, then print each model's perplexity as the engine runs it and in float32."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["smollm2-135m", "qwen2.5-coder-0.5b"])
    args = p.parse_args()
    ensure()
    tools = {name: find_binary(name) for name in ("llama-perplexity", "llama-quantize")}
    if None in tools.values():
        raise SystemExit("llama.cpp's tools are not built: run `make setup` with cmake and a C++ compiler.")
    from core.models import bundled

    threads = default_threads()
    with tempfile.TemporaryDirectory() as tmp:
        for model_id in args.models:
            gguf = bundled.assemble(bundled.source_for(model_id), Path(tmp))
            f32 = Path(tmp) / f"{model_id}-f32.gguf"
            subprocess.run([str(tools["llama-quantize"]), "--allow-requantize", str(gguf), str(f32), "F32"],
                           capture_output=True, check=True)
            ours, ref = perplexity(tools["llama-perplexity"], gguf, threads), perplexity(tools["llama-perplexity"],
                                                                                           f32, threads)
            print(f"{model_id}: perplexity as the engine runs it {ours:.3f}, float32 {ref:.3f}: "
                  f"{(ours / ref - 1) * 100:+.2f}% (target within 0.5%)")
            f32.unlink()


if __name__ == "__main__":
    main()
