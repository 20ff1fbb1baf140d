"""Prometheus metrics of one embedding worker, in a registry of its own (two workers in one process never collide)."""

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

# One step on a 2-core CPU: ~5 ms (one short input) to ~2 s (8k tokens); on a GPU the low buckets matter.
_STEP_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class EmbeddingMetrics:
    def __init__(self, model_name: str):
        self.registry = r = CollectorRegistry()
        labels = ["model_name"]
        self._model = model_name
        self._requests = Counter("hearth_embeddings_requests", "Embedding requests served.", labels, registry=r)
        self._inputs = Counter("hearth_embeddings_inputs", "Inputs embedded.", labels, registry=r)
        self._tokens = Counter("hearth_embeddings_prompt_tokens", "Input tokens embedded.", labels, registry=r)
        self._waiting = Gauge("hearth_embeddings_num_waiting", "Sequences waiting for a step.", labels, registry=r)
        self._step = Histogram("hearth_embeddings_step_seconds", "One batched forward.", labels,
                               buckets=_STEP_BUCKETS, registry=r)
        self._batch = Histogram("hearth_embeddings_step_sequences", "Sequences in one step.", labels,
                                buckets=_BATCH_BUCKETS, registry=r)
        self._latency = Histogram("hearth_embeddings_request_seconds", "Arrival to response of one request.",
                                  labels, buckets=_STEP_BUCKETS, registry=r)

    def observe_step(self, num_seqs: int, num_tokens: int, seconds: float) -> None:
        self._step.labels(self._model).observe(seconds)
        self._batch.labels(self._model).observe(num_seqs)

    def observe_request(self, num_inputs: int, num_tokens: int, seconds: float) -> None:
        self._requests.labels(self._model).inc()
        self._inputs.labels(self._model).inc(num_inputs)
        self._tokens.labels(self._model).inc(num_tokens)
        self._latency.labels(self._model).observe(seconds)

    def set_waiting(self, num_waiting: int) -> None:
        self._waiting.labels(self._model).set(num_waiting)

    def render(self) -> bytes:
        return generate_latest(self.registry)
