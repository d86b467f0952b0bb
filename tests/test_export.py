"""``unlearnbench results``: the store exported as CSV, JSON or parquet, with forget quality and the
attack measures in the summary (computed by the report's one computation)."""

from __future__ import annotations

import io
import json
import math

import pandas as pd
import pytest

from unlearnbench.errors import UnlearnbenchError
from unlearnbench.export import export, export_frame
from unlearnbench.metrics import forget_quality, forget_quality_attacked, recovery
from unlearnbench.store import ResultStore, ScoreRow

LABEL = {"model": "m", "method": "npo", "attack": "relearn", "probe_suite": "qa", "seed": 1}


@pytest.fixture
def store(tmp_path):
    with ResultStore(tmp_path / "results.sqlite") as s:
        yield s


@pytest.fixture
def filled(store):
    """Two cells: a base cell (no attack fields) and an attack cell with two checkpoints."""
    run_id = store.start_run(["unlearnbench", "run"], {})
    base_scores = [ScoreRow("base", -1, "forget", "qa", f"q{i}", "prob", v) for i, v in enumerate([0.2, 0.4, 0.9])]
    store.commit_cell(run_id, "base-cell", {"k": "base"}, "base", {"model": "m", "seed": 1}, base_scores)
    attack_scores = (
        [ScoreRow("epoch=0", 0, "forget", "qa", f"q{i}", "prob", v) for i, v in enumerate([0.1, 0.3])]
        + [ScoreRow("epoch=1", 1, "forget", "qa", f"q{i}", "prob", v) for i, v in enumerate([0.5, 0.7])]
        + [ScoreRow("epoch=1", 1, "retain", "cloze", "r0", "em", 1.0)]
    )
    store.commit_cell(run_id, "attack-cell", {"k": "attack"}, "attack", LABEL, attack_scores)
    return store


def test_export_items_csv_and_json(filled, tmp_path):
    text = export(filled, "csv")
    assert export(filled, "csv", out=tmp_path / "x.csv") is None
    assert (tmp_path / "x.csv").read_text() == text
    frame = pd.read_csv(io.StringIO(text))
    assert len(frame) == 8
    assert frame.value.sum() == pytest.approx(0.2 + 0.4 + 0.9 + 0.1 + 0.3 + 0.5 + 0.7 + 1.0)
    records = json.loads(export(filled, "json"))
    assert isinstance(records, list) and len(records) == 8
    assert {r["item_id"] for r in records if r["cell_id"] == "base-cell"} == {"q0", "q1", "q2"}


def test_export_summary_means(filled):
    records = json.loads(export(filled, "json", level="summary"))
    # base: (base/forget/qa); attack: epoch=0 forget, epoch=1 forget, epoch=1 retain (no oracle: no fq rows)
    assert len(records) == 4  # the base cell survives grouping despite NULL attack columns
    means = {(r["cell_id"], r["checkpoint"], r["split"]): r["value"] for r in records}
    assert means[("base-cell", "base", "forget")] == pytest.approx(0.5)
    assert means[("attack-cell", "epoch=0", "forget")] == pytest.approx(0.2)
    assert means[("attack-cell", "epoch=1", "forget")] == pytest.approx(0.6)
    assert means[("attack-cell", "epoch=1", "retain")] == pytest.approx(1.0)
    csv = pd.read_csv(io.StringIO(export(filled, "csv", level="summary")))
    assert len(csv) == 4
    assert csv.loc[csv.checkpoint == "epoch=1", "value"].sort_values().tolist() == pytest.approx([0.6, 1.0])
    assert csv.n.sum() == 8


def test_export_rejects_unknown_format_and_level_and_parquet_to_stdout(filled):
    with pytest.raises(UnlearnbenchError, match="format"):
        export(filled, "xlsx")
    with pytest.raises(UnlearnbenchError, match="level"):
        export(filled, "csv", level="cells")
    with pytest.raises(UnlearnbenchError, match="give --out"):
        export(filled, "parquet")


def test_export_empty_store(store):
    assert json.loads(export(store, "json")) == []
    assert json.loads(export(store, "json", level="summary")) == []
    assert pd.read_csv(io.StringIO(export(store, "csv"))).empty


def _correct(checkpoint, step, values: dict[str, list[float]]) -> list[ScoreRow]:
    """Each listed value stands for 5 items (a form needs 10 items to enter the headline)."""
    return [
        ScoreRow(checkpoint, step, "forget", form, f"{form}{i}-{k}", "correct", v)
        for form, vs in values.items()
        for i, v in enumerate(vs)
        for k in range(5)
    ]


@pytest.fixture
def matrix(store):
    """base, oracle, an unlearn cell, an attack on it and the same attack on the oracle (control)."""
    run_id = store.start_run(["unlearnbench", "run"], {})
    suite = {"model": "m", "probe_suite": "qa,cloze", "seed": 0}
    put = lambda cid, kind, label, rows: store.commit_cell(run_id, cid, {"k": cid}, kind, {**suite, **label}, rows)  # noqa: E731
    put("b", "base", {"method": "base"}, _correct("base", -1, {"qa": [1, 1, 1, 1], "cloze": [1, 1, 0, 0]}))
    put("o", "oracle", {"method": "oracle"}, _correct("oracle", -1, {"qa": [0, 0, 0, 0], "cloze": [0, 0, 0, 0]}))
    put("u", "unlearn", {"method": "npo"}, _correct("unlearned", 0, {"qa": [1, 0, 0, 0], "cloze": [0, 0, 0, 0]}))
    attack = {"method": "npo", "attack": "relearn:forget", "attack_config": "{}"}
    rows = _correct("step=0", 0, {"qa": [1, 0, 0, 0], "cloze": [0, 0, 0, 0]})
    rows += _correct("step=5", 5, {"qa": [1, 1, 1, 0], "cloze": [1, 0, 0, 0]})
    put("a", "attack", attack, rows)
    ctrl = _correct("step=0", 0, {"qa": [0, 0, 0, 0], "cloze": [0, 0, 0, 0]})
    ctrl += _correct("step=5", 5, {"qa": [1, 0, 0, 0], "cloze": [0, 0, 0, 0]})
    put("c", "control", {**attack, "method": "oracle"}, ctrl)
    return store


def test_summary_holds_forget_quality_and_recovery_of_every_checkpoint(matrix, tmp_path):
    frame = export_frame(matrix, "summary")
    fq = frame[frame.metric.str.startswith("forget_quality") | frame.metric.isin(["recovery", "excess"])]
    got = {(r.cell_id, r.checkpoint, r.form, r.metric): r.value for r in fq.itertuples()}
    # per form against base and oracle, headline = mean over the informative forms
    qa_u, cloze_u = forget_quality(0.25, 1.0, 0.0), forget_quality(0.0, 0.5, 0.0)
    assert got[("u", "unlearned", "qa", "forget_quality")] == pytest.approx(qa_u)
    assert got[("u", "unlearned", "headline", "forget_quality")] == pytest.approx((qa_u + cloze_u) / 2)
    qa_5, cloze_5 = forget_quality(0.75, 1.0, 0.0), forget_quality(0.25, 0.5, 0.0)
    assert got[("a", "step=5", "headline", "forget_quality")] == pytest.approx((qa_5 + cloze_5) / 2)
    ao = (forget_quality_attacked(0.75, 1.0, 0.25, 0.0) + forget_quality_attacked(0.25, 0.5, 0.0, 0.0)) / 2
    assert got[("a", "step=5", "headline", "forget_quality_ao")] == pytest.approx(ao)
    assert got[("a", "step=5", "headline", "recovery")] == pytest.approx(
        (recovery(0.75, 0.25, 1.0) + recovery(0.25, 0.0, 0.5)) / 2
    )
    assert ("u", "unlearned", "headline", "recovery") not in got  # attack measures on attack rows only
    headline = fq[(fq.form == "headline") & (fq.metric == "forget_quality")]
    assert set(headline.n) == {40} and set(headline.split) == {"forget"}  # 20 items in each of the 2 forms
    lo = got[("a", "step=5", "headline", "forget_quality_ci_low")]
    hi = got[("a", "step=5", "headline", "forget_quality_ci_high")]
    assert lo <= (qa_5 + cloze_5) / 2 <= hi
    assert set(headline[headline.cell_id == "a"].attack) == {"relearn:forget"}
    # the same rows through parquet
    export(matrix, "parquet", level="summary", out=tmp_path / "s.parquet")
    back = pd.read_parquet(tmp_path / "s.parquet")
    assert len(back) == len(frame) and list(back.columns) == list(frame.columns)
    pd.testing.assert_series_equal(back.value, frame.value, check_names=False)
    assert not math.isnan(back[back.metric == "forget_quality_ao"].value.iloc[-1])


def test_items_parquet_round_trips(matrix, tmp_path):
    export(matrix, "parquet", out=tmp_path / "i.parquet")
    back = pd.read_parquet(tmp_path / "i.parquet")
    pd.testing.assert_frame_equal(back, export_frame(matrix, "items"), check_dtype=False)
