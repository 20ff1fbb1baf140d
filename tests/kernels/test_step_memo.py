import torch

from kernels import forward_scope
from kernels._step_memo import memo


def test_memo_caches_only_inside_a_forward_scope_and_by_tensor_identity() -> None:
    calls: list[int] = []

    def build() -> int:
        calls.append(1)
        return len(calls)

    a, b = torch.zeros(3), torch.zeros(3)
    assert memo("x", (a,), None, build) == 1 and memo("x", (a,), None, build) == 2  # no scope: no caching
    with forward_scope():
        assert memo("x", (a,), None, build) == 3
        assert memo("x", (a,), None, build) == 3  # same tensor object: cached
        assert memo("x", (b,), None, build) == 4  # equal values, other tensor: rebuilt
        assert memo("x", (b,), "window", build) == 5  # another `extra` is another entry...
        assert memo("x", (b,), None, build) == 4  # ...kept beside the first
        with forward_scope():  # a nested forward starts empty and restores the outer one when it ends
            assert memo("x", (b,), None, build) == 6
        assert memo("x", (b,), None, build) == 4
    with forward_scope():  # a new forward never sees the last one's entries
        assert memo("x", (b,), None, build) == 7
