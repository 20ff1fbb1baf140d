from dataclasses import dataclass

import torch


@dataclass(slots=True)
class AttentionMetadata:
    """What one forward over a flattened batch needs to read and write the paged KV cache.

    The model runner builds it; every attention layer reads it. B = sequences in the step, T = tokens.
    """

    is_prefill: bool  # True if any sequence has more than one query token this step (varlen prefill path)
    cu_seqlens_q: torch.Tensor  # [B+1] int32, query-token offsets of each sequence in the flattened batch
    seq_lens: torch.Tensor  # [B] int32, KV length of each sequence after this step (cached prefix + new tokens)
    block_tables: torch.Tensor  # [B, max_blocks] int32, physical block ids (padding: 0, never read)
    slot_mapping: torch.Tensor  # [T] int64, cache slot of each new token (block * block_size + offset)
    max_seqlen_q: int = 1
    max_seqlen_k: int = 0
