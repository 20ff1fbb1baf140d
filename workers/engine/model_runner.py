"""One engine step on the device: build the flattened batch, run the model, sample."""

import torch

from workers.engine.config import EngineConfig
from workers.engine.outputs import SamplerOutput, TokenLogprob
from workers.engine.sampler import Sampler
from workers.engine.scheduler import ScheduledBatch
from workers.engine.speculative import Verifier
from workers.lora.manager import LoraManager
from workers.models.attention_metadata import AttentionMetadata
from workers.models.llama import LlamaForCausalLM

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def kv_block_bytes(model: LlamaForCausalLM, block_size: int, dtype: torch.dtype) -> int:
    cfg = model.config
    return 2 * cfg.num_layers * block_size * cfg.num_kv_heads * cfg.head_dim * dtype.itemsize


class ModelRunner:
    def __init__(
        self, config: EngineConfig, model: LlamaForCausalLM, num_kv_blocks: int, lora: LoraManager | None = None
    ) -> None:
        self.config = config
        self.lora = lora
        self.model = model
        self.device = torch.device(config.device)
        self.dtype = DTYPES[config.dtype]
        self.block_size = config.block_size
        cfg = model.config
        shape = (num_kv_blocks, config.block_size, cfg.num_kv_heads, cfg.head_dim)
        # Per layer (k, v), each [num_blocks, block_size, num_kv_heads, head_dim]; zeroed so padding reads are finite.
        self.kv_caches = [
            (torch.zeros(shape, dtype=self.dtype, device=self.device),
             torch.zeros(shape, dtype=self.dtype, device=self.device))
            for _ in range(cfg.num_layers)
        ]  # fmt: skip
        self.sampler = Sampler(cfg.vocab_size, config.seed, self.device)
        self.verifier = Verifier(cfg.vocab_size, config.seed, self.device)

    def prepare(self, batch: ScheduledBatch) -> tuple[torch.Tensor, torch.Tensor, AttentionMetadata]:
        input_ids: list[int] = []
        starts: list[int] = []
        for seq, n in zip(batch.seqs, batch.num_new_tokens, strict=True):
            c = seq.num_computed_tokens
            input_ids.extend(seq.token_ids[c : c + n])
            input_ids.extend(seq.draft_token_ids)  # a speculative decode: n = 1 + len(draft)
            starts.append(c)
        max_blocks = max(len(s.block_table) for s in batch.seqs)
        tables = [s.block_table + [0] * (max_blocks - len(s.block_table)) for s in batch.seqs]
        # Built on the host with one torch call each, then moved together; no per-token Python.
        q_lens = torch.tensor(batch.num_new_tokens, dtype=torch.int64)  # [B]
        start = torch.tensor(starts, dtype=torch.int64)  # [B]
        block_tables = torch.tensor(tables, dtype=torch.int32)  # [B, max_blocks]
        cu_seqlens_q = torch.zeros(len(starts) + 1, dtype=torch.int32)
        torch.cumsum(q_lens, 0, out=cu_seqlens_q[1:])
        seq_lens = start + q_lens  # [B]
        if batch.is_prefill:
            seq_idx = torch.repeat_interleave(torch.arange(len(starts)), q_lens)  # [T]
            positions = torch.arange(len(input_ids)) - cu_seqlens_q[:-1].long()[seq_idx] + start[seq_idx]
        else:
            seq_idx = torch.arange(len(starts))
            positions = start.clone()
        slot_mapping = block_tables[seq_idx, positions // self.block_size].long() * self.block_size
        slot_mapping += positions % self.block_size  # [T]
        dev = self.device
        attn = AttentionMetadata(
            is_prefill=batch.is_prefill,
            cu_seqlens_q=cu_seqlens_q.to(dev),
            seq_lens=seq_lens.to(dev, torch.int32),
            block_tables=block_tables.to(dev),
            slot_mapping=slot_mapping.to(dev),
            max_seqlen_q=max(batch.num_new_tokens),
            max_seqlen_k=max(s + n for s, n in zip(starts, batch.num_new_tokens, strict=True)),
        )
        ids = torch.tensor(input_ids, dtype=torch.int64).to(dev)  # [T]
        return ids, positions.to(dev), attn

    @torch.inference_mode()
    def run(self, batch: ScheduledBatch) -> SamplerOutput:
        input_ids, positions, attn = self.prepare(batch)
        adapters = [s.adapter_id for s in batch.seqs]
        hook = self.lora.prepare(adapters, batch.num_new_tokens, batch.pinned_adapters) if self.lora else None
        hidden = self.model(input_ids, positions, attn, self.kv_caches, hook)  # [T, H]
        rows = [i for i, s in enumerate(batch.samples) if s]
        if not rows:
            return SamplerOutput([])
        if any(batch.seqs[i].draft_token_ids for i in rows):
            return self._verify(batch, rows, hidden, attn)
        # Only the last token of each sequence that samples this step: [N, H] -> logits [N, V]
        last = attn.cu_seqlens_q[1:].long() - 1
        if len(rows) < len(batch.seqs):
            last = last[torch.tensor(rows, device=last.device)]
        logits = self.model.compute_logits(hidden[last])
        return self.sampler(logits, [batch.seqs[i] for i in rows])

    def _verify(
        self, batch: ScheduledBatch, rows: list[int], hidden: torch.Tensor, attn: AttentionMetadata
    ) -> SamplerOutput:
        # Sequences with a draft need logits at all 1 + k of their positions (the verifier), the others at their last
        # one (the sampler, as in a plain step). One lm_head call for all of them.
        ends = attn.cu_seqlens_q[1:].tolist()
        plain = [i for i in rows if not batch.seqs[i].draft_token_ids]
        spec = [i for i in rows if batch.seqs[i].draft_token_ids]
        picks = [ends[i] - 1 for i in plain]
        for i in spec:
            picks.extend(range(ends[i] - 1 - len(batch.seqs[i].draft_token_ids), ends[i]))
        logits = self.model.compute_logits(hidden[torch.tensor(picks, device=hidden.device)])  # [P, V]
        out_plain = self.sampler(logits[: len(plain)], [batch.seqs[i] for i in plain]) if plain else SamplerOutput([])
        verdicts = self.verifier(logits[len(plain) :], [batch.seqs[i] for i in spec],
                                 [batch.seqs[i].draft_token_ids for i in spec])  # fmt: skip
        by_row: dict[int, tuple[int, int, TokenLogprob | None]] = {}
        for k, i in enumerate(plain):
            lp = out_plain.logprobs[k] if out_plain.logprobs is not None else None
            by_row[i] = (out_plain.token_ids[k], 0, lp)
        for v, i in zip(verdicts, spec, strict=True):
            by_row[i] = (v.token_id, v.num_accepted, None)
        tokens = [by_row[i][0] for i in rows]
        accepted = [by_row[i][1] for i in rows]
        logprobs = [by_row[i][2] for i in rows] if out_plain.logprobs is not None else None
        return SamplerOutput(tokens, logprobs, accepted)
