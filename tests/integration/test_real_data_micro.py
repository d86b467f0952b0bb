"""End to end with a real dataset file: the micro world's NPO model fine-tuned on SST-2 rows.

Uses the real-format sample in ../shared/data/samples (skipped when absent) through --data, so
the hub is never asked; FA for sst2 must appear in every attack column.
"""

import json
import sqlite3
from pathlib import Path

import pytest

from unlearnbench.cli import main

SAMPLES = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "samples"
SST2 = SAMPLES / "sst2" / "dev.sample.tsv"


@pytest.mark.skipif(not SST2.is_file(), reason=f"samples folder absent: {SAMPLES}")
def test_finetune_attack_on_local_sst2_file(micro_cache, tmp_path, capsys):
    store = tmp_path / "r.sqlite"
    code = main(
        [
            "run",
            "--benchmark",
            "toy,size=micro",
            "--method",
            "npo",
            "--attack",
            "finetune:sst2,epochs=1",
            "--data",
            f"sst2={SST2}",
            "--data",
            f"sst2:test={SST2}",
            "--store",
            str(store),
            "--json",
            "--quiet",
        ]
    )
    doc = json.loads(capsys.readouterr().out)
    assert code == 0
    assert [c["kind"] for c in doc["cells"]][-1] == "attack"
    assert all(c["status"] in ("finished", "cached") for c in doc["cells"])
    attack_cols = [c["column"] for c in doc["columns"] if c["column"].startswith("finetune:sst2")]
    assert attack_cols
    for col in attack_cols:
        assert set(doc["task_accuracy"][col]) == {"sst2"}
        assert 0.0 <= doc["task_accuracy"][col]["sst2"] <= 1.0
    # the attack cell's key carries the file's content hash, and every test row was scored
    with sqlite3.connect(store) as db:
        keys = [json.loads(k) for (k,) in db.execute("SELECT key_json FROM cells WHERE kind = 'attack'")]
        n_items = db.execute("SELECT COUNT(DISTINCT item_id) FROM scores WHERE form = 'sst2'").fetchone()[0]
    assert keys[0]["task"]["data_sha256"]["train"] == keys[0]["task"]["data_sha256"]["test"]
    assert keys[0]["task"]["config"]["train"] == str(SST2)
    assert n_items == 40
