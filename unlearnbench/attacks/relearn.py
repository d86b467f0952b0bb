"""``relearn:forget`` and ``relearn:<task>`` — in-domain relearning (Hu et al., ICLR 2025).

Fine-tune the unlearned model for a few steps on a handful of samples and watch the forget set come
back: ``relearn:forget`` draws ``n`` of the benchmark's forget examples (the unlearning form), with
``people=k`` restricted to k randomly chosen forget people so the others are held out;
``relearn:<task>`` draws ``n`` training examples of a task plugin (e.g. loosely related text).
The draw is seeded; which samples and which forget people they cover go into the stats, so a reader
can tell relearned-on from held-out people in the per-item scores.

Training: AdamW at a constant rate, gradient norm clipped to 1, cycling over the drawn samples in
shuffled batches, loss on target tokens only (the embedded world's forget examples have an empty
prompt, so the whole sentence is the target). The model is evaluated before the first step
(``step=0``) and every ``eval_every`` steps (``step=K``; the last step is always evaluated). The
model handed in is never modified: the attack trains a deep copy (full fine-tuning) or LoRA adapters
on a copy (``lora=true``, peft).

Defaults are for the embedded world (a tiny model trained at a few 1e-3): full fine-tuning at
lr 1e-3, 30 steps of 8. Hu et al.'s recipe on 7B models is ``lora=true,lr=2e-4`` with 15-60 steps
(``steps=60``); it is reachable through options.
"""

from __future__ import annotations

import difflib
import random
import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from ..batching import encode_example, pad_id_of, shuffled_batches
from ..data.types import PlanContext, call_hook, train_examples
from ..errors import UnlearnbenchError
from ..progress import SILENT, Progress
from ..registry import TASKS, plugin_version, register_attack
from ..spec import config_to_dict
from .finetune import sft_step, trainable_copy

FORGET = "forget"


@dataclass(frozen=True)
class RelearnConfig:
    n: int = field(default=20, metadata={"help": "samples drawn from the source (-1: all)"})
    people: int = field(
        default=-1,
        metadata={
            "help": "relearn:forget only: draw the samples from this many randomly chosen forget people, "
            "holding the others out (-1: all)"
        },
    )
    steps: int = field(default=30, metadata={"help": "optimizer steps"})
    eval_every: int = field(default=10, metadata={"help": "evaluate every this many steps (and at the last)"})
    lr: float = field(default=1e-3, metadata={"help": "AdamW learning rate (constant); Hu et al.: 2e-4 with LoRA"})
    batch_size: int = field(default=8, metadata={"help": "samples per step"})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay"})
    lora: bool = field(default=False, metadata={"help": "train LoRA adapters instead of all weights"})
    lora_r: int = field(default=8, metadata={"help": "LoRA rank"})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA alpha"})
    max_length: int = field(default=256, metadata={"help": "tokens per example"})
    seed: int = field(default=0, metadata={"help": "sample draw, data order and init seed"})

    def __post_init__(self):
        if self.steps < 1 or self.eval_every < 1 or self.lr <= 0 or self.batch_size < 1:
            raise ValueError("steps, eval_every, lr and batch_size must be positive")
        if self.n == 0 or self.n < -1:
            raise ValueError("n must be positive (or -1 for all samples)")
        if self.people == 0 or self.people < -1:
            raise ValueError("people must be positive (or -1 for all forget people)")
        if self.weight_decay < 0 or self.lora_r < 1 or self.lora_alpha < 1 or self.max_length < 2:
            raise ValueError("weight_decay must be >= 0, lora_r and lora_alpha positive, max_length at least 2")


Evaluate = Callable[[str, int, object], None]


@register_attack()
class RelearnAttack:
    name = "relearn"
    version = "1"
    Config = RelearnConfig
    needs_arg = "source"  # relearn:forget or relearn:<task>
    description = "in-domain relearning on n forget samples (or a task's text), evaluated every few steps"

    def __init__(self, config: RelearnConfig | None = None, arg: str | None = None):
        self.config = config or RelearnConfig()
        if not arg:
            raise UnlearnbenchError("relearn needs a source: relearn:forget or relearn:<task>, e.g. relearn:topic")
        if arg != FORGET and arg not in TASKS:
            choices = [FORGET, *TASKS.names()]
            close = difflib.get_close_matches(arg, choices, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise UnlearnbenchError(
                f"relearn: unknown source {arg!r}{hint} (use 'forget' or a task: {', '.join(choices[1:])})"
            )
        if arg != FORGET and self.config.people != -1:
            raise UnlearnbenchError("relearn: option people applies to relearn:forget only")
        self.source = arg
        self.source_task = None  # the source task configured by the run (local data files)
        self._bound_source = None  # the source task bound to the run (its bind hook), whatever configured it
        self._source_train: list | None = None  # relearn:<task>: the source's training examples, read once

    def bind(self, ctx: PlanContext) -> list[str]:
        """Use the configured task object (the CLI's --data files) if the source is among them, and
        bind the source task to the run (retain/syntax/filler are built from its benchmark)."""
        self.source_task = ctx.data_tasks.get(self.source) if self.source != FORGET else None
        self._bound_source = None
        if self.source != FORGET:
            task = self.source_task
            if task is None:
                cls = TASKS.get(self.source)
                task = cls(cls.Config())
            call_hook(task, "bind", ctx)
            self._bound_source = task
            # read the source now: a missing or malformed file, a hub split that cannot be had or an
            # empty source is one line at plan time, not a failed attack cell after the unlearning
            self._source_train = self._read_source(task)
        return [self.source] if self.source_task is not None else []

    def _read_source(self, task) -> list:
        """The source task's training examples: relearning only trains, so a dataset task reads its
        train split alone (``--data gsm8k=train.jsonl`` needs no test file)."""
        pool = train_examples(task)
        if not pool:
            raise UnlearnbenchError(f"relearn:{self.source}: the task has no training examples")
        return pool

    def key_extra(self) -> dict:
        """A task source's version decides the result too (the forget set is keyed by the benchmark)."""
        if self.source == FORGET:
            return {}
        source = {"name": self.source, "version": plugin_version(TASKS.get(self.source))}
        if self.source_task is not None:  # read from local files: their config and content decide too
            t = self.source_task
            source.update({"config": config_to_dict(t.config), **call_hook(t, "key_extra")})
        return {"source_task": source}

    # -- data -----------------------------------------------------------------------------
    def _draw(self, tokenizer, benchmark) -> tuple[list, dict]:
        """The samples to train on and what the stats should say about them."""
        cfg = self.config
        rng = random.Random(f"relearn-draw:{cfg.seed}")
        if self.source != FORGET:
            task = self._bound_source or self.source_task
            if task is None:
                cls = TASKS.get(self.source)
                task = cls(cls.Config())
            pool = self._source_train if self._source_train is not None else self._read_source(task)
            idx = sorted(rng.sample(range(len(pool)), _count(cfg.n, len(pool))))
            return [pool[i] for i in idx], {"source": self.source, "n_samples": len(idx), "sample_indices": idx}

        if benchmark is None:
            raise UnlearnbenchError("relearn:forget needs a benchmark with a forget set")
        data = benchmark.unlearn_data(tokenizer)
        pool = list(data.forget)
        if not pool:
            raise UnlearnbenchError("relearn:forget: the benchmark's forget set is empty")
        owner, people = owners_of(pool, data)  # index -> person key; key -> (name, world id)
        candidates = range(len(pool))
        if cfg.people != -1:
            if not people:
                raise UnlearnbenchError(
                    "relearn:forget,people=...: the benchmark does not say whose the forget examples are"
                )
            chosen = set(rng.sample(sorted(people), min(cfg.people, len(people))))
            candidates = [i for i in candidates if owner.get(i) in chosen]
        idx = sorted(rng.sample(list(candidates), _count(cfg.n, len(candidates))))
        covered = sorted({owner[i] for i in idx if i in owner})
        held_out = sorted(set(people) - set(covered))
        per_person = {people[k][0]: sum(owner.get(i) == k for i in idx) for k in covered}
        stats = {
            "source": FORGET,
            "n_samples": len(idx),
            "n_forget_examples": len(pool),
            "sample_indices": idx,
            "relearned_people": [people[k][0] for k in covered],
            "held_out_people": [people[k][0] for k in held_out],
            "samples_per_person": per_person,
        }
        if any(people[k][1] is not None for k in people):
            stats["relearned_ids"] = [people[k][1] for k in covered]
            stats["held_out_ids"] = [people[k][1] for k in held_out]
        return [pool[i] for i in idx], stats

    # -- attack ---------------------------------------------------------------------------
    def run(self, model, tokenizer, task, evaluate: Evaluate, progress: Progress = SILENT, benchmark=None) -> dict:
        """Train a copy of ``model`` on the drawn samples; ``evaluate(checkpoint, step, model)`` is
        called at step 0 and every ``eval_every`` steps. ``task`` is unused (the source is the arg)."""
        cfg = self.config
        samples, draw = self._draw(tokenizer, benchmark)
        torch.manual_seed(cfg.seed)
        rng = random.Random(cfg.seed)
        work = trainable_copy(model, cfg.lora, cfg.lora_r, cfg.lora_alpha)
        enc = [
            encode_example(tokenizer, ex.prompt, ex.target, add_eos=True, max_length=cfg.max_length) for ex in samples
        ]
        params = [p for p in work.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        pad = pad_id_of(tokenizer)

        def batches():
            while True:
                yield from shuffled_batches(len(enc), cfg.batch_size, rng)

        work.eval()
        evaluate("step=0", 0, work)
        losses, evaluated, t0 = [], [0], time.time()
        spec = f"relearn:{self.source}"
        with progress.task(f"attack {spec}", cfg.steps) as bar:
            work.train()
            for step, idx in zip(range(1, cfg.steps + 1), batches()):
                loss = sft_step(work, [enc[i] for i in idx], pad, opt, params, spec, step)
                losses.append(loss)
                bar.advance()
                bar.update(loss=round(loss, 4))
                if step % cfg.eval_every == 0 or step == cfg.steps:
                    work.eval()
                    evaluate(f"step={step}", step, work)
                    evaluated.append(step)
                    work.train()
        work.eval()
        return {
            **draw,
            "steps": cfg.steps,
            "evaluated_steps": evaluated,
            "seconds": round(time.time() - t0, 3),
            "effective_batch_size": min(cfg.batch_size, len(enc)),
            "first_loss": losses[0] if losses else None,
            "final_loss": losses[-1] if losses else None,
        }


def _count(n: int, available: int) -> int:
    return available if n < 0 else min(n, available)


def owners_of(pool: list, data) -> tuple[dict[int, str], dict[str, tuple[str, int | None]]]:
    """Whose each forget example is: (index -> person key, person key -> (name, benchmark id)).

    Exact when the benchmark says so (``UnlearnData.forget_owners``, e.g. the embedded world: each
    forget person's own unlearning examples); otherwise the person of ``data.concepts`` (forget
    people's names) named first in the example. Examples of no known person are left out of the map.
    """
    names = [c for c in (data.concepts or []) if c]
    owner: dict[int, str] = {}
    people: dict[str, tuple[str, int | None]] = {}
    if data.forget_owners and len(data.forget_owners) == len(pool) and len(names) == len(data.concepts):
        ids = list(data.concept_ids) if len(data.concept_ids) == len(names) else [None] * len(names)
        people = {name: (name, i) for name, i in zip(names, ids)}
        owner = {j: names[k] for j, k in enumerate(data.forget_owners) if k >= 0}
        if owner:
            return owner, people
        people = {}
    for name in names:
        people[name] = (name, None)
    for j, ex in enumerate(pool):
        text = ex.prompt + ex.target
        hits = [(text.find(c), c) for c in names if c in text]
        if hits:
            owner[j] = min(hits)[1]
    return owner, people
