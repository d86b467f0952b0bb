"""Running the model to score it: teacher-forced target likelihood, choice scoring, greedy generation,
and task accuracy (FA) built on them. The formulas applied to the outputs are in :mod:`.metrics`.

Everything runs under ``torch.inference_mode`` in the model's own device and dtype; logits are
converted to float32 before any log-softmax (bf16 log-probs are too coarse, and numpy cannot take
bf16 tensors).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

from .batching import collate, encode_example, length_batches, pad_id_of
from .data.types import TaskData
from .metrics import exact_match, final_number


@dataclass
class TargetScore:
    mean_nll: float  # mean token NLL of the target given the prompt
    sum_nll: float
    n_tokens: int
    token_acc: float  # teacher-forced argmax accuracy over target tokens

    @property
    def prob(self) -> float:
        """ORT's answer probability: exp(-mean token NLL)."""
        return math.exp(-self.mean_nll)


def _device(model) -> torch.device:
    return next(model.parameters()).device


@torch.inference_mode()
def score_targets(
    model, tokenizer, pairs: Sequence[tuple[str, str]], batch_size: int = 64, max_length: int = 512
) -> list[TargetScore]:
    enc = [encode_example(tokenizer, p, t, max_length=max_length) for p, t in pairs]
    out: list[TargetScore | None] = [None] * len(enc)
    device = _device(model)
    pad = pad_id_of(tokenizer)
    for idx in length_batches([len(e.ids) for e in enc], batch_size, None):
        batch = collate([enc[i] for i in idx], pad)
        batch = {k: v.to(device) for k, v in batch.items()}
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        logits = logits[:, :-1].float()
        labels = batch["labels"][:, 1:]
        mask = labels != -100
        nll = F.cross_entropy(logits.transpose(1, 2), labels.clamp_min(0), reduction="none") * mask
        hit = (logits.argmax(-1) == labels) & mask
        n = mask.sum(1)
        for row, i in enumerate(idx):
            k = int(n[row])
            s = float(nll[row].sum())
            out[i] = TargetScore(s / max(k, 1), s, k, float(hit[row].sum()) / max(k, 1))
    return out  # type: ignore[return-value]


@torch.inference_mode()
def score_choices(
    model, tokenizer, prompts: Sequence[str], choices: Sequence[Sequence[str]], batch_size: int = 64
) -> list[list[float]]:
    """Sum log-prob of " choice" after each prompt, for every choice (lm-eval's multiple choice)."""
    pairs = [(p, " " + c) for p, cs in zip(prompts, choices) for c in cs]
    scores = score_targets(model, tokenizer, pairs, batch_size)
    out, k = [], 0
    for cs in choices:
        out.append([-scores[k + j].sum_nll for j in range(len(cs))])
        k += len(cs)
    return out


def greedy_generate(
    model,
    tokenizer,
    prompts: Sequence[str],
    max_new_tokens: int = 16,
    batch_size: int = 64,
    stop: Sequence[str] | None = ("\n",),
) -> list[str]:
    """Greedy continuations, cut at the first stop string (default: the first newline).

    The entry point every probe uses; it dispatches to the selected generation backend
    (``UNLEARNBENCH_BACKEND`` / ``--backend``: ``hf`` by default, ``vllm``, ``auto``). See
    :mod:`unlearnbench.generation` for the backends and how far their outputs may differ.
    """
    from .generation import generate

    return generate(model, tokenizer, prompts, max_new_tokens, batch_size, stop=stop)


def softmax_prob(scores: Sequence[float], label: int) -> float:
    """Probability of the right choice, normalised over the choices."""
    t = torch.tensor(scores, dtype=torch.float64)
    return float(torch.softmax(t, 0)[label])


def _same_number(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and float(a) == float(b)


def task_item_scores(
    model, tokenizer, task: TaskData, limit: int | None = None, batch_size: int = 64
) -> list[tuple[str, float]]:
    """Task accuracy (FA): (item id, correct) for each example of the task's test split."""
    test = task.test[:limit] if limit else task.test
    prompts = [ex.prompt for ex in test]
    if task.scoring == "number":
        gens = greedy_generate(model, tokenizer, prompts, max_new_tokens=task.max_new_tokens, batch_size=batch_size)
        return [
            (f"{task.name}/{i}", float(_same_number(final_number(g), final_number(ex.target))))
            for i, (g, ex) in enumerate(zip(gens, test))
        ]
    if task.scoring == "choice":
        scores = score_choices(model, tokenizer, prompts, [task.choices] * len(test), batch_size)
        out = []
        for i, (s, ex) in enumerate(zip(scores, test)):
            label = task.choices.index(ex.target.strip())
            out.append((f"{task.name}/{i}", float(max(range(len(s)), key=s.__getitem__) == label)))
        return out
    if task.scoring == "text":  # the normalised greedy answer starts with the normalised target
        gens = greedy_generate(model, tokenizer, prompts, max_new_tokens=task.max_new_tokens, batch_size=batch_size)
        return [(f"{task.name}/{i}", exact_match(g, ex.target)) for i, (g, ex) in enumerate(zip(gens, test))]
    raise ValueError(f"unknown scoring {task.scoring!r} for task {task.name}")
