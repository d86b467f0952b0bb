"""NPO — Negative Preference Optimization (Zhang et al., 2024, arXiv 2404.05868).

    L_f = -(2/β) · mean_x log σ( β · (NLL_θ(x) - NLL_ref(x)) ),    L = γ·L_f + α·R(D_r)

``ref`` is the frozen starting model. Its log-likelihoods of the forget set never change, so they
are computed once before training instead of keeping a second model in memory.

Variants (shared/reference/algorithms.md; their β do not transfer):

- ``summed`` (default; original NPO, open-unlearning ``compute_dpo_loss``): NLL summed over the
  answer tokens of each sequence, the mean taken over sequences.
- ``mean`` (OPTML's WMDP ``NPO_FT``): one token-mean CE over the whole batch for θ and for ref,
  one log-sigmoid per batch.

Not reproduced: the MUSE repo subtracts raw logits over the vocabulary instead of
log-likelihoods (muse_bench issue #2), a known bug.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F

from ..registry import register_method
from .base import Batch, GradientMethod, GradientMethodConfig, RetainConfigMixin, sequence_nll


@dataclass(frozen=True)
class NPOConfig(RetainConfigMixin, GradientMethodConfig):
    beta: float = field(default=0.1, metadata={"help": "inverse temperature β"})
    variant: Literal["summed", "mean"] = field(
        default="summed", metadata={"help": "NLL per sequence (summed) or batch token mean (mean)"}
    )

    def __post_init__(self):
        super().__post_init__()
        if self.beta <= 0:
            raise ValueError("beta must be positive")


@torch.no_grad()
def reference_nll(model, batches) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed NLL and token count of every forget example under the starting model."""
    sums, counts = {}, {}
    for b in batches:
        s, n = sequence_nll(model, b)
        for j, i in enumerate(b.index.tolist()):
            sums[i], counts[i] = s[j].item(), n[j].item()
    order = sorted(sums)
    return torch.tensor([sums[i] for i in order]), torch.tensor([counts[i] for i in order])


def npo_forget_loss(nll: torch.Tensor, ref_nll: torch.Tensor, beta: float) -> torch.Tensor:
    """-(2/β)·mean log σ(β·(NLL_θ - NLL_ref)) over the given entries."""
    return -(2.0 / beta) * F.logsigmoid(beta * (nll - ref_nll)).mean()


@register_method()
class NPO(GradientMethod):
    name = "npo"
    version = "1"
    Config = NPOConfig
    description = "negative preference optimisation (summed or mean variant) + retain term"

    def setup(self, model, data, forget_enc):
        super().setup(model, data, forget_enc)
        from ..batching import collate, pad_id_of

        device = next(model.parameters()).device
        pad = pad_id_of(data.tokenizer)
        was_training = model.training
        model.eval()
        batches = []
        for start in range(0, len(forget_enc), 64):
            idx = list(range(start, min(start + 64, len(forget_enc))))
            tensors = {k: v.to(device) for k, v in collate([forget_enc[i] for i in idx], pad).items()}
            batches.append(Batch(tensors, torch.tensor(idx)))
        self.ref_sum, self.ref_count = reference_nll(model, batches)
        model.train(was_training)

    def loss(self, model, forget, retain):
        c = self.config
        s, n = sequence_nll(model, forget)
        ref_s = self.ref_sum[forget.index].to(s.device)
        if c.variant == "summed":
            lf = npo_forget_loss(s, ref_s, c.beta)
        else:
            ref_n = self.ref_count[forget.index].to(s.device)
            lf = npo_forget_loss((s.sum() / n.sum()).unsqueeze(0), (ref_s.sum() / ref_n.sum()).unsqueeze(0), c.beta)
        r = self.retain_term(model, retain)
        return c.gamma * lf + c.alpha * r, {
            "forget_loss": lf.item(),
            "forget_nll": (s.sum() / n.sum()).item(),
            "retain": r.item(),
        }
