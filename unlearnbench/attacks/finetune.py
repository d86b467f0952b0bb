"""``finetune:<task>`` — benign fine-tuning of the unlearned model on a downstream task.

The relearning attack of the ILU paper: plain supervised fine-tuning (AdamW, linear warm-up over
10 % of the steps, loss on the answer tokens only) on a task that shares no facts with the forget
set. The model is evaluated before the first step and after every epoch, so a cell yields a curve.

Budgets: by default the budget is ``epochs`` passes over the task (checkpoints ``epoch=N``). With
``steps=N`` the attack trains exactly N optimiser steps whatever the dataset's size (cycling over
it; ``epochs`` is then ignored), and with ``eval_every=K`` it is evaluated at step 0, every K steps
and at the last step (checkpoints ``step=K``, stored with their optimiser step): equal step
budgets across tasks of different sizes, and recovery peaks between epoch ends are seen (Yoon et
al., "Rethinking Benign Relearning", ICLR 2026, arXiv 2602.03379, on both flaws in BLUR).
The unlearned model handed in is never modified: the attack trains a deep copy (full fine-tuning)
or LoRA adapters on a copy (``lora=true``, peft).

Defaults are the embedded world's (a tiny model trained at lr 3e-3); for 7B models use the
reference recipe, ``lr=1e-5`` (shared/reference/algorithms.md).
"""

from __future__ import annotations

import copy
import math
import random
import time
from dataclasses import dataclass, field
from typing import Callable

import torch

from ..batching import collate, encode_example, pad_id_of, shuffled_batches
from ..errors import UnlearnbenchError
from ..progress import SILENT, Progress
from ..registry import register_attack

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
# GPT-2-style models (Conv1D): fused q/k/v, the attention and MLP output projections, the MLP input
LORA_TARGETS_GPT2 = ("c_attn", "c_proj", "c_fc")


@dataclass(frozen=True)
class FinetuneConfig:
    epochs: int = field(default=3, metadata={"help": "passes over the task's training split"})
    lr: float = field(default=1e-3, metadata={"help": "AdamW peak learning rate"})
    batch_size: int = field(default=16, metadata={"help": "examples per step"})
    max_steps: int = field(default=-1, metadata={"help": "stop after this many steps (-1: no limit)"})
    steps: int = field(
        default=-1, metadata={"help": "train exactly this many optimiser steps, cycling over the data (-1: use epochs)"}
    )
    eval_every: int = field(
        default=0, metadata={"help": "evaluate every this many steps and at the last (0: after every epoch)"}
    )
    warmup: float = field(default=0.1, metadata={"help": "fraction of steps with linear warm-up"})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay"})
    n_train: int = field(default=-1, metadata={"help": "use only the first n training examples (-1: all)"})
    lora: bool = field(default=False, metadata={"help": "train LoRA adapters instead of all weights"})
    lora_r: int = field(default=8, metadata={"help": "LoRA rank"})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA alpha"})
    max_length: int = field(default=256, metadata={"help": "tokens per example"})
    seed: int = field(default=0, metadata={"help": "data order and init seed"})

    def __post_init__(self):
        if self.epochs < 1 or self.lr <= 0 or self.batch_size < 1:
            raise ValueError("epochs, lr and batch_size must be positive")
        if self.steps == 0 or self.steps < -1:
            raise ValueError("steps must be positive (or -1: the budget is epochs)")
        if self.eval_every < 0:
            raise ValueError("eval_every must be >= 0 (0: evaluate after every epoch)")
        if self.steps > 0 and self.eval_every > self.steps:
            raise ValueError(
                f"eval_every={self.eval_every} is more than steps={self.steps}: no evaluation inside the budget"
            )
        if not 0 <= self.warmup < 1:
            raise ValueError("warmup must be in [0, 1)")
        if self.max_steps == 0 or self.max_steps < -1 or self.n_train == 0 or self.n_train < -1:
            raise ValueError("max_steps and n_train must be positive (or -1 for no limit)")
        if self.weight_decay < 0 or self.lora_r < 1 or self.lora_alpha < 1 or self.max_length < 2:
            raise ValueError("weight_decay must be >= 0, lora_r and lora_alpha positive, max_length at least 2")


Evaluate = Callable[[str, int, object], None]


def sft_step(work, encoded, pad: int, opt, params, label: str, step: int) -> float:
    """One supervised step on a batch of encoded examples (loss on targets, clipped at 1);
    a non-finite loss is an error naming the attack and the step."""
    device = next(work.parameters()).device
    batch = {k: v.to(device) for k, v in collate(encoded, pad).items()}
    loss = work(**batch).loss
    if not torch.isfinite(loss):
        raise UnlearnbenchError(f"{label}: loss is {loss.item()} at step {step}")
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    return loss.item()


def trainable_copy(model, lora: bool, lora_r: int = 8, lora_alpha: int = 16):
    """A deep copy to attack (the model handed in is never modified): every weight trainable for
    full fine-tuning, or LoRA adapters (peft) on the attention and MLP projections (Llama-style names, else GPT-2's
    c_attn/c_proj/c_fc, else peft's default modules for the model type)."""
    work = copy.deepcopy(model)
    work.requires_grad_(not lora)  # full fine-tuning trains every weight, frozen ones included
    if lora:
        from peft import LoraConfig, get_peft_model

        present = {n.rsplit(".", 1)[-1] for n, _ in work.named_modules()}
        targets = [t for t in LORA_TARGETS if t in present] or [t for t in LORA_TARGETS_GPT2 if t in present]
        if not targets:  # another naming: peft's own default modules for this model type
            targets = None
        work = get_peft_model(
            work,
            LoraConfig(
                r=lora_r, lora_alpha=lora_alpha, lora_dropout=0.0, target_modules=targets, task_type="CAUSAL_LM"
            ),
        )
    return work


@register_attack()
class FinetuneAttack:
    name = "finetune"
    version = "1"
    Config = FinetuneConfig
    needs_arg = "task"  # finetune:<task>
    description = "benign fine-tuning on a task (full or LoRA), evaluated every epoch"

    def __init__(self, config: FinetuneConfig | None = None, arg: str | None = None):
        if not arg:
            raise UnlearnbenchError("finetune needs a task, e.g. finetune:arith")
        self.config = config or FinetuneConfig()
        self.task_name = arg

    def run(self, model, tokenizer, task, evaluate: Evaluate, progress: Progress = SILENT, benchmark=None) -> dict:
        """Fine-tune a copy of ``model`` on ``task.train``; ``evaluate(checkpoint, step, model)``
        is called before training and at every checkpoint (see the module docstring)."""
        cfg = self.config
        torch.manual_seed(cfg.seed)
        rng = random.Random(cfg.seed)
        work = trainable_copy(model, cfg.lora, cfg.lora_r, cfg.lora_alpha)
        train = task.train if cfg.n_train < 0 else task.train[: cfg.n_train]
        enc = [encode_example(tokenizer, ex.prompt, ex.target, add_eos=True, max_length=cfg.max_length) for ex in train]
        if not enc:
            raise UnlearnbenchError(f"finetune:{self.task_name}: the task has no training examples")
        per_epoch = math.ceil(len(enc) / cfg.batch_size)
        by_step = cfg.steps > 0 or cfg.eval_every > 0  # checkpoints named by optimiser step
        total = cfg.steps if cfg.steps > 0 else cfg.epochs * per_epoch
        if cfg.max_steps >= 0:
            total = min(cfg.max_steps, total)
        params = [p for p in work.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        warm = max(1, int(cfg.warmup * total)) if cfg.warmup > 0 else 0
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warm) if warm else 1.0)
        pad = pad_id_of(tokenizer)
        work.eval()
        evaluate("step=0" if by_step else "epoch=0", 0, work)
        step, epoch, losses, t0 = 0, 0, [], time.time()
        epoch_seconds, evaluated = [], [0]

        def checkpoint(name: str, at: int) -> None:
            work.eval()
            evaluate(name, at, work)
            evaluated.append(step)
            work.train()

        with progress.task(f"attack finetune:{self.task_name}", total) as bar:
            while step < total:
                epoch += 1
                te = time.time()
                work.train()
                for idx in shuffled_batches(len(enc), cfg.batch_size, rng):
                    if step >= total:
                        break
                    loss = sft_step(work, [enc[i] for i in idx], pad, opt, params, f"finetune:{self.task_name}", step)
                    sched.step()
                    step += 1
                    losses.append(loss)
                    bar.advance()
                    bar.update(epoch=epoch, loss=round(loss, 4))
                    if by_step and (step == total or (cfg.eval_every and step % cfg.eval_every == 0)):
                        checkpoint(f"step={step}", step)
                epoch_seconds.append(round(time.time() - te, 3))
                if not by_step:
                    checkpoint(f"epoch={epoch}", epoch)
                elif not cfg.eval_every and step < total:  # steps=N alone: also at every epoch's end
                    checkpoint(f"step={step}", step)
        work.eval()
        return {
            "steps": step,
            "epochs_seen": round(step / per_epoch, 3),
            "evaluated_steps": evaluated,
            "seconds": round(time.time() - t0, 3),
            "epoch_train_seconds": epoch_seconds,
            "final_loss": losses[-1] if losses else None,
        }
