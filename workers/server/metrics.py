"""Prometheus metrics of one worker, in a registry of its own (two workers in one test process never collide).

Written from the engine thread (prometheus_client is thread-safe) and read by GET /metrics.
"""

from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

# TTFT on a 2-core CPU runs from ~20 ms (short prompt, idle) to seconds (512-token prompts in a 64-request burst);
# on a GPU the low buckets matter. Inter-token latency is one engine step: ~5 ms on GPU to ~100+ ms on CPU batches.
_TTFT_BUCKETS = (0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.5, 5.0, 10.0, 20.0, 40.0)
_ITL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.5)

CONTENT_TYPE = CONTENT_TYPE_LATEST


class WorkerMetrics:
    def __init__(self, model_name: str):
        self.registry = CollectorRegistry()
        labels = ["model_name"]
        r = self.registry
        self._running = Gauge("hearth_worker_num_running", "Sequences in the running batch.", labels, registry=r)
        self._waiting = Gauge("hearth_worker_num_waiting", "Sequences waiting to be scheduled.", labels, registry=r)
        self._blocks_used = Gauge("hearth_worker_kv_blocks_used", "KV-cache blocks in use.", labels, registry=r)
        self._blocks_free = Gauge("hearth_worker_kv_blocks_free", "KV-cache blocks free.", labels, registry=r)
        self._hit_rate = Gauge(
            "hearth_worker_prefix_cache_hit_rate", "Prefix-cache hits / queries since start.", labels, registry=r
        )
        self._ttft = Histogram(
            "hearth_worker_time_to_first_token_seconds",
            "Arrival at the server to the first generated token.",
            labels,
            buckets=_TTFT_BUCKETS,
            registry=r,
        )
        self._itl = Histogram(
            "hearth_worker_inter_token_latency_seconds",
            "Time between consecutive tokens of one sequence.",
            labels,
            buckets=_ITL_BUCKETS,
            registry=r,
        )
        self._generated = Counter(
            "hearth_worker_generation_tokens", "Tokens generated (all choices).", labels, registry=r
        )
        self._prompt = Counter("hearth_worker_prompt_tokens", "Prompt tokens accepted.", labels, registry=r)
        self._finished = Counter(
            "hearth_worker_requests_finished",
            "Finished sequences (one per choice) by finish reason: stop, length, abort, error.",
            ["model_name", "finish_reason"],
            registry=r,
        )
        self._model = model_name
        # Every series exists (at 0) from the first scrape, so rates and "before/after" reads need no special case.
        for series in (self._ttft, self._itl, self._generated, self._prompt):
            series.labels(model_name)
        for reason in ("stop", "length", "abort", "error"):
            self._finished.labels(model_name, reason)

    def update_engine_stats(self, stats: Mapping[str, int]) -> None:
        m = self._model
        self._running.labels(m).set(stats.get("num_running", 0))
        self._waiting.labels(m).set(stats.get("num_waiting", 0))
        total, free = stats.get("num_total_blocks", 0), stats.get("num_free_blocks", 0)
        self._blocks_used.labels(m).set(total - free)
        self._blocks_free.labels(m).set(free)
        queries = stats.get("prefix_cache_queries", 0)
        self._hit_rate.labels(m).set(stats.get("prefix_cache_hits", 0) / queries if queries else 0.0)

    def observe_ttft(self, seconds: float) -> None:
        self._ttft.labels(self._model).observe(seconds)

    def observe_itl(self, seconds: float) -> None:
        self._itl.labels(self._model).observe(seconds)

    def add_generated(self, num_tokens: int) -> None:
        if num_tokens:
            self._generated.labels(self._model).inc(num_tokens)

    def add_prompt(self, num_tokens: int) -> None:
        self._prompt.labels(self._model).inc(num_tokens)

    def finished(self, reason: str, count: int = 1) -> None:
        self._finished.labels(self._model, reason).inc(count)

    def render(self) -> bytes:
        return generate_latest(self.registry)
