"""The shared training loop of gradient-based unlearning methods.

A method subclasses :class:`GradientMethod` and writes ``loss(model, forget, retain)``: everything
else (batching, optimiser, learning-rate schedule, gradient accumulation, divergence checks,
progress) lives here once. Every benchmark recipe chooses its reference schedule
(``schedule`` and ``warmup``; :func:`lr_schedule`). Methods that are not trained (ROCR) implement ``unlearn`` directly.

Retain terms (``retain_loss``), against ``p_ref``, the frozen starting model:

* ``nll``: the token-mean NLL of retain answers.
* ``kl`` (stored as ``kl_ref``): KL(p_ref ‖ p_θ) at every position of the padded retain batch
  (prompt, answer and padding), summed over the vocabulary and divided by batch × length — the
  term of TOFU's ``KL`` method and open-unlearning's ``compute_kl_divergence``
  (``kl_div(log p_θ, log p_ref, reduction="batchmean", log_target=True)`` over
  ``logits.view(-1, V)``). Like theirs it depends on how much padding a batch has.
* ``kl_answer``: KL(p_θ ‖ p_ref) on answer tokens only, mean over them (this harness's ``kl``
  before issue 11: the other direction and other positions; on one batch 0.806 vs 0.907).
* ``none``.

Both KL terms keep a frozen copy of the model in memory (they need full next-token distributions
on batches that change every step, so they cannot be precomputed); ``nll`` needs no copy. ``kl``
is normalised to ``kl_ref`` in the config, so cells stored when ``kl`` meant ``kl_answer`` are
never taken for the new term.
"""

from __future__ import annotations

import copy
import math
import random
import time
from dataclasses import dataclass, field
from typing import ClassVar, Literal

import torch
import torch.nn.functional as F

from ..batching import Encoded, collate, encode_example, pad_id_of
from ..data.types import UnlearnData
from ..errors import UnlearnbenchError
from ..progress import SILENT, Progress


class MethodDiverged(UnlearnbenchError):
    """The loss became NaN or infinite: the cell is recorded as failed with this reason."""


@dataclass(frozen=True)
class GradientMethodConfig:
    lr: float = field(default=1e-3, metadata={"help": "AdamW learning rate"})
    epochs: int = field(default=5, metadata={"help": "passes over the forget set"})
    max_steps: int = field(default=-1, metadata={"help": "stop after this many optimiser steps (-1: no limit)"})
    batch_size: int = field(default=16, metadata={"help": "forget (and retain) examples per micro-batch"})
    grad_accum: int = field(default=1, metadata={"help": "micro-batches per optimiser step"})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay"})
    warmup: float = field(default=0.1, metadata={"help": "fraction of steps with linear LR warm-up"})
    schedule: Literal["constant", "linear"] = field(
        default="constant",
        metadata={
            "help": "LR after the warm-up: constant, or linear decay to 0 at the last step (HF Trainer's default)"
        },
    )
    max_length: int = field(default=256, metadata={"help": "tokens per example (longer are cut)"})
    seed: int = field(default=0, metadata={"help": "data order seed"})

    def __post_init__(self):
        if self.lr <= 0 or self.epochs < 1 or self.batch_size < 1 or self.grad_accum < 1:
            raise ValueError("lr, epochs, batch_size and grad_accum must be positive")
        if not 0 <= self.warmup < 1:
            raise ValueError("warmup must be in [0, 1)")
        if self.max_steps == 0 or self.max_steps < -1:
            raise ValueError("max_steps must be positive (or -1 for no limit)")
        if self.weight_decay < 0:
            raise ValueError("weight_decay must be >= 0")
        if self.max_length < 2:
            raise ValueError("max_length must be at least 2 tokens")


@dataclass(frozen=True)
class RetainConfigMixin:
    """Fields of methods that have a retain term (``γ·L_f + α·R``)."""

    retain_loss: Literal["nll", "kl", "kl_ref", "kl_answer", "none"] = field(
        default="nll",
        metadata={"help": "retain term R: nll, kl (= kl_ref: KL(p_ref‖p_θ), every position), kl_answer, none"},
    )
    alpha: float = field(default=1.0, metadata={"help": "weight α of the retain term"})
    gamma: float = field(default=1.0, metadata={"help": "weight γ of the forget term"})

    def __post_init__(self):
        parent = getattr(super(), "__post_init__", None)  # the method config's own checks (MRO)
        if parent is not None:
            parent()
        if self.retain_loss == "kl":  # the reference definition; a distinct stored value (see module doc)
            object.__setattr__(self, "retain_loss", "kl_ref")
        if self.alpha < 0 or self.gamma < 0:  # a negative weight turns the term's descent into ascent
            raise ValueError("alpha and gamma must be >= 0")


@dataclass
class Batch:
    tensors: dict[str, torch.Tensor]
    index: torch.Tensor  # positions of the examples in the forget/retain list


class _Cycler:
    """Endless shuffled mini-batches over a list of encoded examples."""

    def __init__(self, enc: list[Encoded], batch_size: int, pad_id: int, rng: random.Random, device):
        self.enc, self.bs, self.pad, self.rng, self.device = enc, batch_size, pad_id, rng, device
        self.order: list[int] = []

    def next(self) -> Batch:
        if len(self.order) < self.bs:
            fresh = list(range(len(self.enc)))
            self.rng.shuffle(fresh)
            self.order += fresh
        idx, self.order = self.order[: self.bs], self.order[self.bs :]
        tensors = {k: v.to(self.device) for k, v in collate([self.enc[i] for i in idx], self.pad).items()}
        return Batch(tensors, torch.tensor(idx))


def sequence_nll(model, batch: Batch, *, logits_scale: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sequence summed NLL of the target tokens and their counts."""
    t = batch.tensors
    logits = model(input_ids=t["input_ids"], attention_mask=t["attention_mask"]).logits[:, :-1].float()
    if logits_scale is not None:
        logits = logits * logits_scale
    labels = t["labels"][:, 1:]
    mask = labels != -100
    nll = F.cross_entropy(logits.transpose(1, 2), labels.clamp_min(0), reduction="none") * mask
    return nll.sum(1), mask.sum(1)


def token_mean_nll(model, batch: Batch) -> torch.Tensor:
    s, n = sequence_nll(model, batch)
    return s.sum() / n.sum().clamp_min(1)


KL_TERMS = ("kl_ref", "kl_answer")


def lr_schedule(opt, schedule: str, warmup: float, steps: int):
    """The learning-rate schedule of ``steps`` optimiser steps, ``W = max(1, int(warmup·steps))``
    warm-up steps (none when ``warmup`` is 0).

    * ``constant``: factor ``min(1, (s+1)/W)`` at step s, then 1 (with ``warmup=0``: constant, as
      MUSE's baselines, ``lr_scheduler_type='constant'``). The warm-up reaches the full rate at step
      W−1, one step before HF's ``constant_with_warmup``; kept so stored results do not move.
    * ``linear``: transformers' ``get_linear_schedule_with_warmup`` — ``s/W`` during the warm-up,
      then a linear decay to 0 at the last step: HF Trainer's default, which TOFU's and OPTML's
      WMDP code train with (warm-up one epoch of ten / 10 % of the steps).
    """
    warm = max(1, int(warmup * steps)) if warmup > 0 else 0
    if schedule == "linear":
        from transformers import get_linear_schedule_with_warmup

        return get_linear_schedule_with_warmup(opt, warm, steps)
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warm) if warm else 1.0)


def kl_ref_all_positions(logits: torch.Tensor, ref_logits: torch.Tensor) -> torch.Tensor:
    """KL(p_ref ‖ p_θ) summed over the vocabulary, mean over all batch × length positions
    (TOFU / open-unlearning's retain KL)."""
    v = logits.shape[-1]
    logp = F.log_softmax(logits, -1).reshape(-1, v)
    logq = F.log_softmax(ref_logits, -1).reshape(-1, v)
    return F.kl_div(logp, logq, reduction="batchmean", log_target=True)


def kl_theta_answer_tokens(logits: torch.Tensor, ref_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """KL(p_θ ‖ p_ref) at the positions that predict answer tokens, mean over them."""
    logp, logq = F.log_softmax(logits[:, :-1], -1), F.log_softmax(ref_logits[:, :-1], -1)
    mask = (labels[:, 1:] != -100).float()
    kl = (logp.exp() * (logp - logq)).sum(-1)
    return (kl * mask).sum() / mask.sum().clamp_min(1)


class GradientMethod:
    """Base class: subclasses set ``name``, ``version``, ``Config`` and implement ``loss``."""

    name: ClassVar[str]
    version: ClassVar[str]
    Config: ClassVar[type] = GradientMethodConfig
    description: ClassVar[str] = ""
    uses_retain: ClassVar[bool] = True

    def __init__(self, config=None):
        self.config = config or self.Config()
        self.ref_model = None

    # -- hooks ----------------------------------------------------------------------------
    def setup(self, model, data: UnlearnData, forget_enc: list[Encoded]) -> None:
        """Precompute what the loss needs (e.g. NPO's reference log-likelihoods)."""
        if self.uses_retain and getattr(self.config, "retain_loss", "none") in KL_TERMS:
            self.ref_model = copy.deepcopy(model).eval().requires_grad_(False)

    def trainable_parameters(self, model) -> list[torch.nn.Parameter]:
        return [p for p in model.parameters() if p.requires_grad]

    def loss(self, model, forget: Batch, retain: Batch | None) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError

    def retain_term(self, model, retain: Batch | None) -> torch.Tensor:
        kind = getattr(self.config, "retain_loss", "none")
        if retain is None or kind == "none":
            return torch.zeros((), device=next(model.parameters()).device)
        if kind == "nll":
            return token_mean_nll(model, retain)
        t = retain.tensors
        logits = model(input_ids=t["input_ids"], attention_mask=t["attention_mask"]).logits.float()
        with torch.no_grad():
            ref = self.ref_model(input_ids=t["input_ids"], attention_mask=t["attention_mask"]).logits.float()
        if kind == "kl_ref":
            return kl_ref_all_positions(logits, ref)
        return kl_theta_answer_tokens(logits, ref, t["labels"])

    # -- the loop -------------------------------------------------------------------------
    def unlearn(self, model, data: UnlearnData, progress: Progress = SILENT, loss=None) -> dict:
        """Train ``model`` in place on ``self.loss`` (or ``loss``, a function with the same signature:
        ILU passes its base's loss plus its penalty) and return the stats."""
        cfg = self.config
        tok = data.tokenizer
        device = next(model.parameters()).device
        rng = random.Random(cfg.seed)
        torch.manual_seed(cfg.seed)
        forget_enc = [encode_example(tok, ex.prompt, ex.target, max_length=cfg.max_length) for ex in data.forget]
        retain_enc = [encode_example(tok, ex.prompt, ex.target, max_length=cfg.max_length) for ex in data.retain]
        if not forget_enc:
            raise UnlearnbenchError(f"{self.name}: the forget set is empty")
        pad = pad_id_of(tok)
        forget_it = _Cycler(forget_enc, cfg.batch_size, pad, rng, device)
        retain_it = _Cycler(retain_enc, cfg.batch_size, pad, rng, device) if (retain_enc and self.uses_retain) else None
        was_trainable = {n: p.requires_grad for n, p in model.named_parameters()}  # before setup: it may freeze
        try:
            self.setup(model, data, forget_enc)
            return self._loop(model, cfg, forget_it, retain_it, forget_enc, progress, loss or self.loss)
        finally:
            # methods may freeze parameters (RMU trains three down_proj matrices); the model handed
            # back must be an ordinary model again, or a later fine-tuning attack would train less
            for n, p in model.named_parameters():
                p.requires_grad_(was_trainable[n])
            model.eval()
            self.ref_model = None

    def _loop(self, model, cfg, forget_it, retain_it, forget_enc, progress, objective) -> dict:
        per_epoch = math.ceil(len(forget_enc) / (cfg.batch_size * cfg.grad_accum))
        steps = cfg.epochs * per_epoch
        if cfg.max_steps > 0:
            steps = min(steps, cfg.max_steps)
        params = self.trainable_parameters(model)
        opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        sched = lr_schedule(opt, cfg.schedule, cfg.warmup, steps)
        model.train()
        history: list[dict[str, float]] = []
        t0 = time.time()
        with progress.task(f"unlearn ({self.name})", steps) as bar:
            for step in range(steps):
                opt.zero_grad(set_to_none=True)
                stats: dict[str, float] = {}
                for _ in range(cfg.grad_accum):
                    fb = forget_it.next()
                    rb = retain_it.next() if retain_it else None
                    loss, parts = objective(model, fb, rb)
                    if not torch.isfinite(loss):
                        raise MethodDiverged(f"{self.name}: loss is {loss.item()} at step {step}")
                    (loss / cfg.grad_accum).backward()
                    for k, v in parts.items():
                        stats[k] = stats.get(k, 0.0) + v / cfg.grad_accum
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                opt.step()
                sched.step()
                history.append(stats)
                bar.advance()
                bar.update(**{k: round(v, 4) for k, v in stats.items()})
        return {
            "steps": steps,
            "seconds": round(time.time() - t0, 3),
            "effective_batch_size": cfg.batch_size * cfg.grad_accum,
            "final": history[-1] if history else {},
            "history": history,
        }
