"""Prometheus metrics of the API server (``GET /metrics``), in a registry of its own per app.

Counters: requests and errors by route and model, prompt and completion tokens by model. Histograms: time to
first token and tokens/s by model. Gauges read live state when scraped: queue depth and active generations
of the shared fair queue, the model's load time, and GPU memory in use where torch sees a GPU.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from core.backends.base import Backend
from core.generation.scheduler import line

CONTENT_TYPE = CONTENT_TYPE_LATEST
TTFT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60)
RATE_BUCKETS = (1, 2, 5, 10, 20, 40, 80, 160, 320)


class ApiMetrics:
    """The metrics of one API app. ``bind`` connects the live gauges to the current engine."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("inkstone_requests", "API requests by route, model and HTTP status",
                                ["route", "model", "status"], registry=r)
        self.errors = Counter("inkstone_request_errors", "API errors by route, model and error code",
                              ["route", "model", "code"], registry=r)
        self.prompt_tokens = Counter("inkstone_prompt_tokens", "Prompt tokens read", ["model"], registry=r)
        self.completion_tokens = Counter("inkstone_completion_tokens", "Answer tokens generated", ["model"],
                                         registry=r)
        self.ttft = Histogram("inkstone_time_to_first_token_seconds",
                              "Time from request to first answer token (queue wait included)",
                              ["model"], buckets=TTFT_BUCKETS, registry=r)
        self.rate = Histogram("inkstone_tokens_per_second",
                              "Decode speed of each completion: tokens after the first over the time after the first",
                              ["model"], buckets=RATE_BUCKETS, registry=r)
        self.queue_depth = Gauge("inkstone_queue_depth", "Answers waiting for the model (UI and API)", registry=r)
        self.active = Gauge("inkstone_active_generations", "Answers being generated now (UI and API)", registry=r)
        self.load_seconds = Gauge("inkstone_model_load_seconds", "Seconds the loaded model took to load", registry=r)
        self.gpu_memory = Gauge("inkstone_gpu_memory_bytes", "GPU memory allocated by torch (0 without a GPU)",
                                registry=r)
        self.gpu_memory.set_function(_gpu_memory_bytes)

    def bind(self, backend: Callable[[], Backend | None]) -> None:
        """Read queue depth and active generations from the fair queue in front of ``backend()``
        (``core.generation.scheduler.line``), and the load time from its ``info()`` (None: nothing loaded)."""

        def depth() -> float:
            current = backend()
            return float(line(current).depth) if current is not None else 0.0

        def active() -> float:
            current = backend()
            return float(line(current).active) if current is not None else 0.0

        def load_seconds() -> float:
            current = backend()
            return float((current.info().load_seconds if current is not None else None) or 0.0)

        self.queue_depth.set_function(depth)
        self.active.set_function(active)
        self.load_seconds.set_function(load_seconds)

    def record_completion(self, model: str, prompt: int, completion: int, ttft_s: float | None,
                          tokens_per_s: float | None) -> None:
        """Count one finished completion's tokens and observe its TTFT and decode speed (both as its ``Finished``
        event measured them)."""
        self.prompt_tokens.labels(model).inc(prompt)
        self.completion_tokens.labels(model).inc(completion)
        if ttft_s is not None:
            self.ttft.labels(model).observe(ttft_s)
        if tokens_per_s:
            self.rate.labels(model).observe(tokens_per_s)

    def render(self) -> bytes:
        """The Prometheus text exposition of every metric."""
        return generate_latest(self.registry)


def _gpu_memory_bytes() -> float:
    """Bytes torch has allocated on all GPUs; 0 without torch or a GPU (never imports torch just for this)."""
    import sys

    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available():
        return 0.0
    return float(sum(torch.cuda.memory_allocated(i) for i in range(torch.cuda.device_count())))
