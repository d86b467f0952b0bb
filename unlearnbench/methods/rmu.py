"""RMU — Representation Misdirection for Unlearning (Li et al., 2024, the WMDP paper,
arXiv 2403.03218; reference code ``rmu/unlearn.py`` in centerforaisafety/wmdp).

    u = c · r/‖r‖,  r ~ U[0,1)^d                     (fixed for the run, seeded)
    L = γ · MSE(h_L^θ(x_f), u) + α · MSE(h_L^θ(x_r), h_L^frozen(x_r))

``h_L`` is the residual stream *leaving* decoder block L (the block's own output, before any
later block and before the final norm); which token positions enter the MSEs is ``mask`` (below).
Only ``mlp.down_proj.weight`` of layers L-2..L is
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
``L = clip(round_half_up(7·n_layers/32), 1, n_layers-1)``, the reference's layer 7 of Zephyr-7B's
32 scaled to the model's depth: 7 of 32 (trainable 5, 6, 7 as the recipe), 7 of SmolLM2's 30, 1 of
the 4-layer "small" toy model, 1 of a 2-layer model (the last block; its trainable layers are 0 and
1). (Before issue 11 the rule was round(0.25·n): 8 of 32, not the reference; the toy models' layer
is the same under both.)

Variants and deviations from the reference code:

- Positions and averaging (both MSEs), named variants:

  * ``mask=none``: every position of the padded batch, padding included, one mean over
    batch × length × d — the reference code's plain ``mse_loss`` (the WMDP recipe here).
  * ``mask=attention`` (default): real tokens only (``attention_mask``: prompt and answer), one
    mean over all of the batch's real tokens × d. Neither reference's; kept as the default because
    the embedded world's tuned values and every stored result were made with it (it was called
    "open-unlearning's variant" here before, wrongly).
  * ``mask=answer, average=sequence``: open-unlearning's ``compute_activation_loss`` — answer
    tokens only (``labels != -100``), the squared error averaged over d, summed over the sequence's
    answer tokens and divided by their count, then averaged over the batch (TOFU and MUSE recipes
    here). ``average=token`` pools every selected token of the batch instead (a long sequence
    weighs more); ``average=sequence`` gives every sequence the same weight. With ``mask=none``
    every sequence has the same length, so the two averages agree.
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
        default=-1,
        metadata={"help": "decoder block L whose output is steered (-1: round(7·n_layers/32), at least 1: 7 of 32)"},
    )
    trainable_layers: tuple[int, ...] = field(
        default=(), metadata={"help": "blocks whose mlp.down_proj.weight is trained (empty: L-2..L)"}
    )
    steering_coeff: float = field(default=6.5, metadata={"help": "norm c of the control vector u"})
    vector_seed: int = field(default=42, metadata={"help": "seed of the control vector"})
    mask: Literal["attention", "answer", "none"] = field(
        default="attention",
        metadata={"help": "positions in the MSEs: real tokens, answer tokens (open-unlearning), all (WMDP code)"},
    )
    average: Literal["token", "sequence"] = field(
        default="token",
        metadata={"help": "mean over the batch's selected tokens, or per sequence then over the batch"},
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
    """round_half_up(7·n/32), kept in [1, n-1] (0 for a one-block model): 7 of 32 as the WMDP recipe."""
    return min(n_layers - 1, max(1, math.floor(7 * n_layers / 32 + 0.5)))


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


def position_mask(tensors: dict[str, torch.Tensor], mask: str) -> torch.Tensor | None:
    """(batch, seq) weights of the positions that enter the MSE; None for every position."""
    if mask == "none":
        return None
    if mask == "attention":
        return tensors["attention_mask"]
    return (tensors["labels"] != -100).long()


def activation_mse(h: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None, average: str) -> torch.Tensor:
    """Squared error averaged over d and over the positions of ``mask`` (None: all of them):
    pooled over the batch's tokens (``token``) or per sequence, then over sequences (``sequence``)."""
    h, target = h.float(), target.float().expand_as(h)
    if mask is None:
        return F.mse_loss(h, target)
    per_pos = ((h - target) ** 2).mean(-1) * mask.to(h.dtype)  # (batch, seq)
    if average == "token":
        return per_pos.sum() / mask.sum().clamp_min(1)
    return (per_pos.sum(1) / mask.sum(1).clamp_min(1)).mean()


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
        lf = activation_mse(h_f, self.control, position_mask(ft, c.mask), c.average)
        if retain is not None and c.retain_loss == "activation":
            rt = retain.tensors
            frozen = self.frozen_block_output(model, rt)
            r = activation_mse(block_output(model, self.layer, rt), frozen, position_mask(rt, c.mask), c.average)
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
