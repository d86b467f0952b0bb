"""GradDiff: ``L = -γ·CE(D_f) + α·R(D_r)`` with R = NLL or KL(θ‖ref) on retain answers."""

from __future__ import annotations

from dataclasses import dataclass

from ..registry import register_method
from .base import GradientMethod, GradientMethodConfig, RetainConfigMixin, token_mean_nll


@dataclass(frozen=True)
class GradDiffConfig(RetainConfigMixin, GradientMethodConfig):
    pass


@register_method()
class GradDiff(GradientMethod):
    name = "graddiff"
    version = "1"
    Config = GradDiffConfig
    description = "gradient difference: -γ·CE(D_f) + α·R(D_r)"

    def loss(self, model, forget, retain):
        c = self.config
        ce = token_mean_nll(model, forget)
        r = self.retain_term(model, retain)
        return -c.gamma * ce + c.alpha * r, {"forget_ce": ce.item(), "retain": r.item()}
