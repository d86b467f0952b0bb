"""finetune:retain end to end on the micro world: the runner binds the task to the benchmark, the
attack trains on the retain people's facts and FA is scored on held-out retain questions ('text')."""

import io
import json
from contextlib import redirect_stdout

from unlearnbench.cli import main


def test_finetune_retain_runs_end_to_end(micro_cache, tmp_path):
    args = ["run", "--benchmark", "toy,size=micro", "--method", "npo", "--attack", "finetune:retain,epochs=1"]
    buf = io.StringIO()
    with redirect_stdout(buf):
        code = main(args + ["--store", str(tmp_path / "r.sqlite"), "--json", "--quiet"])
    doc = json.loads(buf.getvalue())
    assert code == 0
    attack = [c for c in doc["cells"] if c["kind"] == "attack"]
    assert len(attack) == 1 and attack[0]["status"] == "finished", attack
    fa = {col: tasks for col, tasks in doc["task_accuracy"].items() if col.startswith("finetune:retain")}
    assert len(fa) == 1
    (accuracy,) = fa.values()
    # the target was trained on these people's facts and one epoch on them keeps them (measured 0.97)
    assert set(accuracy) == {"retain"} and accuracy["retain"] >= 0.5
