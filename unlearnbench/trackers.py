"""Experiment trackers (``--log wandb|mlflow|tensorboard``): where a run's numbers go, each through
its library's own API. Every library is an optional extra, imported only when a tracker run opens
(``unlearnbench --help`` imports none of them); :func:`check` says at argument time which is missing.

A :class:`Tracker` is one run of one tracker: ``log(metrics, step, axis)`` writes numbers that share
one x-axis value (``axis`` names that x-axis: the step counter of one training loop, or the
checkpoint steps of one cell's evaluations), ``finish()`` closes it.

* ``wandb``: ``wandb.init(project, name, group, config, dir=DIR)``; the mode is wandb's own (the
  ``WANDB_MODE`` environment variable: ``offline`` writes ``DIR/wandb/offline-run-*`` for ``wandb
  sync``). Each axis is a step metric (``<axis>/step``, ``define_metric``), so the curves keep their
  own steps in one wandb run.
* ``mlflow``: ``MlflowClient`` on ``$MLFLOW_TRACKING_URI``, else a SQLite file ``DIR/mlflow.db``
  (``mlflow ui --backend-store-uri sqlite:///DIR/mlflow.db``); experiment = the project; the config
  as params.
* ``tensorboard``: ``torch.utils.tensorboard.SummaryWriter`` writing ``DIR/tensorboard/<run>``;
  the config as a text summary.

Metric names may hold letters, digits, ``_ - : /`` and spaces (MLflow's rule, applied to every
backend so the names agree, less ``.``, which wandb reads as nesting): :func:`clean` turns anything
else into ``_``.
"""

from __future__ import annotations

import importlib.util
import json
import re
import time
from pathlib import Path
from typing import Protocol

from .errors import UnlearnbenchError

#: tracker name -> the module it needs (the extra of the same name installs it)
BACKENDS = {"wandb": "wandb", "mlflow": "mlflow", "tensorboard": "tensorboard"}

_BAD = re.compile(r"[^\w\- :]")


def clean(part: str) -> str:
    """One component of a metric name, with what trackers refuse or misread (``/`` is the separator) as ``_``."""
    return _BAD.sub("_", str(part))


def parse(values: list[str]) -> list[str]:
    """The tracker names of repeated or comma-separated ``--log`` values, each once, in order."""
    names: list[str] = []
    for value in values:
        for name in (n.strip() for n in value.split(",")):
            if not name:
                continue
            if name not in BACKENDS:
                raise UnlearnbenchError(f"--log {name}: unknown tracker; choose from {', '.join(BACKENDS)}")
            if name not in names:
                names.append(name)
    return names


def check(names: list[str]) -> None:
    """A one-line error for the first tracker whose library is not installed."""
    for name in names:
        if importlib.util.find_spec(BACKENDS[name]) is None:
            raise UnlearnbenchError(
                f"--log {name} needs the {BACKENDS[name]} package: pip install 'unlearnbench[{name}]'"
            )


class Tracker(Protocol):
    """One tracker run."""

    def log(self, metrics: dict[str, float], step: int, axis: str) -> None: ...

    def finish(self) -> None: ...


class WandbTracker:
    def __init__(self, log_dir: Path, project: str, name: str, config: dict, group: str | None = None):
        import wandb

        log_dir.mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(project=project, name=name, group=group, config=config, dir=str(log_dir))
        self.defined: set[str] = set()

    def log(self, metrics: dict[str, float], step: int, axis: str) -> None:
        step_key = f"{axis}/step"
        for key in [k for k in metrics if k not in self.defined]:
            if step_key not in self.defined:
                self.run.define_metric(step_key)
                self.defined.add(step_key)
            self.run.define_metric(key, step_metric=step_key)
            self.defined.add(key)
        self.run.log({**metrics, step_key: step})

    def finish(self) -> None:
        self.run.finish()


class MlflowTracker:
    def __init__(self, log_dir: Path, project: str, name: str, config: dict, group: str | None = None):
        import os

        from mlflow.entities import Param
        from mlflow.tracking import MlflowClient

        log_dir.mkdir(parents=True, exist_ok=True)
        uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(log_dir / 'mlflow.db').resolve()}"
        self.client = MlflowClient(uri)
        experiment = self.client.get_experiment_by_name(project)
        experiment_id = experiment.experiment_id if experiment else self.client.create_experiment(project)
        tags = {"unlearnbench.group": group} if group else {}
        self.run_id = self.client.create_run(experiment_id, run_name=name, tags=tags).info.run_id
        params = [Param(k, v if isinstance(v, str) else json.dumps(v)) for k, v in config.items()]
        self.client.log_batch(self.run_id, params=params)

    def log(self, metrics: dict[str, float], step: int, axis: str) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, v, now, step) for k, v in metrics.items()])

    def finish(self) -> None:
        self.client.set_terminated(self.run_id)


class TensorboardTracker:
    def __init__(self, log_dir: Path, project: str, name: str, config: dict, group: str | None = None):
        from torch.utils.tensorboard import SummaryWriter

        folder = log_dir / "tensorboard" / project
        if group:
            folder = folder / clean(group)
        # a new folder per run: a re-run must not interleave its events with the last one's
        self.dir = folder / f"{clean(name)} {time.strftime('%Y%m%d-%H%M%S')}"
        self.writer = SummaryWriter(log_dir=str(self.dir))
        self.writer.add_text("config", "```\n" + json.dumps(config, indent=1) + "\n```")

    def log(self, metrics: dict[str, float], step: int, axis: str) -> None:
        for key, value in metrics.items():
            self.writer.add_scalar(key, value, global_step=step)

    def finish(self) -> None:
        self.writer.close()


CLASSES = {"wandb": WandbTracker, "mlflow": MlflowTracker, "tensorboard": TensorboardTracker}


def open_tracker(name: str, log_dir: str | Path, project: str, run_name: str, config: dict, group=None) -> Tracker:
    """A new run of tracker ``name`` (one line if the library cannot start one, e.g. wandb online
    without a login)."""
    try:
        return CLASSES[name](Path(log_dir), project, run_name, config, group)
    except Exception as e:
        first = (str(e).strip().splitlines() or [""])[0]
        raise UnlearnbenchError(f"--log {name}: could not start a run: {type(e).__name__}: {first}") from None
