"""GradAscent: maximise the NLL of the forget set, ``L = -CE(D_f)`` (token mean).

The simplest baseline; with no retain term it quickly destroys the model, which is the point of
having it in the table.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..registry import register_method
from .base import GradientMethod, GradientMethodConfig, token_mean_nll


@dataclass(frozen=True)
class GradAscentConfig(GradientMethodConfig):
    pass


@register_method()
class GradAscent(GradientMethod):
    name = "gradascent"
    version = "1"
    Config = GradAscentConfig
    uses_retain = False
    description = "gradient ascent on the forget set: -CE(D_f)"

    def loss(self, model, forget, retain):
        ce = token_mean_nll(model, forget)
        return -ce, {"forget_ce": ce.item()}
