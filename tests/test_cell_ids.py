"""Cell ids are what results are keyed by: refactoring must not change them.

tests/golden/cell_ids.json holds the ids of seven planned runs (every method family, each attack
kind, local data files for a task and an ILU environment, a non-default probe list, two seeds and
both world sizes), computed by the runner before the architecture step; here today's runner plans
the same requests and must give the same ids. Planning builds no model, so this is a unit test;
tests/integration/test_run_micro.py checks that a real run stores exactly the ids
:func:`unlearnbench.runner.cell_ids` says.
"""

import json
from pathlib import Path

import pytest

from unlearnbench.runner import RunRequest, cell_ids, plan

GOLDEN = json.loads((Path(__file__).parent / "golden" / "cell_ids.json").read_text())
DATA = {"gsm8k": "gsm8k_train.jsonl", "gsm8k:test": "gsm8k_test.jsonl"}  # relative: paths are in the key
MICRO = "toy,size=micro"
REQUESTS = [
    dict(benchmark=MICRO, method="npo", attacks=["finetune:arith,epochs=2", "relearn:forget", "quantize:4"], seed=0),
    dict(benchmark=MICRO, method="ilu", attacks=["finetune:topic"], seed=0),
    dict(benchmark=MICRO, method="rocr,projector=none", attacks=["relearn:arith,steps=5"], seed=1),
    dict(benchmark=MICRO, method="graddiff", attacks=["finetune:gsm8k"], seed=0, data=DATA),
    dict(benchmark=MICRO, method="ilu,envs=gsm8k,base=rmu", attacks=["relearn:gsm8k"], seed=2, data=DATA),
    dict(
        benchmark=MICRO,
        method="simnpo,beta=2",
        attacks=["finetune:sentiment,lora=true"],
        seed=0,
        probes=["bio", "qa", "js"],
    ),
    dict(benchmark="toy", method="gradascent", attacks=[], seed=0),
]


def _write_gsm8k(folder: Path) -> None:
    rows = [
        json.dumps(
            {"question": f"Tom has {i} apples and gets 2 more. How many?", "answer": f"{i} + 2 = {i + 2}\n#### {i + 2}"}
        )
        for i in range(12)
    ]
    (folder / "gsm8k_train.jsonl").write_text("\n".join(rows) + "\n")
    (folder / "gsm8k_test.jsonl").write_text("\n".join(rows[:4]) + "\n")


def test_golden_covers_every_request():
    assert len(GOLDEN["runs"]) == len(REQUESTS)
    for run, req in zip(GOLDEN["runs"], REQUESTS):
        assert run["request"]["method"] == req["method"] and run["request"]["attacks"] == req["attacks"]


@pytest.mark.parametrize("i", range(len(REQUESTS)), ids=[r["method"] for r in REQUESTS])
def test_cell_ids_unchanged(i, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _write_gsm8k(tmp_path)
    got = cell_ids(plan(RunRequest(**REQUESTS[i])), GOLDEN["target_sha256"], GOLDEN["oracle_sha256"])
    assert got == GOLDEN["runs"][i]["cell_ids"]


def test_a_changed_option_changes_the_id(tmp_path, monkeypatch):
    """The check can fail: the same request with one option changed gives other ids."""
    req = dict(REQUESTS[0], method="npo,beta=0.2")
    got = cell_ids(plan(RunRequest(**req)), GOLDEN["target_sha256"], GOLDEN["oracle_sha256"])
    want = GOLDEN["runs"][0]["cell_ids"]
    assert got["base"] == want["base"] and got["unlearn"] != want["unlearn"]
