"""ORT forms, fluency and the Jensen-Shannon distance to the oracle, end to end through the CLI:
on the micro world (with the adversarial and icl forms) and on an ORT data folder with two tiny
random Llamas as target and oracle."""

import json
import math
import sqlite3
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from test_ort import write_ort  # noqa: E402

from unlearnbench.cli import main  # noqa: E402

LN2 = math.log(2)


def means(store, form, metric):
    """{(checkpoint, split): mean value} of one probe's metric over its items."""
    with sqlite3.connect(store) as db:
        rows = db.execute(
            "SELECT checkpoint, split, AVG(value), COUNT(*) FROM scores WHERE form = ? AND metric = ? "
            "AND item_id != '*' GROUP BY checkpoint, split",
            (form, metric),
        ).fetchall()
    return {(c, s): (v, n) for c, s, v, n in rows}


def test_micro_world_forms_fluency_js(micro_cache, tmp_path, capsys):
    store = tmp_path / "r.sqlite"
    code = main(
        [
            "run",
            "--benchmark",
            "toy,size=micro",
            "--method",
            "npo",
            "--probes",
            "bio,qa,fluency,js,icl,adversarial",
            "--store",
            str(store),
            "--json",
            "--quiet",
        ]
    )
    doc = json.loads(capsys.readouterr().out)
    assert code == 0, doc["cells"]
    for form in ("icl", "adversarial"):
        for split in ("forget", "neighbour", "retain"):
            assert 0 <= doc["recall"]["unlearned"][split][form] <= 1
            assert 0 < doc["prob"]["base"][split][form] < 1
    js = means(store, "js", "js")
    assert {c for c, _ in js} == {"base", "oracle", "unlearned"}
    for (checkpoint, _split), (v, n) in js.items():
        assert n > 0 and 0 <= v <= LN2
        if checkpoint == "oracle":
            assert v == pytest.approx(0.0, abs=1e-6)
    # the base model differs from the oracle on the people the oracle never saw, not on the others
    # (measured: forget 0.24, neighbour 0.009, retain 0.006)
    assert js[("base", "forget")][0] > 5 * js[("base", "retain")][0]
    assert js[("base", "forget")][0] > js[("base", "neighbour")][0]
    for metric, hi in (("ngram_entropy", 20.0), ("repetition_rate", 1.0), ("empty", 1.0)):
        vals = means(store, "fluency", metric)
        assert len(vals) == 9 and all(0 <= v <= hi for v, _ in vals.values()), (metric, vals)
    # run --json carries the same means under "distance" (column -> split -> probe.metric)
    dist = doc["distance"]
    assert dist["base"]["forget"]["js.js"] == pytest.approx(js[("base", "forget")][0], abs=1e-4)
    assert dist["oracle"]["retain"]["js.js"] == pytest.approx(0.0, abs=1e-4)
    assert set(dist["unlearned"]["forget"]) == {
        "js.js",
        "fluency.ngram_entropy",
        "fluency.repetition_rate",
        "fluency.empty",
    }
    # every text item was scored (the qa items of each split)
    assert (
        means(store, "fluency", "n_words")[("base", "forget")][1]
        == means(store, "qa", "correct")[("base", "forget")][1]
    )


@pytest.fixture
def ort_dirs(tmp_path, monkeypatch):
    from helpers_tiny import tiny_model, tiny_tokenizer

    from unlearnbench.models import save_model

    monkeypatch.setenv("UNLEARNBENCH_CACHE", str(tmp_path / "cache"))
    tok = tiny_tokenizer()
    save_model(tiny_model(tok, seed=0), tok, tmp_path / "target")
    save_model(tiny_model(tok, seed=1), tok, tmp_path / "oracle")
    return tmp_path / "target", tmp_path / "oracle", write_ort(tmp_path / "data")


def test_ort_folder_end_to_end(ort_dirs, tmp_path, capsys):
    target, oracle, data = ort_dirs
    store = tmp_path / "r.sqlite"
    code = main(
        [
            "run",
            "--benchmark",
            f"ort,model={target},oracle={oracle},data={data}",
            "--probes",
            "qa,cloze,mcq,tf,adversarial,icl,fluency,js",
            "--method",
            "graddiff,epochs=1,batch_size=2",
            "--store",
            str(store),
            "--json",
            "--quiet",
        ]
    )
    doc = json.loads(capsys.readouterr().out)
    assert code == 0, doc["cells"]
    assert [c["kind"] for c in doc["cells"]] == ["base", "oracle", "unlearn"]
    for col in ("base", "oracle", "unlearned"):
        for split in ("forget", "neighbour", "retain"):
            for form in ("qa", "cloze", "mcq", "tf", "adversarial", "icl"):
                assert 0 < doc["prob"][col][split][form] <= 1 and 0 <= doc["recall"][col][split][form] <= 1
    js = means(store, "js", "js")
    assert len(js) == 9 and all(0 <= v <= LN2 for v, _ in js.values())
    assert js[("oracle", "forget")][0] == pytest.approx(0.0, abs=1e-6)
    assert js[("base", "forget")][0] > 0.001  # two different random models
    fl = means(store, "fluency", "ngram_entropy")
    assert len(fl) == 9 and all(v >= 0 for v, _ in fl.values())
    with sqlite3.connect(store) as db:
        key = json.loads(db.execute("SELECT key_json FROM cells WHERE kind='base'").fetchone()[0])
    assert set(key["benchmark"]["data_sha256"]) == {"probes.jsonl", "forget.jsonl", "retain.jsonl"}

    # without an oracle: no oracle cell, the js probe stores nothing, the rest runs
    store2 = tmp_path / "r2.sqlite"
    code = main(
        [
            "run",
            "--benchmark",
            f"ort,model={target},data={data}",
            "--probes",
            "qa,js",
            "--method",
            "graddiff,epochs=1,batch_size=2",
            "--store",
            str(store2),
            "--json",
            "--quiet",
        ]
    )
    doc = json.loads(capsys.readouterr().out)
    assert code == 0 and [c["kind"] for c in doc["cells"]] == ["base", "unlearn"]
    assert means(store2, "js", "js") == {} and means(store2, "qa", "prob")


def test_ort_missing_probes_file_is_one_line_error(ort_dirs, tmp_path, capsys):
    target, _, _ = ort_dirs
    empty = tmp_path / "empty"
    empty.mkdir()
    code = main(
        [
            "run",
            "--benchmark",
            f"ort,model={target},data={empty}",
            "--method",
            "graddiff",
            "--store",
            str(tmp_path / "r.sqlite"),
            "--quiet",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and "probes.jsonl" in err and "target, split" in err and len(err.splitlines()) == 1
