"""SmolLM2's forward with every op on the Triton kernels against the same forward on the torch references: the
kernels as the model really calls them (q/k as strided views of the fused qkv, the rotary buffer, a paged cache
used in shuffled block order). Here: the real SmolLM2 GGUF in fp32 through Triton's interpreter, its first
CPU_LAYERS layers (the interpreter needs ~3 s per layer for this run; all 30 took 87 s). On a GPU (HEARTH_GPU_TESTS=1,
no gguf package there): SmolLM2-shaped random weights in bf16, Triton vs HEARTH_KERNELS=reference."""

import pytest
import torch
from kernel_testing import DEVICE, GPU

from kernels import _dispatch
from workers.model_config import ModelConfig
from workers.models.llama import LlamaForCausalLM
from workers.models.reference_run import SingleSequence

PROMPT = [1, 9690, 198, 2683, 359, 253, 5356, 5646, 11173, 3365, 3717, 28, 7018, 411, 407, 2172, 281, 1070]  # 18
DECODE_STEPS = 3
CPU_LAYERS = 6


def _smollm2(request: pytest.FixtureRequest) -> LlamaForCausalLM:
    if not GPU:
        from workers.loader import load_model

        model = load_model(request.getfixturevalue("smollm2_gguf_path"), dtype=torch.float32)
        model.model.layers = model.model.layers[:CPU_LAYERS]
        model.config.num_layers = CPU_LAYERS
        return model
    config = ModelConfig(
        architecture="llama", vocab_size=49152, hidden_size=576, intermediate_size=1536, num_layers=30, num_heads=9,
        num_kv_heads=3, head_dim=64, rope_theta=100000.0, rms_norm_eps=1e-5, max_position_embeddings=8192,
        tie_word_embeddings=True,
    )  # fmt: skip
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device(DEVICE):
            model = LlamaForCausalLM(config)
    finally:
        torch.set_default_dtype(default)
    # drawn on the CPU with a CPU generator (normal_ on the GPU refused the CUDA one with torch 2.11), then copied:
    # the same weights on every card
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            mean = 1.0 if name.endswith("norm.weight") else 0.0
            p.copy_(torch.empty(p.shape, dtype=torch.float32).normal_(mean, 0.02, generator=gen))
    model.to(DEVICE)
    return model.eval()


def _greedy_logits(model: LlamaForCausalLM) -> list[torch.Tensor]:
    # prefill the prompt (two blocks of 16, shuffled), then decode greedily; -> logits of each step
    seq = SingleSequence(model, num_blocks=4, block_size=16, seed=3)
    steps = [seq.forward(PROMPT)[-1]]
    for _ in range(DECODE_STEPS):
        steps.append(seq.forward([int(steps[-1].argmax())])[-1])
    return steps


@pytest.mark.slow
def test_smollm2_forward_on_triton_matches_reference(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = _smollm2(request)
    monkeypatch.setattr(_dispatch, "MODE", "reference")
    expected = _greedy_logits(model)
    # on a GPU the default; on CPU tensors it routes every op to the Triton wrappers (interpreter)
    monkeypatch.setattr(_dispatch, "MODE", "auto" if GPU else "triton")
    actual = _greedy_logits(model)
    for step, (a, e) in enumerate(zip(actual, expected, strict=True)):
        assert not a.isnan().any(), f"step {step}: NaN logits"
        rel = float((a - e).norm() / e.norm())
        assert rel < (3e-2 if GPU else 1e-4), f"step {step}: relative error {rel:.2e}"
        if not GPU:  # the real model's greedy choices are decisive; random weights' logits are nearly flat
            assert int(a.argmax()) == int(e.argmax()), f"step {step}: greedy token differs"
