"""SGMV shrink/expand Triton kernels against the torch reference (interpreter on CPU; HEARTH_GPU_TESTS=1 on a GPU).

Mixed ranks (1, 5, 16, 33) in one batch, runs longer than a tile, tokens on the base model between runs, a column
slice as the output, 1-token batches and batches with no adapter at all."""

import pytest
import torch
from kernel_testing import DEVICE, DTYPES, TOL, randn

from kernels.lora import (
    BLOCK_T,
    LoraSegments,
    lora_expand_reference,
    lora_expand_triton,
    lora_shrink_reference,
    lora_shrink_triton,
)

RANKS = [1, 5, 16, 33]  # slot ranks; R_max 40 leaves padding columns the kernels must not touch
R_MAX = 40
SCALES = [2.0, 0.5, 0.25, 1.0 / 33**0.5]
# token -> slot, grouped by adapter; -1 = base model. Slot 2's run (20 tokens) spans two tiles.
CASES = {
    "mixed": [0, 0, 0, -1, -1, 1] + [2] * 20 + [3, 3, -1],
    "decode-one-each": [3, 1, 0, 2],
    "one-token": [1],
    "base-only": [-1, -1, -1],
}


def _arenas(k: int, n: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    a = torch.zeros(len(RANKS), R_MAX, k, dtype=dtype, device=DEVICE)
    b = torch.zeros(len(RANKS), n, R_MAX, dtype=dtype, device=DEVICE)
    for s, r in enumerate(RANKS):
        a[s, :r] = randn(r, k, dtype=dtype, seed=100 + s, scale=0.5)
        b[s, :, :r] = randn(n, r, dtype=dtype, seed=200 + s, scale=0.5)
    # Junk past each rank: a kernel that computes padded columns would pick it up.
    for s, r in enumerate(RANKS):
        a[s, r:] = 7.0
        b[s, :, r:] = 7.0
    return a, b


def _params() -> tuple[torch.Tensor, torch.Tensor]:
    return (
        torch.tensor(RANKS, dtype=torch.int32, device=DEVICE),
        torch.tensor(SCALES, dtype=torch.float32, device=DEVICE),
    )


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", list(CASES))
def test_shrink_matches_reference(dtype: torch.dtype, case: str) -> None:
    slots = CASES[case]
    k = 72  # not a multiple of BLOCK_K
    x = randn(len(slots), k, dtype=dtype, seed=1)
    a, _ = _arenas(k, 24, dtype)
    seg = LoraSegments.from_token_slots(slots, DEVICE)
    ranks_t, _ = _params()
    got = lora_shrink_triton(x, a, seg, ranks_t)
    want = lora_shrink_reference(x.float(), a.float(), seg, RANKS)
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    for t, slot in enumerate(slots):  # columns past the rank, and base tokens, stay zero
        r = RANKS[slot] if slot >= 0 else 0
        assert not got[t, r:].any()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", list(CASES))
def test_expand_adds_into_a_column_slice(dtype: torch.dtype, case: str) -> None:
    slots = CASES[case]
    n = 80  # over two BLOCK_N tiles, not a multiple
    _, b = _arenas(16, n, dtype)
    v = torch.zeros(len(slots), R_MAX, dtype=torch.float32, device=DEVICE)
    v[:, :] = randn(len(slots), R_MAX, dtype=torch.float32, seed=3)
    seg = LoraSegments.from_token_slots(slots, DEVICE)
    for start, end, slot in seg.runs:  # the shrink leaves zeros past the rank; the expand may rely on that or not
        v[start:end, RANKS[slot] :] = 0
    ranks_t, scales_t = _params()
    merged = randn(len(slots), n + 30, dtype=dtype, seed=4)  # y is merged[:, 10:10+n]
    want = merged.clone()
    lora_expand_triton(v, b, seg, ranks_t, scales_t, merged[:, 10 : 10 + n])
    ref = want[:, 10 : 10 + n].float()
    lora_expand_reference(v, b.float(), seg, RANKS, SCALES, ref)
    want[:, 10 : 10 + n] = ref.to(dtype)
    tol = TOL[dtype] * 4  # sums of r products rounded once into the output dtype
    torch.testing.assert_close(merged.float(), want.float(), atol=tol, rtol=tol)
    assert torch.equal(merged[:, :10], want[:, :10]) and torch.equal(merged[:, 10 + n :], want[:, 10 + n :])


def test_segments_cut_runs_into_tiles() -> None:
    seg = LoraSegments.from_token_slots([-1, 2, 2] + [0] * (BLOCK_T + 3) + [-1], "cpu")
    assert seg.runs == [(1, 3, 2), (3, 3 + BLOCK_T + 3, 0)]
    assert seg.tiles.tolist() == [[1, 3, 2], [3, 3 + BLOCK_T, 0], [3 + BLOCK_T, 6 + BLOCK_T, 0]]
    assert LoraSegments.from_token_slots([], "cpu").tiles.shape == (0, 3)
