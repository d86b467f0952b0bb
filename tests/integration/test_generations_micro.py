"""Generated text is kept per item (micro world): capped by --generations, off with 0, and exported
beside the scores by ``results --level items``."""

import io
import json

import pandas as pd
import pytest

from unlearnbench import runner
from unlearnbench.cli import main
from unlearnbench.export import export
from unlearnbench.store import ResultStore

MICRO = "toy,size=micro"


@pytest.fixture(scope="module")
def stores(micro_cache, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gen")
    out = {}
    for chars in (8, 0):
        req = runner.RunRequest(
            method="none", benchmark=MICRO, probes=["qa", "mcq"], controls=["none"], generations=chars
        )
        path = tmp / f"g{chars}.sqlite"
        with ResultStore(path) as store:
            runner.run(req, store)
        out[chars] = path
    return out


def test_each_generated_item_has_its_text_cut_to_the_cap(stores):
    with ResultStore(stores[8]) as store:
        texts = store.generations_frame()
        scores = store.scores_frame()
    qa = scores[(scores.form == "qa") & (scores.metric == "em")]
    assert len(texts) == len(qa) > 0  # one text per generative item and checkpoint; MCQ generates none
    assert set(texts.form) == {"qa"}
    assert texts.text.str.len().max() <= 8 and (texts.text.str.len() > 0).any()
    # the base model answers the retain people right: its text starts like the answer
    merged = qa.merge(texts, on=["cell_id", "checkpoint", "split", "form", "item_id"])
    assert len(merged) == len(qa)


def test_zero_keeps_no_text(stores):
    with ResultStore(stores[0]) as store:
        assert store.generations_frame().empty
        assert not store.scores_frame().empty


def test_items_export_carries_the_text(stores, tmp_path, capsys):
    with ResultStore(stores[8]) as store:
        frame = pd.read_csv(io.StringIO(export(store, "csv", level="items")), keep_default_na=False)
    assert "generation" in frame.columns
    assert (frame[frame.form == "qa"].generation != "").any() and (frame[frame.form == "mcq"].generation == "").all()
    assert main(["results", "--store", str(stores[8]), "--level", "items", "--format", "json"]) == 0
    records = json.loads(capsys.readouterr().out)
    assert any(r["generation"] for r in records)
