"""Regression comparison of robustness numbers (no model runs here)."""

import json

import pytest

from unlearnbench.errors import UnlearnbenchError
from unlearnbench.regress import compare, extract_numbers, load_baseline, update_baseline

TOL = {"recall": 0.1, "task_accuracy": 0.1, "forget_quality": 0.15}


def _numbers(bio=0.5, fa=0.8, fq=0.9):
    return {
        "npo": {
            "unlearned": {"recall": {"forget/bio": bio}, "task_accuracy": {"arith": fa}, "forget_quality": {"bio": fq}}
        }
    }


def _baseline(**kw):
    return {"matrix": {}, "forms": ["bio"], "tolerance": TOL, "numbers": _numbers(**kw)}


def test_identical_numbers_pass_and_edges_of_tolerance():
    assert compare(_baseline(), _numbers()) == []
    assert compare(_baseline(), _numbers(bio=0.6)) == []  # exactly at tolerance
    diffs = compare(_baseline(), _numbers(bio=0.61))
    assert [(d.metric, d.where) for d in diffs] == [("recall", "forget/bio")]
    assert diffs[0].delta == pytest.approx(0.11)


def test_each_metric_has_its_own_tolerance():
    assert compare(_baseline(), _numbers(fq=0.76)) == []  # 0.14 < 0.15
    assert [d.metric for d in compare(_baseline(), _numbers(fa=0.69))] == ["task_accuracy"]


def test_missing_or_new_numbers_are_differences():
    measured = _numbers()
    measured["npo"]["finetune:arith ep1"] = measured["npo"]["unlearned"]
    diffs = compare(_baseline(), measured)
    assert {d.column for d in diffs} == {"finetune:arith ep1"} and all(d.baseline is None for d in diffs)
    diffs = compare(_baseline(), {})
    assert len(diffs) == 3 and all(d.measured is None for d in diffs)


def test_none_and_nan_only_match_each_other():
    assert compare(_baseline(fq=None), _numbers(fq=None)) == []
    assert compare(_baseline(fq=None), _numbers(fq=float("nan"))) == []
    assert len(compare(_baseline(fq=None), _numbers(fq=0.5))) == 1


def test_update_needs_a_reason_and_records_history(tmp_path):
    path = tmp_path / "b.json"
    path.write_text(json.dumps(_baseline()))
    base = load_baseline(path)
    with pytest.raises(UnlearnbenchError, match="--reason"):
        update_baseline(path, base, _numbers(bio=0.2), " ")
    doc = update_baseline(path, base, _numbers(bio=0.2), "NPO lr changed")
    again = load_baseline(path)
    assert again["numbers"]["npo"]["unlearned"]["recall"]["forget/bio"] == 0.2
    assert again["history"][-1]["reason"] == "NPO lr changed" and doc == again


@pytest.mark.parametrize(
    "content, needle",
    [
        ("{", "not valid JSON"),
        ('{"matrix": {}, "forms": []}', "lacks 'tolerance'"),
        ('{"matrix": {}, "forms": [], "tolerance": {"recall": 0.1}}', "no tolerance for"),
    ],
)
def test_bad_baseline_files(tmp_path, content, needle):
    path = tmp_path / "b.json"
    path.write_text(content)
    with pytest.raises(UnlearnbenchError, match=needle):
        load_baseline(path)
    with pytest.raises(UnlearnbenchError, match="no baseline file"):
        load_baseline(tmp_path / "missing.json")


def test_extract_numbers_reads_a_run_document():
    summary = {
        "columns": [{"column": "base"}],
        "recall": {"base": {"forget": {"bio": 1.0, "mcq": 0.25}}},
        "task_accuracy": {"base": {"arith": 0.1}},
        "forget_quality": {"base": {"mean": 0.0, "per_form": {"bio": 0.0, "mcq": None}}},
    }
    got = extract_numbers(summary, ["bio"])
    assert got == {
        "base": {"recall": {"forget/bio": 1.0}, "task_accuracy": {"arith": 0.1}, "forget_quality": {"bio": 0.0}}
    }


def _summary(worst_value=0.4, step=10):
    return {
        "columns": [],
        "recall": {},
        "task_accuracy": {},
        "forget_quality": {},
        "worst_case": {
            "finetune:retain,steps=20": {
                "last": {
                    "column": "c",
                    "step": 20,
                    "forget_quality": 0.7,
                    "forget_quality_attacked_oracle": 0.8,
                    "recovery": 0.1,
                },
                "min_forget_quality": {"value": 0.6, "step": 10},
                "min_forget_quality_attacked_oracle": {"value": worst_value, "step": step},
                "max_recovery": {"value": 0.3, "step": 10},
            }
        },
    }


def test_worst_case_numbers_are_extracted_and_compared_without_their_steps():
    got = extract_numbers(_summary(), ["bio"])["finetune:retain,steps=20 worst"]
    assert got["worst_case"] == {
        "last/forget_quality": 0.7,
        "last/forget_quality_attacked_oracle": 0.8,
        "last/recovery": 0.1,
        "min/forget_quality": 0.6,
        "min/forget_quality_attacked_oracle": 0.4,
        "max/recovery": 0.3,
    }
    assert got["steps"]["min/forget_quality_attacked_oracle"] == 10
    base = {"matrix": {}, "forms": ["bio"], "tolerance": {**TOL, "worst_case": 0.15}}
    base["numbers"] = {"npo": extract_numbers(_summary(), ["bio"])}
    assert compare(base, {"npo": extract_numbers(_summary(step=20), ["bio"])}) == []  # the step is not compared
    diffs = compare(base, {"npo": extract_numbers(_summary(worst_value=0.2), ["bio"])})
    assert [(d.metric, d.where) for d in diffs] == [("worst_case", "min/forget_quality_attacked_oracle")]
    # a baseline made before worst cases existed ignores the measured worst-case columns
    old = {"matrix": {}, "forms": ["bio"], "tolerance": TOL, "numbers": {"npo": {}}}
    assert compare(old, {"npo": extract_numbers(_summary(worst_value=0.2), ["bio"])}) == []
