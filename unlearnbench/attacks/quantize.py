"""``quantize:<bits>`` — round-to-nearest weight quantization of the unlearned model.

Zhang et al. 2024 ("Does your LLM truly unlearn? An embarrassingly simple approach") found that
quantizing an unlearned model can restore the knowledge it was made to forget: unlearning with a
small learning rate moves the weights less than one quantization step, so rounding snaps many of
them back to where the original model's weights round to.

Simulated quantization: every weight matrix is rounded, symmetric, per output channel (or per group
of ``group_size`` input columns), to ``bits`` bits and dequantized back to the model's dtype, so
the model runs as before with quantized values::

    scale = max|w| over the input dimension (or the group) / (2^(bits-1) - 1)
    w_q   = clamp(round(w / scale), -(2^(bits-1) - 1), 2^(bits-1) - 1) * scale

Covered: every ``nn.Linear`` (and transformers' ``Conv1D``, GPT-2 style, transposed), the output
layer included unless ``lm_head=false``; embeddings only with ``embeddings=true`` (one row per
token is one channel). A weight tied between the embeddings and the output layer counts as an
embedding: with ``embeddings=false`` it is left alone (and named in the stats), since quantizing it
would quantize the input embeddings too. The model handed in is never modified.

``quantize:<format>`` — the formats people ship, each through its maintained library (the table,
with each format's block, scale layout and source, is ``attacks/quant_formats.py``): GGUF types
through ``gguf`` (``q8_0``, ``q5_0``, ``q5_1``, ``q4_0``, ``q4_1``, ``mxfp4``, ``tq2_0``, ``tq1_0``,
``f16``, ``bf16``), ``quanto-int8/int4/int2`` (optimum-quanto), ``torchao-int8/int4``,
``bnb-nf4/fp4`` (bitsandbytes). Same tensors as above; a matrix whose rows do not fit the format's
block stays in full precision and is named in the stats (``kept_full_precision``), as llama.cpp
keeps such tensors in a wider type. ``group_size`` changes the block of the formats that have a
free one (quanto int4/int2, torchao, bnb); GGUF blocks are fixed by the type. Deviation from the
deployed formats: values are dequantized back to float32 and computed in float32 (the kernels of
llama.cpp and the libraries compute in their own precisions), so only the weight rounding is measured.

Update versus bin width (in the stats, for RTN too; scores are not touched): given the benchmark,
for every quantized matrix of the attacked model θ_u and the same matrix of the original
(pre-unlearning) model θ_o = ``benchmark.load("target")``::

    ratio      = |θ_u - θ_o| / bin width of the format at θ_u (its scale; the local gap of a
                 non-uniform grid such as NF4 or MXFP4)         -> median and mean per matrix
    snap_back  = fraction of weights with |q(θ_u) - q(θ_o)| < half a bin, i.e. quantized to the same
                 level (all weights, and among the changed ones). Not exact equality: when a block's
                 largest weight moves, its fp16 scale may move by a step and every value of the
                 block with it, by far less than a bin, though each lands on the same code.

Updates far below one bin are the ones quantization erases (Zhang et al. 2024, arXiv 2410.16454).
On the control cell (the attacked model is the oracle) the same figures compare oracle and original.
"""

from __future__ import annotations

import copy
import difflib
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from ..errors import UnlearnbenchError
from ..progress import SILENT, Progress
from ..registry import register_attack
from .quant_formats import FORMATS, NOT_HERE, Format, Unquantizable

MIN_BITS, MAX_BITS = 2, 8


@dataclass(frozen=True)
class QuantizeConfig:
    group_size: int = field(
        default=-1,
        metadata={
            "help": "input columns sharing a scale (-1: the whole output channel for bits, the format's own block for a named format)"
        },
    )
    embeddings: bool = field(default=False, metadata={"help": "also quantize the embedding matrices"})
    lm_head: bool = field(
        default=True,
        metadata={"help": "quantize the output layer too (real quantizers often keep it in full precision)"},
    )

    def __post_init__(self):
        if self.group_size == 0 or self.group_size < -1:
            raise ValueError("group_size must be positive (or -1 for whole channels)")


Evaluate = Callable[[str, int, object], None]


def rtn_scales(w: torch.Tensor, bits: int, group_size: int = -1) -> torch.Tensor:
    """Scales of symmetric RTN for a (out, in) matrix: shape (out, n_groups), float32.

    A channel (or group) of zeros gets scale 1 (its values quantize to 0 whatever the scale)."""
    qmax = 2 ** (bits - 1) - 1
    groups = _grouped(w.detach().float(), group_size)
    scale = groups.abs().amax(dim=-1) / qmax
    return torch.where(scale > 0, scale, torch.ones_like(scale))


def quantize_rtn(w: torch.Tensor, bits: int, group_size: int = -1) -> torch.Tensor:
    """Symmetric round-to-nearest quantization of a (out, in) matrix, per output channel
    (``group_size=-1``) or per group of input columns; dequantized, in ``w``'s dtype.

    A last group shorter than ``group_size`` (in not a multiple of it) has its own scale."""
    if w.dim() != 2:
        raise ValueError(f"quantize_rtn expects a matrix, got shape {tuple(w.shape)}")
    if not MIN_BITS <= bits <= MAX_BITS:
        raise ValueError(f"bits must be in {MIN_BITS}..{MAX_BITS}, got {bits}")
    qmax = 2 ** (bits - 1) - 1
    x = w.detach().float()
    groups = _grouped(x, group_size)
    scale = rtn_scales(x, bits, group_size).unsqueeze(-1)
    q = torch.clamp(torch.round(groups / scale), -qmax, qmax) * scale
    return q.reshape(x.shape[0], -1)[:, : x.shape[1]].to(w.dtype)


def _grouped(x: torch.Tensor, group_size: int) -> torch.Tensor:
    """(out, in) -> (out, n_groups, g), zero-padded at the end of the input dimension."""
    out_dim, in_dim = x.shape
    g = in_dim if group_size < 0 or group_size >= in_dim else group_size
    pad = (-in_dim) % g
    if pad:
        x = torch.nn.functional.pad(x, (0, pad))
    return x.reshape(out_dim, -1, g)


def parse_bits(arg: str | None) -> int:
    try:
        bits = int(str(arg).strip())
    except ValueError:
        bits = None
    if bits is None or not MIN_BITS <= bits <= MAX_BITS:
        raise UnlearnbenchError(
            f"quantize needs a number of bits from {MIN_BITS} to {MAX_BITS}, e.g. quantize:4 (got {arg!r})"
        )
    return bits


def parse_format(arg: str | None) -> int | Format:
    """``quantize:<bits>`` (round-to-nearest) or ``quantize:<format>``; one line of error otherwise,
    with the formats there are, the closest name, and why a known format does not run here."""
    text = str(arg).strip() if arg is not None else ""
    if text.lstrip("-").isdigit():
        return parse_bits(text)
    if text in FORMATS:
        fmt = FORMATS[text]
        if not fmt.available():
            raise UnlearnbenchError(
                f"quantize:{text} needs the {fmt.library} package: pip install 'unlearnbench[{fmt.extra}]'"
            )
        return fmt
    key = text.lower().removeprefix("gguf-").removeprefix("gguf_")
    if key in NOT_HERE:
        raise UnlearnbenchError(f"quantize:{text} is not supported here: {NOT_HERE[key]}")
    close = difflib.get_close_matches(key, list(FORMATS), n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]}?" if close else ""
    raise UnlearnbenchError(
        f"quantize needs a number of bits from {MIN_BITS} to {MAX_BITS} (round-to-nearest, e.g. quantize:4) "
        f"or a format: {', '.join(FORMATS)} (got {arg!r}){hint} Not runnable here: {', '.join(NOT_HERE)}"
    )


def _expand(scales: torch.Tensor, in_dim: int) -> torch.Tensor:
    """(out, n_groups) scales -> (out, in_dim), a last short group cut."""
    g = -(-in_dim // scales.shape[1])
    return scales.repeat_interleave(g, dim=1)[:, :in_dim]


def _rtn(bits: int, group_size: int):
    def run(m: torch.Tensor, _group_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        return quantize_rtn(m, bits, group_size), _expand(rtn_scales(m, bits, group_size), m.shape[1])

    return run


def update_vs_bin(w_u: torch.Tensor, w_o: torch.Tensor, q_u: torch.Tensor, q_o: torch.Tensor, width: torch.Tensor):
    """Per-matrix figures of |θ_u - θ_o| against the bin width (see the module docstring); sums
    for the total ride along under keys starting with '_'."""
    delta = (w_u.float() - w_o.float()).abs()
    ratio = delta / width.clamp_min(torch.finfo(torch.float32).tiny)
    same = (q_u - q_o).abs() < width / 2  # the same level, up to the block scale's drift
    changed = delta > 0
    n, n_changed = delta.numel(), int(changed.sum())
    snapped_changed = int((same & changed).sum())
    return {
        "median_ratio": float(ratio.median()),
        "mean_ratio": float(ratio.mean()),
        "snap_back": float(same.float().mean()),
        "changed": n_changed / n,
        "snap_back_of_changed": snapped_changed / n_changed if n_changed else None,
        "_n": n,
        "_ratio_sum": float(ratio.sum(dtype=torch.float64)),
        "_same": int(same.sum()),
        "_changed": n_changed,
        "_snapped_changed": snapped_changed,
    }


def summarise(per_tensor: dict[str, dict]) -> dict:
    """{tensor: figures} plus a ``total`` over every weight of them."""
    n = sum(t["_n"] for t in per_tensor.values())
    ch = sum(t["_changed"] for t in per_tensor.values())
    total = {
        "params": n,
        "mean_ratio": sum(t["_ratio_sum"] for t in per_tensor.values()) / n if n else None,
        "snap_back": sum(t["_same"] for t in per_tensor.values()) / n if n else None,
        "changed": ch / n if n else None,
        "snap_back_of_changed": sum(t["_snapped_changed"] for t in per_tensor.values()) / ch if ch else None,
    }
    tensors = {k: {f: v for f, v in t.items() if not f.startswith("_")} for k, t in per_tensor.items()}
    return {"reference": "target", "tensors": tensors, "total": total}


def _conv1d_class():
    try:
        from transformers.pytorch_utils import Conv1D
    except ImportError:  # pragma: no cover - transformers is a dependency
        return ()
    return Conv1D


@register_attack()
class QuantizeAttack:
    name = "quantize"
    version = "1"
    Config = QuantizeConfig
    needs_arg = "bits"  # quantize:4, or a format: quantize:q4_0
    description = (
        "weight quantization before/after: round-to-nearest to <bits> (simulated), or a deployment format "
        "(GGUF q4_0/q8_0/..., quanto, torchao, bitsandbytes NF4) through its library"
    )

    def __init__(self, config: QuantizeConfig | None = None, arg: str | None = None):
        self.config = config or QuantizeConfig()
        parsed = parse_format(arg)
        self.format: Format | None = None if isinstance(parsed, int) else parsed
        self.bits: int | None = parsed if isinstance(parsed, int) else None
        if self.format is not None and self.config.group_size != -1 and not self.format.grouped:
            raise UnlearnbenchError(f"quantize:{self.format.name} has a fixed block; group_size does not apply to it")
        self._original = None  # (benchmark, its target model), loaded once per attack object

    @property
    def label(self) -> str:
        return str(self.bits) if self.format is None else self.format.name

    def key_extra(self) -> dict:
        """A named format's result depends on its library's version (round-to-nearest on none)."""
        if self.format is None:
            return {}
        import importlib.metadata

        dist = {"optimum.quanto": "optimum-quanto"}.get(self.format.library, self.format.library)
        return {"library": f"{dist} {importlib.metadata.version(dist)}"}

    def _quantizer(self):
        if self.format is None:
            return _rtn(self.bits, self.config.group_size)
        return self.format.quantize

    def targets(self, model) -> tuple[list[tuple[str, nn.Module, bool]], list[str]]:
        """(name, module, transposed) of the weights to quantize, each distinct weight once, and
        the names of the ones left alone because they are tied to an embedding."""
        cfg = self.config
        conv1d = _conv1d_class()
        embedding_weights = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
        out_emb = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
        chosen, skipped, seen = [], [], set()
        for name, mod in model.named_modules():
            w = getattr(mod, "weight", None)
            if not isinstance(w, torch.Tensor) or w.dim() != 2 or id(w) in seen:
                continue
            if isinstance(mod, nn.Embedding):
                if not cfg.embeddings:
                    continue
            elif isinstance(mod, nn.Linear) or (conv1d and isinstance(mod, conv1d)):
                if out_emb is not None and mod is out_emb and not cfg.lm_head:
                    continue
                if id(w) in embedding_weights and not cfg.embeddings:
                    skipped.append(name)
                    continue
            else:
                continue
            seen.add(id(w))
            chosen.append((name, mod, bool(conv1d) and isinstance(mod, conv1d)))
        return chosen, skipped

    def _original_model(self, benchmark):
        """The benchmark's pre-unlearning model (θ_o), loaded the first time it is asked for."""
        if benchmark is None:
            return None
        if self._original is None or self._original[0] is not benchmark:
            self._original = (benchmark, benchmark.load("target").model)
        return self._original[1]

    def run(self, model, tokenizer, task, evaluate: Evaluate, progress: Progress = SILENT, benchmark=None) -> dict:
        """Evaluate a copy of ``model`` ('before', step 0), quantize it, evaluate again ('quantized', step 1)."""
        cfg = self.config
        t0 = time.time()
        work = copy.deepcopy(model)
        work.eval()
        chosen, skipped = self.targets(work)
        if not chosen:
            raise UnlearnbenchError("quantize: the model has no weight matrices to quantize")
        original = self._original_model(benchmark)
        ref_modules = dict(original.named_modules()) if original is not None else {}
        quantize = self._quantizer()
        errors, n_params, kept, figures, unmatched, writes = [], 0, [], {}, [], []
        with progress.task(f"attack quantize:{self.label}", len(chosen)) as bar, torch.no_grad():
            for name, mod, transposed in chosen:
                w = mod.weight
                m = w.data.t() if transposed else w.data
                ref = m.float()
                try:
                    q, width = quantize(ref, cfg.group_size)
                except Unquantizable as e:
                    kept.append(name)
                    why = str(e)
                    bar.advance()
                    continue
                errors.append(((q.float() - ref).norm() / ref.norm().clamp_min(1e-12)).item())
                o_mod = ref_modules.get(name)
                if original is not None:
                    o_w = getattr(o_mod, "weight", None)
                    o = None if o_w is None else (o_w.data.t() if transposed else o_w.data).float()
                    if o is None or o.shape != ref.shape:
                        unmatched.append(name)
                    else:
                        figures[name] = update_vs_bin(ref, o, q.float(), quantize(o, cfg.group_size)[0].float(), width)
                writes.append((m, q.to(w.dtype)))
                n_params += w.numel()
                bar.advance()
        if not errors:  # refused before anything is evaluated
            raise UnlearnbenchError(
                f"quantize:{self.label}: no weight matrix fits the format ({len(kept)} kept in full precision; "
                f"{kept[-1]}: {why})"
            )
        evaluate("before", 0, work)
        with torch.no_grad():
            for m, q in writes:
                m.copy_(q)  # a transposed view writes through to the weight
        del writes
        evaluate("quantized", 1, work)
        stats = {
            "bits": self.bits,
            "group_size": cfg.group_size,
            "tensors_quantized": len(errors),
            "params_quantized": n_params,
            "mean_relative_error": sum(errors) / len(errors),
            "max_relative_error": max(errors),
            "skipped_tied": skipped,
            "seconds": round(time.time() - t0, 3),
        }
        if self.format is not None:
            stats.update(format=self.format.name, kept_full_precision=kept, **self.key_extra())
        if original is None:
            stats["update_vs_bin"] = {"note": "no benchmark given: no original (target) model to compare with"}
        else:
            stats["update_vs_bin"] = {**summarise(figures), **({"unmatched": unmatched} if unmatched else {})}
        return stats
