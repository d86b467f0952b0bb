"""The weight formats ``quantize:<format>`` can deploy a model in, each through its own library.

Not a plugin: the format table of the ``quantize`` attack (``attacks/quantize.py``). Every format
maps one weight matrix ``(out, in)`` (float32) to its dequantized values and, per weight, the *bin
width* of the format there (the distance between the two representable values around the weight),
which the attack needs for its update-versus-bin statistics. A matrix a format cannot take (rows
not a multiple of its block) raises :class:`Unquantizable`; the attack keeps it in full precision,
as llama.cpp does with tensors whose rows do not fit the block (it falls back to a wider type).

GGUF (``gguf`` package, gguf-py's numpy port of llama.cpp ``ggml-quants.c``; blocks run along a row,
i.e. over input columns)::

    q8_0   32 values, fp16 scale d = max|x|/127,      x = d*q,      q in -127..127
    q4_0   32 values, fp16 d = x_absmax_signed/-8,    x = d*q,      q in -8..7
    q5_0   32 values, fp16 d = x_absmax_signed/-16,   x = d*q,      q in -16..15
    q4_1   32 values, fp16 d = (max-min)/15, m = min, x = d*q + m,  q in 0..15
    q5_1   32 values, fp16 d = (max-min)/31, m = min, x = d*q + m,  q in 0..31
    tq1_0, tq2_0  256 values, fp16 d = max|x|, x = d*q, q in {-1, 0, 1} (ternary, BitNet b1.58)
    mxfp4  32 values, shared power-of-two scale (e8m0), x = d*e2m1 (OCP microscaling spec)
    f16, bf16  every weight cast (round to nearest even); the bin width is the format's spacing

gguf-py has no numpy quantizer for the k-quants (q2_k..q6_k) and i-quants: those only dequantize
there (llama.cpp's C ``llama-quantize`` makes them), so they are listed as not supported.

optimum-quanto (https://github.com/huggingface/optimum-quanto), through its own ``QLinear`` so its
rules choose the layout: ``quanto-int8`` symmetric per output channel, scale = max|x|/127;
``quanto-int4`` / ``quanto-int2`` affine, scale = (max-min)/(2^b-1) with a float shift, groups of
128 input columns (quanto steps down by 32 to a divisor of the row, else whole channels).

torchao (https://github.com/pytorch/ao): ``torchao-int8`` is ``Int8WeightOnlyConfig`` (symmetric per
row, scale = max|x|/127.5, q in -128..127); ``torchao-int4`` is ``IntxWeightOnlyConfig(int4,
PerGroup(32))`` (symmetric, scale = max|x|/7.5 per 32 columns, q in -8..7), torchao's CPU int4 path:
its ``Int4WeightOnlyConfig`` has no CPU kernel in torchao 0.18 (see NOT_HERE).

bitsandbytes (Dettmers et al. 2023, QLoRA, arXiv 2305.14314): ``bnb-nf4`` / ``bnb-fp4`` through
``bitsandbytes.functional.quantize_4bit``, blocks of 64 consecutive weights (of the flattened
matrix), absmax scale per block, 16-value code (NormalFloat4 or FP4); no nested (double) quantization.

All of them are dequantized back to float32 and written into the model, so probes run unchanged
(the libraries' quantized modules are not kept: quanto's and torchao's run on CPU, but hooks and
probes that read ``.weight`` would see tensor subclasses).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from ..errors import UnlearnbenchError


class Unquantizable(ValueError):
    """This matrix does not fit the format (kept in full precision by the attack)."""


@dataclass(frozen=True)
class Format:
    name: str
    library: str  # the import the format needs ("" for none)
    extra: str  # the pip extra that installs it
    summary: str
    quantize: Callable[[torch.Tensor, int], tuple[torch.Tensor, torch.Tensor]]
    grouped: bool = False  # does group_size (> 0) change its layout?

    def available(self) -> bool:
        if not self.library:
            return True
        try:
            return importlib.util.find_spec(self.library) is not None
        except ModuleNotFoundError:  # a dotted name whose parent package is missing
            return False


def grid_gap(x: torch.Tensor, levels: torch.Tensor) -> torch.Tensor:
    """Width of the interval of the sorted grid ``levels`` that holds each ``x`` (values beyond the
    ends get the end interval's width)."""
    idx = torch.searchsorted(levels, x.contiguous(), right=True) - 1
    idx = idx.clamp(0, len(levels) - 2)
    return levels[idx + 1] - levels[idx]


# -- GGUF (gguf-py) -------------------------------------------------------------------------------


def _gguf(qname: str, scale_bytes: slice | None, signed_levels: tuple[float, ...] | None = None):
    """A GGUF type. ``scale_bytes``: where a block's fp16 scale d sits in its bytes (the bin width
    is |d|); ``signed_levels``: a non-uniform grid in units of d (MXFP4: d from the e8m0 byte)."""

    def run(m: torch.Tensor, group_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        import gguf
        import numpy as np

        qt = getattr(gguf.GGMLQuantizationType, qname, None)
        if qt is None or (qname not in ("F16", "BF16") and qt not in gguf.quants._type_traits):
            raise UnlearnbenchError(f"this gguf cannot quantize {qname}: pip install -U gguf")
        block, type_size = gguf.GGML_QUANT_SIZES[qt]
        if m.shape[1] % block:
            raise Unquantizable(f"{m.shape[1]} columns are not a multiple of {qname}'s block of {block}")
        a = m.detach().float().contiguous().numpy()
        raw = gguf.quants.quantize(a, qt)
        dq = torch.from_numpy(np.ascontiguousarray(gguf.quants.dequantize(raw, qt), dtype=np.float32))
        blocks = raw.reshape(-1, type_size)
        if signed_levels is not None:  # MXFP4
            d = torch.from_numpy(gguf.quants.MXFP4.e8m0_to_fp32_half(blocks[:, :1]).astype(np.float32))
            levels = torch.tensor(sorted(set(signed_levels)), dtype=torch.float32)
            x = m.float().reshape(-1, block) / torch.where(d > 0, d, torch.ones_like(d))
            width = grid_gap(x, levels) * d
        elif scale_bytes is not None:
            d = np.abs(np.ascontiguousarray(blocks[:, scale_bytes]).view(np.float16).astype(np.float32))
            width = torch.from_numpy(d).expand(-1, block)
        else:  # a float type: the spacing of the format at the weight
            width = _float_spacing(m.float(), torch.float16 if qname == "F16" else torch.bfloat16)
        return dq.reshape(m.shape), width.reshape(m.shape).float()

    return run


def _float_spacing(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """ulp of ``dtype`` at |x|: 2^(max(floor(log2|x|), emin) - mantissa bits)."""
    info = torch.finfo(dtype)
    mant = {torch.float16: 10, torch.bfloat16: 7}[dtype]
    emin = int(torch.log2(torch.tensor(info.tiny)).item())
    _, e = torch.frexp(x.abs())  # |x| = f * 2^e, f in [0.5, 1)
    expo = torch.where(x == 0, torch.full_like(e, emin), torch.clamp(e - 1, min=emin))
    return torch.pow(2.0, (expo - mant).float())


_MXFP4_LEVELS = tuple(float(v) for v in (0, 1, 2, 3, 4, 6, 8, 12, -1, -2, -3, -4, -6, -8, -12))  # e2m1, doubled

# -- optimum-quanto --------------------------------------------------------------------------------


def _quanto(qname: str):
    def run(m: torch.Tensor, group_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        from optimum import quanto

        qt = getattr(quanto, qname)
        lin = nn.Linear(m.shape[1], m.shape[0], bias=False)
        lin.weight = nn.Parameter(m.detach().float().clone(), requires_grad=False)
        q = quanto.QLinear.from_module(lin, weights=qt)
        if group_size > 0:
            if m.shape[1] % group_size:
                raise Unquantizable(f"{m.shape[1]} columns are not a multiple of group_size {group_size}")
            q.weight_group_size = group_size if group_size < m.shape[1] else None
        with torch.no_grad():
            dq = q.qweight.dequantize().float()
            if qt.bits == 8:
                scale = q.optimizer(q.weight, qtype=qt, axis=0)
            else:
                scale, _shift = q.optimizer(q.weight, qtype=qt, axis=0, group_size=q.weight_group_size)
        scale = scale.float().reshape(m.shape[0], -1)
        return dq, scale.repeat_interleave(m.shape[1] // scale.shape[1], dim=1)

    return run


# -- torchao ---------------------------------------------------------------------------------------


def _torchao(bits: int):
    def run(m: torch.Tensor, group_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        from torchao.quantization import Int8WeightOnlyConfig, IntxWeightOnlyConfig, PerGroup, quantize_

        g = group_size if group_size > 0 else (32 if bits == 4 else -1)
        if g > 0 and m.shape[1] % g:
            raise Unquantizable(f"{m.shape[1]} columns are not a multiple of the group of {g}")
        lin = nn.Linear(m.shape[1], m.shape[0], bias=False)
        lin.weight = nn.Parameter(m.detach().float().clone(), requires_grad=False)
        if bits == 8:
            cfg = Int8WeightOnlyConfig(group_size=g) if g > 0 else Int8WeightOnlyConfig()
        else:
            cfg = IntxWeightOnlyConfig(weight_dtype=torch.int4, granularity=PerGroup(g))
        quantize_(lin, cfg)
        w = lin.weight
        scale = w.scale.detach().float().reshape(m.shape[0], -1)
        return w.dequantize().float(), scale.repeat_interleave(m.shape[1] // scale.shape[1], dim=1)

    return run


# -- bitsandbytes ----------------------------------------------------------------------------------


def _bnb(quant_type: str):
    def run(m: torch.Tensor, group_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        import bitsandbytes.functional as F

        block = group_size if group_size > 0 else 64
        if m.numel() % block:
            raise Unquantizable(f"{m.numel()} weights are not a multiple of the block of {block}")
        x = m.detach().float().contiguous()
        packed, state = F.quantize_4bit(x, blocksize=block, quant_type=quant_type)
        dq = F.dequantize_4bit(packed, state).float()
        absmax = state.absmax.float().reshape(-1, 1)
        levels = torch.unique(state.code.float())  # sorted
        scaled = x.reshape(-1, block) / torch.where(absmax > 0, absmax, torch.ones_like(absmax))
        return dq.reshape(m.shape), (grid_gap(scaled, levels) * absmax).reshape(m.shape)

    return run


def _table() -> dict[str, Format]:
    g = "gguf"
    out = [
        Format("q8_0", g, g, "GGUF Q8_0: 32-value blocks, fp16 scale, 8-bit", _gguf("Q8_0", slice(0, 2))),
        Format("q5_0", g, g, "GGUF Q5_0: 32-value blocks, fp16 scale, 5-bit", _gguf("Q5_0", slice(0, 2))),
        Format("q5_1", g, g, "GGUF Q5_1: 32-value blocks, fp16 scale and min, 5-bit", _gguf("Q5_1", slice(0, 2))),
        Format("q4_0", g, g, "GGUF Q4_0: 32-value blocks, fp16 scale, 4-bit", _gguf("Q4_0", slice(0, 2))),
        Format("q4_1", g, g, "GGUF Q4_1: 32-value blocks, fp16 scale and min, 4-bit", _gguf("Q4_1", slice(0, 2))),
        Format(
            "mxfp4", g, g, "GGUF MXFP4: 32-value blocks, e8m0 scale, e2m1 values", _gguf("MXFP4", None, _MXFP4_LEVELS)
        ),
        Format("tq2_0", g, g, "GGUF TQ2_0: 256-value blocks, fp16 scale, ternary", _gguf("TQ2_0", slice(-2, None))),
        Format("tq1_0", g, g, "GGUF TQ1_0: 256-value blocks, fp16 scale, ternary", _gguf("TQ1_0", slice(-2, None))),
        Format("f16", g, g, "GGUF F16: IEEE half precision", _gguf("F16", None)),
        Format("bf16", g, g, "GGUF BF16: bfloat16", _gguf("BF16", None)),
        Format("quanto-int8", "optimum.quanto", "quanto", "optimum-quanto qint8, per channel", _quanto("qint8")),
        Format(
            "quanto-int4", "optimum.quanto", "quanto", "optimum-quanto qint4, groups of 128", _quanto("qint4"), True
        ),
        Format(
            "quanto-int2", "optimum.quanto", "quanto", "optimum-quanto qint2, groups of 128", _quanto("qint2"), True
        ),
        Format("torchao-int8", "torchao", "torchao", "torchao Int8WeightOnlyConfig, per row", _torchao(8), True),
        Format(
            "torchao-int4", "torchao", "torchao", "torchao IntxWeightOnlyConfig int4, groups of 32", _torchao(4), True
        ),
        Format("bnb-nf4", "bitsandbytes", "bnb", "bitsandbytes NF4, blocks of 64", _bnb("nf4"), True),
        Format("bnb-fp4", "bitsandbytes", "bnb", "bitsandbytes FP4, blocks of 64", _bnb("fp4"), True),
    ]
    return {f.name: f for f in out}


FORMATS: dict[str, Format] = _table()

#: Formats people ship that do not run here, with the reason (named in the attack's error).
NOT_HERE: dict[str, str] = {
    **{
        k: "gguf-py has only a dequantizer for it (llama.cpp's llama-quantize makes it)"
        for k in ("q2_k", "q3_k", "q4_k", "q5_k", "q6_k", "q8_k", "iq4_nl", "iq4_xs", "iq2_xxs", "iq3_s", "nvfp4")
    },
    "torchao-int4-tinygemm": "torchao 0.18 Int4WeightOnlyConfig has no CPU kernel (plain needs mslk, "
    "plain_int32 'does not support device cpu', tile_packed_to_4d needs CUDA); torchao-int4 is its CPU int4",
    "bnb-int8": "LLM.int8 splits outlier columns by the activations at run time, not a weight-only format",
    "gptq": "needs calibration data and GPU kernels",
    "awq": "needs calibration data and GPU kernels",
}
