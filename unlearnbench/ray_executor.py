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
from the cache (:mod:`unlearnbench.cache`). Two ways for it to get there (``RayOptions.checkpoints``):

- ``cache`` (default): driver and workers share one cache folder. On one machine they do; on a
  cluster, point ``UNLEARNBENCH_CACHE`` at a folder every node sees (a worker that does not find a
  checkpoint says which).
- ``object-store``: nothing is shared but Ray's object store. Workers use a cache of their own
  (``RayOptions.worker_cache``, default a folder under the node's temporary directory); a task
  returns the checkpoint files of the unlearning cells it committed and the driver writes them into
  its cache; a task is sent, through the object store, the checkpoints of the finished unlearning
  cells of its method and seed, which it writes into its cache before it runs. Each file is
  checked against the weights' sha256 stored with the cell when it is loaded, as always.

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


def read_checkpoint(cid: str, sha256: str) -> dict[str, bytes]:
    """The files of cell ``cid``'s checkpoint in this process's cache, by name."""
    from .cache import find_checkpoint

    return {f.name: f.read_bytes() for f in sorted(find_checkpoint(cid, sha256).iterdir()) if f.is_file()}


def write_checkpoint(cid: str, sha256: str, files: dict[str, bytes]) -> None:
    """Put checkpoint files into this process's cache under their content-addressed name (kept if
    that folder is already there: the name is the content's hash)."""
    from .cache import AtomicDir, checkpoint_dir

    final = checkpoint_dir(cid, sha256)
    if final.is_dir():
        return
    final.parent.mkdir(parents=True, exist_ok=True)
    with AtomicDir(final.parent) as stage:
        for name, data in files.items():
            (stage.path / name).write_bytes(data)
        stage.publish(final.name, replace=False)


def run_request(request, finished: dict[str, dict], threads: int, env: dict, checkpoints: dict | None = None) -> dict:
    """The Ray task: one (method, seed) run against a :class:`CellCollector`; returns the cells
    (``CellResult``s, in order), the collected commits and the run's metadata.

    ``checkpoints`` (object-store mode): ``{(cid, sha256): files}`` to put into this worker's cache
    first; the result then also carries the files of the checkpoints this run created."""
    os.environ.update(env)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    torch.set_num_threads(max(1, int(threads)))
    from .runner import run

    for (cid, sha), files in (checkpoints or {}).items():
        write_checkpoint(cid, sha, files)
    collector = CellCollector(finished)
    t0 = time.time()
    cells = run(request, collector)
    created = {}
    if checkpoints is not None:
        for c in collector.commits:
            sha = (c.meta or {}).get("checkpoint_sha256")
            if c.kind == "unlearn" and c.failed is None and sha:
                created[(c.cid, sha)] = read_checkpoint(c.cid, sha)
    return {
        "cells": cells,
        "commits": collector.commits,
        "checkpoints": created,
        "meta": {**collector.run_meta, "executor": "ray", "pid": os.getpid(), "seconds": round(time.time() - t0, 1)},
    }


@dataclass
class RayOptions:
    address: str | None = None  # None: a local Ray instance with this machine's CPUs
    num_cpus: float = 1  # per task; also torch's thread count in the task
    num_gpus: float = 0  # per task
    max_retries: int = 3  # a task whose worker died is run again this many times
    checkpoints: str = "cache"  # "cache" (shared with the workers) or "object-store" (see the module doc)
    worker_cache: str | None = None  # object-store mode: the workers' own cache (default: under their tmp dir)

    def __post_init__(self):
        if self.checkpoints not in ("cache", "object-store"):
            raise UnlearnbenchError(f"checkpoints={self.checkpoints!r}: expected cache or object-store")


def run_sweep_ray(
    experiment,
    store,
    progress: Progress = SILENT,
    device: str = "cpu",
    state=None,
    argv: tuple[str, ...] = (),
    planned: list[tuple] | None = None,
    options: RayOptions | None = None,
    track=None,
):
    """Run (or resume) the whole matrix on Ray; the driver writes ``store``. Same result type and
    state updates as :func:`unlearnbench.sweep.run_sweep`; ``track`` as there, but a run's cells
    are heard when the run's results reach the driver (the workers report no progress)."""
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
        runs = _drive(ray, experiment, store, state, argv, planned, options, track)
    result.runs = [runs[(r.method, r.seed)] for r, _ in planned if (r.method, r.seed) in runs]
    for (method, seed, column), status in list(state.status.items()):
        if status == RUNNING:
            state.set(method, seed, column, FAILED, "the task ended without a result")
    result.seconds = round(time.time() - t0, 1)
    return result


def _drive(ray, experiment, store, state, argv, planned, options, track=None) -> dict[tuple[str, int], list]:
    """Submit the runs, commit each as it returns, start a seed's other methods after its first."""
    from .runner import CellResult, commit_collected, failure_reason
    from .sweep import RUNNING

    started_here = not ray.is_initialized()
    if started_here:
        try:
            ray.init(address=options.address, include_dashboard=False, log_to_driver=False)
        except Exception as e:  # an unreachable address, a version mismatch: one line, exit 2
            raise UnlearnbenchError(f"could not start or join Ray (address={options.address!r}): {e}") from None
    env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
    shipping = options.checkpoints == "object-store"
    if shipping:  # the workers' cache is their own; the driver's may not exist on their node
        import tempfile

        env["UNLEARNBENCH_CACHE"] = options.worker_cache or os.path.join(tempfile.gettempdir(), "unlearnbench-ray")
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

    labels = {(req.method, req.seed): p.method.label() for req, p in planned}

    def submit(req) -> None:
        state.set(req.method, req.seed, "unlearn", RUNNING)
        finished = store.cells("finished")
        sent = _checkpoints_for(finished, labels[(req.method, req.seed)], req.seed) if shipping else None
        snapshot = {c["cell_id"]: {"cell_id": c["cell_id"], "meta": c["meta"]} for c in finished}
        ref = task.remote(req, ray.put(snapshot), options.num_cpus, env, sent)
        pending[ref] = req

    try:
        for reqs in by_seed.values():
            submit(reqs[0])  # the first method of each seed computes the shared cells
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            req = pending.pop(done[0])
            try:
                out = ray.get(done[0])
            except Exception as e:
                # the run raised before its cells (a model or checkpoint it could not load: the local
                # sweep records such a run as failed and goes on, and so does this one), or the task
                # failed for good (its worker died max_retries + 1 times)
                reason = failure_reason(getattr(e, "cause", None) or e)  # the worker's own exception
                cells = [CellResult("unlearn", "", {"method": req.method, "seed": req.seed}, "failed", reason)]
            else:  # the driver's writes: a store error here is the sweep's (one line, exit 2)
                for (cid, sha), files in out["checkpoints"].items():  # object-store mode only
                    write_checkpoint(cid, sha, files)  # before the cells: a committed cell has its weights
                cells = commit_collected(store, argv, out["meta"], out["commits"], out["cells"])
            runs[(req.method, req.seed)] = cells
            _show(state, experiment, req, cells)
            if track is not None:
                with track(req) as heard:
                    for cell in cells:
                        heard(cell)
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


def _checkpoints_for(finished: list[dict], method_label: str, seed: int) -> dict:
    """Object-store mode: the driver's checkpoints of the finished unlearning cells (the store's
    ``cells("finished")``) of this method and seed (a resumed run's attacks start from them)."""
    out = {}
    for c in finished:
        sha = (c.get("meta") or {}).get("checkpoint_sha256")
        if c["kind"] == "unlearn" and c["method"] == method_label and str(c["seed"]) == str(seed) and sha:
            try:
                out[(c["cell_id"], sha)] = read_checkpoint(c["cell_id"], sha)
            except UnlearnbenchError:
                pass  # not in this cache: the worker's run says so if it needs it
    return out


def _show(state, experiment, req, cells) -> None:
    """Put one finished run's cells into the matrix view (:func:`unlearnbench.sweep.show_cell`, as
    the local sweep does); a run that failed before its cells marks every column failed."""
    from .sweep import FAILED, show_cell

    attacks = iter(experiment.attacks)
    for cell in cells:
        show_cell(state, req.method, req.seed, cell, attacks)
        if cell.kind == "unlearn" and cell.status == "failed" and not cell.cell_id:
            for a in experiment.attacks:
                state.set(req.method, req.seed, a, FAILED, cell.reason)
