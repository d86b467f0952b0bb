"""Hidden-state probes on the embedded world's shipped models: the base model's figures on the forget
split are high and the retrain oracle's low; the lens's last layer is the model's own greedy token;
a run through the runner stores the per-layer and aggregate rows (and no ``correct``).

Measured (CPU, float32, these shipped weights, form qa, default options):

* lens ``best_top1`` on forget: micro base 1.000, oracle 0.125; small base 1.000, oracle 0.181.
  Asserted: base >= 0.8, oracle <= 0.4.
* linear ``best_acc`` on forget, trained on every person the models keep
  (``ToyBenchmark.training_items``): micro base 0.667 (``coverage`` 0.750, ``majority`` 0.250),
  oracle 0.167; small base 0.806 (coverage 0.833), oracle 0.194. Asserted on both worlds: base >=
  0.5, oracle <= 0.3, oracle at most the majority floor + 0.1. (Trained on the probed retain split
  alone, 4 people on micro, only 6 of the 24 forget items had a value any of them has: coverage
  0.25, no margin possible; hence ``training_items``.)
"""

from __future__ import annotations

import pytest
import torch

from unlearnbench.batching import encode_example
from unlearnbench.benchmarks.toy import ToyBenchmark, ToyConfig
from unlearnbench.probes.lens import LogitLensProbe
from unlearnbench.probes.linear import LinearProbe


def aggregates(probe, bench, lm) -> dict[tuple[str, str], float]:
    items = {s: probe.items(bench, s) for s in bench.splits}
    scores = {s: probe.score(lm.model, lm.tokenizer, items[s]) for s in bench.splits}
    return {(s, m): v for s, m, v in probe.aggregate(scores)}


@pytest.fixture(scope="module")
def micro(micro_cache):
    bench = ToyBenchmark(ToyConfig(size="micro"))
    return bench, bench.load("target"), bench.load("oracle")


def test_lens_base_high_oracle_low_on_forget(micro):
    bench, base, oracle = micro
    b = aggregates(LogitLensProbe(), bench, base)
    o = aggregates(LogitLensProbe(), bench, oracle)
    assert b["forget", "best_top1"] >= 0.8, b
    assert o["forget", "best_top1"] <= 0.4, o
    # the oracle knows the retain people as well as the base model does
    assert o["retain", "best_top1"] >= 0.8 and b["retain", "best_top1"] >= 0.8


def test_lens_last_layer_is_the_greedy_first_token(micro):
    bench, base, oracle = micro
    for lm in (base, oracle):
        model, tok = lm.model, lm.tokenizer
        last = model.config.num_hidden_layers - 1
        for split in bench.splits:
            items = bench.probe_items("qa", split)
            rows = LogitLensProbe().score(model, tok, items)
            with torch.no_grad():
                for it, row in zip(items, rows):
                    e = encode_example(tok, it.prompt, " " + it.answer)
                    greedy = int(model(input_ids=torch.tensor([e.ids[: e.n_prompt]])).logits[0, -1].argmax())
                    assert row[f"top1@{last}"] == float(greedy == e.ids[e.n_prompt]), it.item_id


@pytest.mark.parametrize("size", ["micro", "small"])
def test_linear_base_high_oracle_low_on_forget(micro, size):
    bench = micro[0] if size == "micro" else ToyBenchmark(ToyConfig(size="small"))
    base, oracle = (micro[1], micro[2]) if size == "micro" else (bench.load("target"), bench.load("oracle"))
    b = aggregates(LinearProbe(), bench, base)
    o = aggregates(LinearProbe(), bench, oracle)
    assert b["forget", "coverage"] == o["forget", "coverage"] >= 0.7  # the training people hold most values
    assert b["forget", "best_acc"] >= 0.5, b
    assert o["forget", "best_acc"] <= 0.3, o
    assert o["forget", "best_acc"] <= o["forget", "majority"] + 0.1, o


def test_runner_stores_layer_and_aggregate_rows(micro_cache, tmp_path):
    from unlearnbench import runner
    from unlearnbench.store import ResultStore

    req = runner.RunRequest(method="npo,epochs=1", benchmark="toy,size=micro", probes=["qa", "lens", "linear"])
    with ResultStore(tmp_path / "s.sqlite") as store:
        cells = runner.run(req, store)
        frame = store.scores_frame([c.cell_id for c in cells])
    hidden = frame[frame.form.isin(["lens", "linear"])]
    assert "correct" not in set(hidden.metric)
    agg = hidden[hidden.item_id == "*"]
    for checkpoint in ("base", "oracle", "unlearned"):
        got = set(zip(agg[agg.checkpoint == checkpoint].form, agg[agg.checkpoint == checkpoint].metric))
        assert got == {("lens", "best_layer"), ("lens", "best_top1")} | {
            ("linear", m) for m in ("best_layer", "best_acc", "majority", "coverage")
        }, checkpoint
    per_item = set(hidden[hidden.item_id != "*"].metric)
    assert {"rank@0", "prob@1", "top1@1", "best_rank", "acc@0", "acc@1"} <= per_item
