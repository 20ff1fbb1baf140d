"""Run ONE sequence through the model with its own paged KV cache: a reference for tests and a usage example of
the forward contract (prefill over the prompt, then one-token decode steps through the cache)."""

import torch

from workers.models.attention_metadata import AttentionMetadata
from workers.models.llama import KVCache, LlamaForCausalLM


def allocate_kv_caches(model: LlamaForCausalLM, num_blocks: int, block_size: int) -> list[KVCache]:
    cfg = model.config
    weight = model.model.norm.weight
    shape = (num_blocks, block_size, cfg.num_kv_heads, cfg.head_dim)
    return [
        (torch.zeros(shape, dtype=weight.dtype, device=weight.device),
         torch.zeros(shape, dtype=weight.dtype, device=weight.device))
        for _ in range(cfg.num_layers)
    ]


class SingleSequence:
    """One sequence's KV cache. Blocks are used in a shuffled order so a bug that ignores the block table shows."""

    def __init__(self, model: LlamaForCausalLM, num_blocks: int, block_size: int, seed: int = 0) -> None:
        self.model = model
        self.block_size = block_size
        self.kv_caches = allocate_kv_caches(model, num_blocks, block_size)
        gen = torch.Generator().manual_seed(seed)
        self.block_table = torch.randperm(num_blocks, generator=gen).to(torch.int32)
        self.num_tokens = 0

    @torch.inference_mode()
    def forward(self, token_ids: list[int]) -> torch.Tensor:
        """Append token_ids to the sequence; -> logits [len(token_ids), V] fp32."""
        device = self.model.model.norm.weight.device
        start, new = self.num_tokens, len(token_ids)
        end = start + new
        if end > self.block_size * len(self.block_table):
            raise ValueError(f"{end} tokens don't fit in {len(self.block_table)} blocks of {self.block_size}")
        positions = torch.arange(start, end, dtype=torch.int64)
        blocks = self.block_table[positions // self.block_size].long()
        slot_mapping = blocks * self.block_size + positions % self.block_size
        attn = AttentionMetadata(
            is_prefill=new > 1,
            cu_seqlens_q=torch.tensor([0, new], dtype=torch.int32, device=device),
            seq_lens=torch.tensor([end], dtype=torch.int32, device=device),
            block_tables=self.block_table[None, :].to(device),
            slot_mapping=slot_mapping.to(device),
            max_seqlen_q=new,
            max_seqlen_k=end,
        )
        ids = torch.tensor(token_ids, dtype=torch.int64, device=device)
        hidden = self.model(ids, positions.to(device), attn, self.kv_caches)  # [T, H]
        self.num_tokens = end
        return self.model.compute_logits(hidden)


def run_single(model: LlamaForCausalLM, token_ids: list[int], num_blocks: int, block_size: int) -> torch.Tensor:
    """Full prefill of one sequence -> logits [T, V] fp32."""
    return SingleSequence(model, num_blocks, block_size).forward(token_ids)


def greedy(
    model: LlamaForCausalLM, prompt_ids: list[int], n: int, num_blocks: int | None = None, block_size: int = 16
) -> list[int]:
    """Greedy continuation of n tokens: prefill once, then decode one token at a time through the paged cache."""
    if num_blocks is None:
        num_blocks = (len(prompt_ids) + n + block_size - 1) // block_size + 1
    seq = SingleSequence(model, num_blocks, block_size)
    logits = seq.forward(prompt_ids)
    out: list[int] = []
    for _ in range(n):
        token = int(logits[-1].argmax())
        out.append(token)
        if len(out) == n:
            break
        logits = seq.forward([token])
    return out
