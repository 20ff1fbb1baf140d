#!/usr/bin/env bash
# One call on a lent GPU machine (≤ 8 min): the kernel tests compiled for the GPU, the kernel benchmarks, and the
# engine benchmark with the Triton kernels vs HEARTH_KERNELS=reference. Run from the repository root:
#     bash bench/gpu_check.sh
# There: python3 is /opt/torch/.venv (torch, triton, pytest; no gguf/django/fastapi). pytest runs with
# `-c /dev/null` so pyproject's addopts (-p devstack.pytest_plugin: embedded Postgres) and pytest-django stay out.
# Every step has its own timeout and a failing step never stops the next. Results and the log land in $OUT.
set -u
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
OUT=${OUT:-/tmp/hearth_gpu_check}
mkdir -p "$OUT"
LOG="$OUT/gpu_check.log"
: >"$LOG"
ENGINE_ARGS=${ENGINE_BENCH_ARGS:---device cuda --random-weights --dtype bfloat16 --no-hf}
BUDGET=${GPU_CHECK_BUDGET_S:-465}  # the whole script, seconds; each step's timeout is capped by what is left
PYTEST_FLAGS=(-q --tb=short -p no:cacheprovider -c /dev/null --rootdir . -o pythonpath=.)

step() {  # step <name> <seconds> <command...>
  local name=$1 secs=$2
  shift 2
  local left=$((BUDGET - SECONDS))
  if [ "$left" -lt 15 ]; then
    echo "=== $name: skipped, ${left}s of the budget left ===" | tee -a "$LOG"
    SUMMARY+=("$name: skipped (budget)")
    return
  fi
  [ "$secs" -gt "$left" ] && secs=$left
  echo "=== $name (timeout ${secs}s) ===" | tee -a "$LOG"
  local t0=$SECONDS
  timeout --kill-after=10 "$secs" "$@" 2>&1 | tee -a "$LOG"
  local rc=${PIPESTATUS[0]}
  echo "=== $name: exit $rc in $((SECONDS - t0))s ===" | tee -a "$LOG"
  SUMMARY+=("$name: exit $rc, $((SECONDS - t0))s")
}
SUMMARY=()

if command -v nvidia-smi >/dev/null && nvidia-smi >/dev/null 2>&1; then
  step "nvidia-smi" 20 bash -c "nvidia-smi | head -n 15"
  step "versions" 60 "$PY" -c "import sys, torch, triton; print(sys.version.split()[0], torch.__version__, triton.__version__, torch.cuda.get_device_name(0))"
  step "kernel tests on the GPU" 200 env HEARTH_GPU_TESTS=1 "$PY" -m pytest tests/kernels "${PYTEST_FLAGS[@]}"
  step "kernel benchmarks" 120 "$PY" bench/kernels.py
  if [ -f bench/engine.py ]; then
    # the same short workload both ways first (the reference ops loop over sequences in Python), then the full one
    step "engine bench --quick, Triton kernels" 45 "$PY" bench/engine.py $ENGINE_ARGS --quick
    step "engine bench --quick, torch reference ops" 60 env HEARTH_KERNELS=reference "$PY" bench/engine.py $ENGINE_ARGS --quick
    step "engine bench full, Triton kernels" 120 "$PY" bench/engine.py $ENGINE_ARGS
    [ -f bench/RESULTS.md ] && cp bench/RESULTS.md "$OUT/RESULTS.engine-triton-full.md"
  else
    echo "bench/engine.py not present: engine step skipped" | tee -a "$LOG"
  fi
else
  # no GPU: prove the same pytest flags work, in Triton's interpreter, on a quick subset
  echo "no GPU (nvidia-smi missing or failing): running a subset of the kernel tests in the interpreter" | tee -a "$LOG"
  step "kernel tests, interpreter subset" 300 "$PY" -m pytest tests/kernels "${PYTEST_FLAGS[@]}" -k "rms_norm or dispatch or store_kvcache"
  step "kernel benchmarks (refuses without CUDA)" 60 "$PY" bench/kernels.py
fi

[ -f bench/RESULTS.md ] && cp bench/RESULTS.md "$OUT/RESULTS.md"
echo "=== summary ===" | tee -a "$LOG"
printf '%s\n' "${SUMMARY[@]}" | tee -a "$LOG"
exit 0
