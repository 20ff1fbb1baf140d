"""Top-k / top-p / min-p masking of a batch of logits. The reference sorts each row; the Triton kernel does without a
sort (CPU: the reference).

Each cut is a threshold on the logit value, so instead of sorting a row we search the threshold by bisection over
the row's values, in the order-preserving int32 image of fp32 (exact: the search lands on a logit of the row, at
most 32 sweeps). Per row, both searches share each sweep:
  top-k: the largest key t with count(key >= t) >= k          (= the k-th largest logit, ties kept)
  top-p: the smallest key t with mass(key > t) < top_p · Z    (= the reference's last kept sorted logit, ties kept)
  min-p: logit >= max + log(min_p), the float threshold computed exactly like the reference.
The mass is summed in a different order than the reference's sorted cumsum, so a row whose cut falls within float
rounding of top_p (~1e-7 relative) may differ by that one tie group; otherwise the kept set is the reference's.
"""

import torch

from kernels import _dispatch
from kernels._dispatch import Backend

BLOCK = 2048  # elements per sweep step; a 128k vocabulary takes 63 steps per sweep


# -- Triton (defined only where triton can run: kernels/_dispatch.py TRITON) ------------------------------------


if _dispatch.TRITON:
    import triton
    import triton.language as tl

    @triton.jit
    def _key(x):
        # fp32 -> int32 with the same order; -0.0 is folded onto +0.0 because they compare equal as floats
        x = tl.where(x == 0.0, 0.0, x)
        bits = x.to(tl.int32, bitcast=True)
        return tl.where(bits < 0, bits ^ 0x7FFFFFFF, bits)


    @triton.jit
    def _top_k_top_p_min_p_kernel(
        logits_ptr, out_ptr, top_k_ptr, top_p_ptr, min_p_ptr, log_min_p_ptr, stride_l, stride_o, vocab,
        BLOCK: tl.constexpr,
    ):  # fmt: skip
        row = tl.program_id(0).to(tl.int64)
        src = logits_ptr + row * stride_l
        cols = tl.arange(0, BLOCK)

        # sweep 1: max (online softmax normaliser Z) and the smallest key
        mx = tl.full([], float("-inf"), tl.float32)
        z = tl.full([], 0.0, tl.float32)
        kmin = tl.full([], 2147483647, tl.int32)
        for c0 in range(0, vocab, BLOCK):
            mask = c0 + cols < vocab
            x = tl.load(src + c0 + cols, mask=mask, other=float("-inf"))
            new_mx = tl.maximum(mx, tl.max(x, 0))
            # -inf logits (masked vocabulary) add nothing, even while the running max is still -inf
            alpha = tl.where(new_mx == float("-inf"), 1.0, tl.exp(mx - new_mx))
            z = z * alpha + tl.sum(tl.where(x == float("-inf"), 0.0, tl.exp(x - new_mx)), 0)
            mx = new_mx
            kmin = tl.minimum(kmin, tl.min(tl.where(mask, _key(x), 2147483647), 0))
        kmin = kmin.to(tl.int64)
        kmax = _key(mx).to(tl.int64)

        top_k = tl.load(top_k_ptr + row).to(tl.int64)
        top_p = tl.load(top_p_ptr + row)
        # bisection brackets: lo_k satisfies "count >= k", hi_k doesn't; hi_p satisfies "mass < top_p·Z", lo_p doesn't.
        # An op that is off gets a bracket of width 1 whose answer keeps everything (top_p <= 0 keeps the max only).
        k_on = (top_k > 0) & (top_k < vocab)
        lo_k = kmin
        hi_k = tl.where(k_on, kmax + 1, kmin + 1)
        p_on = (top_p > 0.0) & (top_p < 1.0)
        lo_p = tl.where(top_p <= 0.0, kmax - 1, kmin - 1)
        hi_p = tl.where(top_p <= 0.0, kmax, tl.where(p_on, kmax, kmin))
        p_mass = top_p * z
        while (hi_k - lo_k > 1) | (hi_p - lo_p > 1):
            mid_k = lo_k + (hi_k - lo_k) // 2
            mid_p = lo_p + (hi_p - lo_p) // 2
            count = tl.full([], 0, tl.int64)
            mass = tl.full([], 0.0, tl.float32)
            for c0 in range(0, vocab, BLOCK):
                mask = c0 + cols < vocab
                x = tl.load(src + c0 + cols, mask=mask, other=float("-inf"))
                key = _key(x).to(tl.int64)
                count += tl.sum((mask & (key >= mid_k)).to(tl.int64), 0)
                mass += tl.sum(tl.where(mask & (key > mid_p), tl.exp(x - mx), 0.0), 0)
            lo_k = tl.where(count >= top_k, mid_k, lo_k)
            hi_k = tl.where(count >= top_k, hi_k, mid_k)
            hi_p = tl.where(mass < p_mass, mid_p, hi_p)
            lo_p = tl.where(mass < p_mass, lo_p, mid_p)

        threshold = tl.maximum(lo_k, hi_p)
        min_p = tl.load(min_p_ptr + row)
        min_p_logit = tl.where(min_p > 0.0, mx + tl.load(log_min_p_ptr + row), float("-inf"))
        dst = out_ptr + row * stride_o
        for c0 in range(0, vocab, BLOCK):
            mask = c0 + cols < vocab
            x = tl.load(src + c0 + cols, mask=mask, other=float("-inf"))
            keep = (_key(x).to(tl.int64) >= threshold) & (x >= min_p_logit)
            tl.store(dst + c0 + cols, tl.where(keep, x, float("-inf")), mask=mask)


def top_k_top_p_min_p_mask_triton(
    logits: torch.Tensor, top_k: torch.Tensor, top_p: torch.Tensor, min_p: torch.Tensor, *, block: int = BLOCK
) -> torch.Tensor:
    # logits: [B, V] fp32; top_k: [B] int (0 = off); top_p, min_p: [B] fp32 (1.0 / 0.0 = off) -> [B, V] masked
    if logits.dim() != 2 or logits.dtype != torch.float32 or logits.stride(1) != 1:
        raise ValueError(f"expected fp32 logits [B, V] with contiguous rows, got {logits.dtype} {tuple(logits.shape)}")
    batch, vocab = logits.shape
    for name, t in (("top_k", top_k), ("top_p", top_p), ("min_p", min_p)):
        if t.shape != (batch,):
            raise ValueError(f"{name} must be [{batch}], got {tuple(t.shape)}")
    out = torch.empty_like(logits)
    if batch == 0 or vocab == 0:
        return out
    # the same fp32 ops as the reference, so the min-p threshold is bit-identical
    log_min_p = torch.log(min_p.float().clamp(min=1e-30))
    _top_k_top_p_min_p_kernel[(batch,)](
        logits, out, top_k, top_p.float(), min_p.float(), log_min_p, logits.stride(0), out.stride(0), vocab,
        BLOCK=min(block, triton.next_power_of_2(vocab)), num_warps=8,
    )  # fmt: skip
    return out


# -- torch reference ---------------------------------------------------------------------------------------------


def top_k_top_p_min_p_mask_reference(
    logits: torch.Tensor, top_k: torch.Tensor, top_p: torch.Tensor, min_p: torch.Tensor
) -> torch.Tensor:
    # logits: [B, V] fp32 (already temperature-scaled); top_k: [B] int (0 = off); top_p, min_p: [B] fp32
    # (1.0 / 0.0 = off). Returns logits with everything outside the kept set at -inf. Ties at the cut are kept.
    vocab = logits.shape[-1]
    sorted_logits, _ = logits.sort(dim=-1, descending=True)
    k = torch.where(top_k <= 0, vocab, top_k.clamp(max=vocab)).long()
    kth = sorted_logits.gather(1, (k - 1)[:, None])
    probs = sorted_logits.softmax(-1)
    cum = probs.cumsum(-1) - probs  # mass strictly before each token
    # top_p >= 1 is "off" exactly: the fp32 cumsum can reach 1.0 before the tail and would drop it
    p_keep = (cum < top_p[:, None]) | (top_p[:, None] >= 1.0)
    p_keep[:, 0] = True
    num_p = p_keep.sum(-1)
    pth = sorted_logits.gather(1, (num_p - 1)[:, None])
    threshold = torch.maximum(kth, pth)
    max_logit = sorted_logits[:, :1]
    min_p_logit = max_logit + torch.log(min_p.clamp(min=1e-30))[:, None]
    threshold = torch.where(min_p[:, None] > 0, torch.maximum(threshold, min_p_logit), threshold)
    return logits.masked_fill(logits < threshold, float("-inf"))


# -- dispatch ----------------------------------------------------------------------------------------------------


def top_k_top_p_min_p_mask(
    logits: torch.Tensor, top_k: torch.Tensor, top_p: torch.Tensor, min_p: torch.Tensor
) -> torch.Tensor:
    if _dispatch.backend(logits) is Backend.TRITON:
        return top_k_top_p_min_p_mask_triton(logits, top_k, top_p, min_p)
    return top_k_top_p_min_p_mask_reference(logits, top_k, top_p, min_p)
