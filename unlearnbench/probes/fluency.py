"""``fluency`` — does the model still write text, or did unlearning break its generations?

For every item of ``benchmark.text_items(split)`` (QA-like prompts about the benchmark's targets)
the model greedily generates ``max_new_tokens`` tokens (default 48; not cut at a newline unless
``stop_at_newline=true``), and each generation is scored on its own:

* ``ngram_entropy`` — the generation entropy of ROME (Meng et al. 2022, "Locating and Editing
  Factual Associations in GPT", fluency metric; ``compute_n_gram_entropy`` in the ROME repository's
  ``experiments/py/eval_utils_counterfact.py``), also used by ROCR/ORT: with ``H_n`` the entropy in
  bits of the frequency distribution of the generation's word n-grams,
  ``ngram_entropy = mean(2/3 · H_2, 4/3 · H_3) = (2/3 · H_2 + 4/3 · H_3) / 2``. Higher is more
  varied text; a generation that repeats one phrase scores low. It grows with length, so compare it
  only at equal ``max_new_tokens``.
* ``bigram_entropy``, ``trigram_entropy`` — ``H_2`` and ``H_3`` themselves (bits).
* ``repetition_rate`` — seq-rep-4 of Welleck et al. 2020 ("Neural Text Generation with
  Unlikelihood Training"): ``1 - distinct 4-grams / 4-grams`` of the generation's words (0: no
  4-gram repeats; 0 also when the generation has fewer than four words).
* ``empty`` — 1 if the generation is empty or whitespace only; its mean is the fraction of empty
  generations (an unlearned model that answers with EOS at once).
* ``n_words`` — words in the generation.

Which is whose: the *metric* (``ngram_entropy``'s formula, weights and orders) is ROME's; the
*setting* is not. ROME scores ``generate_fast`` continuations — top-k (k = 5) *sampled*, 100 tokens
(``max_out_len=100``) of CounterFact's generation prompts. Here, as in the ORT/ROCR evaluation
(greedy decoding of the benchmark's own prompts), generations are greedy and ``max_new_tokens``
(48) long. Entropy grows with length and sampling, so values here are lower than, and not
comparable with, ROME's tables; compare models within one setting.

Deviation from ROME: words come from a regular expression (runs of letters/digits, or single
punctuation marks) instead of ``nltk.word_tokenize``, so no extra dependency and no tokenizer data
download; on plain English the two agree except for contractions and some quote marks. ROME's
entropy of a generation with no n-grams is NaN (0/0); here ``H_n = 0``.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Sequence

from ..errors import UnlearnbenchError
from ..registry import register_probe

_WORD = re.compile(r"\w+|[^\w\s]")
#: ROME's n-gram orders and weights.
ROME_NS = (2, 3)
ROME_WEIGHTS = (2 / 3, 4 / 3)


def words(text: str) -> list[str]:
    return _WORD.findall(text)


def ngram_entropy_bits(tokens: Sequence[str], n: int) -> float:
    """Entropy (bits) of the frequency distribution of the n-grams of ``tokens`` (0 if none)."""
    grams = Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))
    total = sum(grams.values())
    if not total:
        return 0.0
    return -sum(c / total * math.log2(c / total) for c in grams.values())


def rome_ngram_entropy(text: str) -> float:
    """ROME's generation entropy: ``mean(2/3 · H_2, 4/3 · H_3)`` over the text's words."""
    toks = words(text)
    return sum(w * ngram_entropy_bits(toks, n) for n, w in zip(ROME_NS, ROME_WEIGHTS)) / len(ROME_NS)


def repetition_rate(text: str, n: int = 4) -> float:
    """seq-rep-n: ``1 - distinct n-grams / n-grams`` of the text's words (0 with no n-gram)."""
    toks = words(text)
    grams = [tuple(toks[i : i + n]) for i in range(len(toks) - n + 1)]
    return 1.0 - len(set(grams)) / len(grams) if grams else 0.0


def fluency_scores(text: str, rep_n: int = 4) -> dict[str, float]:
    """Every fluency metric of one generation (see the module docstring)."""
    toks = words(text)
    return {
        "ngram_entropy": rome_ngram_entropy(text),
        "bigram_entropy": ngram_entropy_bits(toks, 2),
        "trigram_entropy": ngram_entropy_bits(toks, 3),
        "repetition_rate": repetition_rate(text, rep_n),
        "empty": float(not text.strip()),
        "n_words": float(len(toks)),
    }


@dataclass(frozen=True)
class FluencyConfig:
    max_new_tokens: int = field(default=48, metadata={"help": "greedy tokens generated per prompt"})
    batch_size: int = field(default=32, metadata={"help": "prompts per generation batch"})
    stop_at_newline: bool = field(default=False, metadata={"help": "cut each generation at its first newline"})
    rep_n: int = field(default=4, metadata={"help": "n of the repetition rate (seq-rep-n)"})

    def __post_init__(self):
        if self.max_new_tokens < 1 or self.batch_size < 1 or self.rep_n < 1:
            raise ValueError("max_new_tokens, batch_size and rep_n must be positive")


def text_items_of(benchmark, split: str, probe: str):
    """``benchmark.text_items(split)``, or a one-line error if the benchmark has none."""
    if not hasattr(benchmark, "text_items"):
        raise UnlearnbenchError(
            f"probe {probe} needs a benchmark with text_items(split); "
            f"{getattr(benchmark, 'name', type(benchmark).__name__)} has none"
        )
    return benchmark.text_items(split)


@register_probe()
class FluencyProbe:
    """Generation entropy, repetition and empty generations on the benchmark's QA-like prompts."""

    name = "fluency"
    version = "1"
    Config = FluencyConfig
    description = "n-gram entropy (ROME), repetition rate and empty generations of greedy continuations"

    def __init__(self, config: FluencyConfig | None = None):
        self.config = config or FluencyConfig()

    def items(self, benchmark, split: str):
        return text_items_of(benchmark, split, self.name)

    def score(self, model, tokenizer, items) -> list[dict[str, float]]:
        from .. import inference

        cfg = self.config
        gens = inference.greedy_generate(
            model,
            tokenizer,
            [it.prompt for it in items],
            cfg.max_new_tokens,
            cfg.batch_size,
            stop=("\n",) if cfg.stop_at_newline else None,
        )
        return [{**fluency_scores(g, cfg.rep_n), "generation": g} for g in gens]
