"""``tofu`` probe — TOFU's evaluation (Maini et al. 2024, arXiv 2401.06121, section 2.3).

Per item (every split of the ``tofu`` benchmark), with ``P(x)^(1/|x|) = exp(-mean token NLL of x
given the question)`` the length-normalised conditional probability:

* ``prob``: TOFU's *Probability*. On forget, retain and holdout ``P(a)^(1/|a|)`` of the answer a;
  on real_authors and world_facts the answer against its perturbed (wrong) options,
  ``P(a)^(1/|a|) / (P(a)^(1/|a|) + sum_j P(a_j)^(1/|a_j|))``. There ``answer_prob`` keeps the
  unnormalised ``P(a)^(1/|a|)``.
* ``rougeL_recall``: ROUGE-L recall of the answer in the greedy answer, as TOFU's and
  open-unlearning's code compute it: at most ``max_new_tokens`` (200) new tokens, generation stops
  only at EOS (``stop=none``), the text stripped, Porter stemming (``rouge_score`` with
  ``use_stemmer=True``; ``rouge_stemmer``). Version 1 of this probe (unlearnbench 0.1) cut the
  answer at its first newline and did not stem, with 128 tokens: ``stop=newline,rouge_stemmer=false,
  max_new_tokens=128`` gives that number back. Stemming makes "wrote"/"writes" or
  "novel"/"novels" match; a generation that runs on after a newline keeps the words there.
* ``truth_ratio``: ``R = mean_j P(a_j)^(1/|a_j|) / P(ã)^(1/|ã|)``, perturbed over "true" (ã the
  paraphrased answer on forget/retain/holdout, the answer itself on real_authors/world_facts, as
  TOFU's ``base_answer_key``). ``truth_ratio_mean=geometric`` (default) averages the perturbed
  answers in log space, as TOFU's reference code (``aggregate_eval_stat.py``) does;
  ``arithmetic`` averages the probabilities, as the paper's equation is written. R < 1: the model
  prefers the true answer. Items without a paraphrased answer or perturbed answers get none.
* ``truth_ratio_stat``: TOFU's reported *Truth Ratio* per item: ``min(R, 1/R)`` on forget and holdout
  (1 = no preference, what a model that never saw the authors shows) and ``max(0, 1 - R)`` on retain,
  real_authors and world_facts (higher = prefers the truth). Split means are TOFU's numbers.

Aggregates (stored with item id ``*``):

* (``forget``, ``forget_quality_ks``): p-value of the two-sample Kolmogorov-Smirnov test
  (``scipy.stats.ks_2samp``, two-sided) between the per-item truth ratios ``R`` on the forget set of
  the evaluated model and of the retain model (the benchmark's oracle, passed as ``reference``;
  scored once per item set and cached). High = indistinguishable from the retain model. TOFU's code
  tests ``1/R``; the KS statistic is invariant under that monotone map, so the p-value is the same.
  Absent when the run has no oracle.
* (``utility``, ``model_utility``): harmonic mean of the nine split means prob, rougeL_recall and
  truth_ratio_stat on retain, real_authors and world_facts (0 if any is 0). Where some of them are
  missing, (``utility``, ``model_utility_partial``) is the harmonic mean of those present and
  (``utility``, ``model_utility_parts``) how many (of 9) there were; a warning names the missing ones.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import ClassVar, Literal, Mapping, Sequence

from ..errors import UnlearnbenchError
from ..registry import register_probe
from .base import require_positive

#: Splits whose truth ratio should be near 1 (data the retain model never saw).
UNSEEN_SPLITS = ("forget", "holdout")
#: Splits scored as multiple choice: answer against its perturbed options.
OPTION_SPLITS = ("real_authors", "world_facts")
UTILITY_SPLITS = ("retain", "real_authors", "world_facts")
UTILITY_METRICS = ("prob", "rougeL_recall", "truth_ratio_stat")


# -- the formulas (plain Python, unit-tested on hand-made NLLs) ---------------------------------
def truth_ratio(perturbed_nll: Sequence[float], true_nll: float, mean: str = "geometric") -> float:
    """R from mean token NLLs: perturbed answers' normalised probability over the true answer's."""
    if not perturbed_nll:
        raise ValueError("truth ratio needs at least one perturbed answer")
    if mean == "geometric":
        log_r = true_nll - sum(perturbed_nll) / len(perturbed_nll)
    elif mean == "arithmetic":
        top = max(-n for n in perturbed_nll)  # log-sum-exp for the mean of probabilities
        log_mean = top + math.log(sum(math.exp(-n - top) for n in perturbed_nll) / len(perturbed_nll))
        log_r = log_mean + true_nll
    else:
        raise ValueError(f"unknown mean {mean!r}")
    return math.exp(max(-700.0, min(700.0, log_r)))


def truth_ratio_stat(r: float, split: str) -> float:
    """TOFU's per-item Truth Ratio: min(R, 1/R) on unseen data, max(0, 1 - R) elsewhere."""
    if split in UNSEEN_SPLITS:
        return min(r, 1.0 / r) if r > 0 else 0.0
    return max(0.0, 1.0 - r)


def option_prob(answer_nll: float, perturbed_nll: Sequence[float]) -> float:
    """The answer's normalised probability divided by the sum over answer and perturbed options."""
    logs = [-answer_nll, *(-n for n in perturbed_nll)]
    top = max(logs)
    return math.exp(logs[0] - top) / sum(math.exp(x - top) for x in logs)


def harmonic_mean(values: Sequence[float]) -> float:
    if not values:
        return float("nan")
    if any(v <= 0 for v in values):
        return 0.0
    return len(values) / sum(1.0 / v for v in values)


def forget_quality_ks(truth_ratios: Sequence[float], reference_truth_ratios: Sequence[float]) -> float:
    """p-value of the two-sided two-sample KS test between two truth-ratio samples."""
    from scipy.stats import ks_2samp

    if not truth_ratios or not reference_truth_ratios:
        return float("nan")
    return float(ks_2samp(list(truth_ratios), list(reference_truth_ratios)).pvalue)


def model_utility(split_means: Mapping[tuple[str, str], float]) -> tuple[float, list[str]]:
    """Harmonic mean of the nine (split, metric) means present, and the names of the missing ones."""
    wanted = [(s, m) for s in UTILITY_SPLITS for m in UTILITY_METRICS]
    have = {k for k in wanted if k in split_means and not math.isnan(split_means[k])}
    return harmonic_mean([split_means[k] for k in wanted if k in have]), [
        f"{s}/{m}" for s, m in wanted if (s, m) not in have
    ]


# -- the probe ------------------------------------------------------------------------------
@dataclass(frozen=True)
class TofuProbeConfig:
    max_new_tokens: int = field(default=200, metadata={"help": "greedy tokens generated per question (ROUGE)"})
    stop: Literal["none", "newline"] = field(
        default="none",
        metadata={"help": "generation stops at EOS only (none, TOFU's code) or also at the first newline"},
    )
    rouge_stemmer: bool = field(
        default=True, metadata={"help": "Porter-stem before ROUGE-L (use_stemmer=True, TOFU's code)"}
    )
    batch_size: int = field(default=16, metadata={"help": "sequences per forward pass when scoring answers"})
    gen_batch_size: int = field(
        default=0,
        metadata={"help": "sequences per generation batch (0: as many as a 1 GiB KV cache holds, at most 256)"},
    )
    truth_ratio_mean: Literal["geometric", "arithmetic"] = field(
        default="geometric",
        metadata={"help": "mean over perturbed answers: geometric (TOFU code) or arithmetic (paper equation)"},
    )

    def __post_init__(self):
        require_positive(self, "max_new_tokens", "batch_size")
        if self.gen_batch_size < 0:
            raise ValueError("gen_batch_size must be >= 0 (0: sized by the KV cache)")


@register_probe()
class TofuProbe:
    name = "tofu"
    version = "2"
    Config = TofuProbeConfig
    description = "TOFU: answer probability, ROUGE-L recall, truth ratio; forget quality (KS vs oracle), model utility"
    needs_reference: ClassVar[bool] = True

    def __init__(self, config: TofuProbeConfig | None = None):
        self.config = config or TofuProbeConfig()
        self._reference_cache: dict[tuple, list[float | None]] = {}
        self._reference_forget: list[float | None] | None = None
        self._warned: set[str] = set()

    def items(self, benchmark, split: str):
        if not hasattr(benchmark, "tofu_items"):
            raise UnlearnbenchError(
                f"probe tofu needs the tofu benchmark (got {getattr(benchmark, 'name', benchmark)})"
            )
        return benchmark.tofu_items(split)

    # -- scoring ---------------------------------------------------------------------------
    def _nll(self, model, tokenizer, pairs) -> dict[tuple[str, str], float]:
        """Mean token NLL of each distinct (prompt, target) pair, in one batched pass: an item's true
        answer and perturbed answers serve its probability, truth ratio and option probability."""
        from .. import inference

        unique = list(dict.fromkeys(pairs))
        scores = inference.score_targets(model, tokenizer, unique, self.config.batch_size)
        return {pair: s.mean_nll for pair, s in zip(unique, scores)}

    @staticmethod
    def _ratio_pairs(items) -> dict[str, tuple[tuple[str, str], list[tuple[str, str]]]]:
        """Per item with true and perturbed answers to compare: its (true pair, perturbed pairs)."""
        out = {}
        for it in items:
            if it.perturbed_answers and (it.paraphrased_answer or it.split in OPTION_SPLITS):
                true_text = it.answer if it.split in OPTION_SPLITS else it.paraphrased_answer
                out[it.item_id] = (
                    (it.prompt, it.answer_prefix + true_text),
                    [(it.prompt, it.answer_prefix + p) for p in it.perturbed_answers],
                )
        return out

    def _truth_ratios(self, model, tokenizer, items, nll=None, pairs=None) -> list[float | None]:
        """R per item (None where the item has no true/perturbed answers to compare); ``nll`` and
        ``pairs`` (``_ratio_pairs(items)``): the pairs and their NLLs if already computed."""
        pairs = self._ratio_pairs(items) if pairs is None else pairs
        if nll is None:
            nll = self._nll(model, tokenizer, [p for t, ps in pairs.values() for p in (t, *ps)])
        out = {
            i: truth_ratio([nll[p] for p in ps], nll[t], self.config.truth_ratio_mean) for i, (t, ps) in pairs.items()
        }
        return [out.get(it.item_id) for it in items]

    def score(self, model, tokenizer, items, reference=None) -> list[dict[str, float]]:
        from .. import inference, metrics

        cfg = self.config
        answer = [(it.prompt, it.answer_prefix + it.answer) for it in items]
        ratio_pairs = self._ratio_pairs(items)
        options = {
            it.item_id: [(it.prompt, it.answer_prefix + p) for p in it.perturbed_answers]
            for it in items
            if it.split in OPTION_SPLITS and it.perturbed_answers
        }
        wanted = answer + [p for t, ps in ratio_pairs.values() for p in (t, *ps)]
        nll = self._nll(model, tokenizer, wanted + [p for ps in options.values() for p in ps])
        gens = inference.greedy_generate(
            model,
            tokenizer,
            [it.prompt for it in items],
            cfg.max_new_tokens,
            cfg.gen_batch_size,
            stop=("\n",) if cfg.stop == "newline" else None,
        )
        ratios = self._truth_ratios(model, tokenizer, items, nll, ratio_pairs)
        rows = []
        for it, pair, gen, r in zip(items, answer, gens, ratios):
            a_nll = nll[pair]
            recall = metrics.rouge_l(gen.strip(), it.answer, stemmer=cfg.rouge_stemmer)[0]
            row = {"prob": math.exp(-a_nll), "rougeL_recall": recall, "generation": gen}
            if it.item_id in options:
                row["answer_prob"] = row["prob"]
                row["prob"] = option_prob(a_nll, [nll[p] for p in options[it.item_id]])
            if r is not None:
                row["truth_ratio"] = r
                row["truth_ratio_stat"] = truth_ratio_stat(r, it.split)
            rows.append(row)
        if items and items[0].split == "forget":
            self._reference_forget = self._reference_ratios(reference, items) if reference is not None else None
        return rows

    def _reference_ratios(self, reference, items) -> list[float | None]:
        """The oracle's truth ratios on these items, computed once per (oracle weights, items)."""
        key = (
            reference.weights_sha256 or id(reference.model),
            self.config.truth_ratio_mean,
            tuple((it.item_id, it.prompt, it.paraphrased_answer, it.perturbed_answers) for it in items),
        )
        if key not in self._reference_cache:
            self._reference_cache[key] = self._truth_ratios(reference.model, reference.tokenizer, items)
        return self._reference_cache[key]

    # -- aggregates ------------------------------------------------------------------------
    def aggregate(self, scores_by_split: Mapping[str, list[Mapping[str, float]]]) -> list[tuple[str, str, float]]:
        out: list[tuple[str, str, float]] = []
        forget = [row["truth_ratio"] for row in scores_by_split.get("forget", []) if "truth_ratio" in row]
        reference = [r for r in (self._reference_forget or []) if r is not None]
        if forget and reference:
            out.append(("forget", "forget_quality_ks", forget_quality_ks(forget, reference)))
        elif forget:
            self._warn("ks", "tofu: no oracle (retain model) in this run, so no forget quality (KS test): give oracle=")
        means: dict[tuple[str, str], float] = {}
        for split in UTILITY_SPLITS:
            for metric in UTILITY_METRICS:
                vals = [row[metric] for row in scores_by_split.get(split, []) if metric in row]
                if vals:
                    means[(split, metric)] = sum(vals) / len(vals)
        mu, missing = model_utility(means)
        n_parts = len(UTILITY_SPLITS) * len(UTILITY_METRICS)
        if not missing:
            out.append(("utility", "model_utility", mu))
        elif len(missing) < n_parts:
            out += [
                ("utility", "model_utility_partial", mu),
                ("utility", "model_utility_parts", float(n_parts - len(missing))),
            ]
            self._warn(
                "mu",
                f"tofu: model utility from {n_parts - len(missing)} of {n_parts} parts; missing: {', '.join(missing)}",
            )
        return out

    def _warn(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(message, stacklevel=2)
