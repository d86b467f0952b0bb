"""``--log tensorboard`` on the micro world, read back from the event file: the unlearning losses
per step are the ones the store kept, the attack's per step, every evaluation at its step, and
stdout is still the run's JSON alone."""

import io
import json
from contextlib import redirect_stdout

import pytest

from unlearnbench.cli import main
from unlearnbench.store import ResultStore


def test_tensorboard_run_on_the_micro_world(micro_cache, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    store = tmp_path / "r.sqlite"
    argv = ["run", "--benchmark", "toy,size=micro", "--method", "npo,epochs=1", "--attack", "relearn:forget,steps=3"]
    argv += ["--store", str(store), "--log", "tensorboard", "--log-dir", str(tmp_path / "tb"), "--json", "--quiet"]
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(argv) == 0
    doc = json.loads(out.getvalue())
    (run_dir,) = (tmp_path / "tb" / "tensorboard" / "unlearnbench").iterdir()
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    got = {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}

    with ResultStore(store) as s:
        (unlearn,) = [c for c in s.cells() if c["kind"] == "unlearn"]
    history = unlearn["meta"]["loss_history"]
    u, a = "unlearn npo_epochs_1", "attack npo_epochs_1 relearn:forget_steps_3"
    for field in history[0]:
        points = got[f"{u}/train/{field}"]
        assert [step for step, _ in points] == list(range(1, len(history) + 1))
        assert [v for _, v in points] == pytest.approx([h[field] for h in history], abs=1e-4)  # shown rounded
    assert [step for step, _ in got[f"{a}/train/loss"]] == [1, 2, 3]
    assert [step for step, _ in got["control oracle relearn:forget_steps_3/train/loss"]] == [1, 2, 3]
    for form, recall in doc["recall"]["unlearned"]["forget"].items():
        assert got[f"{u}/eval/forget/{form}/correct"] == [(0, pytest.approx(recall, abs=1e-4))]
    assert got["base/eval/forget/qa/correct"] == [(-1, pytest.approx(doc["recall"]["base"]["forget"]["qa"], abs=1e-4))]
    assert [step for step, _ in got[f"{a}/eval/forget/headline/forget_quality"]] == [0, 3]
    assert [step for step, _ in got[f"{a}/eval/forget/headline/recovery"]] == [0, 3]
