"""``analyze weightspace`` on a micro sweep of three methods with a relearning attack."""

import io
import json
import math

from rich.console import Console

from unlearnbench.cli import main
from unlearnbench.cli.render import render_weightspace
from unlearnbench.store import ResultStore

RELEARN = "relearn:forget,steps=10"


def _qa_recall(store, cell_id, split):
    f = store.scores_frame([cell_id])
    f = f[(f.form == "qa") & (f.metric == "correct") & (f.split == split) & (f.item_id != "*")]
    return float(f.value.mean())


def test_weightspace_from_a_sweep_store(micro_cache, tmp_path, capsys):
    store = tmp_path / "w.sqlite"
    sweep = ["sweep", "--benchmark", "toy,size=micro", "--methods", "npo,epochs=4,graddiff,epochs=4,rmu,epochs=5"]
    assert main([*sweep, "--attacks", RELEARN, "--json", "--quiet", "--store", str(store)]) == 0
    summary = json.loads(capsys.readouterr().out)
    with ResultStore(store) as s:
        before = (len(s.cells()), len(s.scores_frame()))
    assert main(["analyze", "weightspace", "--store", str(store), "--json", "--quiet"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["schema"] == "unlearnbench.weightspace/1" and doc["benchmark"] == "toy,size=micro"
    assert doc["alphas"][0] == 0.0 and doc["alphas"][-1] == 1.2 and len(doc["alphas"]) == 13
    rows = {r["method"]: r for r in doc["rows"]}
    assert set(rows) == {"npo,epochs=4", "graddiff,epochs=4", "rmu,epochs=5"}
    with ResultStore(store) as s:
        assert (len(s.cells()), len(s.scores_frame())) == before  # read, never written
        (base,) = [c["cell_id"] for c in s.cells() if c["kind"] == "base"]
        base_recall = {sp: _qa_recall(s, base, sp) for sp in ("forget", "retain")}
        unlearned_recall = {
            m: {sp: _qa_recall(s, r["cell_id"], sp) for sp in ("forget", "retain")} for m, r in rows.items()
        }
    for m, r in rows.items():
        assert 0 < r["relative"] < 1 and math.isfinite(r["l2"]) and r["l2"] > 0
        assert math.isfinite(r["oracle_l2"]) and r["oracle_l2"] > 0 and math.isfinite(r["oracle_ratio"])
        groups = [g["group"] for g in r["per_layer"]]
        assert (
            groups[:3] == ["embed", "layer.0", "layer.1"]
            and sum(g["n_params"] for g in r["per_layer"]) == r["n_params"]
        )
        assert r["barrier_forget"] >= 0 and r["barrier_retain"] >= 0
        lmc = {p["alpha"]: p for p in r["lmc"]}
        # the path starts at the original model and reaches the unlearned one: the stored recalls
        assert {sp: lmc[0.0][f"{sp}_recall"] for sp in ("forget", "retain")} == base_recall
        assert {sp: lmc[1.0][f"{sp}_recall"] for sp in ("forget", "retain")} == unlearned_recall[m]
        assert lmc[1.0]["forget_loss"] > lmc[0.0]["forget_loss"]  # unlearning raised the forget loss
        # the worst-case recovery is the report's (the sweep summary's max_recovery)
        assert r["recovery_attacks"] == [RELEARN]
        assert round(r["worst_recovery"], 4) == summary["under_attack"]["max_recovery"][m][RELEARN]["mean"]
    assert base_recall["forget"] > max(u["forget"] for u in unlearned_recall.values())
    cors = {c["figure"]: c for c in doc["correlations"]}
    assert set(cors) == {"l2", "relative", "oracle_l2", "oracle_ratio", "barrier_forget", "barrier_retain"}
    for c in cors.values():
        assert c["n"] == 3
        assert c["note"] == "constant" or (-1 <= c["spearman"] <= 1 and 0 < c["spearman_p"] <= 1)
    out = io.StringIO()
    render_weightspace(doc, Console(file=out, width=200))
    assert "too few cells" not in out.getvalue() and "worst recovery" in out.getvalue()
    assert main(["analyze", "weightspace", "--store", str(store), "--cell", "0000dead"]) == 2
    assert "no finished unlearning cell '0000dead'" in capsys.readouterr().err
