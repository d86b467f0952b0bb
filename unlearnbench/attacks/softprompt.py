"""``softprompt`` — a trained soft prompt prepended to every input (embedding-space attack).

Schwinn et al. 2024 ("Soft Prompt Threats", arXiv 2402.09063) showed that a few continuous input
embeddings, optimised with the model frozen, extract knowledge an unlearned model no longer
gives in text. The attack: ``k`` embeddings ``P`` (``tokens``), initialised from the embeddings
of ``k`` seeded-random vocabulary tokens, prepended to every input; trained with Adam on ``n``
forget examples (the unlearning form; ``people=k`` draws them from k random forget people so the
others are held out, as ``relearn:forget`` does) to minimise the next-token loss of the target
tokens only::

    min_P  mean over target tokens t of  -log p(x_t | P, x_<t)

The model is evaluated with the soft prompt at initialisation (``step=0``) and every
``eval_every`` steps (the last step always), on every probe's items and forms, so held-out forms
and, with ``people``, held-out people show whether the prompt recovers knowledge or only the
trained sentences. The oracle control is what makes a number mean something here: a soft prompt
can make a model emit strings it never learned (arXiv 2502.15836), and the runner runs the same
attack on the retrain oracle automatically.

What the probes see (:class:`SoftPromptLM`): a module with the causal LM's interface
(``model(input_ids=, attention_mask=).logits``, ``model.generate(input_ids=, attention_mask=,
...)``, ``config``, ``generation_config``) that feeds the frozen model ``[P; embed(ids)]`` through
``inputs_embeds`` with the mask ``[1...1; attention_mask]`` and position ids counted along that
mask (so right padding for scoring and left padding for generation both put the real tokens at
positions ``k, k+1, ...``), and returns the logits of the real positions only. ``generate``
returns ``input_ids`` followed by the generated tokens, as the plain model does, and stopping
criteria see the same ids. The prompt sits before everything, BOS included.

Deviations and limits: Schwinn et al. optimise one prompt per question with a target answer;
here one universal prompt is trained on the unlearning texts (no per-item optimisation, no
access to the evaluation items). peft's prompt tuning is not used: its forward returns the
virtual tokens' logits too, which every scorer here would misalign. Residual-stream readers
(:mod:`unlearnbench.hidden`, hence the ``lens`` and ``linear`` probes) see through the wrapper
(``lm``, ``prefix_length``): they read the frozen model's blocks at the real tokens' positions,
shifted by ``k``, so a hidden-state probe of a soft-prompted model reads what the soft prompt
makes the model compute about the question. The vLLM backend cannot run it (refused before
training). The model handed in is never modified: gradients are taken
with respect to ``P`` alone (``torch.autograd.grad``), so no weight gets a ``.grad``.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..batching import collate, encode_example, pad_id_of, shuffled_batches
from ..errors import UnlearnbenchError
from ..progress import SILENT, Progress
from ..registry import register_attack
from .relearn import owners_of


@dataclass(frozen=True)
class SoftPromptConfig:
    tokens: int = field(default=8, metadata={"help": "trainable embeddings prepended to every input"})
    n: int = field(default=20, metadata={"help": "forget examples trained on (-1: all)"})
    people: int = field(
        default=-1,
        metadata={
            "help": "draw the examples from this many seeded-random forget people, holding the others out (-1: all)"
        },
    )
    steps: int = field(default=100, metadata={"help": "Adam steps"})
    eval_every: int = field(default=50, metadata={"help": "evaluate every this many steps (and at the last)"})
    lr: float = field(default=5e-2, metadata={"help": "Adam learning rate (constant)"})
    batch_size: int = field(default=8, metadata={"help": "examples per step"})
    max_length: int = field(default=256, metadata={"help": "tokens per example"})
    seed: int = field(default=0, metadata={"help": "example draw, data order and initial tokens"})

    def __post_init__(self):
        if self.tokens < 1 or self.steps < 1 or self.eval_every < 1 or self.lr <= 0 or self.batch_size < 1:
            raise ValueError("tokens, steps, eval_every, lr and batch_size must be positive")
        if self.n == 0 or self.n < -1:
            raise ValueError("n must be positive (or -1 for all forget examples)")
        if self.people == 0 or self.people < -1:
            raise ValueError("people must be positive (or -1 for all forget people)")
        if self.max_length < 2:
            raise ValueError("max_length must be at least 2")


Evaluate = Callable[[str, int, object], None]


class _PromptIds:
    """A stopping criterion that sees the prompt ids before the generated ones, as it would with
    the plain model (``generate`` on ``inputs_embeds`` hands criteria the new tokens alone)."""

    def __init__(self, inner, prompt_ids: torch.Tensor):
        self.inner, self.prompt_ids = inner, prompt_ids

    def __call__(self, input_ids, scores, **kwargs):
        return self.inner(torch.cat([self.prompt_ids, input_ids], dim=1), scores, **kwargs)


class SoftPromptLM(nn.Module):
    """The frozen causal LM ``lm`` with the trainable embeddings ``soft`` (k, d) prepended to
    every input (see the module docstring). ``k = 0`` is the plain model."""

    def __init__(self, lm: nn.Module, init: torch.Tensor):
        super().__init__()
        self.lm = lm  # registered first: next(parameters()) is the model's own (device, dtype)
        self.soft = nn.Parameter(init.detach().float().clone())

    @property
    def config(self):
        return self.lm.config

    @property
    def generation_config(self):
        return self.lm.generation_config

    @property
    def prefix_length(self) -> int:
        return self.soft.shape[0]

    def _inputs(self, input_ids, attention_mask):
        emb = self.lm.get_input_embeddings()(input_ids)
        b, k = input_ids.shape[0], self.prefix_length
        if attention_mask is None:
            attention_mask = torch.ones(input_ids.shape, dtype=torch.long, device=input_ids.device)
        soft = self.soft.to(emb.dtype).unsqueeze(0).expand(b, -1, -1)
        mask = torch.cat([attention_mask.new_ones((b, k)), attention_mask], dim=1)
        positions = (mask.long().cumsum(-1) - 1).clamp_min(0)  # padding: any position, it is masked
        return torch.cat([soft, emb], dim=1), mask, positions

    def forward(self, input_ids, attention_mask=None, labels=None, **kwargs):
        from transformers.modeling_outputs import CausalLMOutput

        embeds, mask, positions = self._inputs(input_ids, attention_mask)
        out = self.lm(inputs_embeds=embeds, attention_mask=mask, position_ids=positions, use_cache=False, **kwargs)
        logits = out.logits[:, self.prefix_length :]
        loss = None
        if labels is not None:  # HF's causal LM loss: mean over the labelled next tokens
            shift = logits[:, :-1].float()
            loss = F.cross_entropy(shift.reshape(-1, shift.shape[-1]), labels[:, 1:].reshape(-1), ignore_index=-100)
        return CausalLMOutput(loss=loss, logits=logits)

    def generate(self, input_ids, attention_mask=None, stopping_criteria=None, **kwargs):
        from transformers import StoppingCriteriaList

        embeds, mask, _ = self._inputs(input_ids, attention_mask)
        if stopping_criteria:
            stopping_criteria = StoppingCriteriaList([_PromptIds(c, input_ids) for c in stopping_criteria])
        new = self.lm.generate(inputs_embeds=embeds, attention_mask=mask, stopping_criteria=stopping_criteria, **kwargs)
        return torch.cat([input_ids, new.to(input_ids.device)], dim=1)


def initial_prompt(model, tokenizer, k: int, seed: int) -> tuple[torch.Tensor, list[int]]:
    """The embeddings of ``k`` seeded-random vocabulary tokens (special tokens excluded), and their ids."""
    emb = model.get_input_embeddings().weight
    special = set(getattr(tokenizer, "all_special_ids", []) or [])
    pool = [i for i in range(emb.shape[0]) if i not in special]
    rng = random.Random(f"softprompt-init:{seed}")
    ids = [rng.choice(pool) for _ in range(k)]
    return emb.detach()[ids].float().clone(), ids


def _require_hf_backend() -> None:
    from ..generation import resolve

    if resolve() != "hf":
        raise UnlearnbenchError(
            "softprompt: the vllm generation backend cannot prepend trained embeddings; run it with --backend hf"
        )


@register_attack()
class SoftPromptAttack:
    name = "softprompt"
    version = "1"
    Config = SoftPromptConfig
    description = "k trainable input embeddings prepended, trained on n forget examples (model frozen)"

    def __init__(self, config: SoftPromptConfig | None = None):
        self.config = config or SoftPromptConfig()

    def _draw(self, tokenizer, benchmark) -> tuple[list, dict]:
        cfg = self.config
        if benchmark is None:
            raise UnlearnbenchError("softprompt needs a benchmark with a forget set")
        data = benchmark.unlearn_data(tokenizer)
        pool = list(data.forget)
        if not pool:
            raise UnlearnbenchError("softprompt: the benchmark's forget set is empty")
        rng = random.Random(f"softprompt-draw:{cfg.seed}")
        owner, people = owners_of(pool, data)
        candidates = list(range(len(pool)))
        if cfg.people != -1:
            if not people:
                raise UnlearnbenchError(
                    "softprompt,people=...: the benchmark does not say whose the forget examples are"
                )
            chosen = set(rng.sample(sorted(people), min(cfg.people, len(people))))
            candidates = [i for i in candidates if owner.get(i) in chosen]
        n = len(candidates) if cfg.n < 0 else min(cfg.n, len(candidates))
        idx = sorted(rng.sample(candidates, n))
        covered = sorted({owner[i] for i in idx if i in owner})
        held_out = sorted(set(people) - set(covered))
        stats = {
            "n_samples": len(idx),
            "n_forget_examples": len(pool),
            "sample_indices": idx,
            "trained_people": [people[k][0] for k in covered],
            "held_out_people": [people[k][0] for k in held_out],
        }
        if any(people[k][1] is not None for k in people):
            stats["trained_ids"] = [people[k][1] for k in covered]
            stats["held_out_ids"] = [people[k][1] for k in held_out]
        return [pool[i] for i in idx], stats

    def run(self, model, tokenizer, task, evaluate: Evaluate, progress: Progress = SILENT, benchmark=None) -> dict:
        """Train a soft prompt for the frozen ``model``; ``evaluate(checkpoint, step, wrapper)`` at
        step 0 and every ``eval_every`` steps. ``task`` is unused."""
        cfg = self.config
        _require_hf_backend()
        samples, draw = self._draw(tokenizer, benchmark)
        rng = random.Random(cfg.seed)
        init, init_ids = initial_prompt(model, tokenizer, cfg.tokens, cfg.seed)
        device = next(model.parameters()).device
        wrapper = SoftPromptLM(model, init.to(device))
        was_training = model.training
        wrapper.eval()  # the frozen model runs without dropout while the prompt trains
        enc = [
            encode_example(tokenizer, ex.prompt, ex.target, add_eos=True, max_length=cfg.max_length) for ex in samples
        ]
        if not any(len(e.ids) > e.n_prompt for e in enc):
            raise UnlearnbenchError("softprompt: the drawn forget examples have no target tokens")
        opt = torch.optim.Adam([wrapper.soft], lr=cfg.lr)
        pad = pad_id_of(tokenizer)

        def batches():
            while True:
                yield from shuffled_batches(len(enc), cfg.batch_size, rng)

        losses, evaluated, t0 = [], [0], time.time()
        try:
            evaluate("step=0", 0, wrapper)
            with progress.task("attack softprompt", cfg.steps) as bar:
                for step, idx in zip(range(1, cfg.steps + 1), batches()):
                    batch = {k: v.to(device) for k, v in collate([enc[i] for i in idx], pad).items()}
                    loss = wrapper(**batch).loss
                    if not torch.isfinite(loss):
                        raise UnlearnbenchError(f"softprompt: loss is {loss.item()} at step {step}")
                    (grad,) = torch.autograd.grad(loss, [wrapper.soft])
                    wrapper.soft.grad = grad
                    opt.step()
                    wrapper.soft.grad = None
                    losses.append(loss.item())
                    bar.advance()
                    bar.update(loss=round(losses[-1], 4))
                    if step % cfg.eval_every == 0 or step == cfg.steps:
                        evaluate(f"step={step}", step, wrapper)
                        evaluated.append(step)
        finally:
            model.train(was_training)
        return {
            **draw,
            "tokens": cfg.tokens,
            "init_token_ids": init_ids,
            "steps": cfg.steps,
            "evaluated_steps": evaluated,
            "effective_batch_size": min(cfg.batch_size, len(enc)),
            "first_loss": losses[0],
            "final_loss": losses[-1],
            "min_loss": min(losses),
            "prompt_norm": round(float(wrapper.soft.detach().norm(dim=-1).mean()), 6),
            "init_prompt_norm": round(float(init.norm(dim=-1).mean()), 6),
            "seconds": round(time.time() - t0, 3),
        }
