"""Sweep parsing and experiment files (no model is run here; see tests/integration/test_sweep_micro.py)."""

import pytest

from unlearnbench.errors import UnlearnbenchError
from unlearnbench.spec import canonical_spec as canonical
from unlearnbench.sweep import Experiment, SweepState, load_experiment, parse_seeds, plan_sweep, split_specs


def test_split_specs_keeps_options_with_their_spec():
    assert split_specs("npo,rmu,ilu,rocr") == ["npo", "rmu", "ilu", "rocr"]
    assert split_specs("npo,beta=0.1,lr=1e-3,rmu") == ["npo,beta=0.1,lr=1e-3", "rmu"]
    assert split_specs("finetune:arith,epochs=2,relearn:forget,steps=5") == [
        "finetune:arith,epochs=2",
        "relearn:forget,steps=5",
    ]
    with pytest.raises(UnlearnbenchError, match="comes before"):
        split_specs("beta=0.1,npo")


def test_parse_seeds():
    assert parse_seeds("0,1,2") == [0, 1, 2]
    assert parse_seeds("0-3") == [0, 1, 2, 3]
    for bad in ("a", "", "1,1"):
        with pytest.raises(UnlearnbenchError):
            parse_seeds(bad)


def test_canonical_sorts_options():
    assert canonical("npo,lr=1e-3,beta=0.1") == canonical("npo,beta=0.1,lr=1e-3")


def test_experiment_yaml(tmp_path):
    f = tmp_path / "e.yaml"
    f.write_text(
        "name: e\nbenchmark: toy,size=micro\nmethods: [npo, rmu]\nattacks: ['finetune:arith']\nseeds: [0, 1]\n"
    )
    exp = load_experiment(str(f))
    assert exp.methods == ["npo", "rmu"] and exp.seeds == [0, 1] and exp.benchmark == "toy,size=micro"
    assert [(r.method, r.seed) for r in exp.requests()] == [("npo", 0), ("rmu", 0), ("npo", 1), ("rmu", 1)]
    f.write_text("methods: [npo]\nattacks: ['finetune:arith']\nsede: [0]\n")
    with pytest.raises(UnlearnbenchError, match="unknown key 'sede'"):
        load_experiment(str(f))
    f.write_text("methods: []\nattacks: ['finetune:arith']\n")
    with pytest.raises(UnlearnbenchError, match="methods"):
        load_experiment(str(f))


def test_experiment_by_name_with_did_you_mean():
    with pytest.raises(UnlearnbenchError, match="did you mean 'ilu-robustness'"):
        load_experiment("ilu-robustnes")


def test_shipped_experiments_are_valid():
    from unlearnbench.spec import tasks_dir

    files = sorted((tasks_dir() / "experiments").glob("*.yaml"))
    assert files
    for f in files:
        plan_sweep(load_experiment(str(f)))  # every spec resolves


def test_plan_sweep_rejects_a_bad_spec_before_running():
    exp = Experiment(name="x", methods=["npo", "nop"], attacks=["finetune:arith"], benchmark="toy,size=micro")
    with pytest.raises(UnlearnbenchError, match="did you mean 'npo'"):
        plan_sweep(exp)


def test_state_counts():
    st = SweepState(["a", "b"], ["x"], [0, 1])
    assert st.counts() == {"pending": 8}
    st.set("a", 0, "unlearn", "failed", "nan")
    assert st.counts()["failed"] == 1 and st.reasons[("a", 0, "unlearn")] == "nan"
