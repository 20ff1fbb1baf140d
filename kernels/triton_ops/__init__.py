"""The Triton implementations, one module per op. A subpackage on purpose: a module kernels/rms_norm.py would,
once imported, replace the function `kernels.rms_norm` on the package with the module. Import these lazily (only
kernels/ops.py on CUDA, tests and benchmarks): importing triton costs ~1 s and CPU workers never need it."""
