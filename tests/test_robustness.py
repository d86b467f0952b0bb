"""Robustness under attack: the attacked-oracle metrics against hand-computed values, their NaN rules,
the worst case over a curve, and step budgets of the fine-tuning attack."""

import math

import pytest
from helpers_tiny import tiny_model, tiny_tokenizer

from unlearnbench.attacks.finetune import FinetuneAttack, FinetuneConfig
from unlearnbench.data.types import Example, TaskData
from unlearnbench.metrics import MIN_GAP, excess, forget_quality, forget_quality_attacked, recovery
from unlearnbench.report import run_summary
from unlearnbench.runner import CellResult
from unlearnbench.spec import build_config
from unlearnbench.store import ResultStore, ScoreRow, cell_id

nan = float("nan")

# -- the formulas ------------------------------------------------------------------------------


def test_forget_quality_against_the_attacked_oracle_by_hand():
    # b=1.0, o_0=0.1 (gap 0.9); the attacked oracle learned to 0.4; the attacked model is at 0.55
    assert forget_quality_attacked(0.55, 1.0, 0.4, 0.1) == pytest.approx(1 - 0.15 / 0.9)
    # against the unattacked oracle the same model looks far worse
    assert forget_quality(0.55, 1.0, 0.1) == pytest.approx(1 - 0.45 / 0.9)
    # clipped to [0, 1], and symmetric (knowing less than the attacked oracle is also a difference)
    assert forget_quality_attacked(1.0, 1.0, 0.0, 0.5) == 0.0
    assert forget_quality_attacked(0.3, 1.0, 0.4, 0.1) == pytest.approx(1 - 0.1 / 0.9)


def test_recovery_and_excess_by_hand():
    # the method took recall from 1.0 to 0.2; the attack brought it to 0.6: half came back
    assert recovery(0.6, 0.2, 1.0) == pytest.approx(0.5)
    assert recovery(0.1, 0.2, 1.0) == pytest.approx(-0.125)  # the attack removed more: negative
    assert recovery(1.2, 0.2, 1.0) == pytest.approx(1.25)  # not clipped
    assert excess(0.6, 0.45) == pytest.approx(0.15) and excess(0.3, 0.45) == pytest.approx(-0.15)


def test_nan_rules():
    assert math.isnan(forget_quality_attacked(0.5, 0.5, 0.4, 0.5 - MIN_GAP / 2))  # base ~ oracle: no signal
    assert math.isnan(recovery(0.9, 0.99, 1.0))  # nothing (< MIN_GAP) was removed: nothing to recover
    assert not math.isnan(recovery(0.9, 1.0 - MIN_GAP, 1.0))
    for f in (lambda: forget_quality_attacked(nan, 1, 0, 0), lambda: recovery(0.5, nan, 1), lambda: excess(nan, 0.1)):
        assert math.isnan(f())


# -- the run summary: controls matched by step, worst case over the curve ---------------------------


def _store_with_curve(tmp_path, with_control=True):
    """base/oracle/unlearned and a 3-checkpoint attack on one form, with its attacked-oracle control."""
    store = ResultStore(tmp_path / "r.sqlite")
    run = store.start_run([], {})
    label = {"model": "m", "probe_suite": "qa", "seed": 0}
    cells = []

    def commit(kind, method, points, attack=None):
        rows = []
        for checkpoint, step, value in points:
            rows += [
                ScoreRow(checkpoint, step, "forget", "qa", f"i{j}", "correct", float(j < value * 10)) for j in range(10)
            ]
        lab = {**label, "method": method, **({"attack": attack} if attack else {})}
        cid = cell_id({"kind": kind, "method": method, "attack": attack})
        store.commit_cell(run, cid, {"kind": kind}, kind, lab, rows, {})
        cells.append(CellResult(kind, cid, lab, "finished"))

    commit("base", "base", [("base", -1, 1.0)])
    commit("oracle", "oracle", [("oracle", -1, 0.1)])
    if with_control:  # the oracle, attacked the same way, learns to 0.3 then 0.4
        commit(
            "control",
            "oracle",
            [("step=0", 0, 0.1), ("step=5", 5, 0.3), ("step=10", 10, 0.4), ("step=15", 15, 0.4)],
            "relearn:forget",
        )
    commit("unlearn", "npo", [("unlearned", 0, 0.2)])
    # the attacked model peaks between checkpoints' ends: 0.7 at step 10, 0.5 at the last step
    commit(
        "attack",
        "npo",
        [("step=0", 0, 0.2), ("step=5", 5, 0.5), ("step=10", 10, 0.7), ("step=15", 15, 0.5)],
        "relearn:forget",
    )
    return store, cells


def test_summary_robustness_matches_hand_values(tmp_path):
    store, cells = _store_with_curve(tmp_path)
    doc = run_summary(store, cells)
    assert [c["column"] for c in doc["control_columns"]] == [
        "[oracle] relearn:forget step=5",
        "[oracle] relearn:forget step=10",
        "[oracle] relearn:forget step=15",
    ]
    r = doc["robustness"]["relearn:forget step=10"]
    assert r["control"] == "[oracle] relearn:forget step=10"
    assert r["forget_quality_attacked_oracle"]["mean"] == pytest.approx(round(1 - 0.3 / 0.9, 4))
    assert r["recovery"]["mean"] == pytest.approx(round(0.5 / 0.8, 4))
    assert r["excess"]["mean"] == pytest.approx(0.3)
    assert doc["forget_quality"]["relearn:forget step=10"]["mean"] == pytest.approx(round(1 - 0.6 / 0.9, 4))
    w = doc["worst_case"]["relearn:forget"]
    assert w["last"]["step"] == 15 and w["last"]["recovery"] == pytest.approx(round(0.3 / 0.8, 4))
    # the worst case is the peak at step 10, which the last checkpoint misses
    assert w["max_recovery"]["step"] == 10 and w["max_recovery"]["value"] == pytest.approx(0.625)
    assert w["min_forget_quality"]["step"] == 10
    assert w["min_forget_quality_attacked_oracle"]["step"] == 10
    assert "notes" not in doc


def test_summary_without_a_control_says_so(tmp_path):
    store, cells = _store_with_curve(tmp_path, with_control=False)
    doc = run_summary(store, cells)
    r = doc["robustness"]["relearn:forget step=10"]
    assert r["control"] is None and r["forget_quality_attacked_oracle"]["mean"] is None
    assert r["recovery"]["mean"] == pytest.approx(0.625)  # recovery needs no control
    assert any("no attacked-oracle control" in n for n in doc["notes"])


# -- step budgets ------------------------------------------------------------------------------


def _task(n=10):
    ex = [Example(f"Q{i}:", f" {i}. #### {i}") for i in range(n)]
    return TaskData("t", ex, ex[:2], "number", max_new_tokens=4)


def _run(**options):
    cfg = build_config(FinetuneConfig, {"batch_size": 4, "lr": 1e-3, **options}, plugin="finetune")
    calls = []
    stats = FinetuneAttack(cfg, "t").run(
        tiny_model(), tiny_tokenizer(), _task(), lambda ckpt, step, m: calls.append((ckpt, step))
    )
    return stats, calls


def test_steps_trains_exactly_n_steps_whatever_the_dataset_size():
    stats, calls = _run(steps=7, eval_every=3)  # 10 examples / batch 4 = 3 steps per epoch: 7 crosses epochs
    assert stats["steps"] == 7
    assert calls == [("step=0", 0), ("step=3", 3), ("step=6", 6), ("step=7", 7)]  # every 3 and the last
    assert stats["evaluated_steps"] == [0, 3, 6, 7]


def test_epochs_stay_the_default_budget():
    stats, calls = _run(epochs=2)
    assert stats["steps"] == 6 and calls == [("epoch=0", 0), ("epoch=1", 1), ("epoch=2", 2)]
    stats, calls = _run(epochs=2, eval_every=2)  # progressive evaluation within the epoch budget
    assert calls == [("step=0", 0), ("step=2", 2), ("step=4", 4), ("step=6", 6)]


@pytest.mark.parametrize(
    "options, message",
    [
        ({"steps": "0"}, "steps must be positive"),
        ({"steps": "-3"}, "steps must be positive"),
        ({"steps": "4", "eval_every": "5"}, "eval_every=5 is more than steps=4"),
        ({"eval_every": "-1"}, "eval_every must be >= 0"),
    ],
)
def test_bad_budgets_are_one_line_errors(options, message):
    from unlearnbench.errors import SpecError

    with pytest.raises(SpecError, match=message):
        build_config(FinetuneConfig, options, plugin="finetune")


# -- the worst-case attacker: grids -------------------------------------------------------------


def test_expand_grid_is_the_product_in_written_order():
    from unlearnbench.sweep import expand_grid, expand_grids

    assert expand_grid("finetune:arith,lr=1e-4|1e-3,lora=false|true,epochs=1") == [
        "finetune:arith,lr=1e-4,lora=false,epochs=1",
        "finetune:arith,lr=1e-4,lora=true,epochs=1",
        "finetune:arith,lr=1e-3,lora=false,epochs=1",
        "finetune:arith,lr=1e-3,lora=true,epochs=1",
    ]
    assert expand_grid("relearn:forget") == ["relearn:forget"]
    assert expand_grids(["quantize:4", "finetune:arith,lr=1e-3|1e-3"]) == ["quantize:4", "finetune:arith,lr=1e-3"]


@pytest.mark.parametrize(
    "spec, message",
    [
        ("finetune:arith,lr=1e-3|", "empty value"),
        ("finetune|relearn:arith", "not the plugin name"),
        (
            "finetune:arith,lr="
            + "|".join(str(i) for i in range(1, 10))
            + ",steps="
            + "|".join(map(str, range(1, 10))),
            "81 combinations",
        ),
    ],
)
def test_bad_grids_are_one_line_errors(spec, message):
    from unlearnbench.errors import UnlearnbenchError
    from unlearnbench.sweep import expand_grid

    with pytest.raises(UnlearnbenchError, match=message):
        expand_grid(spec)


def test_a_bad_value_in_a_grid_exits_2_before_any_model(tmp_path, capsys, monkeypatch):
    from unlearnbench.cli import main

    def no_model(*a, **k):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr("unlearnbench.toy.preset.load", no_model)
    store = tmp_path / "s.sqlite"
    code = main(
        [
            "sweep",
            "--benchmark",
            "toy,size=micro",
            "--methods",
            "npo",
            "--attacks",
            "finetune:arith,lr=1e-3|fast",
            "--store",
            str(store),
            "--quiet",
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "lr" in err and len(err.strip().splitlines()) == 1 and not store.exists()


def test_worst_attacker_picks_the_strongest_configuration():
    from unlearnbench.sweep import worst_attacker

    def v(mean):
        return {"mean": mean, "std": 0.01, "n": 2}

    under = {
        "min_forget_quality_attacked_oracle": {"npo": {"a,lr=1": v(0.7), "a,lr=2": v(0.4), "b": v(None)}},
        "min_forget_quality": {"npo": {"a,lr=1": v(0.5), "a,lr=2": v(0.3)}, "rmu": {"a,lr=1": v(0.6)}},
        "max_recovery": {"npo": {"a,lr=1": v(0.2), "a,lr=2": v(0.5)}},
    }
    w = worst_attacker(under)
    assert w["npo"]["forget_quality"]["attack"] == "a,lr=2" and w["npo"]["against"] == "attacked oracle"
    assert w["npo"]["recovery"] == {"attack": "a,lr=2", "mean": 0.5, "std": 0.01, "n": 2}
    assert w["rmu"]["against"] == "oracle" and w["rmu"]["forget_quality"]["mean"] == 0.6  # no control: falls back
