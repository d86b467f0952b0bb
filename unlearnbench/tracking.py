"""What a run sends to its experiment trackers (``--log``; the backends are in :mod:`.trackers`), and when.

One source per number, so nothing is logged twice:

* **per-step numbers, live**, from the run's :class:`~unlearnbench.progress.Progress`: every numeric
  field of a task's ``update(**fields)`` (a gradient method's losses each optimiser step, an
  attack's ``loss`` and ``epoch`` each step) as ``<cell>/train/<field>``, its step the number of
  ``advance()`` calls of that task so far. ``<cell>`` is the cell the runner began
  (``Progress.begin_cell``); a task outside any cell (the embedded world training its models) is
  named by its description. The unlearning losses the store keeps (``meta['loss_history']``) are
  these same numbers and are not logged again; a cell reused from the store trained nothing here,
  so it has no per-step numbers.
* **every evaluation**, when its cell is decided (committed by this run, or reused from the store):
  the cell's rows of :func:`unlearnbench.export.export_frame` ``(store, "summary")`` (recall per
  split and form, task accuracy on split ``task``, the probes' other metrics, and the forget-quality
  rows of unlearn and attack checkpoints) as ``<cell>/eval/<split>/<form>/<metric>``, its step the
  checkpoint's step (``-1`` for base and oracle, ``0`` after unlearning, the attack's step or epoch
  after that). Non-finite values are left out; a failed cell has no rows.
* the run's request as the tracker run's config (wandb config, MLflow params, a TensorBoard text).

Cell names: ``base``, ``oracle``, ``unlearn <method>``, ``attack <method> <attack>``, ``control
<oracle|base> <attack>`` (labels as the report shows them, cleaned by :func:`.trackers.clean`).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator

from . import __version__
from .progress import Progress, TaskHandle
from .trackers import Tracker, clean, open_tracker

if TYPE_CHECKING:
    from .runner import CellResult, RunRequest
    from .store import ResultStore


def cell_name(kind: str, label: dict) -> str:
    """The name a cell's numbers are logged under (see the module docstring)."""
    if kind in ("base", "oracle"):
        return kind
    parts = [kind, label.get("method")] + ([] if kind == "unlearn" else [label.get("attack")])
    return " ".join(clean(p) for p in parts if p)


def request_config(request: RunRequest) -> dict:
    """A run request as a tracker run's config."""
    return {**dataclasses.asdict(request), "harness": __version__}


class Tracking:
    """Sends one run's numbers (or a sweep's, one tracker run per (method, seed) run) to the trackers
    ``names``: wrap the run's progress with :meth:`progress`, open a tracker run with :meth:`run`
    and pass what it yields to the runner as ``on_cell``."""

    def __init__(self, names: list[str], log_dir: str | Path, project: str = "unlearnbench"):
        self.names, self.log_dir, self.project = list(names), Path(log_dir), project
        self.trackers: list[Tracker] = []
        self.cell: str | None = None  # the cell being computed (its per-step numbers are named after it)

    def progress(self, inner: Progress) -> TrackedProgress:
        return TrackedProgress(inner, self)

    @contextmanager
    def run(
        self, store: ResultStore, name: str, config: dict, group: str | None = None
    ) -> Iterator[Callable[[CellResult], None]]:
        """One run of every tracker, finished on the way out; yields the runner's ``on_cell``."""
        self.trackers, self.cell = [], None
        try:
            for tracker in self.names:
                self.trackers.append(open_tracker(tracker, self.log_dir, self.project, name, config, group))
            yield lambda cell: self.log_cell(store, cell)
        finally:
            for tracker in self.trackers:
                tracker.finish()
            self.trackers, self.cell = [], None

    def for_request(self, store: ResultStore, request: RunRequest, group: str | None = None):
        """:meth:`run` for one run request, named ``<method> seed=<seed>``."""
        return self.run(store, f"{request.method} seed={request.seed}", request_config(request), group)

    def log(self, metrics: dict[str, float], step: int, axis: str) -> None:
        for tracker in self.trackers:
            tracker.log(metrics, step, axis)

    def log_cell(self, store: ResultStore, cell: CellResult) -> None:
        """A decided cell's evaluations, one ``log`` per checkpoint step."""
        from .export import export_frame

        self.cell = None
        if cell.status == "failed" or not cell.cell_id:
            return
        frame = export_frame(store, "summary")
        rows = frame[frame.cell_id == cell.cell_id]
        axis = f"{cell_name(cell.kind, cell.label)}/eval"
        for step, group in rows.groupby("step", sort=True):
            metrics = {
                f"{axis}/{clean(r.split)}/{clean(r.form)}/{clean(r.metric)}": float(r.value)
                for r in group.itertuples()
                if math.isfinite(r.value)
            }
            if metrics:
                self.log(metrics, int(step), axis)


class TrackedProgress(Progress):
    """``inner`` (the terminal view) gets every call as it was; numeric task fields also go to the
    tracking's open tracker runs."""

    def __init__(self, inner: Progress, tracking: Tracking):
        self.inner, self.tracking = inner, tracking

    @contextmanager
    def task(self, description: str, total: int | None) -> Iterator[TaskHandle]:
        with self.inner.task(description, total) as handle:
            yield _TrackedHandle(handle, self.tracking, description)

    def log(self, message: str) -> None:
        self.inner.log(message)

    def begin_cell(self, kind: str, label: dict) -> None:
        self.tracking.cell = cell_name(kind, label)
        begin = getattr(self.inner, "begin_cell", None)
        if begin is not None:
            begin(kind, label)


class _TrackedHandle(TaskHandle):
    def __init__(self, inner: TaskHandle, tracking: Tracking, description: str):
        self.inner, self.tracking, self.steps = inner, tracking, 0
        self.axis = f"{tracking.cell}/train" if tracking.cell else clean(description)

    def advance(self, n: int = 1) -> None:
        self.steps += n
        self.inner.advance(n)

    def update(self, **fields) -> None:
        self.inner.update(**fields)
        metrics = {
            f"{self.axis}/{clean(k)}": float(v)
            for k, v in fields.items()
            if isinstance(v, numbers.Real) and not isinstance(v, bool) and math.isfinite(v)
        }
        if metrics:
            self.tracking.log(metrics, self.steps, self.axis)
