"""``--unlearned DIR``: a checkpoint unlearned elsewhere is attacked as method ``none`` and gives the
same numbers as the run that produced it (micro world).

Run A unlearns with NPO and attacks; its checkpoint is copied out of the cache (as a user would
bring one from another tool) and run B, on a fresh store, attacks that copy with ``--unlearned``.
Every score of the unlearned evaluation and of every attack cell must be identical: the attacks
are seeded by the run's seed, not by the method, and the weights are the same bytes.
"""

import shutil

import pandas as pd
import pytest

from unlearnbench import runner
from unlearnbench.cli import main
from unlearnbench.store import ResultStore

MICRO = "toy,size=micro"
ATTACKS = ["relearn:forget,steps=3", "quantize:4"]


def _scores(store, cells, kind) -> dict[str, pd.DataFrame]:
    out = {}
    for c in cells:
        if c.kind == kind:
            frame = store.scores_frame([c.cell_id])
            cols = ["checkpoint", "step", "split", "form", "item_id", "metric", "value"]
            out[c.label.get("attack", "")] = frame[cols].sort_values(cols[:-1]).reset_index(drop=True)
    return out


@pytest.fixture(scope="module")
def both_runs(micro_cache, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("unlearned")
    req_a = runner.RunRequest(method="npo,epochs=1", attacks=ATTACKS, benchmark=MICRO, controls=["none"])
    with ResultStore(tmp / "a.sqlite") as store:
        cells_a = runner.run(req_a, store)
        ucid = next(c.cell_id for c in cells_a if c.kind == "unlearn")
        elsewhere = tmp / "my-unlearned-model"
        shutil.copytree(runner.unlearned_path(ucid, store), elsewhere)
        a = {"unlearn": _scores(store, cells_a, "unlearn"), "attack": _scores(store, cells_a, "attack")}
    req_b = runner.RunRequest(
        method="none", attacks=ATTACKS, benchmark=MICRO, controls=["none"], unlearned=str(elsewhere)
    )
    with ResultStore(tmp / "b.sqlite") as store:
        cells_b = runner.run(req_b, store)
        b = {"unlearn": _scores(store, cells_b, "unlearn"), "attack": _scores(store, cells_b, "attack")}
    return cells_a, cells_b, a, b, elsewhere, tmp


def test_every_cell_finished(both_runs):
    cells_a, cells_b, *_ = both_runs
    assert [c.status for c in cells_a] == ["finished"] * len(cells_a)
    assert [c.status for c in cells_b] == ["finished"] * len(cells_b)
    assert [c.kind for c in cells_b] == ["base", "oracle", "unlearn", "attack", "attack"]


def test_same_numbers_as_the_run_that_made_the_checkpoint(both_runs):
    _, _, a, b, _, _ = both_runs
    pd.testing.assert_frame_equal(a["unlearn"][""], b["unlearn"][""])
    assert set(a["attack"]) == set(b["attack"]) == set(ATTACKS)
    for attack in ATTACKS:
        assert len(a["attack"][attack]) > 100
        pd.testing.assert_frame_equal(a["attack"][attack], b["attack"][attack])


def test_the_checkpoint_is_not_the_target(both_runs):
    """The check can fail: the unlearned numbers differ from the base model's (NPO did something)."""
    cells_a, _, a, _, _, tmp = both_runs
    with ResultStore(tmp / "a.sqlite") as store:
        base = _scores(store, cells_a, "base")[""]
    merged = base[base.split == "forget"].merge(
        a["unlearn"][""][lambda f: f.split == "forget"], on=["form", "item_id", "metric"]
    )
    assert (merged.value_x != merged.value_y).any()


def test_a_changed_checkpoint_is_a_new_cell(both_runs, tmp_path):
    """The weights' hash is in the key: the same path with other bytes is never taken for the old cell."""
    *_, elsewhere, _ = both_runs
    other = tmp_path / "copy"
    shutil.copytree(elsewhere, other)
    req = runner.RunRequest(method="none", attacks=ATTACKS, benchmark=MICRO, unlearned=str(other))
    ids_before = runner.cell_ids(runner.plan(req), "t" * 64)
    from safetensors.torch import load_file, save_file

    file = other / "model.safetensors"
    tensors = load_file(file)
    name = sorted(tensors)[0]
    tensors[name] = tensors[name] + 1e-3
    save_file(tensors, file, metadata={"format": "pt"})
    ids_after = runner.cell_ids(runner.plan(req), "t" * 64)
    assert ids_before["base"] == ids_after["base"] and ids_before["unlearn"] != ids_after["unlearn"]


def test_a_checkpoint_of_another_model_fails_its_cell_in_one_line(both_runs, tmp_path, capsys):
    """A checkpoint whose tensors do not fit the target: the unlearn cell fails with the reason, no traceback."""
    *_, elsewhere, _ = both_runs
    bad = tmp_path / "bad"
    shutil.copytree(elsewhere, bad)
    import json

    from safetensors.torch import load_file, save_file

    # a model of its own (its config says so), but with a smaller vocabulary than the target's
    tensors = load_file(bad / "model.safetensors")
    for name in [k for k in tensors if "embed_tokens" in k or "lm_head" in k]:
        tensors[name] = tensors[name][:-1].clone()
    save_file(tensors, bad / "model.safetensors", metadata={"format": "pt"})
    config = json.loads((bad / "config.json").read_text())
    config["vocab_size"] -= 1
    (bad / "config.json").write_text(json.dumps(config))
    code = main(
        ["run", "--benchmark", MICRO, "--unlearned", str(bad), "--control", "none"]
        + ["--store", str(tmp_path / "c.sqlite"), "--json", "--quiet"]
    )
    out = capsys.readouterr().out
    assert code == 1
    assert "does not fit the original model" in out and "differ in shape" in out
