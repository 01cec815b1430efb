"""``core.generation.batching``: answers decoded together in one batch come out as each would alone.

A tiny random Llama (float32) checks per-request settings in one batch (prompt lengths, max tokens, repetition
penalty), the prompt-prefix reuse, and that a client that goes away frees its place at once. The bundled SmolLM2
with int4 and int8 CPU weights (slow) checks that the low-bit layers answer concurrent batched requests exactly
as each request alone.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from core.backends.base import Finished, TextDelta
from core.backends.transformers_backend import TransformersBackend
from core.config import GenerationSettings, load_settings
from core.generation.batching import BLOCK, ContinuousBatcher
from core.generation.scheduler import QueuedBackend
from core.models.loader import load_model
from core.models.registry import resolve
from tests.fixtures_native import make_native_checkpoint

GREEDY = GenerationSettings(temperature=0, repetition_penalty=1.0, max_new_tokens=12)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> TransformersBackend:
    root = tmp_path_factory.mktemp("batching")
    model_dir = make_native_checkpoint("llama", root / "tiny-llama")
    settings = load_settings({"model": str(model_dir), "home": str(root / "home"), "dtype": "float32"},
                             config_file=root / "absent.toml")
    return TransformersBackend(load_model(resolve(str(model_dir)), settings))


def answer(events: list) -> tuple[str, Finished]:  # noqa: ANN001
    return "".join(e.text for e in events if isinstance(e, TextDelta)), events[-1]


def together(run: Callable[[int], list], n: int) -> list[tuple[str, Finished]]:
    """``run(i)`` for i in 0..n-1 in n threads at once; each answer's text and Finished."""
    results: dict[int, list] = {}
    threads = [threading.Thread(target=lambda i=i: results.__setitem__(i, run(i))) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    return [answer(results[i]) for i in range(n)]


def watch_peak(batcher: ContinuousBatcher, done: threading.Event, peak: list[int]) -> threading.Thread:
    def run() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], batcher.running)
            done.wait(0.002)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_a_batch_of_mixed_requests_answers_each_as_alone(tiny: TransformersBackend) -> None:
    """Five requests at once with different prompt lengths, max tokens and repetition penalties: each answer
    (text, token counts) equals the same request through ``generate`` alone, and they really ran together."""
    prompts = [[{"role": "user", "content": "Hello " * (1 + 7 * i) + f"number {i}?"}] for i in range(5)]
    settings = [GREEDY.with_updates(max_new_tokens=6 + 4 * i, repetition_penalty=1.0 if i % 2 else 1.3)
                for i in range(5)]
    alone = [answer(list(tiny.stream(p, s, threading.Event()))) for p, s in zip(prompts, settings, strict=True)]
    batcher = ContinuousBatcher(tiny, capacity=8)
    done, peak = threading.Event(), [0]
    watcher = watch_peak(batcher, done, peak)
    try:
        got = together(lambda i: list(batcher.stream(prompts[i], settings[i], threading.Event())), 5)
    finally:
        done.set()
        watcher.join()
        batcher.close()
    assert got == alone
    assert all(f.reason in ("stop", "length") for _, f in got)  # ended by the model, none stopped
    assert peak[0] > 1


def test_a_prompt_sharing_a_prefix_reuses_it_and_answers_the_same(tiny: TransformersBackend) -> None:
    """The second turn of a chat starts with the first turn's prompt: its keys and values are reused, and the
    answer is still the one ``generate`` gives."""
    first = [{"role": "user", "content": "Tell me a story about a lighthouse and a cat, please. " * 4}]
    text, _ = answer(list(tiny.stream(first, GREEDY, threading.Event())))
    second = [*first, {"role": "assistant", "content": text}, {"role": "user", "content": "And then?"}]
    batcher = ContinuousBatcher(tiny, capacity=4)
    try:
        assert answer(list(batcher.stream(first, GREEDY, threading.Event())))[0] == text
        assert batcher.prefixes.reused_tokens == 0
        got = answer(list(batcher.stream(second, GREEDY, threading.Event())))
    finally:
        batcher.close()
    assert got == answer(list(tiny.stream(second, GREEDY, threading.Event())))
    assert batcher.prefixes.reused_tokens >= (tiny.count_prompt_tokens(first) - 1) // BLOCK * BLOCK > 0


def test_a_client_that_goes_away_frees_its_place_at_once(tiny: TransformersBackend) -> None:
    """A long batched answer whose consumer stops reading leaves the queue at once and the batch before the next
    step; a stop event ends another answer as ``stopped``; a new request is then answered in full."""
    queued = QueuedBackend(tiny, batch=4)
    assert queued.batcher is not None
    long = GREEDY.with_updates(max_new_tokens=400)
    stream = queued.stream([{"role": "user", "content": "Go on forever."}], long, threading.Event())
    assert isinstance(next(stream), TextDelta)
    assert queued.queue.active == 1
    stream.close()  # the HTTP client disconnected
    assert queued.queue.active == 0
    queued.batcher.wait_idle()
    assert queued.batcher.running == 0

    stop = threading.Event()
    events = []
    for event in queued.stream([{"role": "user", "content": "Again, forever."}], long, stop):
        events.append(event)
        stop.set()
    text, finished = answer(events)
    assert finished.reason == "stopped" and finished.completion_tokens < 400

    ask = [{"role": "user", "content": "Hello there"}]
    assert answer(list(queued.stream(ask, GREEDY, threading.Event()))) == \
        answer(list(tiny.stream(ask, GREEDY, threading.Event())))
    queued.batcher.close()


def test_a_long_prompt_is_read_between_the_steps_of_running_answers(tiny: TransformersBackend) -> None:
    """A long prompt arriving while another answer streams is prefilled a block at a time between that answer's
    steps (it keeps streaming instead of pausing for the whole prompt), and is still answered as alone."""
    words = 40
    while tiny.count_prompt_tokens([{"role": "user", "content": "lighthouse " * words}]) < 12 * BLOCK:
        words += 10
    long = [{"role": "user", "content": "lighthouse " * words}]
    assert tiny.count_prompt_tokens(long) < 450  # the tiny model has 512 positions
    alone = answer(list(tiny.stream(long, GREEDY, threading.Event())))
    batcher = ContinuousBatcher(tiny, capacity=4, prefill_per_step=BLOCK)
    stop = threading.Event()
    try:
        running = batcher.stream([{"role": "user", "content": "Go on forever."}],
                                 GREEDY.with_updates(max_new_tokens=400), stop)
        assert isinstance(next(running), TextDelta) and batcher.running == 1
        steps = batcher.stats["steps"]
        got = answer(list(batcher.stream(long, GREEDY, threading.Event())))
        steps = batcher.stats["steps"] - steps
        assert batcher.running == 1  # the first answer is still streaming
    finally:
        stop.set()
        list(running)
        batcher.close()
    assert got == alone
    # one decoding step per prompt block, besides the long answer's own steps (all at once: at most one)
    assert steps - got[1].completion_tokens >= 8


def test_sampled_answers_keep_their_own_limits(tiny: TransformersBackend) -> None:
    """Sampling rows (temperature, top-p, top-k) beside a greedy one: each stops at its own max tokens, and the
    greedy one is unchanged by its neighbours."""
    ask = [{"role": "user", "content": "Say something."}]
    sampled = [GenerationSettings(temperature=1.2, top_p=0.8, top_k=k, max_new_tokens=3 + i, repetition_penalty=1.1)
               for i, k in enumerate((0, 5, 40))]
    batcher = ContinuousBatcher(tiny, capacity=8)
    try:
        got = together(lambda i: list(batcher.stream(ask, ([*sampled, GREEDY])[i], threading.Event())), 4)
    finally:
        batcher.close()
    assert all(0 < f.completion_tokens <= 3 + i for i, (_, f) in enumerate(got[:3]))  # may sample end of text
    assert got[3] == answer(list(tiny.stream(ask, GREEDY, threading.Event())))


@pytest.fixture(scope="module")
def smollm2_home(tmp_path_factory: pytest.TempPathFactory, smollm2_cached: Callable[..., None]) -> Path:
    home = tmp_path_factory.mktemp("smollm2-batching")
    smollm2_cached(home, "int4", "int8")  # converted once per run (tests/model_cache.py)
    return home


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["int4", "int8"])
def test_smollm2_low_bit_batch_answers_as_alone(smollm2_home: Path, kind: str) -> None:
    """The bundled SmolLM2 with low-bit CPU weights answers five concurrent requests through the queue's batch
    (no crash in the int4/int8 kernels); each answer is what the same request gets when it is the only one."""
    settings = load_settings({"home": str(smollm2_home), "model": "smollm2-135m", "device": "cpu",
                              "cpu_weights": kind}, config_file=smollm2_home / "absent.toml")
    loaded = load_model(resolve("smollm2-135m"), settings)
    assert loaded.cpu_weights == kind
    inner = TransformersBackend(loaded)
    questions = ["Which city is the capital of France?", "Name three colours of the rainbow.",
                 "What is two plus two?", "Write one sentence about the sea, please, with a ship in it.",
                 "Who wrote Romeo and Juliet?"]
    asks = [[{"role": "user", "content": q}] for q in questions]
    ask_settings = GREEDY.with_updates(max_new_tokens=16)
    queued = QueuedBackend(inner, batch=8)
    assert queued.batcher is not None
    alone = [answer(list(queued.stream(a, ask_settings, threading.Event()))) for a in asks]
    done, peak = threading.Event(), [0]
    watcher = watch_peak(queued.batcher, done, peak)
    try:
        got = together(lambda i: list(queued.stream(asks[i], ask_settings, threading.Event())), 5)
    finally:
        done.set()
        watcher.join()
        queued.batcher.close()
    assert got == alone
    assert all(g[0].strip() for g in got)  # every answer has text
    if kind == "int8":  # int4 is the GGUF's own Q4_1 blocks: greedy, it calls Paris "the City of Light"
        assert "Paris" in got[0][0]
    assert peak[0] > 1
