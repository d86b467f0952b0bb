"""Experiment tracking (``--log``): a fake run (progress tasks with per-step fields, cells decided in a
hand-built store) sent to each tracker in its offline/file mode, then read back with that
library's own reader: the exact metric names, values and steps. Each backend's test is skipped
when its package is not installed. Also: the terminal view sees the same calls as without
tracking, and a missing package is one line at argument time."""

from __future__ import annotations

import json
import struct
from contextlib import contextmanager
from pathlib import Path

import pytest

from unlearnbench import trackers
from unlearnbench.cli import main
from unlearnbench.errors import UnlearnbenchError
from unlearnbench.metrics import forget_quality, forget_quality_attacked, recovery
from unlearnbench.progress import Progress, TaskHandle
from unlearnbench.runner import CellResult
from unlearnbench.store import ResultStore, ScoreRow
from unlearnbench.tracking import Tracking

SUITE = {"model": "m", "probe_suite": "qa,cloze", "seed": 0}
UNLEARN = {**SUITE, "method": "npo,beta=0.1"}
ATTACK = {**UNLEARN, "attack": "relearn:forget", "attack_config": "{}"}
CONFIG = {"method": "npo,beta=0.1", "attacks": ["relearn:forget"], "benchmark": "toy", "seed": 0}

U, A = "unlearn npo_beta_0_1", "attack npo_beta_0_1 relearn:forget"  # the cells' names in metric names


def _correct(checkpoint, step, values: dict[str, list[float]]) -> list[ScoreRow]:
    """Each listed value stands for 5 items (a form needs 10 items to enter the headline)."""
    return [
        ScoreRow(checkpoint, step, "forget", form, f"{form}{i}-{k}", "correct", v)
        for form, vs in values.items()
        for i, v in enumerate(vs)
        for k in range(5)
    ]


@pytest.fixture
def store(tmp_path):
    """base, oracle, an unlearn cell, an attack on it (steps 0 and 5) and its control on the oracle."""
    with ResultStore(tmp_path / "results.sqlite") as s:
        run_id = s.start_run(["unlearnbench", "run"], {})
        put = lambda cid, kind, label, rows: s.commit_cell(run_id, cid, {"k": cid}, kind, label, rows)  # noqa: E731
        put("b", "base", {**SUITE, "method": "base"}, _correct("base", -1, {"qa": [1, 1, 1, 1], "cloze": [1, 1, 0, 0]}))
        put("o", "oracle", {**SUITE, "method": "oracle"}, _correct("oracle", -1, {"qa": [0] * 4, "cloze": [0] * 4}))
        unlearned = _correct("unlearned", 0, {"qa": [1, 0, 0, 0], "cloze": [0, 0, 0, 0]})
        put("u", "unlearn", UNLEARN, unlearned + [ScoreRow("unlearned", 0, "task", "arith", "t0", "correct", 0.5)])
        rows = _correct("step=0", 0, {"qa": [1, 0, 0, 0], "cloze": [0, 0, 0, 0]})
        rows += _correct("step=5", 5, {"qa": [1, 1, 1, 0], "cloze": [1, 0, 0, 0]})
        put("a", "attack", ATTACK, rows)
        ctrl = _correct("step=0", 0, {"qa": [0] * 4, "cloze": [0] * 4})
        ctrl += _correct("step=5", 5, {"qa": [1, 0, 0, 0], "cloze": [0, 0, 0, 0]})
        put("c", "control", {**ATTACK, "method": "oracle"}, ctrl)
        yield s


def _expected() -> dict[str, list[tuple[int, float]]]:
    """What the fake run must log: metric name -> [(step, value)], worked out by hand."""
    fq_u = {"qa": forget_quality(0.25, 1.0, 0.0), "cloze": forget_quality(0.0, 0.5, 0.0)}
    fq_5 = {"qa": forget_quality(0.75, 1.0, 0.0), "cloze": forget_quality(0.25, 0.5, 0.0)}
    ao_0 = {"qa": forget_quality_attacked(0.25, 1.0, 0.0, 0.0), "cloze": forget_quality_attacked(0.0, 0.5, 0.0, 0.0)}
    ao_5 = {"qa": forget_quality_attacked(0.75, 1.0, 0.25, 0.0), "cloze": forget_quality_attacked(0.25, 0.5, 0.0, 0.0)}
    rec_5 = (recovery(0.75, 0.25, 1.0) + recovery(0.25, 0.0, 0.5)) / 2
    mean = lambda d: (d["qa"] + d["cloze"]) / 2  # noqa: E731
    return {
        # per step, live from the progress stream: step = advance() calls so far
        f"{U}/train/loss": [(1, 0.5), (2, 0.25), (3, 0.125)],
        f"{U}/train/forget": [(1, 2.0), (2, 1.5), (3, 1.0)],
        f"{A}/train/loss": [(1, 0.9), (2, 0.7)],
        f"{A}/train/epoch": [(1, 1.0), (2, 1.0)],
        # the unlearn cell's evaluation at its checkpoint's step (0)
        f"{U}/eval/forget/qa/correct": [(0, 0.25)],
        f"{U}/eval/forget/cloze/correct": [(0, 0.0)],
        f"{U}/eval/task/arith/correct": [(0, 0.5)],
        f"{U}/eval/forget/qa/forget_quality": [(0, fq_u["qa"])],
        f"{U}/eval/forget/cloze/forget_quality": [(0, fq_u["cloze"])],
        f"{U}/eval/forget/headline/forget_quality": [(0, mean(fq_u))],  # qa and cloze: 20 items each
        f"{U}/eval/forget/mean_of_forms/forget_quality": [(0, mean(fq_u))],
        # the attack cell's curve: steps 0 and 5
        f"{A}/eval/forget/qa/correct": [(0, 0.25), (5, 0.75)],
        f"{A}/eval/forget/cloze/correct": [(0, 0.0), (5, 0.25)],
        f"{A}/eval/forget/qa/forget_quality": [(0, fq_u["qa"]), (5, fq_5["qa"])],
        f"{A}/eval/forget/cloze/forget_quality": [(0, fq_u["cloze"]), (5, fq_5["cloze"])],
        f"{A}/eval/forget/headline/forget_quality": [(0, mean(fq_u)), (5, mean(fq_5))],
        f"{A}/eval/forget/mean_of_forms/forget_quality": [(0, mean(fq_u)), (5, mean(fq_5))],
        f"{A}/eval/forget/headline/forget_quality_ao": [(0, mean(ao_0)), (5, mean(ao_5))],
        f"{A}/eval/forget/headline/recovery": [(0, 0.0), (5, rec_5)],
    }


#: measures export_frame adds whose value depends on the report's own formulas (excess,
#: control_recovery, the headline's bootstrap interval): their names and steps are checked, their
#: values are the export's
OTHER = {f"{A}/eval/forget/headline/excess", f"{A}/eval/forget/headline/control_recovery"} | {
    f"{cell}/eval/forget/headline/forget_quality_ci_{end}" for cell in (U, A) for end in ("low", "high")
}


class Recorder(Progress):
    """A terminal view that writes down every call it gets."""

    def __init__(self):
        self.calls: list[tuple] = []

    @contextmanager
    def task(self, description, total):
        self.calls.append(("task", description, total))
        recorder = self

        class Handle(TaskHandle):
            def advance(self, n=1):
                recorder.calls.append(("advance", n))

            def update(self, **fields):
                recorder.calls.append(("update", fields))

        yield Handle()
        self.calls.append(("end", description))

    def log(self, message):
        self.calls.append(("log", message))

    def begin_cell(self, kind, label):
        self.calls.append(("begin_cell", kind, label["method"]))


def _fake_run(progress: Progress, heard) -> None:
    """What the runner and the plugins do in a run with one method and one attack."""
    progress.log("loading")
    progress.begin_cell("unlearn", UNLEARN)
    with progress.task("unlearn (npo)", 3) as bar:
        for loss, forget in ((0.5, 2.0), (0.25, 1.5), (0.125, 1.0)):
            bar.advance()
            bar.update(loss=loss, forget=forget, note="text", flag=True)  # the last two are not numbers
    with progress.task("evaluate unlearned", 2) as bar:
        bar.advance(2)
    heard(CellResult("unlearn", "u", UNLEARN, "finished"))
    heard(CellResult("control", "c", {**ATTACK, "method": "oracle"}, "cached"))
    progress.begin_cell("attack", ATTACK)
    with progress.task("attack relearn:forget", 2) as bar:
        for loss in (0.9, 0.7):
            bar.advance()
            bar.update(epoch=1, loss=loss)
    heard(CellResult("attack", "a", ATTACK, "finished"))
    heard(CellResult("attack", "", {**ATTACK, "attack": "finetune:arith"}, "failed", "unlearning failed"))


def _track(store, tmp_path, name: str) -> Tracking:
    tracking = Tracking([name], tmp_path / "logs", project="proj")
    with tracking.run(store, "npo seed=0", CONFIG) as heard:
        _fake_run(tracking.progress(Recorder()), heard)
    return tracking


def _control_names() -> set[str]:
    """The cached control cell's evaluation is logged too (a reused cell's numbers are the run's)."""
    c = "control oracle relearn:forget/eval/forget"
    return {f"{c}/qa/correct", f"{c}/cloze/correct"}


def _check(got: dict[str, list[tuple[int, float]]]) -> None:
    expected = _expected()
    assert set(got) == set(expected) | OTHER | _control_names()
    for name, points in expected.items():
        assert [s for s, _ in got[name]] == [s for s, _ in points], name
        assert [v for _, v in got[name]] == pytest.approx([v for _, v in points]), name
    for name in OTHER:  # the unlearn cell has its one checkpoint (0), the attack cell steps 0 and 5
        assert [s for s, _ in got[name]] == ([0] if name.startswith(U) else [0, 5]), name
    assert got["control oracle relearn:forget/eval/forget/qa/correct"] == [(0, 0.0), (5, 0.25)]


# -- the backends, read back with their own readers ---------------------------------------------


def test_tensorboard_event_file(store, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _track(store, tmp_path, "tensorboard")
    (run_dir,) = (tmp_path / "logs" / "tensorboard" / "proj").iterdir()
    assert run_dir.name.startswith("npo seed_0 ")
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    got = {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}
    _check(got)
    (config,) = events.Tensors("config/text_summary")
    text = config.tensor_proto.string_val[0].decode()
    assert json.loads(text.strip("`\n")) == CONFIG


def test_mlflow_sqlite_store(store, tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    _track(store, tmp_path, "mlflow")
    client = MlflowClient(f"sqlite:///{tmp_path / 'logs' / 'mlflow.db'}")
    (run,) = client.search_runs([client.get_experiment_by_name("proj").experiment_id])
    assert run.info.run_name == "npo seed=0" and run.info.status == "FINISHED"
    assert run.data.params == {k: v if isinstance(v, str) else json.dumps(v) for k, v in CONFIG.items()}
    got = {
        key: [(m.step, m.value) for m in sorted(client.get_metric_history(run.info.run_id, key), key=lambda m: m.step)]
        for key in run.data.metrics
    }
    _check(got)


def _wandb_records(path: Path):
    """The records of a .wandb file (LevelDB log blocks of wandb's protobuf ``Record``): wandb has no
    reader of offline runs any more, so the blocks are split here and parsed with wandb's own schema."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    block, pos, chunk = 32768, 7, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:  # a block's tail too short for a header is padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if kind == 0:
            pos += left
            continue
        chunk += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # FULL or LAST
            record = wandb_internal_pb2.Record()
            record.ParseFromString(chunk)
            yield record
            chunk = b""


def test_wandb_offline_run(store, tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    _track(store, tmp_path, "wandb")
    (run_file,) = (tmp_path / "logs" / "wandb").glob("offline-run-*/run-*.wandb")
    got: dict[str, list] = {}
    step_metrics: dict[str, str] = {}
    config: dict = {}
    for record in _wandb_records(run_file):
        which = record.WhichOneof("record_type")
        if which == "run":
            config = {i.key: json.loads(i.value_json) for i in record.run.config.update}
            assert record.run.display_name == "npo seed=0" and record.run.project == "proj"
        elif which == "metric" and record.metric.step_metric:
            step_metrics[record.metric.name] = record.metric.step_metric
        elif which == "history":
            row = {i.key or ".".join(i.nested_key): json.loads(i.value_json) for i in record.history.item}
            (step_key,) = [k for k in row if k.endswith("/step")]  # one axis per log call
            for key, value in row.items():
                if not key.startswith("_") and key != step_key:
                    assert step_metrics[key] == step_key
                    got.setdefault(key, []).append((row[step_key], value))
    _check(got)
    assert {k: config[k] for k in CONFIG} == CONFIG


# -- the terminal view, the names, the arguments ------------------------------------------------


def test_the_terminal_view_gets_the_same_calls(store, tmp_path):
    plain, wrapped = Recorder(), Recorder()
    _fake_run(plain, lambda cell: None)
    tracking = Tracking([], tmp_path / "logs")  # no tracker: only the pass-through is under test
    with tracking.run(store, "npo seed=0", CONFIG) as heard:
        _fake_run(tracking.progress(wrapped), heard)
    assert wrapped.calls == plain.calls
    assert ("update", {"loss": 0.5, "forget": 2.0, "note": "text", "flag": True}) in wrapped.calls


def test_a_task_outside_any_cell_is_named_by_its_description(store, tmp_path):
    logged = []

    class Memory:
        def log(self, metrics, step, axis):
            logged.append((axis, step, metrics))

        def finish(self):
            pass

    tracking = Tracking([], tmp_path / "logs")
    tracking.trackers = [Memory()]
    progress = tracking.progress(Progress())
    with progress.task("train toy target", 2) as bar:
        bar.update(loss=3.0)  # before the first step: step 0
        bar.advance(2)
        bar.update(loss=2.0)
    progress.begin_cell("base", {**SUITE, "method": "base"})
    with progress.task("evaluate base", 1) as bar:
        bar.advance()
        bar.update(done=1)
    assert logged == [
        ("train toy target", 0, {"train toy target/loss": 3.0}),
        ("train toy target", 2, {"train toy target/loss": 2.0}),
        ("base/train", 1, {"base/train/done": 1.0}),
    ]


def test_log_names_are_checked():
    assert trackers.parse(["wandb,tensorboard", "wandb", "mlflow"]) == ["wandb", "tensorboard", "mlflow"]
    with pytest.raises(UnlearnbenchError, match="unknown tracker; choose from wandb, mlflow, tensorboard"):
        trackers.parse(["comet"])


@pytest.mark.parametrize("name", ["wandb", "mlflow", "tensorboard"])
def test_a_missing_tracker_is_one_line_before_anything_runs(name, tmp_path, monkeypatch, capsys):
    real = trackers.importlib.util.find_spec
    monkeypatch.setattr(trackers.importlib.util, "find_spec", lambda mod: None if mod == name else real(mod))
    store = tmp_path / "results.sqlite"
    argv = ["--method", "npo", "--store", str(store), "--log", name]
    assert main(["run", *argv]) == 2
    assert main(["sweep", "--methods", "npo", "--attacks", "relearn:forget", *argv[2:]]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        err == [f"unlearnbench: error: --log {name} needs the {name} package: pip install 'unlearnbench[{name}]'"] * 2
    )
    assert not store.exists() and not (tmp_path / "results-logs").exists()
