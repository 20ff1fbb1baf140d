import pytest
import torch
from kernel_testing import DEVICE, GPU

from kernels.top_k_top_p_min_p_mask import top_k_top_p_min_p_mask_reference, top_k_top_p_min_p_mask_triton

VOCAB = 1000


def assert_same_kept_sets(out: torch.Tensor, expected: torch.Tensor, logits: torch.Tensor, top_p: torch.Tensor) -> None:
    # Exact, except where the top-p cut sits within float rounding of top_p: the kernel sums the mass above a
    # value in another order than the reference's sorted cumsum, so one tie group at that edge may flip.
    for row in range(out.shape[0]):
        differs = torch.isfinite(out[row]) != torch.isfinite(expected[row])
        assert torch.equal(out[row][~differs], expected[row][~differs])
        if differs.any():
            values = logits[row][differs].unique()
            assert values.numel() == 1, f"row {row}: {int(differs.sum())} tokens in {values.numel()} tie groups differ"
            mass_above = logits[row].double().softmax(-1)[logits[row] > values[0]].sum().item()
            assert abs(mass_above - float(top_p[row])) < 1e-5, f"row {row}: differs away from the top-p edge"


def _logits(batch: int, vocab: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, vocab, generator=g) * 2.5
    x[1, :50] = x[1, 50:100]  # pairs of ties everywhere in the row
    x[2] = torch.randint(-4, 4, (vocab,), generator=g).float()  # 8 distinct values: huge tie groups
    x[3, :40] = float("-inf")  # a masked part of the vocabulary (first sweep starts at -inf)
    x[4, 7], x[4, 8], x[4, 9] = -0.0, 0.0, x[4].max()  # -0.0 and +0.0 are one tie; a tie at the max
    return x.to(DEVICE)


# per row: (top_k, top_p, min_p); 0 / 1.0 / 0.0 = off
SETTINGS = [
    (0, 1.0, 0.0),  # everything off
    (5, 1.0, 0.0),  # top-k over ties
    (0, 0.5, 0.0),  # top-p over huge tie groups
    (40, 0.9, 0.0),  # both, with a masked vocabulary part
    (1, 1.0, 0.0),  # greedy with a tie at the max
    (0, 0.0, 0.0),  # top_p 0: only the max survives
    (VOCAB, 0.99, 0.0),  # k = V is off
    (3000, 1.0, 0.05),  # k > V, min-p
    (17, 0.7, 0.01),  # all three
    (0, 0.95, 0.2),  # top-p and min-p
]


@pytest.mark.parametrize("block", [512, 2048])
def test_mask_equals_reference_exactly(block: int) -> None:
    # block 512 sweeps each row in 2 steps (the second ragged); 2048 holds the row in one step
    logits = _logits(len(SETTINGS), VOCAB, seed=61)
    top_k = torch.tensor([s[0] for s in SETTINGS], device=DEVICE)
    top_p = torch.tensor([s[1] for s in SETTINGS], device=DEVICE)
    min_p = torch.tensor([s[2] for s in SETTINGS], device=DEVICE)
    out = top_k_top_p_min_p_mask_triton(logits, top_k, top_p, min_p, block=block)
    expected = top_k_top_p_min_p_mask_reference(logits, top_k, top_p, min_p)
    kept = torch.isfinite(expected).sum(-1).tolist()
    assert kept[0] == VOCAB and kept[5] == 1 and 1 < kept[8] < 17  # the settings bite as intended
    assert_same_kept_sets(out, expected, logits, top_p)


@pytest.mark.skipif(not GPU, reason="a full vocabulary is for the GPU run")
def test_mask_full_vocabulary() -> None:
    batch, vocab = 64, 49152
    logits = _logits(batch, vocab, seed=62)
    g = torch.Generator().manual_seed(63)
    top_k = torch.randint(0, 100, (batch,), generator=g).to(DEVICE)
    top_p = torch.rand(batch, generator=g).to(DEVICE)
    min_p = (torch.rand(batch, generator=g) * 0.1).to(DEVICE)
    out = top_k_top_p_min_p_mask_triton(logits, top_k, top_p, min_p)
    assert_same_kept_sets(out, top_k_top_p_min_p_mask_reference(logits, top_k, top_p, min_p), logits, top_p)


def test_mask_rejects_half_precision_logits() -> None:
    logits = torch.zeros(2, 8, dtype=torch.float16, device=DEVICE)
    off = torch.zeros(2, device=DEVICE)
    with pytest.raises(ValueError, match="fp32 logits"):
        top_k_top_p_min_p_mask_triton(logits, off.long(), off + 1, off)
