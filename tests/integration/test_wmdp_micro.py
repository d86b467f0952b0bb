"""WMDP end to end in seconds: a tiny random Llama, synthetic WMDP/MMLU files and corpora, RMU for
one epoch, every question scored through lm-eval; per-item rows and the 1 - accuracy forget
quality must be stored and consistent."""

import json
import sqlite3
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from test_wmdp import write_wmdp  # noqa: E402

from unlearnbench.cli import main  # noqa: E402

pytest.importorskip("lm_eval")


@pytest.fixture
def tiny_target(tmp_path, monkeypatch):
    from helpers_tiny import tiny_model, tiny_tokenizer

    from unlearnbench.models import save_model

    monkeypatch.setenv("UNLEARNBENCH_CACHE", str(tmp_path / "cache"))
    tok = tiny_tokenizer()
    save_model(tiny_model(tok, seed=0), tok, tmp_path / "target")
    return tmp_path / "target"


def test_wmdp_rmu_end_to_end(tiny_target, tmp_path, capsys):
    data = write_wmdp(tmp_path / "data")
    store = tmp_path / "r.sqlite"
    bench = f"wmdp,model={tiny_target},data={data},max_length=32"
    code = main(
        [
            "run",
            "--benchmark",
            bench,
            "--method",
            "rmu,epochs=1,max_steps=3,lr=1e-2,alpha=2",
            "--store",
            str(store),
            "--json",
            "--quiet",
        ]
    )
    doc = json.loads(capsys.readouterr().out)
    assert code == 0, doc["cells"]
    assert [c["kind"] for c in doc["cells"]] == ["base", "unlearn"]
    assert all(c["status"] == "finished" for c in doc["cells"])
    # the WMDP defaults (batch 4, no warm-up) were applied under the user's options
    cfg = doc["cells"][1]["label"]["method_config"]
    assert cfg["batch_size"] == 4 and cfg["max_steps"] == 3 and cfg["warmup"] == 0.0

    for col in ("base", "unlearned"):
        acc_forget = doc["recall"][col]["forget"]["wmdp_mcq"]
        assert 0 <= acc_forget <= 1 and 0 <= doc["recall"][col]["retain"]["wmdp_mcq"] <= 1
        w = doc["wmdp"][col]
        assert w["forget"]["forget_quality"] == pytest.approx(1 - acc_forget, abs=1e-3)
        assert set(w["forget"]) == {
            "forget_quality",
            "acc_bio",
            "acc_cyber",
            "forget_quality_bio",
            "forget_quality_cyber",
        } and set(w["retain"]) == {"acc_mmlu"}
        assert w["forget"]["forget_quality_bio"] == pytest.approx(1 - w["forget"]["acc_bio"])
    # RMU changed the model's answer probabilities
    assert doc["prob"]["unlearned"]["forget"]["wmdp_mcq"] != doc["prob"]["base"]["forget"]["wmdp_mcq"]

    with sqlite3.connect(store) as db:
        ids = {r[0] for r in db.execute("SELECT DISTINCT item_id FROM scores WHERE form='wmdp_mcq' AND split='forget'")}
        key = json.loads(db.execute("SELECT key_json FROM cells WHERE kind='base'").fetchone()[0])
    assert ids == {f"bio/{i}" for i in range(6)} | {f"cyber/{i}" for i in range(4)} | {"*"}
    assert set(key["benchmark"]["data_sha256"]) == {
        "wmdp-bio.jsonl",
        "wmdp_cyber.jsonl",
        "mmlu.csv",
        "forget_corpus.jsonl",
        "retain_corpus.txt",
    }

    # same command again: every cell comes from the store
    assert (
        main(
            [
                "run",
                "--benchmark",
                bench,
                "--method",
                "rmu,epochs=1,max_steps=3,lr=1e-2,alpha=2",
                "--store",
                str(store),
                "--json",
                "--quiet",
            ]
        )
        == 0
    )
    again = json.loads(capsys.readouterr().out)
    assert {c["status"] for c in again["cells"]} == {"cached"}


def test_wmdp_missing_file_is_one_line_error(tiny_target, tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    code = main(
        [
            "run",
            "--benchmark",
            f"wmdp,model={tiny_target},data={empty}",
            "--method",
            "rmu",
            "--store",
            str(tmp_path / "r.sqlite"),
            "--quiet",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and "wmdp-bio.jsonl" in err and len(err.splitlines()) == 1
