"""What a probe is: a form of asking, and how its items are scored.

A probe draws its items from the benchmark (``benchmark.probe_items(form, split)``) and scores them
with a model. Generative forms (the answer is text) get ``prob``, ``token_acc``, ``em``,
``rougeL_recall`` and ``correct`` (= ``em``); choice forms (MCQ letters, True/False) get ``prob``
(normalised over the choices) and ``correct`` (argmax is right). See :mod:`unlearnbench.metrics`.

The probe protocol the runner relies on (any class registered with ``@register_probe()``):

* ``items(benchmark, split) -> list`` of items with an ``item_id`` (an empty list: the probe does
  not apply to that split);
* ``score(model, tokenizer, items) -> list[dict[str, float]]``, one dict of metrics per item; a
  probe that generates text also puts it under ``"generation"`` (a string: stored as the item's
  text, not as a score, and left out of aggregates);
* optional ``aggregate(scores_by_split: dict[str, list[dict]]) -> list[(split, metric, value)]``
  for numbers that are not means over items (stored with item id ``*``);
* optional ``needs_reference = True``: ``score`` is then called with ``reference=`` the
  benchmark's retrain oracle (a ``models.LoadedModel``, or ``None`` without an oracle).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar


def require_positive(config, *names: str) -> None:
    """Refuse (ValueError, which the spec parser turns into a one-line error at plan time) a config
    whose fields ``names`` are below 1: a batch of no items or no generated tokens cannot be scored,
    and finding out only after the model is loaded costs minutes."""
    bad = [n for n in names if getattr(config, n) < 1]
    if bad:
        raise ValueError(f"{' and '.join(bad)} must be positive")


@dataclass(frozen=True)
class ProbeConfig:
    max_new_tokens: int = field(default=12, metadata={"help": "greedy tokens generated per item"})
    batch_size: int = field(default=64, metadata={"help": "items per forward pass"})

    def __post_init__(self):
        require_positive(self, "max_new_tokens", "batch_size")


class FormProbe:
    """Base class of the form probes; a subclass sets ``name``, ``form`` and ``scoring``."""

    name: ClassVar[str]
    version: ClassVar[str] = "1"
    form: ClassVar[str]
    scoring: ClassVar[str]  # 'generate' | 'choice'
    description: ClassVar[str] = ""
    Config = ProbeConfig

    def __init__(self, config: ProbeConfig | None = None):
        self.config = config or ProbeConfig()

    def items(self, benchmark, split: str):
        return benchmark.probe_items(self.form, split)

    def score(self, model, tokenizer, items) -> list[dict[str, float]]:
        from .. import inference, metrics

        cfg = self.config
        if self.scoring == "choice":
            all_scores = inference.score_choices(
                model, tokenizer, [it.prompt for it in items], [it.choices for it in items], cfg.batch_size
            )
            return [
                {
                    "prob": inference.softmax_prob(s, it.label),
                    "correct": float(max(range(len(s)), key=s.__getitem__) == it.label),
                }
                for s, it in zip(all_scores, items)
            ]
        targets = inference.score_targets(
            model, tokenizer, [(it.prompt, " " + it.answer) for it in items], cfg.batch_size
        )
        gens = inference.greedy_generate(
            model, tokenizer, [it.prompt for it in items], cfg.max_new_tokens, cfg.batch_size
        )
        rows = []
        for it, t, g in zip(items, targets, gens):
            em = metrics.exact_match(g, it.answer)
            recall, _f1 = metrics.rouge_l(g, it.answer)
            rows.append(
                {
                    "prob": t.prob,
                    "token_acc": t.token_acc,
                    "em": em,
                    "rougeL_recall": recall,
                    "correct": em,
                    "generation": g,
                }
            )
        return rows
