"""Sweeps over a Ray cluster: ``unlearnbench sweep --executor ray [--address ADDR]``.

Ray (https://docs.ray.io) schedules the work; nothing here is a home-made pool. The unit of work is
one (method, seed) run of the sweep — exactly what the local executor runs one after the other
(:func:`unlearnbench.runner.run`) — as a Ray task with declared resources (``num_cpus``,
``num_gpus``). Inside a run the order is the runner's own: base and oracle, the controls (attacks
on the oracle), unlearning, then every attack from that unlearned model, so an attack always waits
on its unlearning cell.

**The driver is the only writer of the store.** A worker runs against a :class:`CellCollector`
instead of the store: the collector answers "is this cell finished?" from a snapshot of the store
the driver sent, and keeps every committed or failed cell in memory. The task returns them and the
driver commits each cell in its own transaction, through the runner
(:func:`unlearnbench.runner.commit_collected`, the same :meth:`ResultStore.commit_cell` as a local
run). So

- kill -9 of a worker loses only the work in flight: nothing of it reached the store, and Ray runs
  the task again (``max_retries``); the retry gives the same cells (the same ids, the same rows);
- kill -9 of the driver loses nothing committed; re-running the sweep skips every finished cell.

**Shared cells.** The base, oracle and control cells of a seed are the same for every method. The
first method of each seed runs alone; when the driver has committed its cells, the other methods
of that seed start with those cells in their snapshot and reuse them instead of computing them
again. Seeds run in parallel from the start.

**Checkpoints.** An attack runs in the task that unlearned its model, from the model in memory. A
resumed run whose unlearning cell is finished but an attack is not loads the unlearned checkpoint
from the cache (:mod:`unlearnbench.cache`), which must then be shared by driver and workers: on
one machine it is; on a cluster, point ``UNLEARNBENCH_CACHE`` at a shared folder (the worker's
error says which checkpoint it did not find). Ray's object store is not used for checkpoints.

**Threads.** Each task runs torch with ``num_cpus`` threads (one by default), so Ray's CPU
accounting matches what torch uses, and with ``OMP_WAIT_POLICY=PASSIVE`` (see the package's
``__init__``).

The live view shows each run's cells when its task returns (a worker cannot update the driver's
screen mid-task); a run in flight shows as running.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from dataclasses import dataclass, field

from .errors import UnlearnbenchError
from .progress import SILENT, Progress

#: Environment a worker needs from the driver (the cache, offline switches, backends, the tasks folder).
FORWARDED_ENV = (
    "UNLEARNBENCH_CACHE",
    "UNLEARNBENCH_TASKS",
    "UNLEARNBENCH_SHIPPED",
    "UNLEARNBENCH_GENERATION",
    "HF_HUB_OFFLINE",
    "HF_DATASETS_OFFLINE",
    "HF_HOME",
    "TOKENIZERS_PARALLELISM",
)


@dataclass
class Commit:
    """One cell a worker finished (or failed), for the driver to write."""

    cid: str
    key: dict
    kind: str
    label: dict
    rows: list = field(default_factory=list)
    meta: dict | None = None
    failed: str | None = None  # the failure reason, for a failed cell


class CellCollector:
    """The store a worker's run sees: reads from the driver's snapshot of finished cells, writes
    into memory. Implements exactly the :class:`~unlearnbench.store.ResultStore` calls the runner
    makes (``start_run``, ``finish_run``, ``is_finished``, ``get_cell``, ``commit_cell``,
    ``record_failure``)."""

    path = "<ray worker>"

    def __init__(self, finished: dict[str, dict]):
        self.finished = finished  # cell id -> {"meta": ...} of the store's finished cells
        self.commits: list[Commit] = []
        self.run_meta: dict = {}
        self._mine: dict[str, dict] = {}

    def start_run(self, argv, meta) -> str:
        self.run_meta = dict(meta)
        return "worker"

    def finish_run(self, run_id: str, status: str = "finished") -> None:
        self.run_status = status

    def is_finished(self, cid: str) -> bool:
        return cid in self.finished or cid in self._mine

    def get_cell(self, cid: str) -> dict | None:
        return self._mine.get(cid) or self.finished.get(cid)

    def commit_cell(self, run_id, cid, key, kind, label, rows, meta=None) -> bool:
        if self.is_finished(cid):
            return False
        self.commits.append(Commit(cid, dict(key), kind, dict(label), list(rows), meta))
        self._mine[cid] = {"cell_id": cid, "kind": kind, "meta": meta, "status": "finished"}
        return True

    def record_failure(self, run_id, cid, key, kind, label, reason) -> bool:
        if self.is_finished(cid):
            return False
        self.commits.append(Commit(cid, dict(key), kind, dict(label), meta=None, failed=reason))
        return True


def run_request(request, finished: dict[str, dict], threads: int, env: dict) -> dict:
    """The Ray task: one (method, seed) run against a :class:`CellCollector`; returns the cells
    (``CellResult``s, in order), the collected commits and the run's metadata."""
    os.environ.update(env)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    torch.set_num_threads(max(1, int(threads)))
    from .runner import run

    collector = CellCollector(finished)
    t0 = time.time()
    cells = run(request, collector)
    return {
        "cells": cells,
        "commits": collector.commits,
        "meta": {**collector.run_meta, "executor": "ray", "pid": os.getpid(), "seconds": round(time.time() - t0, 1)},
    }


@dataclass
class RayOptions:
    address: str | None = None  # None: a local Ray instance with this machine's CPUs
    num_cpus: float = 1  # per task; also torch's thread count in the task
    num_gpus: float = 0  # per task
    max_retries: int = 3  # a task whose worker died is run again this many times


def _snapshot(store) -> dict[str, dict]:
    return {c["cell_id"]: {"cell_id": c["cell_id"], "meta": c["meta"]} for c in store.cells("finished")}


def run_sweep_ray(
    experiment,
    store,
    progress: Progress = SILENT,
    device: str = "cpu",
    state=None,
    argv: tuple[str, ...] = (),
    planned: list[tuple] | None = None,
    options: RayOptions | None = None,
):
    """Run (or resume) the whole matrix on Ray; the driver writes ``store``. Same result type and
    state updates as :func:`unlearnbench.sweep.run_sweep`."""
    try:
        import ray
    except ImportError:
        raise UnlearnbenchError(
            "--executor ray needs Ray: pip install 'unlearnbench[ray]' (or pip install ray)"
        ) from None
    from .sweep import FAILED, RUNNING, SweepResult, SweepState, plan_sweep

    options = options or RayOptions()
    planned = planned or plan_sweep(experiment, device)
    state = state or SweepState(experiment.methods, experiment.attacks, experiment.seeds)
    result = SweepResult(experiment, state)
    t0 = time.time()
    # Ray's driver threads print worker deaths and the like ("(raylet) A worker died ...") on
    # stdout, which belongs to the sweep's output (--json): send them to stderr while Ray runs.
    with contextlib.redirect_stdout(sys.stderr):
        runs = _drive(ray, experiment, store, state, argv, planned, options)
    result.runs = [runs[(r.method, r.seed)] for r, _ in planned if (r.method, r.seed) in runs]
    for (method, seed, column), status in list(state.status.items()):
        if status == RUNNING:
            state.set(method, seed, column, FAILED, "the task ended without a result")
    result.seconds = round(time.time() - t0, 1)
    return result


def _drive(ray, experiment, store, state, argv, planned, options) -> dict[tuple[str, int], list]:
    """Submit the runs, commit each as it returns, start a seed's other methods after its first."""
    from .runner import CellResult, commit_collected
    from .sweep import RUNNING

    started_here = not ray.is_initialized()
    if started_here:
        try:
            ray.init(address=options.address, include_dashboard=False, log_to_driver=False)
        except Exception as e:  # an unreachable address, a version mismatch: one line, exit 2
            raise UnlearnbenchError(f"could not start or join Ray (address={options.address!r}): {e}") from None
    env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
    task = ray.remote(
        num_cpus=options.num_cpus,
        num_gpus=options.num_gpus,
        max_retries=options.max_retries,
        retry_exceptions=False,  # a Python error in a run is the run's result (its failed cells), not retried
    )(run_request)
    by_seed: dict[int, list[tuple]] = {}
    for req, _plan in planned:  # requests carry their spec; workers plan again (plugins are not shipped)
        by_seed.setdefault(req.seed, []).append(req)
    runs: dict[tuple[str, int], list] = {}
    pending: dict = {}

    def submit(req) -> None:
        state.set(req.method, req.seed, "unlearn", RUNNING)
        ref = task.remote(req, ray.put(_snapshot(store)), options.num_cpus, env)
        pending[ref] = req

    try:
        for reqs in by_seed.values():
            submit(reqs[0])  # the first method of each seed computes the shared cells
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            req = pending.pop(done[0])
            try:
                out = ray.get(done[0])
                cells = commit_collected(store, argv, out["meta"], out["commits"], out["cells"])
            except UnlearnbenchError:
                raise
            except Exception as e:  # the task failed for good (worker died max_retries + 1 times, ...)
                reason = f"{type(e).__name__}: {(str(e).strip().splitlines() or [''])[-1]}"[:500]
                cells = [CellResult("unlearn", "", {"method": req.method, "seed": req.seed}, "failed", reason)]
            runs[(req.method, req.seed)] = cells
            _show(state, experiment, req, cells)
            reqs = by_seed[req.seed]
            if req is reqs[0]:
                for other in reqs[1:]:
                    submit(other)
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)
        if started_here:
            ray.shutdown()
    return runs


def _show(state, experiment, req, cells) -> None:
    """Put one finished run's cells into the matrix view (the same mapping as the local sweep)."""
    from .sweep import FAILED, SKIPPED

    attacks = iter(experiment.attacks)
    for cell in cells:
        if cell.kind in ("base", "oracle", "control"):
            continue
        if cell.kind == "unlearn":
            column = "unlearn"
        else:
            column = next(attacks, None)
            if column is None:
                continue
        status = SKIPPED if cell.reason == "unlearning failed" else cell.status
        state.set(req.method, req.seed, column, status, cell.reason)
        if cell.kind == "unlearn" and cell.status == "failed" and not cell.cell_id:
            for a in experiment.attacks:
                state.set(req.method, req.seed, a, FAILED, cell.reason)
