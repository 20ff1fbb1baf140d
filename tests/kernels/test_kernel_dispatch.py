"""kernels/_dispatch.py and each op's dispatch: CPU tensors take the op's CPU path (or its reference), CUDA tensors
take Triton, HEARTH_KERNELS=reference forces the reference everywhere; a CPU process never imports triton."""

import importlib
import os
import subprocess
import sys
import types

import pytest
import torch
from kernel_testing import DEVICE, GPU, assert_close, randn
from paged_cases import paged_cache

import kernels
from kernels import _dispatch
from kernels.paged_attention_decode import paged_attention_decode_reference
from kernels.rms_norm import rms_norm_reference
from kernels.silu_and_mul import silu_and_mul_reference

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _run(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("TRITON_INTERPRET", "HEARTH_KERNELS")}
    base["CUDA_VISIBLE_DEVICES"] = ""  # a CPU-only process, also on a GPU machine
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=base | env, capture_output=True, text=True,
                          timeout=120)  # fmt: skip


def test_cpu_process_never_imports_triton() -> None:
    # the CPU worker runs every op through the dispatch without triton in the process
    code = (
        "import sys, torch, kernels\n"
        "x = torch.randn(3, 8)\n"
        "kernels.rms_norm(x, torch.ones(8), 1e-6); kernels.add_rms_norm(x, x, torch.ones(8), 1e-6)\n"
        "kernels.silu_and_mul(x)\n"
        "kernels.top_k_top_p_min_p_mask(x, torch.zeros(3, dtype=torch.long), torch.ones(3), torch.zeros(3))\n"
        "kc = torch.randn(2, 4, 1, 8); bt = torch.tensor([[0, 1]], dtype=torch.int32)\n"
        "kernels.paged_attention_decode(torch.randn(1, 2, 8), kc, kc, torch.tensor([5]), bt, 0.3)\n"
        "assert 'triton' not in sys.modules, 'triton imported on a CPU-only path'\n"
    )
    done = _run(code)
    assert done.returncode == 0, done.stderr


def test_hearth_kernels_is_read_once_and_checked() -> None:
    done = _run("from kernels import _dispatch; print(_dispatch.MODE)", HEARTH_KERNELS="reference")
    assert done.returncode == 0 and done.stdout.strip() == "reference", done.stderr
    done = _run("import kernels", HEARTH_KERNELS="fast")
    assert done.returncode != 0 and "HEARTH_KERNELS='fast'" in done.stderr


def test_backend_per_device_and_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu, meta = torch.empty(1), torch.empty(1, device="meta")
    assert _dispatch.backend(cpu) is _dispatch.Backend.CPU and _dispatch.backend(meta) is _dispatch.Backend.REFERENCE
    assert _dispatch.backend(torch.device("cuda")) is _dispatch.Backend.TRITON
    monkeypatch.setattr(_dispatch, "MODE", "reference")
    assert _dispatch.backend(torch.device("cuda")) is _dispatch.Backend.REFERENCE
    monkeypatch.setattr(_dispatch, "MODE", "triton")
    assert _dispatch.use_triton(cpu)


def test_cpu_tensors_without_a_cpu_path_take_the_reference() -> None:
    x = torch.randn(4, 64)
    assert torch.equal(kernels.silu_and_mul(x), silu_and_mul_reference(x))


def test_dispatch_takes_the_cpu_path_unless_forced(monkeypatch: pytest.MonkeyPatch) -> None:
    decode = importlib.import_module("kernels.paged_attention_decode")
    calls: list[int] = []
    real = decode.paged_attention_decode_cpu
    monkeypatch.setattr(decode, "paged_attention_decode_cpu", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    k_cache, v_cache, tables = paged_cache([3, 20], 16, 1, 32, torch.float32, seed=9)
    q = randn(2, 3, 32, dtype=torch.float32, seed=10).cpu()
    k_cache, v_cache, tables = k_cache.cpu(), v_cache.cpu(), tables.cpu()
    lens = torch.tensor([3, 20], dtype=torch.int32)
    expected = paged_attention_decode_reference(q, k_cache, v_cache, lens, tables, 0.2)
    assert_close(kernels.paged_attention_decode(q, k_cache, v_cache, lens, tables, 0.2), expected)
    assert calls == [1]
    monkeypatch.setattr(_dispatch, "MODE", "reference")
    assert torch.equal(kernels.paged_attention_decode(q, k_cache, v_cache, lens, tables, 0.2), expected)
    assert calls == [1]


@pytest.mark.skipif(not GPU, reason="dispatch to Triton needs CUDA tensors")
def test_cuda_tensors_take_triton_unless_forced(monkeypatch: pytest.MonkeyPatch) -> None:
    rms = importlib.import_module("kernels.rms_norm")
    calls: list[int] = []
    real = rms.rms_norm_triton
    monkeypatch.setattr(rms, "rms_norm_triton", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    x = randn(4, 576, dtype=torch.bfloat16, seed=71)
    w = randn(576, dtype=torch.bfloat16, seed=72)
    assert x.device.type == DEVICE.type == "cuda"  # x is on cuda:0, DEVICE is the index-less cuda
    assert_close(kernels.rms_norm(x, w, 1e-6), rms_norm_reference(x, w, 1e-6))
    assert calls == [1]
    monkeypatch.setattr(_dispatch, "MODE", "reference")
    assert torch.equal(kernels.rms_norm(x, w, 1e-6), rms_norm_reference(x, w, 1e-6))
    assert calls == [1]


def test_public_names_are_the_dispatch_functions() -> None:
    # kernels/<op>.py is named like its op: the package must end up holding the function, not the module
    for name in kernels.__all__:
        assert not isinstance(getattr(kernels, name), types.ModuleType), name
        assert callable(getattr(kernels, name)), name
    for name in ("rms_norm", "silu_and_mul", "store_kvcache", "paged_attention_decode", "paged_attention_prefill"):
        assert isinstance(sys.modules[f"kernels.{name}"], types.ModuleType)
