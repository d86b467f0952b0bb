"""`unlearnbench sweep --executor ray` on a local Ray instance (2 CPUs): the same cells and numbers as
the local executor, and a worker killed with SIGKILL mid-cell is retried without a duplicate or a
partial cell. Skipped when Ray is not installed (CI installs it with the dev extra)."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytest.importorskip("ray")
psutil = pytest.importorskip("psutil")

SWEEP = ["sweep", "--benchmark", "toy,size=micro", "--seeds", "0", "--quiet", "--json"]
TWO = ["--methods", "npo,gradascent", "--attacks", "finetune:arith,epochs=1"]
LIMIT_S = 900


def _cli(args: list[str], cache: str, timeout: int = LIMIT_S) -> subprocess.CompletedProcess:
    env = {**os.environ, "UNLEARNBENCH_CACHE": cache, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    return subprocess.run(
        [sys.executable, "-m", "unlearnbench.cli", *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def _cells(store: Path) -> dict[str, tuple[str, str]]:
    with sqlite3.connect(store) as c:
        return {cid: (kind, status) for cid, kind, status in c.execute("SELECT cell_id, kind, status FROM cells")}


def _scores(store: Path) -> dict[tuple, float]:
    with sqlite3.connect(store) as c:
        rows = c.execute("SELECT cell_id, checkpoint, step, split, form, item_id, metric, value FROM scores")
        return {tuple(r[:-1]): r[-1] for r in rows}


def _same_scores(a: dict, b: dict) -> list[str]:
    """Keys must match; 0/1 scores exactly, probabilities within 1e-3 (torch threads differ: 2 in
    the local run, 1 per Ray task, which orders float sums differently; benchmarks/thread_drift.py
    measured at most 1.24e-4 between such settings on the micro world, and no 0/1 score moved)."""
    off = [f"only in one: {k}" for k in set(a) ^ set(b)][:5]
    for k in set(a) & set(b):
        x, y = a[k], b[k]
        if x is None or y is None or x != x or y != y:
            if not (x is None and y is None) and not (x != x and y != y):
                off.append(f"{k}: {x} vs {y}")
        elif abs(x - y) > (0 if x in (0.0, 1.0) and y in (0.0, 1.0) else 1e-3):
            off.append(f"{k}: {x} vs {y}")
    return off[:10]


@pytest.fixture(scope="module")
def local_store(micro_cache, tmp_path_factory) -> Path:
    store = tmp_path_factory.mktemp("local") / "local.sqlite"
    out = _cli([*SWEEP, *TWO, "--store", str(store)], micro_cache)
    assert out.returncode == 0, out.stderr[-2000:]
    return store


def test_ray_sweep_gives_the_local_cells_and_numbers(local_store, micro_cache, tmp_path):
    store = tmp_path / "ray.sqlite"
    out = _cli([*SWEEP, *TWO, "--store", str(store), "--executor", "ray"], micro_cache)
    assert out.returncode == 0, out.stderr[-3000:]
    doc = json.loads(out.stdout)
    assert doc["counts"] == {"finished": 4}  # 2 methods x (unlearn + 1 attack)
    ray_cells, local_cells = _cells(store), _cells(local_store)
    assert ray_cells == local_cells  # same ids (content hashes of the keys), kinds, all finished
    assert all(status == "finished" for _, status in ray_cells.values())
    assert not _same_scores(_scores(store), _scores(local_store)), _same_scores(_scores(store), _scores(local_store))
    with sqlite3.connect(store) as c:
        metas = [json.loads(m) for (m,) in c.execute("SELECT meta FROM runs")]
    assert {m.get("executor") for m in metas} == {"ray"} and len(metas) == 2  # one run per (method, seed)

    again = _cli([*SWEEP, *TWO, "--store", str(store), "--executor", "ray"], micro_cache)
    assert again.returncode == 0, again.stderr[-2000:]
    assert json.loads(again.stdout)["counts"] == {"cached": 4}  # resumed: nothing recomputed
    assert _cells(store) == ray_cells


def _task_workers() -> list:
    """Ray worker processes executing our task (Ray titles them ``ray::run_request``)."""
    found = []
    for p in psutil.process_iter(["cmdline"]):
        try:
            if "ray::run_request" in " ".join(p.info["cmdline"] or []):
                found.append(p)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            pass
    return found


def test_a_worker_killed_mid_cell_is_retried_without_duplicate_or_partial_cells(local_store, micro_cache, tmp_path):
    """SIGKILL the worker of the first run once it has computed for 5 s (a cell is in flight): the
    store holds no cell of that task before the retry returns, and in the end it holds every cell
    once, with the uninterrupted local run's ids, row counts and numbers."""
    import shutil

    cache = tmp_path / "cache"
    shutil.copytree(Path(micro_cache) / "models", cache / "models")  # the session's micro models
    store = tmp_path / "kill.sqlite"
    env = {**os.environ, "UNLEARNBENCH_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    args = [sys.executable, "-m", "unlearnbench.cli", *SWEEP, *TWO, "--store", str(store), "--executor", "ray"]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed, seen = None, {}  # pid -> when it was first seen running our task
    deadline = time.time() + LIMIT_S
    try:
        while killed is None and time.time() < deadline and proc.poll() is None:
            now = time.time()
            busy = [w for w in _task_workers() if now - seen.setdefault(w.pid, now) > 5]
            if busy:  # a run has been computing its cells for 5 s: kill it mid-cell
                before = _cells(store) if store.exists() else {}
                killed = busy[0].pid
                os.kill(killed, signal.SIGKILL)
                break
            time.sleep(0.1)
        assert killed is not None, "no Ray worker ran our task for 5 s"
        # the first method's task runs alone (it computes the seed's shared cells) and has not
        # returned: only the driver writes, after a task returns, so the store holds no cell yet
        assert before == {}, before
        stdout, stderr = proc.communicate(timeout=LIMIT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, stderr[-3000:]
    assert json.loads(stdout)["counts"] == {"finished": 4}
    cells = _cells(store)
    assert cells == _cells(local_store)  # every cell once (ids are primary keys), none failed or partial
    assert not _same_scores(_scores(store), _scores(local_store))
    with sqlite3.connect(store) as c:
        pids = [json.loads(m)["pid"] for (m,) in c.execute("SELECT meta FROM runs")]
        n_rows = dict(c.execute("SELECT cell_id, COUNT(*) FROM scores GROUP BY cell_id"))
    assert killed not in pids  # the killed task's results never reached the store; its retry's did
    local_rows = {}
    with sqlite3.connect(local_store) as c:
        local_rows = dict(c.execute("SELECT cell_id, COUNT(*) FROM scores GROUP BY cell_id"))
    assert n_rows == local_rows  # no duplicate and no missing score row in any cell


def test_object_store_mode_ships_checkpoints_to_workers_without_a_shared_cache(micro_cache, tmp_path):
    """--checkpoints object-store: workers keep caches of their own. A first sweep's unlearning
    checkpoint comes back to the driver's cache through the object store; a second sweep adds an
    attack on the finished unlearning cell and runs with a fresh worker cache (another node), so its
    worker gets the checkpoint from the driver; the new attack's numbers equal the local executor's."""
    import shutil

    driver, local = tmp_path / "driver", tmp_path / "local"
    for cache in (driver, local):
        shutil.copytree(Path(micro_cache) / "models", cache / "models")
    store, local_store = tmp_path / "os.sqlite", tmp_path / "local.sqlite"
    first = ["--methods", "npo", "--attacks", "finetune:arith,epochs=1"]
    second = ["--methods", "npo", "--attacks", "finetune:arith,epochs=1,finetune:retain,steps=10"]
    ray = ["--executor", "ray", "--checkpoints", "object-store"]

    out = _cli([*SWEEP, *first, "--store", str(store), *ray, "--worker-cache", str(tmp_path / "w1")], str(driver))
    assert out.returncode == 0, out.stderr[-3000:]
    (ckpt,) = [p.name for p in (driver / "checkpoints").iterdir() if not p.name.startswith(".")]
    assert (tmp_path / "w1" / "checkpoints" / ckpt).is_dir()  # made there, returned to the driver

    out = _cli([*SWEEP, *second, "--store", str(store), *ray, "--worker-cache", str(tmp_path / "w2")], str(driver))
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout)["counts"] == {"cached": 2, "finished": 1}  # unlearn + arith reused
    assert (tmp_path / "w2" / "checkpoints" / ckpt).is_dir()  # shipped to the new worker's own cache

    out = _cli([*SWEEP, *second, "--store", str(local_store)], str(local))
    assert out.returncode == 0, out.stderr[-3000:]
    assert _cells(store) == _cells(local_store)
    assert not _same_scores(_scores(store), _scores(local_store))
