"""The CPU's fused multi-LoRA route (workers/lora/fused.py, fused_batch.py) on every module of a layer, against the
math (x·Aᵀ·Bᵀ·scale per token, from the adapter's own factors) and against the kernels' segment route (its torch
reference, `fused=False`), route by route: runs, grouped in place, grouped with gathered weights, one group per
token, with base tokens between, mixed ranks, and adapters that leave a slice of a merged projection alone."""

import pytest
import torch

from workers.lora.adapter import LoraAdapter
from workers.lora.fused_batch import FusedLoraBatch
from workers.lora.manager import LoraManager
from workers.lora.synthetic import adapter_config, random_adapter_tensors
from workers.model_config import ModelConfig

CFG = ModelConfig(architecture="llama", vocab_size=32, hidden_size=16, intermediate_size=24, num_layers=2,
                  num_heads=2, num_kv_heads=1, head_dim=8, rope_theta=1e4, rms_norm_eps=1e-5,
                  max_position_embeddings=64, tie_word_embeddings=True)  # fmt: skip
MODULES = (("q_proj", "k_proj", "v_proj"), ("o_proj",), ("gate_proj", "up_proj"), ("down_proj",))
ALL = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
SPECS = {  # uid -> (rank, alpha, targets)
    "wide": (8, 8, ALL),  # fills slot 0 first; all4c later takes that slot over its stale rows
    "all4a": (4, 8, ALL),
    "qv4": (4, 4, ("q_proj", "v_proj", "down_proj")),  # k_proj untargeted: a rank-0 slice between two others
    "all8": (8, 4, ALL),
    "gd2": (2, 6, ("gate_proj", "down_proj")),  # up_proj (the last slice of gate | up) and all of attention untargeted
    "all4b": (4, 8, ALL),
    "all4c": (4, 8, ALL),
}
RESIDENT = ("wide", "all4a", "qv4", "all8", "gd2", "all4b")  # slots 0..5 in this order
CASES = {  # name -> (sequences' adapters, their token counts, the route expected)
    "one adapter": (["all4a"], [5], "runs 1"),
    "base and adapter": ([None, "all4a", None], [2, 3, 1], "runs 1"),
    "few runs, mixed shapes": (["qv4", None, "gd2", "all8"], [2, 1, 3, 2], "runs 3"),
    "decode, one shape, in place": (["all4a", "all4b", "all4c"] * 2, [1] * 6, "runs 0 | in place"),
    # all4a and all4b share a shape in slots 1 and 5: too far apart to read the four slots between in place
    "decode, mixed shapes": (["all4a", "qv4", "all8", "gd2", "all4b", None, "all4a"], [1] * 7,
                             "runs 0 | gathered | in place | in place | in place"),
    "long run and decodes": (["all8", "all4a", "qv4", "all4b", "gd2"], [9, 1, 1, 1, 1],
                             "runs 1 | gathered | in place | in place"),
    "near slots, in place": (["all4a", "qv4", "all4a", "qv4"], [1] * 4, "runs 0 | in place | in place"),
    # one slot's 7 tokens padded for two 1-token slots would more than double the rows: one group per token
    "per token, every token": (["all4a", "all4b", "all4a", "all4c", "all4a"], [3, 1, 3, 1, 1],
                               "runs 0 | per token, all"),
    "per token, base between": (["all4a", "all4b", "all4a", None, "all4a", "all4c"], [3, 1, 3, 2, 1, 1],
                                "runs 0 | per token"),
}  # fmt: skip


def _adapters(dtype: torch.dtype) -> dict[str, LoraAdapter]:
    out = {}
    for i, (uid, (r, alpha, targets)) in enumerate(SPECS.items()):
        tensors = random_adapter_tensors(CFG, rank=r, targets=targets, seed=i, b_std=0.5)
        out[uid] = LoraAdapter.from_tensors(uid, adapter_config(rank=r, alpha=alpha, targets=targets), tensors, CFG,
                                            dtype)  # fmt: skip
    return out


def _manager(adapters: dict[str, LoraAdapter], fused: bool, dtype: torch.dtype) -> LoraManager:
    m = LoraManager(CFG, max_loras=6, max_cpu_loras=8, max_lora_rank=8, dtype=dtype, fused=fused)
    for adapter in adapters.values():
        m.add_adapter(adapter)
    for uid in RESIDENT:
        m.prepare([uid], [1])
    assert m.slot_uids == list(RESIDENT)
    return m


def _route(hook: FusedLoraBatch) -> str:
    names = [f"runs {len(hook.runs)}"]
    for part in hook.parts:
        if part.width == 1 and part.slots is not None and part.slots.numel() == part.num_groups and part.hi == 0:
            names.append("per token, all" if part.index is None else "per token")
        else:
            names.append("in place" if part.slots is None else "gathered")
    return " | ".join(names)


def _want(
    adapters: dict, seqs: list, lens: list[int], names: tuple, x: torch.Tensor, y: torch.Tensor, layer: int = 1
) -> torch.Tensor:
    dims = CFG.projection_dims()
    want = y.double().clone()
    t = 0
    for uid, n in zip(seqs, lens, strict=True):
        col = 0
        for name in names:
            size = dims[name][1]
            if uid is not None and name in adapters[uid].targets:
                a, b = adapters[uid].weights[(layer, name)]
                delta = x[t : t + n].double() @ a.double().t() @ b.double().t() * adapters[uid].scale
                want[t : t + n, col : col + size] += delta
            col += size
        t += n
    return want


@pytest.mark.parametrize("case", list(CASES))
def test_fused_route_matches_math_and_segments(case: str) -> None:
    seqs, lens, route = CASES[case]
    adapters = _adapters(torch.float32)
    fused, segments = _manager(adapters, True, torch.float32), _manager(adapters, False, torch.float32)
    hook, ref_hook = fused.prepare(seqs, lens), segments.prepare(seqs, lens)
    assert isinstance(hook, FusedLoraBatch) and ref_hook is not None
    assert fused.slot_uids == segments.slot_uids
    assert _route(hook) == route
    if "all4c" in seqs:
        assert fused.slot_uids.index("all4c") == 0  # over wide's rank-8 rows
    dims = CFG.projection_dims()
    g = torch.Generator().manual_seed(7)
    for names in MODULES:
        x = torch.randn(sum(lens), dims[names[0]][0], generator=g)
        y = torch.randn(sum(lens), sum(dims[n][1] for n in names), generator=g)
        got = hook.add_delta(1, names, x, y.clone())
        torch.testing.assert_close(got.double(), _want(adapters, seqs, lens, names, x, y), atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(got, ref_hook.add_delta(1, names, x, y.clone()), atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("case", ["few runs, mixed shapes", "decode, mixed shapes"])
def test_fused_route_bf16(case: str) -> None:
    # bf16 slots (scale folded into A, rounded once) against the fp32 math: within bf16 rounding of the delta
    seqs, lens, _ = CASES[case]
    adapters = _adapters(torch.bfloat16)
    hook = _manager(adapters, True, torch.bfloat16).prepare(seqs, lens)
    assert hook is not None
    dims = CFG.projection_dims()
    g = torch.Generator().manual_seed(8)
    for names in MODULES:
        x = torch.randn(sum(lens), dims[names[0]][0], generator=g).bfloat16()
        y = torch.randn(sum(lens), sum(dims[n][1] for n in names), generator=g).bfloat16()
        got = hook.add_delta(0, names, x, y.clone())
        want = _want(adapters, seqs, lens, names, x, y, layer=0)
        torch.testing.assert_close(got.double(), want, atol=0.1, rtol=0.02)
        assert (want - y.double()).abs().max() > 0.5  # the adapters add far more than the tolerance


def test_removed_adapter_leaves_no_trace() -> None:
    adapters = _adapters(torch.float32)
    m = _manager(adapters, True, torch.float32)
    m.remove("all8")
    hook = m.prepare(["qv4", "all4a"], [2, 1])
    assert hook is not None and "all8" not in m.slot_uids
    x, y = torch.randn(3, 16), torch.randn(3, 32)
    got = hook.add_delta(0, MODULES[0], x, y.clone())
    want = _want(adapters, ["qv4", "all4a"], [2, 1], MODULES[0], x, y, layer=0)
    torch.testing.assert_close(got.double(), want, atol=1e-4, rtol=1e-4)
