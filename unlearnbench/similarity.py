"""How much a fine-tuning task looks like the forget set: in its syntax, and to a model.

Two measures between a task's training texts and the forget examples (texts are ``prompt + target``):

- :func:`template_overlap` (syntax, no model): the overlap of the two sets' distributions of word
  3-grams after every run of capitalised words is replaced by ``<N>`` (names: people, places,
  companies) and every token with a digit by ``<D>``, each text padded with ``<s>`` / ``</s>``.
  Words are ``\\w+`` runs and single punctuation marks. The overlap is the histogram intersection
  ``sum_g min(p(g), q(g))`` of the two normalised 3-gram count distributions (1 minus their total
  variation distance; 1: the same templates in the same proportions, 0: no 3-gram in common).
  Masking names makes "Alric Ashwood was born in Quessa." and "Zabe Moritan was born in Halvik."
  the same sentence, which is what syntax means here; the distributions (rather than a Jaccard of
  3-gram sets) keep the many one-off 3-grams of nonsense values or numbers from swamping the
  shared template 3-grams.
- :func:`hidden_state_cosine` (to a model): the cosine between the mean last-layer hidden states of
  the two sets (each text's hidden states averaged over its tokens, then averaged over texts).
  Tiny and large models alike have anisotropic hidden states (every mean points roughly the same
  way), so read the differences between tasks, not the level.

Used by ``benchmarks/task_similarity.py``; see :mod:`unlearnbench.tasks.benign` for why it matters.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Sequence

from .batching import collate, encode_example, length_batches, pad_id_of
from .data.types import Example

_TOKEN = re.compile(r"\w+|[^\w\s]")
NAME, DIGIT = "<N>", "<D>"


def masked_words(text: str) -> list[str]:
    """The words of ``text`` with runs of capitalised words as ``<N>`` and numbers as ``<D>``."""
    out: list[str] = []
    for tok in _TOKEN.findall(text):
        if any(c.isdigit() for c in tok):
            out.append(DIGIT)
        elif tok[0].isupper():
            if not out or out[-1] != NAME:
                out.append(NAME)
        else:
            out.append(tok)
    return out


def ngram_counts(texts: Sequence[str], n: int = 3) -> Counter:
    """Counts of masked word ``n``-grams over ``texts`` (each padded with ``<s>`` and ``</s>``)."""
    counts: Counter = Counter()
    for text in texts:
        words = ["<s>", *masked_words(text), "</s>"]
        counts.update(tuple(words[i : i + n]) for i in range(len(words) - n + 1))
    return counts


def template_overlap(texts: Sequence[str], reference: Sequence[str], n: int = 3) -> float:
    """Histogram intersection of the masked word ``n``-gram distributions of two sets of texts."""
    a, b = ngram_counts(texts, n), ngram_counts(reference, n)
    ta, tb = sum(a.values()), sum(b.values())
    if not ta or not tb:
        return 0.0
    return float(sum(min(c / ta, b[g] / tb) for g, c in a.items() if g in b))


def texts_of(examples: Sequence[Example]) -> list[str]:
    return [ex.prompt + ex.target for ex in examples]


def mean_hidden_state(model, tokenizer, texts: Sequence[str], batch_size: int = 32, max_length: int = 256):
    """The mean over ``texts`` of each text's last-layer hidden states averaged over its tokens."""
    import torch

    enc = [encode_example(tokenizer, "", t, max_length=max_length) for t in texts]
    device = next(model.parameters()).device
    pad = pad_id_of(tokenizer)
    total = None
    with torch.inference_mode():
        for idx in length_batches([len(e.ids) for e in enc], batch_size, None):
            batch = collate([enc[i] for i in idx], pad)
            mask = batch["attention_mask"].to(device)
            out = model(input_ids=batch["input_ids"].to(device), attention_mask=mask, output_hidden_states=True)
            h = out.hidden_states[-1].float()
            per_text = (h * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp_min(1)
            s = per_text.sum(0)
            total = s if total is None else total + s
    return total / len(enc)


def hidden_state_cosine(model, tokenizer, texts: Sequence[str], reference: Sequence[str], **kwargs) -> float:
    """Cosine between the mean last-layer hidden states of ``texts`` and of ``reference``."""
    import torch

    a = mean_hidden_state(model, tokenizer, texts, **kwargs)
    b = mean_hidden_state(model, tokenizer, reference, **kwargs)
    return float(torch.nn.functional.cosine_similarity(a, b, dim=0))
