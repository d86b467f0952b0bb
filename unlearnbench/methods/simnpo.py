"""SimNPO — Simple NPO (Fan et al., 2024, "Simplicity Prevails", arXiv 2410.07163).

    L_f = -(2/β) · mean_x log σ( β · (NLL_θ(x)/|x| - δ) ),    L = γ·L_f + α·R(D_r)

NPO with the reference model replaced by a constant margin δ and the NLL normalised by |x|, the
number of answer tokens of x (prompt tokens are masked). No reference model is kept or
precomputed. Defaults are open-unlearning's TOFU values (``configs/trainer/SimNPO.yaml``):
β=4.5, γ=0.125, α=1, δ=0, retain term NLL.

Sign: shared/reference/algorithms.md writes ``σ(-β·(NLL/|x| - δ))``. Taken literally with NLL
(not log-likelihood) that loss is minimised by *raising* the forget likelihood, so it is a sign
slip. The paper writes ``σ(-(β/|y|)·log π_θ(y|x) - γ)`` with log π = -NLL, and open-unlearning's
``src/trainer/unlearn/simnpo.py`` computes ``-logsigmoid(β·(NLL/|x| - δ))·2/β``; that is what is
implemented here (δ = γ_paper/β). At δ=0 and NLL→0 the loss is (2/β)·log 2, like NPO at step 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from ..registry import register_method
from .base import GradientMethod, GradientMethodConfig, RetainConfigMixin, sequence_nll


@dataclass(frozen=True)
class SimNPOConfig(RetainConfigMixin, GradientMethodConfig):
    alpha: float = field(default=1.0, metadata={"help": "weight α of the retain term"})
    gamma: float = field(default=0.125, metadata={"help": "weight γ of the forget term"})
    beta: float = field(default=4.5, metadata={"help": "inverse temperature β"})
    delta: float = field(default=0.0, metadata={"help": "margin δ on the per-token NLL"})

    def __post_init__(self):
        super().__post_init__()
        if self.beta <= 0:
            raise ValueError("beta must be positive")


def simnpo_forget_loss(nll_sum: torch.Tensor, n_tokens: torch.Tensor, beta: float, delta: float) -> torch.Tensor:
    """-(2/β)·mean log σ(β·(NLL/|x| - δ)) over sequences (``nll_sum``: summed answer NLL)."""
    per_token = nll_sum / n_tokens.clamp_min(1)
    return -(2.0 / beta) * F.logsigmoid(beta * (per_token - delta)).mean()


@register_method()
class SimNPO(GradientMethod):
    name = "simnpo"
    version = "1"
    Config = SimNPOConfig
    description = "SimNPO: length-normalised NPO without a reference model + retain term"

    def loss(self, model, forget, retain):
        c = self.config
        s, n = sequence_nll(model, forget)
        lf = simnpo_forget_loss(s, n, c.beta, c.delta)
        r = self.retain_term(model, retain)
        return c.gamma * lf + c.alpha * r, {
            "forget_loss": lf.item(),
            "forget_nll": (s.sum() / n.sum()).item(),
            "retain": r.item(),
        }
