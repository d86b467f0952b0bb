"""Study checks on hand-made numbers: each kind says holds / does not hold / not measured correctly."""

import pytest

from unlearnbench.errors import UnlearnbenchError
from unlearnbench.study import _Numbers, check_findings


class _Result:
    def __init__(self):
        from unlearnbench.sweep import Experiment

        self.experiment = Experiment(name="t", methods=["npo", "ilu"], attacks=["finetune:arith"])


def _numbers(monkeypatch, fq, recall, worst=None, hidden=None):
    def fake_init(self, store, result):
        self.attacks = ["finetune:arith"]
        self.fq, self.recall, self.worst, self.hidden = fq, recall, worst or {}, hidden or {}

    monkeypatch.setattr(_Numbers, "__init__", fake_init)


FQ = {
    "npo": {"unlearned": {0: 0.8, 1: 0.7}, "finetune:arith": {0: 0.4, 1: 0.5}},
    "ilu": {"unlearned": {0: 0.8, 1: 0.8}, "finetune:arith": {0: 0.7, 1: 0.6}},
}
BASE = {"forget": {"bio": 1.0, "qa": 1.0}, "neighbour": {"bio": 1.0}}
RECALL = {
    "npo": {"base": [BASE], "unlearned": [{"forget": {"bio": 0.0, "qa": 0.6}, "neighbour": {"bio": 0.9}}]},
    "rocr": {"base": [BASE], "unlearned": [{"forget": {"bio": 0.5, "qa": 0.45}, "neighbour": {"bio": 0.5}}]},
}


def test_checks(monkeypatch):
    _numbers(monkeypatch, FQ, RECALL)
    expected = [
        {"claim": "drop", "check": {"kind": "drop", "method": "npo"}},
        {"claim": "ilu better", "check": {"kind": "compare", "better": "ilu", "worse": "npo"}},
        {"claim": "npo better", "check": {"kind": "compare", "better": "npo", "worse": "ilu"}},
        {"claim": "close", "check": {"kind": "close", "a": "ilu", "b": "npo", "column": "unlearned", "tol": 0.1}},
        {"claim": "gap", "check": {"kind": "form_gap", "methods": ["npo", "rocr"], "trained": "bio", "others": ["qa"]}},
        {"claim": "even", "check": {"kind": "form_even", "method": "rocr", "forms": ["bio", "qa"], "tol": 0.1}},
        {"claim": "kept", "check": {"kind": "neighbour_kept", "methods": ["npo", "rocr"], "form": "bio", "tol": 0.2}},
        {"claim": "missing", "check": {"kind": "compare", "better": "rmu", "worse": "npo"}},
    ]
    f = check_findings(expected, None, _Result())
    assert [x.holds for x in f] == [True, True, False, True, False, True, False, None]  # rocr: bio -0.5 < qa -0.55
    assert f[0].measured["drop"] == pytest.approx(0.3)
    assert f[4].measured["npo"]["rel_drop_trained"] == 1.0 and f[4].measured["rocr"][
        "rel_drop_others"
    ] == pytest.approx(0.55)
    assert f[6].measured["neighbour_drop"] == {"npo": pytest.approx(0.1), "rocr": pytest.approx(0.5)}
    assert "not measured" in f[7].detail


WORST = {  # sweep.worst_matrix: measure -> method -> attack -> seed -> value
    "min_forget_quality": {"npo": {"finetune:arith": {0: 0.2, 1: 0.3}}, "ilu": {"finetune:arith": {0: 0.5, 1: 0.5}}},
    "min_forget_quality_attacked_oracle": {
        "npo": {"finetune:arith": {0: 0.75, 1: 0.85}},
        "ilu": {"finetune:arith": {0: 0.6, 1: 0.7}},
    },
}


def test_checks_on_the_worst_case_and_the_attacked_oracle(monkeypatch):
    _numbers(monkeypatch, FQ, RECALL, WORST)
    expected = [
        {"claim": "worst drop", "check": {"kind": "drop", "method": "npo", "measure": "worst"}},
        {"claim": "beyond control", "check": {"kind": "drop", "method": "npo", "measure": "worst_ao", "min": 0.0}},
        {"claim": "ilu, worst", "check": {"kind": "compare", "better": "ilu", "worse": "npo", "measure": "worst"}},
        {"claim": "ilu, ao", "check": {"kind": "compare", "better": "ilu", "worse": "npo", "measure": "worst_ao"}},
        {
            "claim": "no last_ao numbers",
            "check": {"kind": "compare", "better": "ilu", "worse": "npo", "measure": "last_ao"},
        },
        {"claim": "matched", "check": {"kind": "matched", "methods": ["npo", "ilu"], "tol": 0.1}},
        {
            "claim": "two attacks of one method",
            "check": {
                "kind": "compare",
                "better": "npo",
                "worse": "ilu",
                "columns": ["unlearned"],
                "worse_columns": ["finetune:arith"],
                "measure": "worst_ao",
            },
        },
        {"claim": "not matched", "check": {"kind": "matched", "methods": ["npo", "ilu"], "tol": 0.01}},
    ]
    f = check_findings(expected, None, _Result())
    assert [x.holds for x in f] == [True, False, True, False, None, True, True, False]
    assert f[6].measured["better"] == pytest.approx(0.75) and f[6].measured["worse"] == pytest.approx(0.65)
    assert f[0].measured["drop"] == pytest.approx(0.75 - 0.25)  # unlearned FQ stays the unattacked number
    assert f[1].measured["drop"] == pytest.approx(0.75 - 0.8)  # npo is no worse than the attacked oracle
    assert "attacked oracle" in f[3].detail
    assert f[5].measured["span"] == pytest.approx(0.05)


def test_unknown_check_measure(monkeypatch):
    _numbers(monkeypatch, FQ, RECALL)
    with pytest.raises(UnlearnbenchError, match="measure"):
        check_findings([{"claim": "x", "check": {"kind": "drop", "method": "npo", "measure": "best"}}], None, _Result())


def test_unknown_check_kind(monkeypatch):
    _numbers(monkeypatch, FQ, RECALL)
    with pytest.raises(UnlearnbenchError, match="unknown"):
        check_findings([{"claim": "x", "check": {"kind": "vibes"}}], None, _Result())


def test_presets_declare_valid_checks():
    from unlearnbench.spec import canonical_spec
    from unlearnbench.study import CHECK_KINDS, MEASURES
    from unlearnbench.sweep import load_experiment

    for name in ("ilu-robustness", "form-dependence", "whitebox"):
        exp = load_experiment(name)
        assert exp.expected and all(e["check"]["kind"] in CHECK_KINDS and e["claim"] for e in exp.expected)
        attacks = {canonical_spec(a) for a in exp.attacks} | {"unlearned"}
        methods = {canonical_spec(m) for m in exp.methods}
        for e in exp.expected:
            c = e["check"]
            assert c.get("measure", "last") in MEASURES
            for key in ("columns", "worse_columns", "to"):  # a typo in a column would make a check "not measured"
                if isinstance(c.get(key), list):
                    assert {canonical_spec(x) if x != "unlearned" else x for x in c[key]} <= attacks, (name, key)
            for key in ("method", "better", "worse", "a", "b"):
                if key in c:
                    assert canonical_spec(c[key]) in methods, (name, c[key])
            for m in c.get("methods", []):
                assert canonical_spec(m) in methods, (name, m)


def test_significance_over_seeds():
    from unlearnbench.study import significance

    se, sig = significance({0: 0.9, 1: 0.92, 2: 0.91}, {0: 0.5, 1: 0.52, 2: 0.51})
    assert sig is True and se == pytest.approx(0.0082, abs=1e-3)
    assert significance({0: 0.9, 1: 0.7}, {0: 0.85, 1: 0.75})[1] is False
    assert significance({0: 0.9}, {0: 0.5}) == (None, None)


def _hid(acc):
    return {"forget": {"linear.best_acc": acc, "lens.best_top1": 1.0}}


HIDDEN = {  # method -> column -> [per seed summary["hidden"][column]]
    "npo": {"base": [_hid(0.8)], "oracle": [_hid(0.2), _hid(0.2)], "unlearned": [_hid(0.6), _hid(0.5)]},
    "rmu": {"base": [_hid(0.8)], "oracle": [_hid(0.2)], "unlearned": [_hid(0.25)]},
}


def test_hidden_gap(monkeypatch):
    _numbers(monkeypatch, FQ, RECALL, hidden=HIDDEN)
    expected = [
        {
            "claim": "npo holds",
            "check": {"kind": "hidden_gap", "methods": ["npo"], "key": "linear.best_acc", "min": 0.2},
        },
        {
            "claim": "both",
            "check": {"kind": "hidden_gap", "methods": ["npo", "rmu"], "key": "linear.best_acc", "min": 0.1},
        },
        {"claim": "lens", "check": {"kind": "hidden_gap", "methods": ["npo"], "key": "lens.best_top1"}},
        {"claim": "none", "check": {"kind": "hidden_gap", "methods": ["ilu"], "key": "linear.best_acc"}},
    ]
    f = check_findings(expected, None, _Result())
    assert [x.holds for x in f] == [True, False, False, None]  # rmu 0.25 - 0.2 < 0.1; lens gap 0 is not > 0
    assert f[0].measured["npo"] == {"base": 0.8, "unlearned": 0.55, "oracle": 0.2, "gap": pytest.approx(0.35)}
    assert "holds for 1/2" in f[1].detail and "not measured" in f[3].detail
