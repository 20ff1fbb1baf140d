from dataclasses import dataclass


@dataclass(slots=True)
class EngineConfig:
    """Everything one engine needs. Fields left at None are derived from the model or the memory budget."""

    model: str  # path to a .gguf file or an HF folder
    # bf16 measured faster than fp32 on this 2-core EPYC (avx512_bf16), interleaved A/B, 1 thread, decode steps:
    # batch 1 18.5 vs 15.5 tok/s, batch 8 22.4 vs 17.1, batch 32 40.2 vs 30.3; bench/engine.py re-measures it.
    dtype: str = "bfloat16"  # "float32" | "bfloat16" | "float16"
    # weight-only "int8" | "int4" on CPU (workers/models/quant_linear.py); None: dense. The worker's CLI picks the
    # measured fastest format by default (workers/models/weight_format.py)
    quantize: str | None = None
    device: str = "cpu"
    block_size: int = 16  # tokens per KV block
    num_kv_blocks: int | None = None  # None: kv_cache_memory_bytes / bytes per block
    kv_cache_memory_bytes: int = 1 << 30  # SmolLM2-135M fp32: 45 KiB per token, so 1 GiB holds ~23k tokens
    max_num_seqs: int = 64  # running sequences at once
    max_num_batched_tokens: int = 512  # token budget per step (prefill chunks + decodes)
    max_model_len: int | None = None  # None: the model's context (capped by the KV pool)
    enable_prefix_caching: bool = True
    max_loras: int = 4  # distinct adapters in one step
    max_cpu_loras: int = 16  # adapters kept in host memory (LRU) above the max_loras device slots
    max_lora_rank: int = 64  # width of a device slot; higher-rank adapters are refused
    adapter_store: str | None = None  # folder of validated adapters `<store>/<uid>/` (None: adapters added in code)
    seed: int = 0  # seeds the sampler of requests without their own seed
    # Speculative decoding (workers/engine/drafting.py): a decode step may verify up to this many draft tokens of a
    # sequence (its `prediction`, or prompt lookup when ngram_speculation); 0 turns speculation off.
    num_speculative_tokens: int = 32
    ngram_speculation: bool = True
    # Prompt lookup drafts only while at most this many sequences decode: a large batch is compute-bound, where a
    # kept draft token costs what decoding it later would and a rejected one is waste (predictions always draft).
    ngram_max_batch: int = 8

    def __post_init__(self) -> None:
        if self.block_size < 1 or self.block_size & (self.block_size - 1):
            raise ValueError(f"block_size must be a power of two, got {self.block_size}")
        if self.max_num_seqs < 1:
            raise ValueError("max_num_seqs must be >= 1")
        if self.max_num_batched_tokens < 1:
            raise ValueError("max_num_batched_tokens must be >= 1")
        if self.num_kv_blocks is not None and self.num_kv_blocks < 1:
            raise ValueError("num_kv_blocks must be >= 1")
        if self.num_speculative_tokens < 0:
            raise ValueError("num_speculative_tokens must be >= 0")
        if self.quantize not in (None, "int8", "int4"):
            raise ValueError(f"quantize must be int8, int4 or None, got {self.quantize!r}")
        if self.dtype not in ("float32", "bfloat16", "float16"):
            raise ValueError(f"dtype must be float32, bfloat16 or float16, got {self.dtype!r}")
