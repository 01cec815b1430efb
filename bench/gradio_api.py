"""One process, two front doors: an answer streaming on the Gradio page while an OpenAI API client streams too.

``serve --ui gradio`` in-process (the API's app with the page mounted, one engine): a client process streams a page
answer through Gradio's own client (the queue and SSE the browser uses) and, once its first text arrived, an API
answer (openai client, SSE). Prints each answer's decode tokens/s alone and together, how long the two overlapped,
and the decode loop's batch during the overlap (rows per step: 2.0 means both answers in every step). Never asserts.

    python bench/gradio_api.py --model smollm2-135m --tokens 96
"""

from __future__ import annotations

import argparse
import multiprocessing
import re
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import core  # noqa: E402,F401 - first: offline, no telemetry, no hub kernels (core/offline.py)

PAGE_PROMPT = "Write a long story about a lighthouse keeper and a cat."
API_PROMPT = "Write a long story about a mountain village in winter."
FIGURES = re.compile(r"(\d+) tokens · ([\d.]+) tokens/s")


def page_answer(url: str, tokens: int, started: threading.Event | None = None) -> tuple[float, float, float, float]:
    """One answer on the page (Gradio client, the page's ``send``); (start, first text, end) clock times and
    the decode tokens/s shown under it."""
    from gradio_client import Client

    client = Client(url, verbose=False, download_files=False)
    t0, first = time.time(), None
    job = client.submit(PAGE_PROMPT, None, "", False, [], "", 0.0, 0.9, tokens, 1.0, api_name="/send")
    last = None
    for output in job:
        last = output
        chat = output[1] if isinstance(output, list | tuple) and len(output) > 1 else None
        if first is None and chat and chat[-1].get("role") == "assistant" and "▌" in str(chat[-1].get("content")):
            first = time.time()
            if started is not None:
                started.set()
    outputs = job.outputs()
    last = outputs[-1] if outputs else last
    match = FIGURES.search(str(last[1][-1]["content"])) if last else None
    return t0, first or t0, time.time(), float(match.group(2)) if match else 0.0


def api_answer(url: str, model: str, tokens: int) -> tuple[float, float, float, float]:
    """One streamed API answer; (start, first text, end) clock times and its decode tokens/s (tokens after the
    first over the time after it)."""
    from openai import OpenAI

    client = OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0)
    t0, first, n = time.time(), None, 0
    stream = client.chat.completions.create(model=model, messages=[{"role": "user", "content": API_PROMPT}],
                                            max_tokens=tokens, temperature=0, stream=True,
                                            stream_options={"include_usage": True})  # fmt: skip
    for chunk in stream:
        if chunk.usage is not None:
            n = chunk.usage.completion_tokens
        elif chunk.choices and chunk.choices[0].delta.content and first is None:
            first = time.time()
    end = time.time()
    first = first or end
    return t0, first, end, (n - 1) / (end - first) if n > 1 and end > first else 0.0


def together(url: str, model: str, tokens: int) -> tuple[tuple, tuple]:
    """The page's answer, and the API's started once the page's first text is on screen (client process)."""
    started = threading.Event()
    with ThreadPoolExecutor(2) as pool:
        page = pool.submit(page_answer, url, tokens, started)
        started.wait(120)
        api = pool.submit(api_answer, url, model, tokens)
        return page.result(), api.result()


def main() -> None:
    """Measure alone and together, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--tokens", type=int, default=96)
    parser.add_argument("--home", help="data dir (default: a temporary one)")
    args = parser.parse_args()
    from core.api.server import ApiServer, free_port
    from core.cli.serve import front_end
    from core.config import load_settings
    from core.engine import build_engine

    home = Path(args.home or tempfile.mkdtemp(prefix="inkstone-bench-"))
    gen = {"temperature": 0, "repetition_penalty": 1.0, "max_new_tokens": args.tokens}
    engine = build_engine(load_settings({"model": args.model, "home": str(home), **gen},
                                        config_file=home / "absent.toml"))  # fmt: skip
    server = ApiServer(lambda: engine, port=free_port())
    front_end("gradio").mount(server.app, lambda: engine)
    server.start()
    url = server.url.removesuffix("/v1")
    model = engine.backend.model_id
    batcher = getattr(engine.backend, "batcher", None)
    loaded = engine.backend.loaded
    print(f"model {model} ({(loaded.cpu_weights or loaded.dtype) if loaded else '?'} weights, "
          f"{loaded.device if loaded else '?'}) | {args.tokens} tokens per answer | "
          f"{'continuous batching' if batcher else 'fair queue (no batching)'}")  # fmt: skip
    seen: list[int] = []
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.is_set():
            seen.append(batcher.running if batcher else int(engine.backend.busy))
            time.sleep(0.005)

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as clients:
        clients.submit(api_answer, url, model, 4).result()  # warm-up: client process, batch loop
        clients.submit(page_answer, url, 16).result()  # the slider's least
        page_alone = clients.submit(page_answer, url, args.tokens).result()
        api_alone = clients.submit(api_answer, url, model, args.tokens).result()
        before = dict(batcher.stats) if batcher else {}
        threading.Thread(target=sample, daemon=True).start()
        page, api = clients.submit(together, url, model, args.tokens).result()
        sampling.set()
    overlap = max(0.0, min(page[2], api[2]) - max(page[1], api[1]))
    print(f"alone:    page {page_alone[3]:.1f} tok/s, API {api_alone[3]:.1f} tok/s (decode, each answer)")
    print(f"together: page {page[3]:.1f} tok/s, API {api[3]:.1f} tok/s -> {page[3] + api[3]:.1f} tok/s aggregate; "
          f"both streaming for {overlap:.1f} s (API first text {api[1] - api[0]:.2f} s after its request)")
    if batcher:
        steps = batcher.stats["steps"] - before["steps"]
        rows = (batcher.stats["rows"] - before["rows"]) / steps if steps else 0
        print(f"batch while together: {rows:.2f} rows per step over {steps} steps; two answers in one step in "
              f"{sum(1 for s in seen if s >= 2) / max(1, len(seen)):.0%} of samples (max {max(seen, default=0)})")
    else:
        print("no batching on this backend: the API answer waited in the same fair queue")
    server.stop()


if __name__ == "__main__":
    main()
