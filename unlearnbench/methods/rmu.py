"""RMU — Representation Misdirection for Unlearning (Li et al., 2024, the WMDP paper,
arXiv 2403.03218; reference code ``rmu/unlearn.py`` in centerforaisafety/wmdp).

    u = c · r/‖r‖,  r ~ U[0,1)^d                     (fixed for the run, seeded)
    L = γ · MSE(h_L^θ(x_f), u) + α · MSE(h_L^θ(x_r), h_L^frozen(x_r))

``h_L`` is the residual stream *leaving* decoder block L (the block's own output, before any
later block and before the final norm), at every token position of the whole sequence (prompt
and answer: RMU's forget data are plain text). Only ``mlp.down_proj.weight`` of layers L-2..L is
trained; everything else is frozen for the run (the base loop restores the flags afterwards).

Which tensor is "layer L": a forward hook on ``model.model.layers[L]`` reads the block output,
as the reference code does. That equals ``output_hidden_states[L+1]`` for every block except the
last one: transformers puts the *final-normed* state in ``hidden_states[-1]``, so the hook, not
the index, is the safe definition (tests/test_rmu.py checks both facts). The hook also stops the
forward after block L (a private exception), so later blocks and the LM head are never run.

The frozen activations: the only weights that change are the trainable down_proj matrices of
layers ≤ L, so the frozen model's ``h_L`` is the live model run with those few matrices swapped
back to their starting values (``torch.func.functional_call``) and stopped after block L. This
keeps one copy of 3 matrices instead of a frozen model (or a copied embedding + L blocks), runs
transformers' own forward (no re-implemented masks or rotary embeddings), and is exactly the
starting model's ``h_L``.

Defaults: c=6.5 and α=1200 are the Zephyr-7B recipe (with L=7, lr 5e-5, batch 4, 150 batches,
layers 5,6,7); they are not tuned for small models. Values tuned for the embedded world belong in
``tasks/benchmarks/toy.yaml`` (``defaults.methods.rmu``). ``layer=-1`` picks
``L = clip(round_half_up(0.25·n_layers), 1, n_layers-1)``: 8 of 32 layers, 1 of the 4-layer
"small" toy model, 1 of a 2-layer model (the last block; its trainable layers are 0 and 1).

Variants and deviations from the reference code:

- ``mask_padding=True`` (default, open-unlearning's variant): both MSEs average over real tokens
  only (``attention_mask``). ``False`` is the reference's plain ``mse_loss`` over all positions,
  padding included.
- One forget set, so one control vector (the reference has one per topic: bio, cyber). It is drawn
  in float32 on the CPU from its own generator (``vector_seed``), so it does not depend on the
  device or on the global RNG; the reference draws it from the global seed-42 stream.
- MSEs are computed in float32 (the reference: in the model dtype).
- The shared loop adds linear warm-up and gradient clipping at 1.0 (the reference: neither;
  set ``warmup=0`` for no warm-up). γ (default 1) weights the forget term; the reference has none.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F

from ..data.types import PlanContext, call_hook
from ..errors import UnlearnbenchError
from ..progress import SILENT
from ..registry import register_method
from .base import GradientMethod, GradientMethodConfig, RetainConfigMixin


@dataclass(frozen=True)
class RMUConfig(RetainConfigMixin, GradientMethodConfig):
    retain_loss: Literal["activation", "none"] = field(
        default="activation", metadata={"help": "retain term: MSE to the frozen model's layer-L activations, or none"}
    )
    alpha: float = field(default=1200.0, metadata={"help": "weight α of the retain MSE (Zephyr-7B recipe: 1200)"})
    layer: int = field(
        default=-1, metadata={"help": "decoder block L whose output is steered (-1: round(0.25·n_layers), at least 1)"}
    )
    trainable_layers: tuple[int, ...] = field(
        default=(), metadata={"help": "blocks whose mlp.down_proj.weight is trained (empty: L-2..L)"}
    )
    steering_coeff: float = field(default=6.5, metadata={"help": "norm c of the control vector u"})
    vector_seed: int = field(default=42, metadata={"help": "seed of the control vector"})
    mask_padding: bool = field(
        default=True,
        metadata={"help": "average the MSEs over real tokens only (False: all positions, as the reference code)"},
    )

    def __post_init__(self):
        super().__post_init__()
        if self.retain_loss not in ("activation", "none"):  # the mixin's nll/kl do not apply
            raise ValueError(f"retain_loss must be 'activation' or 'none', got {self.retain_loss!r}")
        if self.layer < -1:
            raise ValueError("layer must be a block index >= 0, or -1 for the default")
        if any(i < 0 for i in self.trainable_layers):
            raise ValueError("trainable_layers must be block indices >= 0")
        if self.steering_coeff <= 0:
            raise ValueError("steering_coeff must be positive")
        if self.alpha < 0:
            raise ValueError("alpha must be >= 0")


class _StopForward(Exception):
    """Raised by the hook on block L: nothing after it is needed."""


def decoder_layers(model) -> torch.nn.ModuleList:
    layers = getattr(getattr(model, "model", None), "layers", None)
    if layers is None:
        raise UnlearnbenchError("rmu needs a decoder-only model with model.model.layers (Llama-style)")
    return layers


def default_layer(n_layers: int) -> int:
    """round_half_up(0.25·n), kept in [1, n-1] (0 for a one-block model)."""
    return min(n_layers - 1, max(1, math.floor(0.25 * n_layers + 0.5)))


def resolve_layers(config: RMUConfig, n_layers: int) -> tuple[int, tuple[int, ...]]:
    """(L, trainable block indices) for a model with ``n_layers`` blocks."""
    layer = default_layer(n_layers) if config.layer == -1 else config.layer
    if not 0 <= layer < n_layers:
        raise UnlearnbenchError(f"rmu: layer {layer} does not exist (the model has {n_layers} blocks)")
    trainable = tuple(sorted(set(config.trainable_layers))) or tuple(range(max(0, layer - 2), layer + 1))
    if any(i > layer for i in trainable):
        raise UnlearnbenchError(
            f"rmu: trainable_layers {list(trainable)} include blocks after L={layer}, "
            f"which get no gradient from a loss on h_L"
        )
    return layer, trainable


def block_output(
    model, layer: int, tensors: dict[str, torch.Tensor], params: dict[str, torch.Tensor] | None = None
) -> torch.Tensor:
    """Residual stream leaving decoder block ``layer`` (batch, seq, d); the forward stops there.

    ``params``: parameters to use in place of the model's own (``torch.func.functional_call``).
    """
    captured: list[torch.Tensor] = []

    def hook(module, args, output):
        captured.append(output[0] if isinstance(output, tuple) else output)
        raise _StopForward

    kwargs = {"input_ids": tensors["input_ids"], "attention_mask": tensors["attention_mask"], "use_cache": False}
    handle = decoder_layers(model)[layer].register_forward_hook(hook)
    try:
        if params is None:
            model(**kwargs)
        else:
            torch.func.functional_call(model, params, (), kwargs, strict=False)
    except _StopForward:
        pass
    finally:
        handle.remove()
    if not captured:
        raise UnlearnbenchError(f"rmu: the forward pass never reached block {layer}")
    return captured[0]


def activation_mse(h: torch.Tensor, target: torch.Tensor, attention_mask: torch.Tensor, masked: bool) -> torch.Tensor:
    """Mean squared error over (positions × d); ``masked``: real tokens only."""
    h, target = h.float(), target.float().expand_as(h)
    if not masked:
        return F.mse_loss(h, target)
    m = attention_mask.to(h.dtype).unsqueeze(-1)
    return ((h - target) ** 2 * m).sum() / (m.sum() * h.shape[-1]).clamp_min(1)


def control_vector(hidden_size: int, coeff: float, seed: int) -> torch.Tensor:
    """c·r/‖r‖ with r ~ U[0,1)^(1×1×d), float32 on the CPU."""
    r = torch.rand(1, 1, hidden_size, generator=torch.Generator().manual_seed(seed))
    return coeff * r / r.norm()


@register_method()
class RMU(GradientMethod):
    name = "rmu"
    version = "1"
    Config = RMUConfig
    description = "representation misdirection: steer layer-L activations of forget text to a random vector"
    layer: int | None = None  # resolved in setup
    trainable: tuple[int, ...] = ()
    frozen: dict[str, torch.Tensor] | None = None  # starting values of the trainable weights
    control: torch.Tensor | None = None

    def bind(self, ctx: PlanContext) -> list[str]:
        """At plan time, where the benchmark knows its model's depth: refuse a ``layer`` or
        ``trainable_layers`` the model does not have now, not after its base and oracle cells."""
        n_layers = call_hook(ctx.benchmark, "n_layers")
        if n_layers:
            resolve_layers(self.config, n_layers)
        return []

    def trainable_parameters(self, model) -> list[torch.nn.Parameter]:
        layers = decoder_layers(model)
        _, trainable = resolve_layers(self.config, len(layers))
        return [layers[i].mlp.down_proj.weight for i in trainable]

    def setup(self, model, data, forget_enc):
        super().setup(model, data, forget_enc)
        c = self.config
        self.layer, self.trainable = resolve_layers(c, len(decoder_layers(model)))
        params = self.trainable_parameters(model)
        names = {id(p): n for n, p in model.named_parameters()}
        for p in model.parameters():
            p.requires_grad_(False)
        for p in params:
            p.requires_grad_(True)
        # the only weights the optimiser touches: their starting values make the frozen model
        self.frozen = {names[id(p)]: p.detach().clone() for p in params}
        device = next(model.parameters()).device
        self.control = control_vector(model.config.hidden_size, c.steering_coeff, c.vector_seed).to(device)

    def frozen_block_output(self, model, tensors) -> torch.Tensor:
        with torch.no_grad():
            return block_output(model, self.layer, tensors, params=self.frozen)

    def loss(self, model, forget, retain):
        c = self.config
        ft = forget.tensors
        h_f = block_output(model, self.layer, ft)
        lf = activation_mse(h_f, self.control, ft["attention_mask"], c.mask_padding)
        if retain is not None and c.retain_loss == "activation":
            rt = retain.tensors
            frozen = self.frozen_block_output(model, rt)
            r = activation_mse(block_output(model, self.layer, rt), frozen, rt["attention_mask"], c.mask_padding)
        else:
            r = torch.zeros((), device=lf.device)
        return c.gamma * lf + c.alpha * r, {"forget_loss": lf.item(), "retain": r.item()}

    def unlearn(self, model, data, progress=SILENT, loss=None) -> dict:
        try:
            out = super().unlearn(model, data, progress, loss=loss)
        finally:
            self.frozen = None
        out["layer"], out["trainable_layers"] = self.layer, list(self.trainable)
        return out
