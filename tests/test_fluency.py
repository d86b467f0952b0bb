"""Fluency probe: ROME's n-gram entropy, seq-rep-n and empty generations on hand-made strings, and
the probe end to end on a tiny model."""

import math
from types import SimpleNamespace

import pytest

from unlearnbench.errors import UnlearnbenchError
from unlearnbench.probes import fluency as fl


def h(*probs):
    return -sum(p * math.log2(p) for p in probs)


def test_ngram_entropy_hand_made():
    # "a b a b a b": bigrams ab x3, ba x2; trigrams aba x2, bab x2
    toks = fl.words("a b a b a b")
    assert fl.ngram_entropy_bits(toks, 2) == pytest.approx(h(3 / 5, 2 / 5))
    assert fl.ngram_entropy_bits(toks, 3) == pytest.approx(1.0)
    assert fl.rome_ngram_entropy("a b a b a b") == pytest.approx((2 / 3 * h(3 / 5, 2 / 5) + 4 / 3 * 1.0) / 2)
    # six distinct words: H2 = log2 5, H3 = log2 4
    assert fl.rome_ngram_entropy("one two three four five six") == pytest.approx((2 / 3 * math.log2(5) + 4 / 3 * 2) / 2)
    # one repeated word: every n-gram is the same, entropy 0
    assert fl.rome_ngram_entropy("the the the the the the") == 0.0
    assert fl.rome_ngram_entropy("") == 0.0 and fl.rome_ngram_entropy("word") == 0.0
    # punctuation marks are words of their own
    assert fl.words("Oslo, Norway.") == ["Oslo", ",", "Norway", "."]


def test_repetition_rate_and_empty():
    assert fl.repetition_rate("x y z w x y z w") == pytest.approx(1 - 4 / 5)
    assert fl.repetition_rate("x y z w v") == 0.0
    assert fl.repetition_rate("x y") == 0.0
    assert fl.repetition_rate("a a a a a a", n=2) == pytest.approx(1 - 1 / 5)
    s = fl.fluency_scores("  \n ")
    assert s["empty"] == 1.0 and s["n_words"] == 0.0 and s["ngram_entropy"] == 0.0
    s = fl.fluency_scores("the cat sat on the mat")
    assert s["empty"] == 0.0 and s["n_words"] == 6.0
    assert s["ngram_entropy"] == pytest.approx((2 / 3 * s["bigram_entropy"] + 4 / 3 * s["trigram_entropy"]) / 2)


def test_probe_on_tiny_model():
    from helpers_tiny import tiny_model, tiny_tokenizer

    items = [
        SimpleNamespace(item_id=str(i), prompt=f"Question: Where was person {i} born?\nAnswer:", answer="x")
        for i in range(3)
    ]
    bench = SimpleNamespace(name="fake", text_items=lambda split: items if split == "forget" else [])
    p = fl.FluencyProbe(fl.FluencyConfig(max_new_tokens=12))
    assert p.items(bench, "forget") is items and p.items(bench, "retain") == []
    rows = p.score(tiny_model(), tiny_tokenizer(), items)
    assert len(rows) == 3
    for r in rows:
        assert set(r) == {
            "ngram_entropy", "bigram_entropy", "trigram_entropy", "repetition_rate", "empty", "n_words", "generation"
        }  # fmt: skip
        assert 0 <= r["repetition_rate"] <= 1 and r["empty"] in (0.0, 1.0) and r["ngram_entropy"] >= 0
        # at most max_new_tokens tokens, hence a bounded entropy
        assert r["bigram_entropy"] <= math.log2(max(2, 12 * 4))
    with pytest.raises(UnlearnbenchError, match="needs a benchmark with text_items"):
        p.items(SimpleNamespace(name="bare"), "forget")
    with pytest.raises(ValueError):
        fl.FluencyConfig(max_new_tokens=0)
