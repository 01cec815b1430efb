"""Benchmark the ChatGLM3 native loader: load time and greedy decode speed, app path vs bare generate.

Prints figures only (no assertions on time):
- load time of the checkpoint with conversion into an empty cache, and again from the cache;
- tokens/s and time to first token of a full Inkstone chat turn (ChatService, transformers backend, ChatGLM3
  codec, streaming) vs a bare greedy ``model.generate`` on the same loaded native model, and the ratio
  (``bench/decode.py``'s comparison, 128 new tokens).

Usage: ``python bench/chatglm3.py [--fixture DIR] [--repeats 5]``.
"""

from __future__ import annotations

import argparse  # noqa: E402
import os
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import core  # noqa: E402,F401 - first: offline, no telemetry, no hub kernels (core/offline.py)

sys.path.insert(0, str(Path(__file__).resolve().parent))

DEFAULT_FIXTURE = os.environ.get("CHATGLM3_FIXTURE") or str(
    Path(__file__).resolve().parents[2] / "shared/fixtures/chatglm3-tiny"
)


def main() -> None:
    """Parse arguments, run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fixture", default=DEFAULT_FIXTURE, help="ChatGLM3-format checkpoint directory")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch default)")
    args = parser.parse_args()
    fixture = Path(args.fixture)
    if not (fixture / "config.json").is_file():
        parser.error(f"no ChatGLM3 checkpoint at {fixture} (pass --fixture or set CHATGLM3_FIXTURE)")

    import torch
    import transformers

    from core.chatglm3 import load_chatglm3_model

    if args.threads:
        torch.set_num_threads(args.threads)
    start = time.perf_counter()
    from safetensors.torch import save_file  # noqa: F401 - imported up front so loads below exclude imports
    from transformers import GenerationConfig, GlmForCausalLM  # noqa: F401
    imports_s = time.perf_counter() - start
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, device {args.device}, "
          f"threads {torch.get_num_threads()}")
    with tempfile.TemporaryDirectory() as cache:
        start = time.perf_counter()
        load_chatglm3_model(fixture, cache_dir=Path(cache), device_map=args.device)
        convert_s = time.perf_counter() - start
        start = time.perf_counter()
        model = load_chatglm3_model(fixture, cache_dir=Path(cache), device_map=args.device)
        cached_s = time.perf_counter() - start
    print(f"imports {imports_s:.3f} s; load with conversion: {convert_s:.3f} s; from cache: {cached_s:.3f} s")

    del model
    from decode import bench_model  # the same Inkstone-turn vs bare-generate comparison as bench/decode.py

    bench_model(str(fixture.resolve()), args.repeats)

if __name__ == "__main__":
    main()
