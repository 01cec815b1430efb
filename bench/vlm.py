"""Vision-language benchmark: what one picture costs before the first token, and in memory.

Prints figures measured in the same run; never asserts. By default it builds the tiny random Qwen2-VL of the tests
(2 layers, hidden 64; its processor caps a picture at 96 image tokens), so the figures show Inkstone's and the
processor's overhead, not a real model's vision tower; pass ``--model DIR`` for a real checkpoint:

    python bench/vlm.py --repeat 5

1. Time to first token (median of ``--repeat``, through the transformers backend behind the fair queue) for a
   text-only question and the same question with one 1024 x 768 JPEG; the processor's preprocessing alone (decode,
   resize, patching) is timed separately, so the rest is the vision tower's and the longer prompt's prefill.
2. Memory per picture: the pixel tensor the processor hands the model, the image tokens it adds to the prompt and
   their KV cache in the model's dtype, and the process's peak RSS growth for a prompt with ``--images`` pictures.
"""

from __future__ import annotations

import argparse
import io
import resource
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import core  # noqa: E402,F401 - first: offline, no telemetry, no hub kernels (core/offline.py)

QUESTION = "What is in this picture? Describe it."


def photo(seed: int = 0) -> object:
    """A 1024 x 768 JPEG with detail (noise over a gradient), checked by ``core.images``."""
    import numpy as np
    from PIL import Image

    from core.images import read_image

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:768, 0:1024]
    pixels = np.stack([x % 256, y % 256, (x + y) % 256], axis=-1).astype(np.int16)
    pixels += rng.integers(-40, 40, pixels.shape, dtype=np.int16)
    buf = io.BytesIO()
    Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(buf, "JPEG", quality=90)
    return read_image(buf.getvalue(), f"photo{seed}.jpg")


def ttft(backend: object, messages: list[dict[str, object]], settings: object) -> float:
    from core.backends.base import Finished

    done = [e for e in backend.stream(messages, settings, threading.Event()) if isinstance(e, Finished)][-1]  # type: ignore[attr-defined]
    return float(done.ttft_s or 0.0)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="a vision-language model directory (default: the tests' tiny Qwen2-VL)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--images", type=int, default=4, help="pictures in the memory prompt")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    from core.backends import create_backend
    from core.config import GenerationSettings, load_settings
    from core.generation.scheduler import queued
    from core.models.registry import resolve

    model = args.model
    if model is None:
        from tests.vlm_fixture import make_vlm_checkpoint

        model = str(make_vlm_checkpoint("qwen2_vl", Path(tempfile.mkdtemp(prefix="vlm-bench-")) / "tiny-qwen2-vl"))
    backend = queued(create_backend(resolve(model), load_settings({"device": args.device})))
    loaded = backend.loaded
    settings = GenerationSettings().with_updates(temperature=0, repetition_penalty=1.0, max_new_tokens=2)
    image = photo()
    text_only = [{"role": "user", "content": QUESTION}]
    one = [{"role": "user", "content": QUESTION, "images": [image]}]
    ttft(backend, one, settings)  # warm-up: first calls allocate
    ttft(backend, text_only, settings)
    text_s, image_s, prep_s = [], [], []
    for _ in range(args.repeat):
        text_s.append(ttft(backend, text_only, settings))
        image_s.append(ttft(backend, one, settings))
        started = time.perf_counter()
        loaded.codec.prompt_inputs(one)
        prep_s.append(time.perf_counter() - started)
    med = statistics.median
    print(f"model: {model} ({type(loaded.model).__name__}, {loaded.dtype}, {loaded.device})")
    print(f"time to first token, text only:           {med(text_s) * 1000:8.1f} ms (median of {args.repeat})")
    print(f"time to first token, one 1024x768 JPEG:   {med(image_s) * 1000:8.1f} ms "
          f"(+{(med(image_s) - med(text_s)) * 1000:.1f} ms, x{med(image_s) / max(med(text_s), 1e-9):.1f})")
    print(f"  of which preprocessing (decode, resize, patches): {med(prep_s) * 1000:.1f} ms")

    inputs = loaded.codec.prompt_inputs(one)
    pixel_bytes = sum(v.numel() * v.element_size() for k, v in inputs.items() if k.startswith("pixel"))
    image_tokens = backend.count_prompt_tokens(one) - backend.count_prompt_tokens(text_only)
    text_config = loaded.model.config.get_text_config(decoder=True)
    heads = getattr(text_config, "num_key_value_heads", None) or text_config.num_attention_heads
    head_dim = getattr(text_config, "head_dim", None) or text_config.hidden_size // text_config.num_attention_heads
    kv_bytes = image_tokens * text_config.num_hidden_layers * 2 * heads * head_dim * loaded.model.dtype.itemsize
    before = peak_rss_mib()
    many = [{"role": "user", "content": QUESTION, "images": [photo(i) for i in range(args.images)]}]
    ttft(backend, many, settings)
    grown = peak_rss_mib() - before
    print(f"per picture: pixel tensor {pixel_bytes / 2**20:.2f} MiB, {image_tokens} image tokens, "
          f"their KV cache {kv_bytes / 2**10:.1f} KiB")
    print(f"peak RSS growth for a prompt with {args.images} pictures: {grown:.1f} MiB "
          f"({grown / args.images:.1f} MiB a picture, decoded RGB included: {1024 * 768 * 3 / 2**20:.2f} MiB each)")


if __name__ == "__main__":
    main()
