"""Compile each kernel for sm_90 (cubin) in the configurations the wrappers launch for bf16 on an H100 and print
one JSON line per kernel with its resource usage. Run in a fresh process by test_sm90_compile.py: under
TRITON_INTERPRET=1 the kernels are interpreted functions that cannot be compiled."""

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

os.environ.pop("TRITON_INTERPRET", None)
os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")

import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.backends.nvidia import compiler as nvidia  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

# `import kernels.rms_norm as m` would give the dispatch function that kernels/__init__ re-exports: take the modules
decode, prefill, rms_norm, rotary, sampling, silu, store = (
    importlib.import_module(f"kernels.{op}")
    for op in ("paged_attention_decode", "paged_attention_prefill", "rms_norm", "rotary", "top_k_top_p_min_p_mask",
               "silu_and_mul", "store_kvcache")
)  # fmt: skip
BF16_ATTN = {"q_ptr": "*bf16", "kc_ptr": "*bf16", "vc_ptr": "*bf16", "out_ptr": "*bf16", "seq_lens_ptr": "*i32",
             "bt_ptr": "*i32", "cu_ptr": "*i32", "part_out_ptr": "*fp32", "part_lse_ptr": "*fp32"}  # fmt: skip
# Attention without the window / soft-cap options, as the wrappers launch it for Llama-family models (the options
# are constexprs: an unset one would compile as a runtime int and take both branches).
PLAIN = {"WINDOW": False, "SOFT_CAP": False}
F32_ATTN = {**BF16_ATTN, "q_ptr": "*fp32", "kc_ptr": "*fp32", "vc_ptr": "*fp32", "out_ptr": "*fp32"}
# the configurations the wrappers launch (launch_config / num_warps_for there):
# (name, jit function, pointer argument types, constexprs, num_warps, num_stages)
CONFIGS = [
    ("add_rms_norm 4096", rms_norm._rms_norm_kernel, {}, {"HAS_RESIDUAL": True, "BLOCK": 4096}, 8, 3),
    ("silu_and_mul", silu._silu_and_mul_kernel, {}, {"BLOCK": 1024}, 4, 3),
    ("rotary 32/8x128", rotary._rotary_kernel, {"pos_ptr": "*i64", "cs_ptr": "*fp32"},
     {"BLOCK_HQ": 32, "BLOCK_HK": 8, "BLOCK_HALF": 64}, 4, 3),
    ("store_kvcache 8x128", store._store_kvcache_kernel, {"slot_ptr": "*i64"}, {"BLOCK_H": 8, "BLOCK_D": 128}, 4, 3),
    ("decode GQA4 x128 split", decode._paged_attention_decode_kernel, BF16_ATTN,
     {"GROUP_PAD": 16, "BLOCK_N": 64, "BLOCK_D": 128, "SPLIT": True, "UPCAST": False, "IEEE": False, **PLAIN}, 4, 2),
    ("decode GQA3 x64", decode._paged_attention_decode_kernel, BF16_ATTN,
     {"GROUP_PAD": 16, "BLOCK_N": 64, "BLOCK_D": 64, "SPLIT": False, "UPCAST": False, "IEEE": False, **PLAIN}, 4, 2),
    ("decode fp32 ieee", decode._paged_attention_decode_kernel, F32_ATTN,
     {"GROUP_PAD": 16, "BLOCK_N": 64, "BLOCK_D": 128, "SPLIT": False, "UPCAST": False, "IEEE": True, **PLAIN}, 8, 2),
    ("combine splits", decode._combine_splits_kernel, BF16_ATTN, {"SPLIT_PAD": 8, "BLOCK_D": 128}, 4, 3),
    ("prefill GQA4 x128", prefill._paged_attention_prefill_kernel, BF16_ATTN,
     {"GROUP_PAD": 4, "BLOCK_Q": 16, "BLOCK_N": 64, "BLOCK_D": 128, "UPCAST": False, "IEEE": False, **PLAIN}, 8, 3),
    ("prefill GQA8 x128", prefill._paged_attention_prefill_kernel, BF16_ATTN,
     {"GROUP_PAD": 8, "BLOCK_Q": 8, "BLOCK_N": 64, "BLOCK_D": 128, "UPCAST": False, "IEEE": False, **PLAIN}, 8, 3),
    ("prefill MHA x128", prefill._paged_attention_prefill_kernel, BF16_ATTN,
     {"GROUP_PAD": 1, "BLOCK_Q": 64, "BLOCK_N": 64, "BLOCK_D": 128, "UPCAST": False, "IEEE": False, **PLAIN}, 8, 3),
    ("prefill MHA x64", prefill._paged_attention_prefill_kernel, BF16_ATTN,
     {"GROUP_PAD": 1, "BLOCK_Q": 64, "BLOCK_N": 64, "BLOCK_D": 64, "UPCAST": False, "IEEE": False, **PLAIN}, 4, 2),
    ("prefill GQA2 x128 window softcap", prefill._paged_attention_prefill_kernel, BF16_ATTN,
     {"GROUP_PAD": 2, "BLOCK_Q": 32, "BLOCK_N": 64, "BLOCK_D": 128, "UPCAST": False, "IEEE": False, "WINDOW": True,
      "SOFT_CAP": True}, 8, 3),
    ("decode GQA2 x128 window softcap", decode._paged_attention_decode_kernel, BF16_ATTN,
     {"GROUP_PAD": 16, "BLOCK_N": 64, "BLOCK_D": 128, "SPLIT": True, "UPCAST": False, "IEEE": False, "WINDOW": True,
      "SOFT_CAP": True}, 4, 2),
    # fp32 (IEEE dots, launch_config's 64×32 tiles, 8 warps). Its former 32×32 tiles crashed Triton 3.6 on an H200;
    # Triton 3.9 here compiled them, so this entry would not have caught that (it checks the config compiles).
    ("prefill fp32 ieee GQA4 x128", prefill._paged_attention_prefill_kernel, F32_ATTN,
     {"GROUP_PAD": 4, "BLOCK_Q": 16, "BLOCK_N": 32, "BLOCK_D": 128, "UPCAST": False, "IEEE": True, **PLAIN}, 8, 2),
    ("prefill fp32 ieee MHA x64", prefill._paged_attention_prefill_kernel, F32_ATTN,
     {"GROUP_PAD": 1, "BLOCK_Q": 64, "BLOCK_N": 32, "BLOCK_D": 64, "UPCAST": False, "IEEE": True, **PLAIN}, 8, 2),
    ("top_k_top_p_min_p", sampling._top_k_top_p_min_p_kernel,
     {"logits_ptr": "*fp32", "out_ptr": "*fp32", "top_k_ptr": "*i64", "top_p_ptr": "*fp32", "min_p_ptr": "*fp32",
      "log_min_p_ptr": "*fp32"}, {"BLOCK": 2048}, 8, 3),
]  # fmt: skip
FLOATS = {"eps", "scale_log2", "soft_cap_log2"}


def _signature(fn: object, types: dict[str, str], constexprs: dict[str, object]) -> dict[str, str]:
    sig = {}
    for name in fn.arg_names:  # type: ignore[attr-defined]
        if name in constexprs:
            sig[name] = "constexpr"
        elif name.endswith("_ptr"):
            sig[name] = types.get(name, "*bf16")
        else:
            sig[name] = "fp32" if name in FLOATS else "i32"
    return sig


def compile_one(config: tuple, workdir: Path) -> dict[str, object]:
    name, fn, types, constexprs, num_warps, num_stages = config
    try:
        src = ASTSource(fn, _signature(fn, types, constexprs), constexprs=constexprs)
        compiled = triton.compile(src, target=GPUTarget("cuda", 90, 32),
                                  options={"num_warps": num_warps, "num_stages": num_stages})  # fmt: skip
    except Exception as exc:  # reported, not raised: the test names the kernel that failed
        return {"name": name, "error": f"{type(exc).__name__}: {exc}"[:2000]}
    cubin = workdir / "k.cubin"
    cubin.write_bytes(compiled.asm["cubin"])
    tool = Path(os.path.dirname(nvidia.__file__)) / "bin" / "cuobjdump"
    report = subprocess.run([str(tool), "--dump-resource-usage", str(cubin)], capture_output=True, text=True).stdout
    usage = next((line.strip() for line in report.splitlines() if "REG:" in line), report)
    return {"name": name, "usage": usage, "shared": compiled.metadata.shared}


if __name__ == "__main__":
    for config in CONFIGS:
        print(json.dumps(compile_one(config, Path(sys.argv[1]))), flush=True)
