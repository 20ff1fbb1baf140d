"""sentence-transformers pooling over packed hidden states (cls / max / mean / mean_sqrt_len, concatenated in its
order) and the optional L2 normalisation of its Normalize module."""

import torch
import torch.nn.functional as F

from workers.embeddings.config import EncoderConfig
from workers.embeddings.encoder import PackedBatch


@torch.inference_mode()
def pool(hidden: torch.Tensor, batch: PackedBatch, config: EncoderConfig) -> torch.Tensor:
    """`hidden [T, h]` -> `[B, h * len(modes)]` float32 (normalised when the model's head says so)."""
    hidden = hidden.float()
    num_seqs = len(batch.seq_lens)
    lens = torch.tensor(batch.seq_lens, dtype=torch.float32, device=hidden.device)[:, None]  # [B, 1]
    seq_index = torch.repeat_interleave(
        torch.arange(num_seqs, device=hidden.device), torch.tensor(batch.seq_lens, device=hidden.device)
    )
    parts: list[torch.Tensor] = []
    sums: torch.Tensor | None = None
    for mode in config.pooling_modes:
        if mode == "cls":
            parts.append(hidden[batch.cu_seqlens[:-1]])
        elif mode == "max":
            out = hidden.new_empty(num_seqs, hidden.shape[1])
            parts.append(out.scatter_reduce_(0, seq_index[:, None].expand_as(hidden), hidden, "amax",
                                             include_self=False))
        else:
            if sums is None:
                sums = hidden.new_zeros(num_seqs, hidden.shape[1]).index_add_(0, seq_index, hidden)
            parts.append(sums / lens if mode == "mean" else sums / lens.sqrt())
    out = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
    return F.normalize(out, p=2, dim=1) if config.normalize else out
