"""RoPE tables with the scalings checkpoints use: linear, dynamic NTK, YaRN, LongRoPE and Llama 3's (HF's formula,
or GGUF's per-frequency factors). Built once at
load time (no kernel), in the layout kernels.apply_rotary reads: [positions, rotary_dim] fp32, cos | sin halves.

The formulas follow transformers' modeling_rope_utils. Two scalings depend on the sequence length in transformers,
and a paged cache can't re-rotate keys already stored, so here each is fixed for the whole served context (vLLM's
choice): dynamic NTK uses the base of a full-length sequence, LongRoPE its long factors once the context exceeds the
original one. Both equal transformers' output for a sequence of that length.
"""

import math
from typing import Any

import torch


def rope_cos_sin(max_positions: int, rotary_dim: int, theta: float, scaling: dict[str, Any] | None) -> torch.Tensor:
    # -> [max_positions, rotary_dim] fp32: cos * attention_factor | sin * attention_factor
    inv_freq, attention_factor = inverse_frequencies(rotary_dim, theta, scaling, max_positions)
    freqs = torch.outer(torch.arange(max_positions, dtype=torch.float64), inv_freq)
    return (torch.cat([freqs.cos(), freqs.sin()], dim=-1) * attention_factor).float()


def _plain(dim: int, base: float) -> torch.Tensor:
    return 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim))


def inverse_frequencies(
    dim: int, base: float, scaling: dict[str, Any] | None, max_positions: int
) -> tuple[torch.Tensor, float]:
    """-> (inv_freq [dim / 2] fp64, attention factor applied to cos and sin)."""
    kind = (scaling or {}).get("rope_type", "default")
    if scaling is None or kind == "default":
        return _plain(dim, base), 1.0
    factor = float(scaling.get("factor") or 1.0)
    original = int(scaling["original_max_position_embeddings"])
    if kind == "linear":
        return _plain(dim, base) / factor, 1.0
    if kind == "dynamic":
        seq_len = max(max_positions, original)
        base = base * ((factor * seq_len / original) - (factor - 1)) ** (dim / (dim - 2))
        return _plain(dim, base), 1.0
    if kind == "llama3":
        return _llama3(_plain(dim, base), scaling, factor, original), 1.0
    if kind == "freq_factors":  # GGUF's rope_freqs tensor: llama.cpp divides each frequency by its factor
        factors = torch.tensor(scaling["factors"], dtype=torch.float64)
        if factors.numel() != dim // 2:
            raise ValueError(f"rope_freqs has {factors.numel()} factors, rotary dim {dim} needs {dim // 2}")
        return _plain(dim, base) / factors, 1.0
    if kind == "yarn":
        return _yarn(dim, base, scaling, factor, original)
    if kind == "longrope":
        return _longrope(dim, base, scaling, original, max_positions)
    raise ValueError(f"rope scaling {kind!r} is not supported")  # ModelConfig refuses it before we get here


def _llama3(inv_freq: torch.Tensor, s: dict[str, Any], factor: float, original: int) -> torch.Tensor:
    low, high = float(s["low_freq_factor"]), float(s["high_freq_factor"])
    low_wavelen, high_wavelen = original / low, original / high
    wavelen = 2 * math.pi / inv_freq
    scaled = torch.where(wavelen > low_wavelen, inv_freq / factor, inv_freq)
    smooth = (original / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = (wavelen >= high_wavelen) & (wavelen <= low_wavelen)
    return torch.where(medium, smoothed, scaled)


def _yarn_mscale(scale: float, mscale: float = 1.0) -> float:
    return 1.0 if scale <= 1 else 0.1 * mscale * math.log(scale) + 1.0


def _yarn(dim: int, base: float, s: dict[str, Any], factor: float, original: int) -> tuple[torch.Tensor, float]:
    attention_factor = s.get("attention_factor")
    mscale, mscale_all_dim = s.get("mscale"), s.get("mscale_all_dim")
    if attention_factor is None:
        if mscale and mscale_all_dim:
            attention_factor = _yarn_mscale(factor, mscale) / _yarn_mscale(factor, mscale_all_dim)
        else:
            attention_factor = _yarn_mscale(factor)
    beta_fast, beta_slow = s.get("beta_fast") or 32, s.get("beta_slow") or 1

    def correction_dim(rotations: float) -> float:
        return (dim * math.log(original / (rotations * 2 * math.pi))) / (2 * math.log(base))

    low, high = correction_dim(beta_fast), correction_dim(beta_slow)
    if s.get("truncate", True):
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001  # transformers' guard against a zero-width ramp
    ramp = ((torch.arange(dim // 2, dtype=torch.float64) - low) / (high - low)).clamp(0, 1)
    extrapolation = 1 - ramp  # 1: keep the original frequency, 0: interpolate by factor
    inv = _plain(dim, base)
    return inv / factor * (1 - extrapolation) + inv * extrapolation, float(attention_factor)


def _longrope(
    dim: int, base: float, s: dict[str, Any], original: int, max_positions: int
) -> tuple[torch.Tensor, float]:
    factor = s.get("factor") or int(s["max_position_embeddings"]) / original
    attention_factor = s.get("attention_factor")
    if attention_factor is None:
        attention_factor = 1.0 if factor <= 1 else math.sqrt(1 + math.log(factor) / math.log(original))
    ext = s["long_factor"] if max_positions > original else s["short_factor"]
    if len(ext) != dim // 2:
        raise ValueError(f"longrope factors have {len(ext)} entries, rotary dim {dim} needs {dim // 2}")
    return _plain(dim, base) / torch.tensor(ext, dtype=torch.float64), float(attention_factor)
