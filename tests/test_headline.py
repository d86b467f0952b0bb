"""The headline forget quality: the entry rule, weights by item count, n, and the bootstrap interval."""

from __future__ import annotations

import math

import pytest

from unlearnbench.headline import MIN_GAP_ITEMS, MIN_ITEMS, entering_forms, headline
from unlearnbench.metrics import forget_quality


def _items(form: str, values: list[float]) -> dict:
    return {form: {f"{form}{i}": v for i, v in enumerate(values)}}


def _models():
    """bio: 36 items, base all right, oracle none; mcq: 12 items, one item of gap; reverse: 2 items."""
    base = {**_items("bio", [1.0] * 36), **_items("mcq", [1.0] * 7 + [0.0] * 5), **_items("reverse", [1.0, 1.0])}
    oracle = {**_items("bio", [0.0] * 36), **_items("mcq", [1.0] * 6 + [0.0] * 6), **_items("reverse", [0.0, 0.0])}
    model = {**_items("bio", [1.0] * 9 + [0.0] * 27), **_items("mcq", [1.0] * 7 + [0.0] * 5),
             **_items("reverse", [0.0, 0.0])}  # fmt: skip
    return model, base, oracle


def test_forms_with_few_items_or_a_gap_of_few_items_do_not_enter():
    _, base, oracle = _models()
    weights, left_out = entering_forms(base, oracle)
    assert weights == {"bio": 36}
    assert set(left_out) == {"mcq", "reverse"}
    assert "1.0 items" in left_out["mcq"] and f"< {MIN_GAP_ITEMS}" in left_out["mcq"]
    assert f"2 items (< {MIN_ITEMS})" == left_out["reverse"]


def test_the_headline_is_the_entering_forms_mean_weighted_by_items():
    model, base, oracle = _models()
    h = headline(model, base, oracle)
    assert h["value"] == pytest.approx(forget_quality(0.25, 1.0, 0.0)) and h["n"] == 36
    # the unweighted mean of every informative form would have been moved by mcq (fq 0) and reverse (fq 1)
    assert h["per_form"]["mcq"] == 0.0 and h["per_form"]["reverse"] == 1.0
    # two entering forms of 36 and 12 items weigh 3:1
    base["qa"] = {f"q{i}": 1.0 for i in range(12)}
    oracle["qa"] = {f"q{i}": 0.0 for i in range(12)}
    model["qa"] = {f"q{i}": 0.0 for i in range(12)}  # fq 1 on qa
    h = headline(model, base, oracle)
    assert h["forms"] == {"bio": 36, "qa": 12} and h["n"] == 48
    assert h["value"] == pytest.approx((36 * 0.75 + 12 * 1.0) / 48)


def test_bootstrap_interval_covers_the_value_is_seeded_and_narrows_with_items():
    model, base, oracle = _models()
    h = headline(model, base, oracle)
    lo, hi = h["ci"]
    assert lo <= h["value"] <= hi and hi - lo > 0.05
    assert headline(model, base, oracle)["ci"] == h["ci"]  # seeded
    assert headline(model, base, oracle, seed=1)["ci"] != h["ci"]
    big = {k: {f"{i}-{j}": v for j in range(4) for i, v in m["bio"].items()} for k, m in
           (("model", model), ("base", base), ("oracle", oracle))}  # fmt: skip
    wide = hi - lo
    h4 = headline({"bio": big["model"]}, {"bio": big["base"]}, {"bio": big["oracle"]})
    assert h4["value"] == pytest.approx(h["value"]) and (h4["ci"][1] - h4["ci"][0]) < 0.7 * wide


def test_against_the_attacked_oracle_the_gap_stays_base_minus_oracle():
    model, base, oracle = _models()
    attacked = {f: dict(v) for f, v in oracle.items()}
    attacked["bio"] = {k: (1.0 if i < 9 else 0.0) for i, k in enumerate(oracle["bio"])}  # the oracle relearned 9
    h = headline(model, base, oracle, attacked_oracle=attacked)
    assert h["value"] == pytest.approx(1.0)  # the model knows exactly what the attacked oracle knows


def test_no_entering_form_gives_nan_and_no_interval():
    model, base, oracle = _models()
    del base["bio"]
    h = headline(model, base, oracle)
    assert math.isnan(h["value"]) and h["ci"] is None and h["n"] == 0


def test_group_items_keys_by_point_and_leaves_out_aggregates_and_nan():
    from unlearnbench.headline import group_items

    rows = [(("c", "base"), "qa", "q0", 1.0), (("c", "base"), "qa", "*", 0.5), (("c", "base"), "qa", "q1", math.nan),
            (0, "bio", "b0", 0.0)]  # fmt: skip
    assert group_items(rows) == {("c", "base"): {"qa": {"q0": 1.0}}, 0: {"bio": {"b0": 0.0}}}
