"""The engine loop: step() = scheduler.schedule() -> model_runner.run() -> scheduler.postprocess().

One thread owns an engine (the server's stepping thread, or the caller offline): add/abort_request/step and
drop_adapter are called from it only, so the engine holds no lock. `new_request` is the exception: it validates and
builds a request's sequences from immutable facts (and the adapter cache, which has its own lock), so the server runs
it on the caller's thread and a bad request is answered before it reaches the stepping thread.
"""

import itertools
import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

import torch

from workers.engine.config import EngineConfig
from workers.engine.drafting import SpecState, speculates
from workers.engine.model_runner import DTYPES, ModelRunner, kv_block_bytes
from workers.engine.output_processor import OutputProcessor
from workers.engine.outputs import CompletionDelta, SamplerOutput
from workers.engine.sampling_params import InvalidRequestError, SamplingParams
from workers.engine.scheduler import ScheduledBatch, Scheduler
from workers.engine.sequence import DEFAULT_ACCOUNT, Sequence
from workers.engine.validation import check_request
from workers.lora.manager import AdapterNotFoundError, LoraManager
from workers.models.llama import LlamaForCausalLM

if TYPE_CHECKING:
    from workers.tokenizer import Tokenizer

log = logging.getLogger("hearth.worker.engine")


class LLMEngine:
    serves_adapters = True

    def __init__(
        self, config: EngineConfig, *, model: LlamaForCausalLM | None = None, tokenizer: "Tokenizer | None" = None
    ) -> None:
        # model/tokenizer may be passed in already loaded (tests share one model between engines; the GPU benchmark
        # passes random weights and a stand-in tokenizer, so the file loaders and their packages stay unimported).
        self.config = config
        if model is None:
            from workers.loader import load_model

            model = load_model(config.model, DTYPES[config.dtype], config.device, quantize=config.quantize)
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
        eos = sorted(set(self.tokenizer.eos_token_ids) | set(mcfg.eos_token_ids))
        self.scheduler = Scheduler(config, num_blocks, eos)
        self.lora_manager = LoraManager(
            mcfg, max_loras=config.max_loras, max_cpu_loras=max(config.max_cpu_loras, config.max_loras),
            max_lora_rank=config.max_lora_rank, store=config.adapter_store, device=config.device,
            dtype=DTYPES[config.dtype],
        )
        self.model_runner = ModelRunner(config, self.model, num_blocks, self.lora_manager)
        self.output_processor = OutputProcessor(self.tokenizer)
        self._requests: dict[str, list[Sequence]] = {}  # live requests: accepted, not yet finished
        self._seq_ids = itertools.count()  # next() is atomic under the GIL: new_request may run on any thread

    def new_request(
        self, request_id: str, prompt_token_ids: list[int], params: SamplingParams, adapter_id: str | None = None,
        *, param_names: Mapping[str, str] | None = None, account_id: str | None = None,
    ) -> list[Sequence]:  # fmt: skip
        """Validates a request and builds its sequences (one per choice); any thread. Raises InvalidRequestError.
        `account_id` namespaces the prefix cache (None: DEFAULT_ACCOUNT's)."""
        max_tokens = check_request(
            prompt_token_ids, params, vocab_size=self.vocab_size, max_model_len=self.max_model_len,
            param_names=param_names,
        )  # fmt: skip
        if adapter_id is not None:
            self.load_adapter(adapter_id)
        now = time.monotonic()
        seqs = [
            Sequence(next(self._seq_ids), request_id, i, prompt_token_ids, params, max_tokens, adapter_id, now,
                     account_id or DEFAULT_ACCOUNT)
            for i in range(params.n)
        ]
        if speculates(params, self.config):
            for seq in seqs:
                seq.spec = SpecState(params.prediction, self.config.ngram_speculation, self.config.num_speculative_tokens)
        return seqs

    def load_adapter(self, uid: str) -> None:
        """Brings an adapter into host memory (from the store the first time); any thread, may read disk."""
        try:
            self.lora_manager.get(uid)
        except AdapterNotFoundError:
            raise InvalidRequestError(
                f"The model adapter '{uid}' does not exist", param="model", code="model_not_found"
            ) from None

    def add(self, seqs: list[Sequence]) -> None:
        """Queues a request built by new_request."""
        request_id = seqs[0].request_id
        if request_id in self._requests:
            raise InvalidRequestError(f"request id {request_id!r} is already in flight", code="duplicate_id")
        self._requests[request_id] = seqs
        self.scheduler.add(seqs)

    def add_request(
        self, request_id: str, prompt_token_ids: list[int], params: SamplingParams, adapter_id: str | None = None,
        *, account_id: str | None = None,
    ) -> None:  # fmt: skip
        self.add(self.new_request(request_id, prompt_token_ids, params, adapter_id, account_id=account_id))

    def abort_request(self, request_id: str) -> list[CompletionDelta]:
        """Ends a request's unfinished choices; -> their final deltas (finish_reason "abort")."""
        return self._end_request(request_id, "abort")

    def _end_request(self, request_id: str, reason: str) -> list[CompletionDelta]:
        deltas = []
        for seq in self._requests.pop(request_id, []):
            if not seq.is_finished:
                self.scheduler.finish(seq, reason)
                deltas.append(self.output_processor.delta(seq, [], ""))
        return deltas

    def step(self) -> list[CompletionDelta]:
        """One step; a request whose sequence makes the step raise ends with finish_reason "error", alone."""
        batch = self.scheduler.schedule()
        if batch is None:
            return []
        failed: list[CompletionDelta] = []
        try:
            output = self.model_runner.run(batch)
        except Exception:
            log.exception("a step of %d sequences raised: running each alone to find the failing ones", len(batch.seqs))
            batch, output, failed = self._run_alone(batch)
        seqs = self.scheduler.postprocess(batch, output)
        deltas = failed + self.output_processor.process(seqs, self.scheduler.finish)
        self._reap(deltas)
        return deltas

    def _run_alone(self, batch: ScheduledBatch) -> tuple[ScheduledBatch, SamplerOutput, list[CompletionDelta]]:
        """Runs each sequence of a batch that raised by itself (rewriting the same KV slots is harmless): the requests
        of those that raise again fail whole; the others go on with their own runs' samples."""
        runs: list[SamplerOutput | None] = []
        bad: set[str] = set()
        for seq, n, samples in zip(batch.seqs, batch.num_new_tokens, batch.samples, strict=True):
            try:
                runs.append(self.model_runner.run(ScheduledBatch([seq], [n], [samples], n > 1, batch.pinned_adapters)))
            except Exception:
                log.exception("request %s fails: its sequence raises on its own", seq.request_id)
                runs.append(None)
                bad.add(seq.request_id)
        keep = [i for i, seq in enumerate(batch.seqs) if seq.request_id not in bad]
        kept = ScheduledBatch([batch.seqs[i] for i in keep], [batch.num_new_tokens[i] for i in keep],
                              [batch.samples[i] for i in keep], any(batch.num_new_tokens[i] > 1 for i in keep),
                              batch.pinned_adapters)  # fmt: skip
        outs = [run for i in keep if (run := runs[i]) is not None]
        tokens = [t for out in outs for t in out.token_ids]
        logprobs = None
        if any(out.logprobs is not None for out in outs):
            logprobs = [lp for out in outs for lp in (out.logprobs or [None] * len(out.token_ids))]
        accepted = None
        if any(out.num_accepted is not None for out in outs):
            accepted = [a for out in outs for a in (out.num_accepted or [0] * len(out.token_ids))]
        failed = [d for request_id in bad for d in self._end_request(request_id, "error")]
        return kept, SamplerOutput(tokens, logprobs, accepted), failed

    def _reap(self, deltas: list[CompletionDelta]) -> None:
        for request_id in {d.request_id for d in deltas if d.finished}:
            if all(s.is_finished for s in self._requests.get(request_id, [])):
                self._requests.pop(request_id, None)

    def has_unfinished_requests(self) -> bool:
        return self.scheduler.has_unfinished()

    def drop_adapter(self, uid: str) -> int:
        """An adapter was deleted: forget its weights (host cache, device slot) and unpublish its prefix-cache blocks;
        -> the number of blocks unpublished. Its requests must be aborted first (no sequence may still use it)."""
        self.lora_manager.remove(uid)
        return self.scheduler.block_manager.invalidate_adapter(uid)

    def resident_adapters(self) -> list[str]:
        """Adapters held in host memory or a device slot (the registry's routing affinity); any thread."""
        return self.lora_manager.resident_adapters()

    def stats(self) -> dict[str, int]:
        bm = self.scheduler.block_manager
        return {
            "num_running": len(self.scheduler.running),
            "num_waiting": self.scheduler.num_waiting,
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
