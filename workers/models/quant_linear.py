"""Weight-only quantized linears for CPU on torch's own kernels (no native code of ours):

    int8  per output channel, symmetric:       w = q * scale            aten._weight_int8pack_mm
    int4  per group of 32 inputs, asymmetric:  w = (q - 8) * scale + zero   aten._weight_int4pack_mm_for_cpu

Both kernels take bf16 activations here (their fp32 route is a slow fallback: 1536x576 at 64 tokens ~25x slower
than bf16 on this EPYC); the output is cast back to the activation dtype. `QuantLinear` replaces a `Linear` (same
slices and LoRA hook), `QuantEmbedding` replaces the embedding table and the (tied) output layer: lookups
dequantize the rows they need, logits come from the quantized matmul.

Codes are built from a dense weight (`quantize_int8` / `quantize_int4`, HF folders) or straight from a GGUF file's
blocks (workers/loader/gguf_quant.py), then packed once.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from workers.models.layers import Linear, LoraHook

QUANT_MODES = ("int8", "int4")
INT4_GROUP = 32
ACT_DTYPE = torch.bfloat16  # what the int kernels read and write
DENSE_ROWS = 64  # inputs with this many rows or more take the dequantize + fp32 GEMM route (see _Packed)


class QuantizationError(ValueError):
    """A weight that the quantized kernels cannot take (shape, mode)."""


@dataclass(slots=True)
class Int8Codes:
    codes: torch.Tensor  # [N, K] int8
    scale: torch.Tensor  # [N] fp32

    def dequantize(self) -> torch.Tensor:  # -> [N, K] fp32
        return self.codes.float() * self.scale[:, None]


@dataclass(slots=True)
class Int4Codes:
    codes: torch.Tensor  # [N, K] uint8 in 0..15
    scale: torch.Tensor  # [N, K / 32] fp32
    zero: torch.Tensor  # [N, K / 32] fp32: the value of code 8

    def dequantize(self) -> torch.Tensor:  # -> [N, K] fp32
        n, k = self.codes.shape
        q = self.codes.float().view(n, k // INT4_GROUP, INT4_GROUP) - 8
        return (q * self.scale[..., None] + self.zero[..., None]).view(n, k)


Codes = Int8Codes | Int4Codes


def cat_codes(parts: list[Codes]) -> Codes:
    """Codes of row slices (q, k, v of a merged projection) -> one weight's codes, rows in order."""
    if all(isinstance(p, Int8Codes) for p in parts):
        return Int8Codes(torch.cat([p.codes for p in parts]), torch.cat([p.scale for p in parts]))  # type: ignore
    if all(isinstance(p, Int4Codes) for p in parts):
        return Int4Codes(*(torch.cat([getattr(p, f) for p in parts]) for f in ("codes", "scale", "zero")))
    raise QuantizationError("the slices of one projection were quantized in different modes")


def quantize_int8(w: torch.Tensor) -> Int8Codes:
    # w [N, K] -> per-row symmetric int8 (round to nearest)
    w = w.float()
    scale = (w.abs().amax(dim=1) / 127).clamp(min=1e-12)
    return Int8Codes(torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8), scale)


def quantize_int4(w: torch.Tensor) -> Int4Codes:
    # w [N, K] -> per-32-group asymmetric int4 over [min, max] (round to nearest), as llama.cpp's Q4_1
    n, k = w.shape
    if k % INT4_GROUP:
        raise QuantizationError(f"int4 needs the input size to be a multiple of {INT4_GROUP}, got {k}")
    g = w.float().view(n, k // INT4_GROUP, INT4_GROUP)
    lo, hi = g.amin(-1), g.amax(-1)
    scale = ((hi - lo) / 15).clamp(min=1e-12)
    codes = torch.round((g - lo[..., None]) / scale[..., None]).clamp(0, 15).to(torch.uint8).view(n, k)
    return Int4Codes(codes, scale, lo + 8 * scale)


def quantize(w: torch.Tensor, mode: str) -> Codes:
    if mode == "int8":
        return quantize_int8(w)
    if mode == "int4":
        return quantize_int4(w)
    raise QuantizationError(f"quantization must be one of {', '.join(QUANT_MODES)}, got {mode!r}")


class _Packed(nn.Module):
    """One quantized [N, K] weight in the kernel's layout; `mm` is x [T, K] -> [T, N] in x's dtype.

    Long inputs (prefill chunks of DENSE_ROWS tokens or more) dequantize the weight and run one fp32 GEMM instead:
    torch's int kernels are built for few rows (measured here, 1 thread, [3072, 576] at 512 tokens: int8 kernel
    47 ms, int4 54 ms, dequantize + fp32 GEMM 25 / 32 ms, dense fp32 25 ms, dense bf16 222 ms). int4 keeps its codes
    a second time for that, two per byte in a plain layout (the kernel's packing is blocked): +0.5 byte per weight
    in memory, never read by a decode step.
    """

    def __init__(self, codes: Codes) -> None:
        super().__init__()
        n, k = codes.codes.shape
        self.out_features, self.in_features = n, k
        if isinstance(codes, Int8Codes):
            self.mode = "int8"
            self.register_buffer("qweight", codes.codes.contiguous())  # [N, K] int8
            self.register_buffer("scales", codes.scale.to(ACT_DTYPE))  # [N]
            self.register_buffer("dense_scale", codes.scale.float().contiguous())  # [N] fp32
        else:
            self.mode = "int4"
            # the CPU packing takes int32 codes [N, K]; scales_and_zeros is [K / 32, N, 2]
            packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(codes.codes.to(torch.int32), 1)
            self.register_buffer("qweight", packed)
            sz = torch.stack([codes.scale, codes.zero], dim=-1).transpose(0, 1).contiguous()
            self.register_buffer("scales", sz.to(ACT_DTYPE))
            c = codes.codes.to(torch.uint8)
            self.register_buffer("nibbles", (c[:, 0::2] | (c[:, 1::2] << 4)).contiguous())  # [N, K / 2]
            self.register_buffer("dense_scale", codes.scale.float().contiguous())  # [N, K / 32]
            self.register_buffer("dense_zero", codes.zero.float().contiguous())

    def dense_weight(self) -> torch.Tensor:
        """The weight dequantized, [N, K] fp32 (the values the int kernel multiplies by, before bf16 rounding)."""
        if self.mode == "int8":
            return self.qweight.float().mul_(self.dense_scale[:, None])
        n, k = self.out_features, self.in_features
        q = torch.stack([self.nibbles & 15, self.nibbles >> 4], dim=-1).view(n, k // INT4_GROUP, INT4_GROUP)
        w = q.float().sub_(8).mul_(self.dense_scale[..., None]).add_(self.dense_zero[..., None])
        return w.view(n, k)

    def mm(self, x: torch.Tensor) -> torch.Tensor:
        # Decode steps are launch-bound (~2 us per op here, even a no-op .to): skip the reshapes and casts that
        # a [T, K] bf16 input doesn't need
        xb = x if x.dim() == 2 else x.reshape(-1, self.in_features)
        if xb.shape[0] >= DENSE_ROWS:
            y = torch.nn.functional.linear(xb.float(), self.dense_weight())
        else:
            if xb.dtype != ACT_DTYPE:
                xb = xb.to(ACT_DTYPE)
            if self.mode == "int8":
                y = torch.ops.aten._weight_int8pack_mm(xb, self.qweight, self.scales)
            else:
                y = torch.ops.aten._weight_int4pack_mm_for_cpu(xb, self.qweight, INT4_GROUP, self.scales)
        if y.dtype != x.dtype:
            y = y.to(x.dtype)
        return y if x.dim() == 2 else y.view(*x.shape[:-1], self.out_features)

    def weight_bytes(self) -> int:
        return self.qweight.nbytes + self.scales.nbytes


class QuantLinear(nn.Module):
    """A `Linear` whose weight is int8 or int4 (same slices, names and LoRA hook)."""

    def __init__(self, linear: Linear, codes: Codes) -> None:
        super().__init__()
        if tuple(codes.codes.shape) != tuple(linear.weight.shape):
            raise QuantizationError(f"codes {tuple(codes.codes.shape)} != weight {tuple(linear.weight.shape)}")
        self.output_sizes = linear.output_sizes
        self.names = linear.names
        self.layer_idx = linear.layer_idx
        self.packed = _Packed(codes)
        self.bias = linear.bias

    slice_of = Linear.slice_of

    def forward(self, x: torch.Tensor, lora: LoraHook | None = None) -> torch.Tensor:
        y = self.packed.mm(x)
        if self.bias is not None:
            y = y + self.bias
        if lora is not None:
            y = lora.add_delta(self.layer_idx, self.names, x, y)
        return y


class QuantEmbedding(nn.Module):
    """The token table quantized once and used both ways: `forward` looks rows up (dequantized, exact), `project`
    computes logits with the quantized kernel (the tied output layer)."""

    def __init__(self, codes: Codes, dtype: torch.dtype) -> None:
        super().__init__()
        self.dtype = dtype
        self.packed = _Packed(codes)
        # the lookup reads a few rows: keep the codes in a gather-friendly layout (int4: one code per byte)
        self.register_buffer("rows", codes.codes.contiguous())
        self.register_buffer("row_scale", codes.scale.contiguous())
        self.register_buffer("row_zero", codes.zero.contiguous() if isinstance(codes, Int4Codes) else None)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        # [T] -> [T, H]
        q = self.rows[input_ids]
        if self.row_zero is None:
            return (q.float() * self.row_scale[input_ids][:, None]).to(self.dtype)
        t, h = q.shape
        g = q.float().view(t, h // INT4_GROUP, INT4_GROUP) - 8
        w = g * self.row_scale[input_ids][..., None] + self.row_zero[input_ids][..., None]
        return w.view(t, h).to(self.dtype)

    def project(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.packed.mm(hidden)  # [N, H] -> [N, V]


def quantize_model(model: nn.Module, mode: str) -> None:
    """Replace, in place, every `Linear` and the embedding/output table(s) by their quantized versions."""
    if mode not in QUANT_MODES:
        raise QuantizationError(f"quantization must be one of {', '.join(QUANT_MODES)}, got {mode!r}")
    replace_linears(model, lambda name, linear: quantize(linear.weight.detach(), mode))
    inner = model.model  # type: ignore[attr-defined]
    dtype = inner.norm.weight.dtype
    tied = model.lm_head is inner.embed_tokens  # type: ignore[attr-defined]
    inner.embed_tokens = QuantEmbedding(quantize(inner.embed_tokens.weight.detach(), mode), dtype)
    lm_head = model.lm_head.weight.detach()  # type: ignore[union-attr]
    model.lm_head = inner.embed_tokens if tied else QuantEmbedding(quantize(lm_head, mode), dtype)


def replace_linears(model: nn.Module, codes_for: object) -> None:
    """Swap each `Linear` (named as in named_modules) for a QuantLinear with `codes_for(name, linear)`."""
    for name, module in list(model.named_modules()):
        if isinstance(module, Linear):
            parent_name, _, attr = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, attr, QuantLinear(module, codes_for(name, module)))  # type: ignore[operator]


def weight_bytes(model: nn.Module) -> int:
    """Bytes of weights one decode step reads: quantized ones as stored, dense parameters at their size; an untied
    embedding table is only looked up (a few rows), so it does not count."""
    total = sum(m.weight_bytes() for m in model.modules() if isinstance(m, _Packed))
    inner = model.model  # type: ignore[attr-defined]
    untied = model.lm_head is not inner.embed_tokens  # type: ignore[attr-defined]
    for name, p in model.named_parameters():
        if not (untied and name.startswith("model.embed_tokens.")):
            total += p.nbytes
    return total
