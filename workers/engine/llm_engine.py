"""The engine loop: step() = scheduler.schedule() -> model_runner.run() -> scheduler.postprocess().

add_request/abort_request may be called from another thread than step(): they validate, then hand the work over
through an inbox that step() drains, so the caller never waits for a forward pass.
"""

import itertools
import threading
import time
from collections import deque
from typing import TYPE_CHECKING

import torch

from workers.engine.block_manager import BlockManager
from workers.engine.config import EngineConfig
from workers.engine.model_runner import DTYPES, ModelRunner, kv_block_bytes
from workers.engine.output_processor import OutputProcessor
from workers.engine.outputs import CompletionDelta
from workers.engine.sampling_params import InvalidRequestError, SamplingParams
from workers.engine.scheduler import Scheduler
from workers.engine.sequence import Sequence
from workers.lora.manager import AdapterNotFoundError, LoraManager
from workers.models.llama import LlamaForCausalLM

if TYPE_CHECKING:
    from workers.tokenizer import Tokenizer


class LLMEngine:
    def __init__(
        self, config: EngineConfig, *, model: LlamaForCausalLM | None = None, tokenizer: "Tokenizer | None" = None
    ) -> None:
        # model/tokenizer may be passed in already loaded (tests share one model between engines; the GPU benchmark
        # passes random weights and a stand-in tokenizer, so the file loaders and their packages stay unimported).
        self.config = config
        if model is None:
            from workers.loader import load_model

            model = load_model(config.model, DTYPES[config.dtype], config.device)
        if tokenizer is None:
            from workers.tokenizer import Tokenizer

            tokenizer = Tokenizer.from_path(config.model)
        self.model = model
        self.tokenizer = tokenizer
        mcfg = self.model.config
        num_blocks = config.num_kv_blocks or max(
            1, config.kv_cache_memory_bytes // kv_block_bytes(self.model, config.block_size, DTYPES[config.dtype])
        )
        # A sequence must fit the whole pool on its own, or preemption could never make room for it.
        self.max_model_len = min(
            config.max_model_len or mcfg.max_position_embeddings,
            mcfg.max_position_embeddings,
            num_blocks * config.block_size,
        )
        self.vocab_size = mcfg.vocab_size
        self.block_manager = BlockManager(num_blocks, config.block_size, config.enable_prefix_caching)
        eos = sorted(set(self.tokenizer.eos_token_ids) | set(mcfg.eos_token_ids))
        self.scheduler = Scheduler(config, self.block_manager, eos)
        self.lora_manager = LoraManager(
            mcfg, max_loras=config.max_loras, max_cpu_loras=max(config.max_cpu_loras, config.max_loras),
            max_lora_rank=config.max_lora_rank, store=config.adapter_store, device=config.device,
            dtype=DTYPES[config.dtype],
        )
        self.lora_manager.pinned = lambda: {s.adapter_id for s in self.scheduler.running if s.adapter_id is not None}
        self.model_runner = ModelRunner(config, self.model, num_blocks, self.lora_manager)
        self.output_processor = OutputProcessor(self.tokenizer)
        self._requests: dict[str, list[Sequence]] = {}  # owned by the stepping thread
        self._live: set[str] = set()  # request ids accepted and not yet finished (guarded by _lock)
        self._inbox: deque[tuple[str, str, list[Sequence] | None]] = deque()
        self._lock = threading.Lock()
        self._seq_ids = itertools.count()
        self._pending: list[CompletionDelta] = []  # abort deltas, returned by the next step

    def add_request(
        self, request_id: str, prompt_token_ids: list[int], params: SamplingParams, adapter_id: str | None = None
    ) -> None:
        max_tokens = self._validate(prompt_token_ids, params)
        if adapter_id is not None:
            try:
                self.lora_manager.get(adapter_id)  # loads it from the store into host memory the first time
            except AdapterNotFoundError:
                raise InvalidRequestError(
                    f"The model adapter '{adapter_id}' does not exist", param="model", code="model_not_found"
                ) from None
        now = time.monotonic()
        seqs = [
            Sequence(next(self._seq_ids), request_id, i, prompt_token_ids, params, max_tokens, adapter_id, now)
            for i in range(params.n)
        ]
        with self._lock:
            if request_id in self._live:
                raise InvalidRequestError(f"request id {request_id!r} is already in flight", code="duplicate_id")
            self._live.add(request_id)
            self._inbox.append(("add", request_id, seqs))

    def _validate(self, prompt: list[int], params: SamplingParams) -> int:
        params.validate(self.vocab_size)
        if not prompt:
            raise InvalidRequestError("the prompt is empty", param="prompt")
        if min(prompt) < 0 or max(prompt) >= self.vocab_size:
            raise InvalidRequestError("the prompt holds token ids outside the vocabulary", param="prompt")
        limit = self.max_model_len
        if len(prompt) >= limit:
            raise InvalidRequestError(
                f"This model's maximum context length is {limit} tokens. However, your prompt is {len(prompt)} "
                "tokens, which leaves no room for the completion. Please reduce the length of the prompt.",
                param="messages",
                code="context_length_exceeded",
            )
        if params.max_tokens is None:
            return limit - len(prompt)
        if len(prompt) + params.max_tokens > limit:
            raise InvalidRequestError(
                f"This model's maximum context length is {limit} tokens. However, you requested "
                f"{len(prompt) + params.max_tokens} tokens ({len(prompt)} in the prompt, {params.max_tokens} in the "
                "completion). Please reduce the length of the prompt or completion.",
                param="max_tokens",
                code="context_length_exceeded",
            )
        return params.max_tokens

    def abort_request(self, request_id: str) -> None:
        with self._lock:
            if request_id in self._live:
                self._inbox.append(("abort", request_id, None))

    def _drain_inbox(self) -> None:
        while self._inbox:
            kind, request_id, seqs = self._inbox.popleft()
            if kind == "add" and seqs is not None:
                self._requests[request_id] = seqs
                self.scheduler.add(seqs)
            elif kind == "abort" and request_id in self._requests:
                for seq in self._requests[request_id]:
                    if not seq.is_finished:
                        self.scheduler.finish(seq, "abort")
                        self._pending.append(self.output_processor.delta(seq, [], ""))

    def step(self) -> list[CompletionDelta]:
        with self._lock:
            self._drain_inbox()
        deltas, self._pending = self._pending, []
        batch = self.scheduler.schedule()
        if batch is not None:
            output = self.model_runner.run(batch)
            seqs = self.scheduler.postprocess(batch, output)
            deltas += self.output_processor.process(seqs, self.scheduler.finish)
        self._reap(deltas)
        return deltas

    def _reap(self, deltas: list[CompletionDelta]) -> None:
        done = {d.request_id for d in deltas if d.finished}
        done = {r for r in done if all(s.is_finished for s in self._requests.get(r, []))}
        if done:
            with self._lock:
                for request_id in done:
                    self._requests.pop(request_id, None)
                    self._live.discard(request_id)

    def has_unfinished_requests(self) -> bool:
        return bool(self._inbox or self._pending or self.scheduler.has_unfinished())

    def stats(self) -> dict[str, int]:
        bm = self.block_manager
        return {
            "num_running": len(self.scheduler.running),
            "num_waiting": self.scheduler.num_waiting + sum(len(s or ()) for _, _, s in list(self._inbox)),
            "num_free_blocks": bm.num_free_blocks,
            "num_total_blocks": bm.num_total_blocks,
            "prefix_cache_hits": bm.prefix_cache_hits,
            "prefix_cache_queries": bm.prefix_cache_queries,
            "num_preemptions": self.scheduler.num_preemptions,
        }

    @torch.inference_mode()
    def generate(
        self, prompts: list[list[int]], params: SamplingParams | list[SamplingParams],
        adapter_ids: list[str | None] | None = None,
    ) -> list[list[list[int]]]:
        """Offline helper (tests, benchmarks): run prompts to completion -> per prompt, per choice, output ids."""
        plist = params if isinstance(params, list) else [params] * len(prompts)
        ids = [f"gen-{next(self._seq_ids)}" for _ in prompts]
        adapters = adapter_ids or [None] * len(prompts)
        for rid, prompt, p, adapter in zip(ids, prompts, plist, adapters, strict=True):
            self.add_request(rid, prompt, p, adapter)
        outs: dict[str, list[list[int]]] = {rid: [[] for _ in range(p.n)] for rid, p in zip(ids, plist, strict=True)}
        while self.has_unfinished_requests():
            for d in self.step():
                if d.request_id in outs:
                    outs[d.request_id][d.index] += d.new_token_ids
        return [outs[rid] for rid in ids]
