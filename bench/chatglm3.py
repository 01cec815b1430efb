"""Benchmark the ChatGLM3 native loader: load time and greedy decode speed, app path vs bare generate.

Prints figures only (no assertions on time):
- load time of the checkpoint with conversion into an empty cache, and again from the cache;
- tokens/s of greedy generation of ``--new-tokens`` new tokens from a ChatGLM3Tokenizer prompt, through
  ``model.generate`` with a ``TextIteratorStreamer`` over ChatGLM3Tokenizer (generation in a thread, text
  consumed incrementally: the app's path) vs bare ``model.generate`` on the same model, and the ratio.

Usage: ``python bench/chatglm3.py [--fixture DIR] [--new-tokens 128] [--repeats 5]``.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DEFAULT_FIXTURE = os.environ.get("CHATGLM3_FIXTURE") or str(
    Path(__file__).resolve().parents[2] / "shared/fixtures/chatglm3-tiny"
)
MESSAGES = [
    {"role": "system", "content": "You are a helpful assistant. 请用中文回答。"},
    {"role": "user", "content": "What is LoRA? 请举一个例子。"},
]


def _generate_kwargs(tok, new_tokens: int) -> dict:
    # min_new_tokens keeps random-weight models from stopping early, so every run makes new_tokens tokens.
    return {"do_sample": False, "max_new_tokens": new_tokens, "min_new_tokens": new_tokens,
            "eos_token_id": tok.stop_ids, "pad_token_id": tok.pad_token_id}


def bare_generate(model, tok, ids, new_tokens: int) -> tuple[float, int]:
    """Seconds and new-token count of one bare ``model.generate`` call.

    It runs in a worker thread like the streamed variant, so the only difference measured is the
    streamer: on small CPUs, torch's OpenMP pool behaves differently in the main thread than in a
    worker thread, which would otherwise dominate the comparison.
    """
    result: dict = {}

    def run() -> None:
        result["out"] = model.generate(ids, **_generate_kwargs(tok, new_tokens))

    start = time.perf_counter()
    worker = threading.Thread(target=run)
    worker.start()
    worker.join()
    return time.perf_counter() - start, result["out"].shape[1] - ids.shape[1]


def streamed_generate(model, tok, ids, new_tokens: int) -> tuple[float, int, str]:
    """Seconds, new-token count and text of one generate call streamed like the app (thread + streamer)."""
    from transformers import TextIteratorStreamer

    streamer = TextIteratorStreamer(tok, skip_prompt=True, skip_special_tokens=True)
    result: dict = {}

    def run() -> None:
        result["out"] = model.generate(ids, streamer=streamer, **_generate_kwargs(tok, new_tokens))

    start = time.perf_counter()
    worker = threading.Thread(target=run)
    worker.start()
    pieces = [piece for piece in streamer]
    worker.join()
    elapsed = time.perf_counter() - start
    return elapsed, result["out"].shape[1] - ids.shape[1], "".join(pieces)


def main() -> None:
    """Parse arguments, run the benchmark and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fixture", default=DEFAULT_FIXTURE, help="ChatGLM3-format checkpoint directory")
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch intra-op threads (0: torch default)")
    args = parser.parse_args()
    fixture = Path(args.fixture)
    if not (fixture / "config.json").is_file():
        parser.error(f"no ChatGLM3 checkpoint at {fixture} (pass --fixture or set CHATGLM3_FIXTURE)")

    import torch
    import transformers

    from core.chatglm3 import ChatGLM3Tokenizer, load_chatglm3_model

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

    tok = ChatGLM3Tokenizer(fixture)
    ids = torch.tensor([tok.prompt_ids(MESSAGES)], device=model.device)
    bare_generate(model, tok, ids, 8)  # warm-up
    streamed_generate(model, tok, ids, 8)
    bare, streamed = [], []
    for _ in range(args.repeats):  # interleaved, so background load affects both alike
        seconds, n = bare_generate(model, tok, ids, args.new_tokens)
        bare.append(n / seconds)
        seconds, n, _text = streamed_generate(model, tok, ids, args.new_tokens)
        streamed.append(n / seconds)
    b, s = statistics.median(bare), statistics.median(streamed)
    print(f"prompt {ids.shape[1]} tokens, {args.new_tokens} new tokens, median of {args.repeats}:")
    print(f"  bare model.generate:           {b:8.1f} tokens/s")
    print(f"  generate + streamer (app path): {s:8.1f} tokens/s")
    print(f"  ratio app/bare: {s / b:.3f}")


if __name__ == "__main__":
    main()
