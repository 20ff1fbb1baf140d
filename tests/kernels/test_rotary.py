import pytest
import torch
from kernel_testing import DEVICE, DTYPES, GPU, assert_close, randn

from kernels import forward_scope
from kernels.rotary import apply_rotary_cpu, apply_rotary_reference, apply_rotary_triton, rotary_cos_sin

# (tokens, q heads, kv heads, head_dim): 1 token, SmolLM2 (9/3 heads, 64), GQA 8 at 128, Llama-8B on a GPU
CASES = [(1, 4, 4, 64), (7, 9, 3, 64), (5, 16, 2, 128)] + ([(300, 32, 8, 128)] if GPU else [])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", CASES)
def test_apply_rotary_in_place_on_fused_qkv_views(dtype: torch.dtype, case: tuple[int, int, int, int]) -> None:
    tokens, hq, hk, d = case
    # q and k are strided views of a fused qkv projection, as the model produces them
    qkv = randn(tokens, (hq + 2 * hk) * d, dtype=dtype, seed=21)
    q = qkv[:, : hq * d].view(tokens, hq, d)
    k = qkv[:, hq * d : (hq + hk) * d].view(tokens, hk, d)
    v_before = qkv[:, (hq + hk) * d :].clone()
    q_ref, k_ref = q.clone(), k.clone()
    positions = torch.randint(0, 4096, (tokens,), generator=torch.Generator().manual_seed(22)).to(DEVICE)
    cos_sin = rotary_cos_sin(4096, d, 10000.0, device=DEVICE)
    apply_rotary_triton(q, k, positions, cos_sin)
    apply_rotary_reference(q_ref, k_ref, positions, cos_sin)
    assert_close(q, q_ref)
    assert_close(k, k_ref)
    assert torch.equal(qkv[:, (hq + hk) * d :], v_before)  # v untouched


def test_apply_rotary_rejects_odd_head_dim() -> None:
    q = randn(2, 2, 63, dtype=torch.float32, seed=23)
    positions = torch.zeros(2, dtype=torch.int64, device=DEVICE)
    with pytest.raises(ValueError, match="even head dim"):
        apply_rotary_triton(q, q.clone(), positions, torch.zeros(8, 63, device=DEVICE))


def test_apply_rotary_with_a_bf16_table() -> None:
    # model.to(bfloat16) converts the registered cos/sin buffer too
    q = randn(3, 4, 64, dtype=torch.bfloat16, seed=24)
    k = randn(3, 2, 64, dtype=torch.bfloat16, seed=25)
    q_ref, k_ref = q.clone(), k.clone()
    positions = torch.tensor([0, 5, 200], device=DEVICE)
    cos_sin = rotary_cos_sin(256, 64, 10000.0, device=DEVICE).to(torch.bfloat16)
    apply_rotary_triton(q, k, positions, cos_sin)
    apply_rotary_reference(q_ref, k_ref, positions, cos_sin)
    assert_close(q, q_ref)
    assert_close(k, k_ref)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("rot", [64, 32])  # full and partial rotary (Phi rotates the first dims of each head)
def test_cpu_path_equals_the_reference_over_steps_and_layers(dtype: torch.dtype, rot: int) -> None:
    # Inside a forward scope the CPU path gathers cos/sin once per positions tensor and rotates q | k of a fused
    # qkv as one view: both layers of a step, a new step with new positions, and q/k that are not side by side
    # (separate tensors) must all match the reference.
    tokens, hq, hk, d = 7, 9, 3, 64
    cos_sin = rotary_cos_sin(512, rot, 10000.0)
    gen = torch.Generator().manual_seed(31)
    for step in range(2):
        positions = torch.randint(0, 512, (tokens,), generator=gen)
        with forward_scope():
            for layer in range(2):
                qkv = randn(tokens, (hq + 2 * hk) * d, dtype=dtype, seed=40 + 2 * step + layer).cpu()
                q = qkv[:, : hq * d].view(tokens, hq, d)[..., :rot]
                k = qkv[:, hq * d : (hq + hk) * d].view(tokens, hk, d)[..., :rot]
                v_before = qkv[:, (hq + hk) * d :].clone()
                q_ref, k_ref = q.clone(), k.clone()
                apply_rotary_cpu(q, k, positions, cos_sin)
                apply_rotary_reference(q_ref, k_ref, positions, cos_sin)
                assert_close(q, q_ref)
                assert_close(k, k_ref)
                assert torch.equal(qkv[:, (hq + hk) * d :], v_before)  # v untouched
            apart_q = randn(tokens, hq, rot, dtype=dtype, seed=50).cpu()
            apart_k = randn(tokens, hk, rot, dtype=dtype, seed=51).cpu()
            ref_q, ref_k = apart_q.clone(), apart_k.clone()
            apply_rotary_cpu(apart_q, apart_k, positions, cos_sin)
            apply_rotary_reference(ref_q, ref_k, positions, cos_sin)
            assert_close(apart_q, ref_q)
            assert_close(apart_k, ref_k)
