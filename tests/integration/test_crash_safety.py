"""Crash safety on the micro world: a sweep killed (SIGKILL) at several points and resumed ends
with the same store as an uninterrupted sweep, and two processes writing one store lose nothing.

"Same store" means: the same cell ids with the same kind, status, key and labels, the same meta
(timings and the cache's own path aside) and the same score rows, every one, exactly (both runs
are on this machine, from bit-identical copies of the session's micro models). The comparison is
over whatever cells the runner stores, not over a list of kinds.

How the kill moments are chosen: from outside, deterministically, by what the killed process has
written. The test polls the store (a cell newly finished) and the cache folder (a checkpoint
folder published under its real name) every 20 ms and sends SIGKILL the moment it sees the state
it waits for; what the process was doing then follows from the runner's order, and the test checks
afterwards that the process had not got further (the next cell is not finished). The phases it
kills in last seconds (training, evaluating), the poll takes milliseconds. One moment is not
aimed at: the inside of an attack beyond its first instructions. An attack writes nothing until
its cell's one commit (its curve lives in memory), so a kill anywhere between the previous commit
and that commit leaves the same files behind; the kill right after the unlearning cell's commit
is that case.

The model-build kill runs on an empty cache and is killed once the shared tokenizer is published,
while the target model trains. The micro models then come from the session cache instead of
being retrained (about three minutes of CPU); they are what that retraining would give on this
machine, and the sweep then resumes in that same cache, beside whatever the killed build left.
"""

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

MICRO = "toy,size=micro"
# Small on purpose (2 shared cores): two methods, one one-epoch attack, two probe forms (one
# generated, one scored by likelihood).
COMMON = ["--benchmark", MICRO, "--probes", "bio,mcq", "--quiet"]
ATTACK = "finetune:arith,epochs=1"
SWEEP = ["sweep", "--methods", "npo,gradascent", "--attacks", ATTACK, "--seeds", "0", *COMMON]
# What readers of the cache never open: AtomicDir / atomic_file stages (.tmp-*) and
# models.save_model_atomically stages (.saving-*). Everything else must be complete.
TEMP_PREFIXES = (".tmp-", ".saving-")
POLL_S = 0.02
LIMIT_S = 600  # per process; generous for a loaded machine, a hang fails instead of blocking CI


def _cli(args: list[str], store: Path) -> list[str]:
    return [sys.executable, "-m", "unlearnbench.cli", *args, "--store", str(store)]


def _env(cache: Path) -> dict:
    return {**os.environ, "UNLEARNBENCH_CACHE": str(cache)}


@pytest.fixture(scope="module")
def models(micro_cache) -> Path:
    """The session's micro target and oracle models (trained here if the session has none yet)."""
    from unlearnbench.registry import BENCHMARKS
    from unlearnbench.runner import resolve

    bench = resolve(BENCHMARKS, MICRO).obj
    for role in ("target", "oracle"):
        bench.load(role, "cpu")
    return Path(micro_cache, "models")


def _add_models(models: Path, cache: Path) -> None:
    """Copy the session's finished model folders into ``cache`` (names already there are kept)."""
    (cache / "models").mkdir(parents=True, exist_ok=True)
    for src in models.iterdir():
        dst = cache / "models" / src.name
        if src.is_dir() and not src.name.startswith(TEMP_PREFIXES) and not dst.exists():
            shutil.copytree(src, dst)


# -- reading a store and a cache ----------------------------------------------------------------


def _connect(store: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=30)


def _finished(store: Path) -> set[str]:
    """Ids of the finished cells; empty while the file or its tables do not exist yet."""
    if not store.exists():
        return set()
    try:
        con = _connect(store)
        try:
            return {cid for (cid,) in con.execute("SELECT cell_id FROM cells WHERE status = 'finished'")}
        finally:
            con.close()
    except sqlite3.OperationalError:  # no tables yet, or the file is being created
        return set()


def _without_timings(value, cache: Path):
    """Meta as compared: keys naming seconds dropped (wall time differs run to run) and the cache
    folder's path replaced (each scenario has its own cache)."""
    if isinstance(value, dict):
        return {k: _without_timings(v, cache) for k, v in value.items() if "seconds" not in k}
    if isinstance(value, list):
        return [_without_timings(v, cache) for v in value]
    if isinstance(value, str):
        return value.replace(str(cache), "<cache>")
    return value


def _digest(store: Path, cache: Path) -> tuple[dict, dict]:
    """(cells, rows): every cell by id (all columns but run, times and raw meta; meta normalised)
    and every cell's score rows, sorted, values as stored (NULL for NaN)."""
    con = _connect(store)
    try:
        cells = {}
        for row in con.execute(
            "SELECT cell_id, kind, status, key_json, model, method, method_config, attack, attack_config, "
            "probe_suite, seed, reason, meta_json FROM cells"
        ):
            meta = None if row[-1] is None else _without_timings(json.loads(row[-1]), cache)
            cells[row[0]] = (*row[1:-1], meta)
        rows: dict[str, list] = {cid: [] for cid in cells}
        for cid, *rest in con.execute(
            "SELECT cell_id, checkpoint, step, split, form, item_id, metric, value FROM scores "
            "ORDER BY cell_id, step, checkpoint, split, form, item_id, metric"
        ):
            rows.setdefault(cid, []).append(tuple(rest))
        return cells, rows
    finally:
        con.close()


def _check_store(store: Path, cache: Path, reference: dict) -> set[str]:
    """The store after a kill: intact, no failed or partial cell, no score row outside a finished
    cell, and every finished cell equal to the uninterrupted run's. Returns the finished ids."""
    con = _connect(store)
    try:
        assert con.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert con.execute("PRAGMA foreign_key_check").fetchall() == []
        statuses = dict(con.execute("SELECT cell_id, status FROM cells").fetchall())
        stray = con.execute(
            "SELECT COUNT(*) FROM scores s LEFT JOIN cells c ON c.cell_id = s.cell_id "
            "WHERE c.cell_id IS NULL OR c.status != 'finished'"
        ).fetchone()[0]
    finally:
        con.close()
    assert set(statuses.values()) <= {"finished"}, f"a kill left a cell that is not finished: {statuses}"
    assert stray == 0, f"{stray} score rows belong to no finished cell"
    cells, rows = _digest(store, cache)
    ref_cells, ref_rows = reference["digest"]
    for cid in cells:
        assert cid in ref_cells, f"cell {cid} ({cells[cid][0]}) is not one the uninterrupted run stores"
        assert cells[cid] == ref_cells[cid], f"cell {cid} differs from the uninterrupted run's"
        assert rows[cid] == ref_rows[cid], f"cell {cid}: score rows differ from the uninterrupted run's"
    return set(cells)


def _check_cache(cache: Path, store: Path) -> list[str]:
    """Every entry of the cache is complete or has a temporary name readers never open; each
    finished unlearning cell's checkpoint is there with the hash stored for it. Returns the
    temporary names left (a killed write leaves its stage behind; nothing reads it)."""
    from unlearnbench.models import weights_sha256

    left = []
    for folder in sorted(p for p in cache.iterdir() if p.is_dir()):
        for entry in sorted(folder.iterdir()):
            name = f"{folder.name}/{entry.name}"
            if entry.name.startswith(TEMP_PREFIXES):
                left.append(name)
            elif folder.name == "models" and "-tokenizer-" in entry.name:
                assert (entry / "tokenizer.json").is_file(), f"{name} has no tokenizer.json"
            elif folder.name == "models":
                for part in ("config.json", "model.safetensors", "quality.json", "tokenizer.json"):
                    assert (entry / part).is_file(), f"{name} is published without {part}"
                json.loads((entry / "quality.json").read_text())
            elif folder.name == "checkpoints":
                assert (entry / "config.json").is_file(), f"{name} is published without config.json"
                assert weights_sha256(entry).startswith(entry.name.rsplit("-", 1)[1]), f"{name}: weights do not match"
            else:  # a new kind of cache entry: say here what makes one complete
                pytest.fail(f"unexpected cache entry {name}: this test does not know how to check it")
    con = _connect(store)
    try:
        metas = con.execute("SELECT cell_id, meta_json FROM cells WHERE kind = 'unlearn' AND status = 'finished'")
        for cid, meta_json in metas.fetchall():
            sha = json.loads(meta_json)["checkpoint_sha256"]
            path = cache / "checkpoints" / f"{cid}-{sha[:16]}"
            assert path.is_dir() and weights_sha256(path) == sha, f"checkpoint of finished cell {cid} missing or wrong"
    finally:
        con.close()
    return left


# -- running and killing ------------------------------------------------------------------------


def _run(args: list[str], env: dict, log: Path) -> None:
    """Run a command to completion; it must succeed without a traceback."""
    with open(log, "w") as err:
        code = subprocess.run(args, env=env, stdout=subprocess.DEVNULL, stderr=err, timeout=LIMIT_S).returncode
    text = log.read_text()
    assert code == 0 and "Traceback" not in text, f"exit {code}: {text[-3000:]}"


def _kill_when(args: list[str], env: dict, log: Path, moment, what: str) -> None:
    """Start the command and SIGKILL it the moment ``moment()`` holds (polled every 20 ms)."""
    with open(log, "w") as err:
        proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=err)
        try:
            deadline = time.monotonic() + LIMIT_S
            while not moment():
                if proc.poll() is not None:
                    pytest.fail(f"the run ended (exit {proc.returncode}) before {what}: {log.read_text()[-3000:]}")
                if time.monotonic() > deadline:
                    pytest.fail(f"no {what} within {LIMIT_S} s")
                time.sleep(POLL_S)
            os.kill(proc.pid, signal.SIGKILL)
            assert proc.wait(timeout=60) == -signal.SIGKILL, f"the run ended by itself before {what}"
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def _entries(folder: Path) -> list[Path]:
    """The folders under ``folder`` with real (not temporary) names; none while it does not exist."""
    if not folder.is_dir():
        return []
    return [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(TEMP_PREFIXES)]


def _published(cache: Path, sub: str, prefix: str) -> bool:
    """A folder named ``prefix...`` has been published under ``cache/sub``."""
    return any(p.name.startswith(prefix) for p in _entries(cache / sub))


@pytest.fixture(scope="module")
def reference(models, tmp_path_factory) -> dict:
    """The uninterrupted sweep: its store, cache, digest, and its cells in commit order."""
    root = tmp_path_factory.mktemp("reference")
    cache, store = root / "cache", root / "ref.sqlite"
    _add_models(models, cache)
    _run(_cli(SWEEP, store), _env(cache), root / "ref.log")
    con = _connect(store)
    try:
        order = con.execute("SELECT cell_id, kind FROM cells ORDER BY finished_at, rowid").fetchall()
    finally:
        con.close()
    assert order and {kind for _, kind in order} >= {"base", "unlearn", "attack"}
    assert sum(kind == "unlearn" for _, kind in order) == 2, order
    ref = {"store": store, "cache": cache, "order": order}
    ref["digest"] = _digest(store, cache)
    assert all(ref["digest"][1][cid] for cid, _ in order), "a cell of the uninterrupted run has no score rows"
    assert _check_cache(cache, store) == []
    return ref


def test_killed_at_each_point_then_resumed_equals_uninterrupted(models, reference, tmp_path):
    """One sweep, killed five times and resumed in the same store and cache each time:

    0. while building the models (empty cache; the tokenizer is published, the target trains);
    1. during the first unlearning (every cell before it committed, no checkpoint yet);
    2. after its checkpoint is saved, while the unlearned model is evaluated (the resumed run
       unlearns again, finds the same weights in the cache and keeps that folder);
    3. right after the unlearning cell's commit: inside the attack that follows, which the
       resumed run makes from the checkpoint on disk instead of the model in memory;
    4. right after the last commit of the first method, as the second method's run starts;
    then it runs to completion. After every kill the store is intact with nothing partial, every
    finished cell equals the uninterrupted run's, and the cache holds only complete folders and
    temporary names; at the end the store equals the uninterrupted run's cell for cell, row for row.
    """
    cache, store = tmp_path / "cache", tmp_path / "k.sqlite"
    # the models are trained from the recipe, not copied from the shipped weights: step 0 kills a build
    args, env = _cli(SWEEP, store), {**_env(cache), "UNLEARNBENCH_SHIPPED": "0"}
    order = [cid for cid, _ in reference["order"]]
    kinds = [kind for _, kind in reference["order"]]
    first, second = [i for i, kind in enumerate(kinds) if kind == "unlearn"]
    ucid = order[first]

    # 0. model build
    tokenizer_published = lambda: any("-tokenizer-" in p.name for p in _entries(cache / "models"))  # noqa: E731
    _kill_when(args, env, tmp_path / "0.log", tokenizer_published, "the tokenizer")
    assert _check_store(store, cache, reference) == set()
    published = sorted(p.name for p in _entries(cache / "models"))
    assert len(published) == 1 and "-tokenizer-" in published[0], published  # no model under its real name
    _check_cache(cache, store)
    _add_models(models, cache)

    # 1. during the first unlearning
    _kill_when(args, env, tmp_path / "1.log", lambda: _finished(store) >= set(order[:first]), "the unlearning")
    assert ucid not in _check_store(store, cache, reference)
    assert not _published(cache, "checkpoints", ucid), "the kill came after unlearning had ended"
    _check_cache(cache, store)

    # 2. checkpoint saved, unlearned model not yet committed
    _kill_when(args, env, tmp_path / "2.log", lambda: _published(cache, "checkpoints", ucid), "the checkpoint")
    assert ucid not in _check_store(store, cache, reference)
    _check_cache(cache, store)

    # 3. right after the unlearning cell's commit: in the attack
    _kill_when(args, env, tmp_path / "3.log", lambda: ucid in _finished(store), "the unlearning commit")
    assert order[first + 1] not in _check_store(store, cache, reference)
    _check_cache(cache, store)

    # 4. right after the first method's last commit
    done = set(order[:second])
    _kill_when(args, env, tmp_path / "4.log", lambda: _finished(store) >= done, "the first method's last commit")
    assert order[second] not in _check_store(store, cache, reference)
    _check_cache(cache, store)

    _run(args, env, tmp_path / "5.log")
    assert _check_store(store, cache, reference) == set(order)
    assert _digest(store, cache) == reference["digest"]
    left = _check_cache(cache, store)
    assert all(name.split("/", 1)[1].startswith(TEMP_PREFIXES) for name in left), left


def test_two_processes_on_one_store(models, reference, tmp_path):
    """Two ``run``s of different methods into one store at the same time: both finish without a
    traceback or 'database is locked', and the store equals the uninterrupted sweep's (nothing lost,
    nothing twice). Both evaluate the shared base and oracle cells (and any cell the methods share)
    at the same moment, so both try to commit them: the first commit wins, the other keeps it."""
    cache, store = tmp_path / "cache", tmp_path / "two.sqlite"
    _add_models(models, cache)
    env = _env(cache)
    procs = []
    for method in ("npo", "gradascent"):
        log = open(tmp_path / f"{method}.log", "w")
        args = _cli(["run", "--method", method, "--attack", ATTACK, *COMMON], store)
        procs.append((method, subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=log), log))
    for method, proc, log in procs:
        try:
            code = proc.wait(timeout=LIMIT_S)
        finally:
            if proc.poll() is None:
                proc.kill()
            log.close()
        text = (tmp_path / f"{method}.log").read_text()
        assert code == 0, f"{method}: exit {code}: {text[-3000:]}"
        assert "Traceback" not in text and "locked" not in text, text[-3000:]
    assert _check_store(store, cache, reference) == {cid for cid, _ in reference["order"]}
    assert _digest(store, cache) == reference["digest"]
    assert _check_cache(cache, store) == []
