import os
import subprocess
import sys

import pytest
import torch
from kernel_testing import DEVICE, GPU, assert_close, randn

import kernels
from kernels import reference


def test_cpu_process_never_imports_triton() -> None:
    # the CPU worker runs every op through the dispatch without triton in the process
    code = (
        "import sys, torch, kernels\n"
        "x = torch.randn(3, 8)\n"
        "kernels.rms_norm(x, torch.ones(8), 1e-6); kernels.add_rms_norm(x, x, torch.ones(8), 1e-6)\n"
        "kernels.silu_and_mul(x)\n"
        "kernels.top_k_top_p_min_p_mask(x, torch.zeros(3, dtype=torch.long), torch.ones(3), torch.zeros(3))\n"
        "assert 'triton' not in sys.modules, 'triton imported on a CPU-only path'\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    done = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_cpu_tensors_take_the_reference() -> None:
    x = torch.randn(4, 64)
    w = torch.randn(64)
    assert torch.equal(kernels.rms_norm(x, w, 1e-6), reference.rms_norm(x, w, 1e-6))


@pytest.mark.skipif(not GPU, reason="dispatch to Triton needs CUDA tensors")
def test_cuda_tensors_take_triton_unless_forced(monkeypatch: pytest.MonkeyPatch) -> None:
    import kernels.triton_ops.rms_norm as triton_rms_norm

    calls: list[int] = []
    real = triton_rms_norm.rms_norm
    monkeypatch.setattr(triton_rms_norm, "rms_norm", lambda *a: calls.append(1) or real(*a))
    x = randn(4, 576, dtype=torch.bfloat16, seed=71)
    w = randn(576, dtype=torch.bfloat16, seed=72)
    assert x.device.type == DEVICE.type == "cuda"  # x is on cuda:0, DEVICE is the index-less cuda
    assert_close(kernels.rms_norm(x, w, 1e-6), reference.rms_norm(x, w, 1e-6))
    assert calls == [1]
    monkeypatch.setenv("HEARTH_KERNELS", "reference")
    assert torch.equal(kernels.rms_norm(x, w, 1e-6), reference.rms_norm(x, w, 1e-6))
    assert calls == [1]


def test_triton_modules_do_not_shadow_the_public_ops() -> None:
    # a submodule named like an op would replace kernels.<op> on the package once imported
    import importlib
    import pkgutil
    import types

    import kernels.triton_ops

    for info in pkgutil.iter_modules(kernels.triton_ops.__path__):
        importlib.import_module(f"kernels.triton_ops.{info.name}")
    for name in kernels.__all__:
        assert not isinstance(getattr(kernels, name), types.ModuleType), name
