"""ILU — Invariant LLM Unlearning (Wang et al., 2025, arXiv 2506.01339).

    min_θ  ℓ_u(θ) + λ · Σ_i ( ∂/∂w ℓ_i(w ∘ θ; D_i) |_{w=1} )²

ℓ_u is the loss of a base unlearning method (NPO by default; any gradient method: RMU, SimNPO,
GradDiff ...), with its own retain term, optimiser settings and trainable parameters. The sum is the
IRMv1 penalty (Arjovsky et al., 2019) over fine-tuning *environments* D_i (tasks from the TASKS
registry; the paper's "ILU(GSM8K)" is one environment, ``arith`` plays GSM8K on the embedded world):
a scalar dummy w = 1 multiplies the logits, ℓ_i = CE(w·logits, labels) is the token-mean CE over
the answer tokens of an environment batch (prompt masked), and the penalty is the square of its
derivative in w, which equals ( mean over answer tokens of E_p[z] − z_y )². Each micro-step pairs one
environment example with each forget example (``env_batch_size=-1``).

Pitfalls:

- w multiplies the **logits**. On a hidden state that feeds an RMSNorm the norm cancels the scale
  and the derivative is ~0: a penalty that silently does nothing.
- The penalty's gradient is second order (``create_graph=True``); flash / memory-efficient SDPA
  kernels have no double backward. The model is switched to eager attention for the run (and back
  afterwards); a model that cannot switch is refused with a clear error.
- This is NOT the gradient-norm penalty ‖∇_θ ℓ‖²: the derivative is in the one scalar w, not in θ.

Cost: one extra forward per environment per micro-step plus the double backward through it, about
2–3× a plain step in time and memory (``benchmarks/ilu_cost.py`` measures it).

λ (``lam``) defaults to 1.0: the paper reports that a small λ (≈0.05) changes little and a large λ
hurts forget quality; on the embedded world it is a value to tune, not a reproduction of theirs.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Callable

import torch

from ..batching import encode_example, pad_id_of
from ..data.types import Example, PlanContext, UnlearnData, call_hook, train_examples
from ..errors import UnlearnbenchError
from ..progress import SILENT, Progress
from ..registry import METHODS, TASKS, plugin_version, register_method
from ..spec import build_config, config_to_dict
from .base import Batch, GradientMethod, _Cycler, sequence_nll


@dataclass(frozen=True)
class ILUConfig:
    base: str = field(default="npo", metadata={"help": "base unlearning method ℓ_u (any gradient method)"})
    envs: tuple[str, ...] = field(default=("arith",), metadata={"help": "tasks D_i used as IRM environments"})
    lam: float = field(default=1.0, metadata={"help": "weight λ of the IRMv1 penalty"})
    env_batch_size: int = field(
        default=-1, metadata={"help": "examples per environment per micro-step (-1: the base's batch_size)"}
    )
    lr: float | None = field(default=None, metadata={"help": "override the base's lr (none: the base's value)"})
    epochs: int | None = field(default=None, metadata={"help": "override the base's epochs (none: the base's value)"})
    seed: int | None = field(default=None, metadata={"help": "override the base's seed (none: the base's value)"})

    def __post_init__(self):
        if self.base == "ilu":
            raise ValueError("base=ilu: ILU adds a penalty to another method's loss, not to its own")
        if not self.envs:
            raise ValueError("envs needs at least one task")
        if len(set(self.envs)) != len(self.envs):
            raise ValueError(f"envs lists a task twice: {'+'.join(self.envs)}")
        if self.lam < 0:
            raise ValueError("lam must be >= 0")
        if self.env_batch_size < 1 and self.env_batch_size != -1:
            raise ValueError("env_batch_size must be positive or -1")


def irm_penalty(model, batch: Batch) -> torch.Tensor:
    """( ∂/∂w CE(w·logits) at w=1 )² on one environment batch, differentiable in the model."""
    w = torch.ones((), device=next(model.parameters()).device, requires_grad=True)
    nll, count = sequence_nll(model, batch, logits_scale=w)
    risk = nll.sum() / count.sum().clamp_min(1)
    (grad_w,) = torch.autograd.grad(risk, w, create_graph=True)
    return grad_w.pow(2)


def environment_examples(name: str) -> list[Example]:
    """The training split of task ``name`` (its default config; a test split is never read)."""
    cls = TASKS.get(name)
    return train_examples(cls(cls.Config()))


def _eager_attention(model) -> Callable[[], None]:
    """Switch to eager attention (double backward); returns the function that switches back."""
    impl = getattr(getattr(model, "config", None), "_attn_implementation", None)
    if impl in (None, "eager"):
        return lambda: None
    try:
        model.set_attn_implementation("eager")
    except Exception as e:  # no such method, or the model class has no eager path
        raise UnlearnbenchError(
            f"ilu needs eager attention (its penalty is differentiated twice) but the model uses "
            f"{impl!r} and cannot switch ({type(e).__name__}: {e}); load it with attn_implementation='eager'"
        ) from None
    return lambda: model.set_attn_implementation(impl)


@register_method()
class ILU:
    name = "ilu"
    version = "1"
    Config = ILUConfig
    description = "invariant unlearning: a base method's loss + λ·IRMv1 penalty on fine-tuning tasks"

    def __init__(self, config: ILUConfig | None = None):
        self.config = config or ILUConfig()
        base_cls = METHODS.get(self.config.base)  # unknown names fail here, before any model loads
        if not (isinstance(base_cls, type) and issubclass(base_cls, GradientMethod)):
            raise UnlearnbenchError(f"ilu needs a gradient-trained base method; {self.config.base!r} is not one")
        for env in self.config.envs:
            TASKS.get(env)
        self.base: GradientMethod | None = None
        self.env_tasks: dict[str, object] = {}  # environments configured by the run (local data files)
        self._bound_envs: dict[str, object] = {}  # the other environments, bound to the run (bind hook)
        self._env_train: dict[str, list[Example]] = {}  # each environment's training examples, read once

    def bind(self, ctx: PlanContext) -> list[str]:
        """At plan time: build the base from the benchmark's tuned defaults and ILU's overrides, and
        use the ``--data`` task objects for the environments they name; returns the names used."""
        self._bind_base(ctx.defaults_for)
        base_uses = call_hook(self.base, "bind", ctx)  # the base's own plan-time checks (rmu: its layer)
        self.env_tasks = {n: t for n, t in ctx.data_tasks.items() if n in self.config.envs}
        # every environment task hears of the run too (retain/syntax/filler are built from its benchmark)
        self._bound_envs = {}
        for n in self.config.envs:
            task = self.env_tasks.get(n)
            if task is None:
                cls = TASKS.get(n)
                task = cls(cls.Config())
            call_hook(task, "bind", ctx)
            self._bound_envs[n] = task
        # read every environment's training split now: a missing or malformed file, a hub split that
        # cannot be had or an empty environment is one line at plan time, not a failed unlearning cell
        self._env_train = {n: self._read_env(n) for n in self.config.envs}
        return sorted(set(self.env_tasks) | set(base_uses))

    def _env_examples(self, name: str) -> list[Example]:
        if name not in self._env_train:
            self._env_train[name] = self._read_env(name)
        return self._env_train[name]

    def _read_env(self, name: str) -> list[Example]:
        """An environment's training examples: an environment is only trained on, so a dataset task
        reads its train split alone (``--data gsm8k=train.jsonl`` needs no test file)."""
        task = self._bound_envs.get(name) or self.env_tasks.get(name)
        examples = train_examples(task) if task is not None else environment_examples(name)
        if not examples:
            raise UnlearnbenchError(f"ilu: environment {name!r} has no training examples")
        return examples

    def _bind_base(self, defaults_for: Callable[[str], dict]) -> None:
        c = self.config
        cls = METHODS.get(c.base)
        options = dict(defaults_for(c.base))
        options.update({k: getattr(c, k) for k in ("lr", "epochs", "seed") if getattr(c, k) is not None})
        self.base = cls(build_config(cls.Config, options, plugin=c.base))

    def _bound(self) -> GradientMethod:
        if self.base is None:
            self._bind_base(lambda name: {})
        return self.base

    def key_extra(self) -> dict:
        """The resolved base goes into the result key: its tuned defaults decide the weights too."""
        base = self._bound()
        out = {
            "base": {
                "name": self.config.base,
                "version": plugin_version(type(base)),
                "config": config_to_dict(base.config),
            }
        }
        if self.env_tasks:  # environments read from local files: their config and content decide too
            out["env_data"] = {
                n: {"config": config_to_dict(t.config), **call_hook(t, "key_extra")}
                for n, t in sorted(self.env_tasks.items())
            }
        return out

    def unlearn(self, model, data: UnlearnData, progress: Progress = SILENT) -> dict:
        c, base = self.config, self._bound()
        bc = base.config
        device = next(model.parameters()).device
        pad = pad_id_of(data.tokenizer)
        bs = bc.batch_size if c.env_batch_size == -1 else c.env_batch_size
        envs = []
        for name in c.envs:
            enc = [
                encode_example(data.tokenizer, ex.prompt, ex.target, max_length=bc.max_length)
                for ex in self._env_examples(name)
            ]
            if not enc:
                raise UnlearnbenchError(f"ilu: environment {name!r} has no training examples")
            # own RNGs: the base's forget/retain batch order must not depend on the environments
            envs.append(_Cycler(enc, bs, pad, random.Random(f"ilu:{name}:{bc.seed}"), device))

        def loss_with_penalty(model, forget, retain):
            loss, parts = base.loss(model, forget, retain)
            penalty = sum(irm_penalty(model, env.next()) for env in envs)
            return loss + c.lam * penalty, {**parts, "irm_penalty": penalty.item()}

        restore_attention = _eager_attention(model)
        try:
            stats = base.unlearn(model, data, progress, loss=loss_with_penalty)
        finally:
            restore_attention()
        return {**stats, "base": c.base, "envs": list(c.envs), "lam": c.lam}
