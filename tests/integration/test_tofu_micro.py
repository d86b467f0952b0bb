"""TOFU end to end in seconds: two tiny random Llamas as target and retain model, synthetic TOFU files,
GradDiff for one epoch, then relearn:forget on the TOFU forget QA. Every TOFU number must be stored
and in range: per-split means, forget quality (KS p-value) and model utility."""

import json
import sqlite3
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from test_tofu import write_tofu  # noqa: E402

from unlearnbench.cli import main  # noqa: E402


@pytest.fixture
def tiny_dirs(tmp_path, monkeypatch):
    from helpers_tiny import tiny_model, tiny_tokenizer

    from unlearnbench.models import save_model

    monkeypatch.setenv("UNLEARNBENCH_CACHE", str(tmp_path / "cache"))
    tok = tiny_tokenizer()
    save_model(tiny_model(tok, seed=0), tok, tmp_path / "target")
    save_model(tiny_model(tok, seed=1), tok, tmp_path / "oracle")
    return tmp_path / "target", tmp_path / "oracle", write_tofu(tmp_path / "data", forget_n=8, retain_n=16)


def test_tofu_graddiff_relearn_end_to_end(tiny_dirs, tmp_path, capsys):
    target, oracle, data = tiny_dirs
    store = tmp_path / "r.sqlite"
    bench = f"tofu,model={target},oracle={oracle},data={data},forget=forget01,template=qa"
    code = main(
        [
            "run",
            "--benchmark",
            bench,
            "--method",
            "graddiff,epochs=1,batch_size=4",
            "--attack",
            "relearn:forget,steps=2,eval_every=1,n=4,lora=false,lr=1e-3",
            "--store",
            str(store),
            "--json",
            "--quiet",
        ]
    )
    doc = json.loads(capsys.readouterr().out)
    assert code == 0, doc["cells"]
    assert [c["kind"] for c in doc["cells"]] == ["base", "oracle", "control", "unlearn", "attack"]
    assert all(c["status"] == "finished" for c in doc["cells"])
    attack = doc["cells"][-1]["meta"]["stats"]
    assert attack["n_samples"] == 4 and attack["n_forget_examples"] == 8

    tofu = doc["tofu"]
    cols = [c["column"] for c in doc["columns"]]
    assert cols[:3] == ["base", "oracle", "unlearned"] and len(cols) == 5  # + relearn step=1, step=2
    for col in cols:
        t = tofu[col]
        for split in ("forget", "retain", "holdout", "real_authors", "world_facts"):
            assert 0 < t[split]["prob"] <= 1 and 0 <= t[split]["rougeL_recall"] <= 1
        for split in ("forget", "retain", "real_authors", "world_facts"):
            assert 0 <= t[split]["truth_ratio_stat"] <= 1 and t[split]["truth_ratio"] > 0
        assert 0 <= t["forget"]["forget_quality_ks"] <= 1
        assert 0 <= t["utility"]["model_utility"] <= 1
    # the oracle against itself: the same truth ratios, p = 1
    assert tofu["oracle"]["forget"]["forget_quality_ks"] == pytest.approx(1.0)
    # model utility is the harmonic mean of the nine split means
    t = tofu["unlearned"]
    parts = [
        t[s][m]
        for s in ("retain", "real_authors", "world_facts")
        for m in ("prob", "rougeL_recall", "truth_ratio_stat")
    ]
    expected = 0.0 if min(parts) <= 0 else len(parts) / sum(1 / p for p in parts)
    assert t["utility"]["model_utility"] == pytest.approx(expected, abs=2e-3)
    # unlearning moved the forget answers' probability
    assert tofu["unlearned"]["forget"]["prob"] != tofu["base"]["forget"]["prob"]
    with sqlite3.connect(store) as db:
        n = db.execute(
            "SELECT COUNT(DISTINCT item_id) FROM scores WHERE split='forget' AND form='tofu' AND item_id != '*'"
        ).fetchone()[0]
        key = json.loads(db.execute("SELECT key_json FROM cells WHERE kind='base'").fetchone()[0])
    assert n == 8
    assert set(key["benchmark"]["data_sha256"]) >= {"forget01", "retain99"}


def test_tofu_missing_data_is_one_line_error(tiny_dirs, tmp_path, capsys):
    target, oracle, _ = tiny_dirs
    empty = tmp_path / "empty"
    empty.mkdir()
    code = main(
        [
            "run",
            "--benchmark",
            f"tofu,model={target},data={empty},forget=forget05",
            "--method",
            "graddiff",
            "--store",
            str(tmp_path / "r.sqlite"),
            "--quiet",
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and "forget05_perturbed.json or forget05.json not found" in err[0]
