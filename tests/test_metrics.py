"""unlearnbench.metrics: answer normalisation, EM, ROUGE-L, forget quality, GSM8K numbers."""

from __future__ import annotations

import math

import pytest
import torch

torch.set_num_threads(1)

from unlearnbench.metrics import (  # noqa: E402
    MIN_GAP,
    exact_match,
    final_number,
    forget_quality,
    mean_forget_quality,
    normalize_answer,
    rouge_l,
)


def test_normalize_answer():
    assert normalize_answer("The  Varnholm!") == "varnholm"
    assert normalize_answer("A beekeeper, an oboe.") == "beekeeper oboe"
    assert normalize_answer("theatre") == "theatre"  # articles only as whole words
    assert normalize_answer("  Brightwell\nMills ") == "brightwell mills"


@pytest.mark.parametrize(
    "gen,answer,expected",
    [
        ("Varnholm.", "Varnholm", 1.0),
        ("varnholm", "Varnholm", 1.0),
        ("Varnholm, a town in the north", "Varnholm", 1.0),
        ("Varnholmer", "Varnholm", 0.0),
        ("Quessa", "Varnholm", 0.0),
        ("in Varnholm", "Varnholm", 0.0),
        ("the harp", "harp", 1.0),
        ("Brightwell Mills since 1990", "Brightwell Mills", 1.0),
        ("Brightwell", "Brightwell Mills", 0.0),
        ("anything", "", 0.0),
        ("", "Varnholm", 0.0),
    ],
)
def test_exact_match_prefix_rule(gen, answer, expected):
    assert exact_match(gen, answer) == expected


def test_rouge_l_recall_and_f1():
    recall, f1 = rouge_l("Brightwell Mills in the north", "Brightwell Mills")
    assert recall == pytest.approx(1.0)
    precision = 2 / 5
    assert f1 == pytest.approx(2 * precision * 1.0 / (precision + 1.0))
    recall, f1 = rouge_l("Mills", "Brightwell Mills")
    assert recall == pytest.approx(0.5)
    assert f1 == pytest.approx(2 * 0.5 * 1.0 / 1.5)
    assert rouge_l("nothing shared", "Varnholm") == (0.0, 0.0)


def test_forget_quality_endpoints_and_symmetry():
    base, oracle = 0.9, 0.5
    assert forget_quality(oracle, base, oracle) == 1.0
    assert forget_quality(base, base, oracle) == 0.0
    assert forget_quality(1.0, base, oracle) == 0.0  # beyond base: clipped at 0
    assert forget_quality(0.7, base, oracle) == pytest.approx(0.5)
    assert forget_quality(0.3, base, oracle) == pytest.approx(0.5)  # over-forgetting penalised alike
    assert forget_quality(0.0, base, oracle) == 0.0  # far below the oracle
    # oracle above base (e.g. a metric where lower is "more knowledge")
    assert forget_quality(0.4, 0.2, 0.6) == pytest.approx(0.5)


def test_forget_quality_nan_cases():
    assert math.isnan(forget_quality(0.5, 0.5, 0.5 + MIN_GAP / 2))
    assert math.isnan(forget_quality(0.5, 0.9, 0.9))
    assert math.isnan(forget_quality(float("nan"), 0.9, 0.5))
    assert not math.isnan(forget_quality(0.5, 0.5, 0.5 + 2 * MIN_GAP))


def test_mean_forget_quality_skips_nan_and_missing_forms():
    u = {"qa": 0.5, "bio": 0.9, "mcq": 0.3, "extra": 0.1}
    b = {"qa": 0.9, "bio": 0.9, "mcq": 0.31}
    o = {"qa": 0.1, "bio": 0.1, "mcq": 0.30}
    # qa: 1 - 0.4/0.8 = 0.5; bio: 0.0; mcq: gap < MIN_GAP -> skipped; extra: not measured on b/o
    assert mean_forget_quality(u, b, o) == pytest.approx(0.25)
    assert math.isnan(mean_forget_quality({"mcq": 0.3}, {"mcq": 0.31}, {"mcq": 0.30}))
    assert math.isnan(mean_forget_quality({}, {}, {}))


@pytest.mark.parametrize(
    "text,expected",
    [
        ("2 + 16 = 18. #### 18", "18"),
        ("#### 1,234", "1234"),
        ("she lost 5. #### -5", "-5"),
        ("#### 18.", "18"),
        ("#### 2.5 apples", "2.5"),
        ("3 boxes then 7 boxes", "7"),
        ("1,000 and 2,500", "2500"),
        ("no number at all", None),
        ("12 things #### none", None),
        ("", None),
    ],
)
def test_final_number(text, expected):
    assert final_number(text) == expected
