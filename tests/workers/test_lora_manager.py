"""The adapter tiers without a model: store -> host LRU -> device slots, pinning, and the hook's arithmetic."""

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from workers.lora.adapter import AdapterLoadError, LoraAdapter
from workers.lora.manager import AdapterNotFoundError, LoraManager
from workers.model_config import ModelConfig

CFG = ModelConfig(architecture="llama", vocab_size=32, hidden_size=16, intermediate_size=24, num_layers=2,
                  num_heads=2, num_kv_heads=1, head_dim=8, rope_theta=1e4, rms_norm_eps=1e-5,
                  max_position_embeddings=64, tie_word_embeddings=True)  # fmt: skip
DIMS = {"q_proj": (16, 16), "k_proj": (16, 8), "v_proj": (16, 8), "o_proj": (16, 16)}


def _save(store: Path, uid: str, r: int, alpha: float, seed: int, rslora: bool = False) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    tensors = {}
    for layer in range(CFG.num_layers):
        for proj in ("q_proj", "v_proj"):
            fan_in, fan_out = DIMS[proj]
            key = f"base_model.model.model.layers.{layer}.self_attn.{proj}"
            tensors[f"{key}.lora_A.weight"] = torch.randn(r, fan_in, generator=g)
            tensors[f"{key}.lora_B.weight"] = torch.randn(fan_out, r, generator=g)
    (store / uid).mkdir(parents=True)
    save_file(tensors, store / uid / "adapter_model.safetensors")
    (store / uid / "adapter_config.json").write_text(
        f'{{"peft_type": "LORA", "r": {r}, "lora_alpha": {alpha}, "use_rslora": {str(rslora).lower()}, '
        '"target_modules": ["q_proj", "v_proj"]}'
    )
    return tensors


@pytest.fixture
def store(tmp_path: Path) -> Path:
    for i, r in enumerate([2, 4, 8, 3]):
        _save(tmp_path, f"u{i}", r, alpha=2 * r, seed=i, rslora=i == 3)
    return tmp_path


def _manager(store: Path, max_loras: int = 2, max_cpu_loras: int = 3) -> LoraManager:
    return LoraManager(CFG, max_loras=max_loras, max_cpu_loras=max_cpu_loras, max_lora_rank=8, store=store)


def test_scale_follows_alpha_and_rslora(store: Path) -> None:
    m = _manager(store)
    assert m.get("u1").scale == pytest.approx(8 / 4)
    assert m.get("u3").scale == pytest.approx(6 / 3**0.5)


def test_host_cache_is_lru_and_loads_from_disk_once(store: Path) -> None:
    m = _manager(store)
    for uid in ("u0", "u1", "u2", "u0", "u3"):
        m.get(uid)
    assert m.num_disk_loads == 4
    assert m.resident_adapters() == ["u2", "u0", "u3"]  # u1 was least recently used


def test_unknown_and_path_like_uids(store: Path) -> None:
    m = _manager(store)
    for uid in ("nope", "../u0", "u0/..", ""):
        with pytest.raises(AdapterNotFoundError):
            m.get(uid)


def test_rank_above_slot_width_is_refused(store: Path) -> None:
    m = LoraManager(CFG, max_loras=1, max_cpu_loras=1, max_lora_rank=4, store=store)
    with pytest.raises(AdapterNotFoundError, match="max_lora_rank"):
        m.get("u2")


def test_slots_evict_unpinned_lru_and_keep_pinned(store: Path) -> None:
    m = _manager(store)
    m.prepare(["u0", "u1"], [1, 1])
    assert sorted(m.slot_uids) == ["u0", "u1"] and m.num_slot_loads == 2
    m.prepare(["u1"], [3])
    assert m.num_slot_loads == 2  # resident: no copy
    m.prepare(["u2"], [1], pinned=frozenset({"u0"}))  # u1 is unpinned: its slot goes
    assert sorted(m.slot_uids) == ["u0", "u2"]
    with pytest.raises(RuntimeError, match="no free LoRA slot"):
        m.prepare(["u3"], [1], pinned=frozenset({"u0", "u2"}))


def _want(raw: dict, seqs: list, lens: list[int], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    want = y.clone()
    t = 0
    for uid, n in zip(seqs, lens, strict=True):
        if uid is not None:
            ad = raw[uid]
            for proj, lo, hi in (("q_proj", 0, 16), ("v_proj", 24, 32)):
                a, b = ad.weights[(1, proj)]
                want[t : t + n, lo:hi] += x[t : t + n] @ a.t() @ b.t() * ad.scale
        t += n
    return want


@pytest.mark.parametrize("fused", [False, True])  # the kernels' segments (torch reference) | the CPU's fused route
def test_hook_adds_each_tokens_delta(store: Path, fused: bool) -> None:
    m = LoraManager(CFG, max_loras=3, max_cpu_loras=3, max_lora_rank=8, store=store, fused=fused)
    raw = {uid: LoraAdapter.from_folder(uid, store / uid, CFG, torch.float32) for uid in ("u0", "u1", "u2", "u3")}
    m.prepare(["u2"], [1])  # rank 8 in a slot that u3 (rank 3) takes over: its stale rows must not count
    seqs = ["u1", None, "u0", "u1", "u3"]  # u1 twice, apart: the segments route regroups tokens
    lens = [2, 1, 3, 1, 2]
    hook = m.prepare(seqs, lens)
    assert hook is not None and "u2" not in m.slot_uids
    x = torch.randn(sum(lens), 16)
    y = torch.randn(sum(lens), 16 + 8 + 8)  # merged q | k | v
    got = hook.add_delta(1, ("q_proj", "k_proj", "v_proj"), x, y.clone())
    torch.testing.assert_close(got, _want(raw, seqs, lens, x, y), atol=1e-4, rtol=1e-4)
    assert m.prepare([None, None], [2, 2]) is None


def test_malformed_folder(tmp_path: Path) -> None:
    _save(tmp_path, "bad", 2, 4, seed=0)
    (tmp_path / "bad" / "adapter_config.json").write_text('{"r": "two"}')
    with pytest.raises(AdapterLoadError):
        LoraAdapter.from_folder("bad", tmp_path / "bad", CFG, torch.float32)
