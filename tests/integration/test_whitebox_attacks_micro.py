"""ablate and softprompt end to end on the micro world: through the CLI with npo (attack and oracle
control cells, a re-run reuses them), with behaviour that can fail: the soft prompt's loss on its
forget examples falls, ablation changes the forget scores and leaves no component along its
directions, and a zero direction (forget = retain) changes nothing."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stdout

import pytest

from unlearnbench.cli import main

ATTACKS = ["--attack", "ablate,layers=1", "--attack", "softprompt,steps=20,eval_every=10"]
RUN = ["run", "--benchmark", "toy,size=micro", "--method", "npo", *ATTACKS, "--json", "--quiet"]


def _main_json(args) -> tuple[int, dict]:
    buf = io.StringIO()
    with redirect_stdout(buf):
        code = main(args)
    return code, json.loads(buf.getvalue())


@pytest.fixture(scope="module")
def first_run(micro_cache, tmp_path_factory):
    store = tmp_path_factory.mktemp("store") / "w.sqlite"
    code, doc = _main_json(RUN + ["--store", str(store)])
    return code, doc, store


def _copy(model) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _cell(doc, kind, attack):
    return next(c for c in doc["cells"] if c["kind"] == kind and c["label"].get("attack", "").startswith(attack))


def test_both_attacks_and_their_oracle_controls_finish(first_run):
    code, doc, _ = first_run
    assert code == 0
    kinds = [(c["kind"], c["label"].get("attack")) for c in doc["cells"]]
    assert kinds == [
        ("base", None),
        ("oracle", None),
        ("control", "ablate,layers=1"),
        ("control", "softprompt,eval_every=10,steps=20"),
        ("unlearn", None),
        ("attack", "ablate,layers=1"),
        ("attack", "softprompt,eval_every=10,steps=20"),
    ]
    assert all(c["status"] == "finished" for c in doc["cells"]), [c.get("reason") for c in doc["cells"]]
    checkpoints = [c["checkpoint"] for c in doc["columns"] if c["kind"] == "attack"]
    assert checkpoints == ["ablated", "step=10", "step=20"]


def test_softprompt_fits_its_forget_examples_on_the_unlearned_model_and_the_oracle(first_run):
    _, doc, _ = first_run
    for kind in ("attack", "control"):
        stats = _cell(doc, kind, "softprompt")["meta"]["stats"]
        assert stats["evaluated_steps"] == [0, 10, 20]
        assert stats["final_loss"] < stats["first_loss"] - 0.5, kind


def test_ablation_removes_its_direction_and_changes_forget_scores(first_run):
    from unlearnbench.store import ResultStore

    _, doc, store_path = first_run
    cell = _cell(doc, "attack", "ablate")
    stats = cell["meta"]["stats"]
    assert stats["layers_with_direction"] == [1]
    assert stats["forget_norm_fraction"]["1"] > 0.05 and stats["forget_norm_fraction_after"]["1"] < 1e-5
    with ResultStore(store_path) as store:
        f = store.scores_frame([cell["cell_id"]])
    prob = f[(f.split == "forget") & (f.metric == "prob")].pivot_table(
        index=["form", "item_id"], columns="step", values="value"
    )
    changed = (prob.iloc[:, 0] - prob.iloc[:, 1]).abs()
    assert len(prob) > 50 and (changed > 1e-4).mean() > 0.5


def test_rerun_reuses_every_cell(first_run):
    _, doc, store = first_run
    code, again = _main_json(RUN + ["--store", str(store)])
    assert code == 0
    assert [c["status"] for c in again["cells"]] == ["cached"] * len(doc["cells"])
    assert [c["cell_id"] for c in again["cells"]] == [c["cell_id"] for c in doc["cells"]]


def test_a_zero_direction_changes_nothing_on_the_micro_world(micro_cache):
    import torch

    from unlearnbench.attacks.ablate import AblateAttack, AblateConfig
    from unlearnbench.benchmarks.toy import ToyBenchmark, ToyConfig
    from unlearnbench.probes.forms import QAProbe

    bench = ToyBenchmark(ToyConfig(size="micro"))
    lm = bench.load("oracle")

    class SameTexts:
        """The micro world with its forget examples as the retain examples too."""

        def unlearn_data(self, tokenizer):
            data = bench.unlearn_data(tokenizer)
            data.retain = list(data.forget)
            return data

    items = bench.probe_items("qa", "forget")
    seen = []

    def evaluate(checkpoint, step, model):
        seen.append(([s["prob"] for s in QAProbe().score(model, lm.tokenizer, items)], _copy(model)))

    stats = AblateAttack(AblateConfig()).run(lm.model, lm.tokenizer, None, evaluate, benchmark=SameTexts())
    assert stats["layers_with_direction"] == [] and stats["tensors_orthogonalised"] == []
    (before, sd0), (after, sd1) = seen
    assert before == after
    assert all(torch.equal(sd0[k], sd1[k]) for k in sd0)
