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
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from ..errors import UnlearnbenchError
from ..progress import SILENT, Progress
from ..registry import register_attack

MIN_BITS, MAX_BITS = 2, 8


@dataclass(frozen=True)
class QuantizeConfig:
    group_size: int = field(
        default=-1, metadata={"help": "input columns sharing a scale (-1: the whole output channel)"}
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
    needs_arg = "bits"  # quantize:4
    description = "round-to-nearest weight quantization (simulated, per channel or group), before/after"

    def __init__(self, config: QuantizeConfig | None = None, arg: str | None = None):
        self.config = config or QuantizeConfig()
        self.bits = parse_bits(arg)

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

    def run(self, model, tokenizer, task, evaluate: Evaluate, progress: Progress = SILENT, benchmark=None) -> dict:
        """Evaluate a copy of ``model`` ('before', step 0), quantize it, evaluate again ('quantized', step 1)."""
        cfg = self.config
        t0 = time.time()
        work = copy.deepcopy(model)
        work.eval()
        chosen, skipped = self.targets(work)
        if not chosen:
            raise UnlearnbenchError("quantize: the model has no weight matrices to quantize")
        evaluate("before", 0, work)
        errors, n_params = [], 0
        with progress.task(f"attack quantize:{self.bits}", len(chosen)) as bar, torch.no_grad():
            for _name, mod, transposed in chosen:
                w = mod.weight
                m = w.data.t() if transposed else w.data
                q = quantize_rtn(m, self.bits, cfg.group_size)
                ref = m.float()
                errors.append(((q.float() - ref).norm() / ref.norm().clamp_min(1e-12)).item())
                m.copy_(q)  # a transposed view writes through to the weight
                n_params += w.numel()
                bar.advance()
        evaluate("quantized", 1, work)
        return {
            "bits": self.bits,
            "group_size": cfg.group_size,
            "tensors_quantized": len(chosen),
            "params_quantized": n_params,
            "mean_relative_error": sum(errors) / len(errors),
            "max_relative_error": max(errors),
            "skipped_tied": skipped,
            "seconds": round(time.time() - t0, 3),
        }
