"""A sweep on the micro world: one unlearning per method and seed, failed cells recorded, resume."""

import json

from unlearnbench.cli import main
from unlearnbench.store import ResultStore

ARGS = [
    "sweep",
    "--benchmark",
    "toy,size=micro",
    "--methods",
    "npo,epochs=2,graddiff,lr=1e10",
    "--attacks",
    "finetune:arith,epochs=1,relearn:forget,steps=3",
    "--seeds",
    "0,1",
    "--json",
    "--quiet",
]


def test_sweep_matrix_failures_and_resume(micro_cache, tmp_path, capsys):
    store = tmp_path / "s.sqlite"
    code = main(ARGS + ["--store", str(store)])
    out = json.loads(capsys.readouterr().out)
    assert code == 1  # graddiff with lr=1e10 diverges: recorded, the sweep goes on
    assert out["counts"] == {"finished": 6, "failed": 2, "skipped": 4}
    failed = {(f["kind"], f["seed"]) for f in out["failed"] if f["kind"] == "unlearn"}
    assert failed == {("unlearn", 0), ("unlearn", 1)}
    assert all("nan" in f["reason"] or "unlearning failed" in f["reason"] for f in out["failed"])
    fq = out["forget_quality"]["npo,epochs=2"]
    for col in ("unlearned", "finetune:arith,epochs=1", "relearn:forget,steps=3"):
        assert fq[col]["n"] == 2 and 0.0 <= fq[col]["mean"] <= 1.0
    with ResultStore(store) as s:
        cells = s.cells()
        # one unlearn cell per (method, seed), shared base/oracle per seed, attacks from the checkpoint
        kinds = [c["kind"] for c in cells if c["status"] == "finished"]
        assert kinds.count("unlearn") == 2 and kinds.count("attack") == 4
        assert kinds.count("base") == 2 and kinds.count("oracle") == 2
        # every attack also ran on the oracle: once per (attack, seed), shared by both methods
        assert kinds.count("control") == 4
        assert sum(c["status"] == "failed" for c in cells) == 2
        n_cells = len(cells)
    worst = out["under_attack"]["min_forget_quality_attacked_oracle"]["npo,epochs=2"]
    assert set(worst) == {"finetune:arith,epochs=1", "relearn:forget,steps=3"}
    assert all(v["n"] == 2 and 0.0 <= v["mean"] <= 1.0 for v in worst.values())
    # re-running reuses every finished cell and retries only the failed ones
    code = main(ARGS + ["--store", str(store)])
    again = json.loads(capsys.readouterr().out)
    assert code == 1 and again["counts"].get("finished", 0) == 0 and again["counts"]["cached"] == 6
    assert again["forget_quality"] == out["forget_quality"] and again["under_attack"] == out["under_attack"]
    with ResultStore(store) as s:  # the control cells were reused too, not run again
        assert len(s.cells()) == n_cells


def test_taskvec_from_a_sweep_store(micro_cache, tmp_path, capsys):
    store = tmp_path / "t.sqlite"
    assert (
        main(
            [
                "sweep",
                "--benchmark",
                "toy,size=micro",
                "--methods",
                "npo,epochs=2",
                "--attacks",
                "finetune:arith,epochs=1",
                "--seeds",
                "0",
                "--json",
                "--quiet",
                "--store",
                str(store),
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert (
        main(
            [
                "analyze",
                "taskvec",
                "--benchmark",
                "toy,size=micro",
                "--attack",
                "finetune:arith,epochs=1",
                "--store",
                str(store),
                "--json",
                "--quiet",
            ]
        )
        == 0
    )
    doc = json.loads(capsys.readouterr().out)
    (row,) = doc["rows"]
    assert row["method"] == "npo,epochs=2" and row["n_params"] > 10_000
    for k in ("cos_uft_u", "cos_uft_ft", "cos_u_ft"):
        assert -1.0 <= row[k] <= 1.0
    assert row["norm_u"] > 0 and row["norm_ft"] > 0 and row["norm_uft"] > 0
    # fine-tuning the unlearned model on arith resembles fine-tuning the original on arith
    assert row["cos_uft_ft"] > 0.1
    assert (
        main(["analyze", "taskvec", "--benchmark", "toy,size=micro", "--method", "rmu", "--store", str(store)]) == 2
    )  # no such cell: a one-line error


def test_study_writes_findings_and_report(micro_cache, tmp_path, capsys):
    exp = tmp_path / "mini.yaml"
    exp.write_text(
        "name: mini\nbenchmark: toy,size=micro\nmethods: ['npo,epochs=2']\nattacks: ['relearn:forget,steps=3']\n"
        "seeds: [0]\nprobes: [bio, qa]\nexpected:\n"
        "  - claim: relearning on forget samples brings knowledge back\n"
        "    check: {kind: drop, method: 'npo,epochs=2', min: 0.0}\n"
        "  - claim: a method that was not run\n"
        "    check: {kind: compare, better: rmu, worse: 'npo,epochs=2'}\n"
    )
    out = tmp_path / "study"
    assert main(["study", str(exp), "--out", str(out), "--quiet"]) == 0
    text = capsys.readouterr().out
    doc = json.loads((out / "study.json").read_text())
    first, second = doc["findings"]
    assert first["holds"] in (True, False) and "drop" in first["measured"]
    assert second["holds"] is None and "not measured" in second["detail"]
    assert (out / "findings.md").read_text().count("|") > 10 and (out / "report" / "report.html").is_file()
    assert "holds" in text and doc["environment"]["wall_seconds"] > 0
