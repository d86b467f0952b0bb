"""Tests for the results store: ids, atomic commits, crash safety, concurrency, export."""

from __future__ import annotations

import io
import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest

from unlearnbench.errors import UnlearnbenchError
from unlearnbench.export import export
from unlearnbench.store import ResultStore, ScoreRow, cell_id

REPO_ROOT = Path(__file__).resolve().parents[1]

KEY = {
    "model": "smollm2-135m",
    "weights_sha256": "ab12",
    "method": "grad_ascent",
    "method_config": {"lr": 1e-5, "epochs": 3},
    "method_version": 1,
    "attack": "relearn",
    "attack_config": {"lr": 2e-5, "steps": 10},
    "attack_version": 2,
    "probe_suite": "micro",
    "seed": 0,
    "harness_version": "0.1.0",
}
LABEL = {
    "model": "smollm2-135m",
    "method": "grad_ascent",
    "method_config": {"lr": 1e-5, "epochs": 3},
    "attack": "relearn",
    "attack_config": {"lr": 2e-5, "steps": 10},
    "probe_suite": "micro",
    "seed": 0,
}


def rows(n: int = 4, checkpoint: str = "unlearned", step: int = 0, value: float = 0.5) -> list[ScoreRow]:
    return [ScoreRow(checkpoint, step, "forget", "qa", f"item{i}", "prob", value + i) for i in range(n)]


def count(path: Path, table: str, cid: str | None = None) -> int:
    with sqlite3.connect(path) as conn:
        if cid is None:
            return conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
        return conn.execute(f"SELECT COUNT(*) FROM {table} WHERE cell_id = ?", (cid,)).fetchone()[0]


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "sub" / "results.sqlite"


@pytest.fixture
def store(db: Path):
    with ResultStore(db) as s:
        yield s


@pytest.fixture
def run_id(store: ResultStore) -> str:
    return store.start_run(["unlearnbench", "run"], {"host": "test"})


# -- cell_id ---------------------------------------------------------------------------------


def test_cell_id_is_stable_20_hex():
    cid = cell_id(KEY)
    assert cid == cell_id(dict(KEY))
    assert len(cid) == 20 and all(c in "0123456789abcdef" for c in cid)
    # Pinned so an accidental change of the canonical form (which would orphan every stored
    # cell and force a full recompute) fails loudly.
    import hashlib

    canonical = json.dumps(KEY, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)
    assert cid == hashlib.sha256(canonical.encode()).hexdigest()[:20]


def test_cell_id_ignores_dict_order():
    reordered = dict(reversed(list(KEY.items())))
    reordered["method_config"] = {"epochs": 3, "lr": 1e-5}
    assert cell_id(reordered) == cell_id(KEY)


@pytest.mark.parametrize("field", sorted(KEY))
def test_cell_id_sensitive_to_every_field(field):
    changed = dict(KEY)
    value = KEY[field]
    changed[field] = {**value, "lr": 9.0} if isinstance(value, dict) else f"{value}x"
    assert cell_id(changed) != cell_id(KEY)
    dropped = {k: v for k, v in KEY.items() if k != field}
    assert cell_id(dropped) != cell_id(KEY)


# -- commit / read ---------------------------------------------------------------------------


def test_commit_then_finished_and_get_cell_round_trips(store, run_id):
    cid = cell_id(KEY)
    assert not store.is_finished(cid)
    assert store.get_cell(cid) is None
    store.commit_cell(run_id, cid, KEY, "attack", LABEL, rows(3), meta={"wall_s": 1.5, "gpu": "none"})
    assert store.is_finished(cid)
    cell = store.get_cell(cid)
    assert cell["key"] == KEY
    assert cell["meta"] == {"wall_s": 1.5, "gpu": "none"}
    assert cell["status"] == "finished" and cell["kind"] == "attack" and cell["run_id"] == run_id
    assert cell["method"] == "grad_ascent" and cell["seed"] == "0"
    assert json.loads(cell["method_config"]) == {"lr": 1e-5, "epochs": 3}
    assert cell["finished_at"] is not None
    assert len(store.scores_frame([cid])) == 3
    assert [c["cell_id"] for c in store.cells("finished")] == [cid]
    assert store.cells("failed") == []


def test_commit_finished_cell_again_raises_and_keeps_scores(store, run_id, db):
    cid = cell_id(KEY)
    store.commit_cell(run_id, cid, KEY, "attack", LABEL, rows(3))
    with pytest.raises(UnlearnbenchError, match="already finished"):
        store.commit_cell(run_id, cid, KEY, "attack", LABEL, rows(5))
    with pytest.raises(UnlearnbenchError, match="already finished"):
        store.record_failure(run_id, cid, KEY, "attack", LABEL, "boom")
    assert count(db, "scores", cid) == 3
    assert store.get_cell(cid)["status"] == "finished"


def test_failure_then_commit_replaces_failure(store, run_id):
    cid = cell_id(KEY)
    store.record_failure(run_id, cid, KEY, "attack", LABEL, "CUDA OOM")
    store.record_failure(run_id, cid, KEY, "attack", LABEL, "CUDA OOM again")
    failed = store.cells("failed")
    assert len(failed) == 1 and failed[0]["reason"] == "CUDA OOM again"
    assert not store.is_finished(cid)
    store.commit_cell(run_id, cid, KEY, "attack", LABEL, rows(2))
    assert store.is_finished(cid)
    assert store.get_cell(cid)["reason"] is None
    assert store.cells("failed") == []
    assert len(store.cells()) == 1


def test_unknown_run_is_refused(store):
    with pytest.raises(UnlearnbenchError, match="no run"):
        store.commit_cell("nope", cell_id(KEY), KEY, "base", LABEL, rows(1))
    with pytest.raises(UnlearnbenchError, match="no run"):
        store.finish_run("nope")


def test_runs_are_recorded(store, db):
    rid = store.start_run(["unlearnbench", "run", "--seed", "1"], {"version": "0.1.0"})
    assert len(rid) == 12
    store.finish_run(rid, "interrupted")
    with sqlite3.connect(db) as conn:
        status, argv, meta, finished = conn.execute(
            "SELECT status, argv, meta, finished_at FROM runs WHERE run_id = ?", (rid,)
        ).fetchone()
    assert status == "interrupted" and finished is not None
    assert json.loads(argv) == ["unlearnbench", "run", "--seed", "1"]
    assert json.loads(meta) == {"version": "0.1.0"}
    later = store.start_run(["unlearnbench", "sweep"], {"request": {"method": "npo", "attacks": ["quantize:4"]}})
    got = store.runs()  # the read method: decoded argv and meta, oldest first
    assert [r["run_id"] for r in got] == [rid, later]
    assert got[0]["argv"] == ["unlearnbench", "run", "--seed", "1"] and got[0]["status"] == "interrupted"
    assert got[1]["meta"]["request"]["attacks"] == ["quantize:4"] and got[1]["finished_at"] is None


# -- atomicity -------------------------------------------------------------------------------


def test_duplicate_score_row_rolls_back_everything(store, run_id, db):
    cid = cell_id(KEY)
    store.record_failure(run_id, cid, KEY, "attack", LABEL, "earlier failure")
    bad = rows(3) + [rows(1)[0]]  # item0 again: same unique key
    with pytest.raises(UnlearnbenchError, match="duplicate score row"):
        store.commit_cell(run_id, cid, KEY, "attack", LABEL, bad)
    assert count(db, "scores", cid) == 0
    # The rollback restores the earlier failed row instead of leaving a half-replaced cell.
    cell = store.get_cell(cid)
    assert cell["status"] == "failed" and cell["reason"] == "earlier failure"
    assert not store.is_finished(cid)


def test_iterator_raising_midway_leaves_nothing(store, run_id, db):
    cid = cell_id(KEY)

    def scores():
        yield from rows(3)
        raise RuntimeError("probe crashed")

    with pytest.raises(RuntimeError, match="probe crashed"):
        store.commit_cell(run_id, cid, KEY, "attack", LABEL, scores())
    assert store.get_cell(cid) is None
    assert count(db, "cells") == 0 and count(db, "scores") == 0
    # The connection is usable again afterwards (no transaction left open).
    store.commit_cell(run_id, cid, KEY, "attack", LABEL, rows(3))
    assert count(db, "scores", cid) == 3


def test_non_numeric_value_is_refused_atomically(store, run_id, db):
    bad = rows(2) + [ScoreRow("unlearned", 0, "forget", "qa", "x", "prob", "high")]
    with pytest.raises(UnlearnbenchError, match="non-numeric"):
        store.commit_cell(run_id, cell_id(KEY), KEY, "attack", LABEL, bad)
    assert count(db, "cells") == 0 and count(db, "scores") == 0


KILL_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from unlearnbench.store import ResultStore, ScoreRow, cell_id
    path, signal_file = sys.argv[1], sys.argv[2]
    store = ResultStore(path)
    run = store.start_run(["child"], {})
    label = {"model": "m", "method": "ga"}
    def rows(n):
        return [ScoreRow("unlearned", 0, "forget", "qa", f"i{j}", "prob", 0.1 * j) for j in range(n)]
    for i in range(3):
        key = {"cell": i}
        store.commit_cell(run, cell_id(key), key, "unlearn", label, rows(5))
    def hanging():
        yield from rows(50)
        with open(signal_file, "w") as fh:
            fh.write("mid-transaction")
        time.sleep(600)
        yield from rows(60)
    key = {"cell": 3}
    store.commit_cell(run, cell_id(key), key, "unlearn", label, hanging())
    """
)


def test_kill_9_mid_commit_loses_nothing_and_leaves_no_half_cell(tmp_path):
    db = tmp_path / "kill.sqlite"
    signal_file = tmp_path / "mid"
    watcher = ResultStore(db)  # already open when the child writes: sees its commits via WAL
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
    child = subprocess.Popen(
        [sys.executable, "-c", KILL_SCRIPT, str(db), str(signal_file)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while not signal_file.exists():
            if child.poll() is not None:
                pytest.fail(f"child exited early: {child.stderr.read().decode()}")
            if time.monotonic() > deadline:
                pytest.fail("child never reached the middle of its 4th commit")
            time.sleep(0.05)
        # While the child holds the write lock mid-transaction, a reader opens the store
        # without waiting and sees only the committed cells.
        with ResultStore(db) as reader:
            assert len(reader.cells("finished")) == 3
            assert not reader.is_finished(cell_id({"cell": 3}))
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -signal.SIGKILL

    assert len(watcher.cells("finished")) == 3
    watcher.close()
    with ResultStore(db) as store:
        finished = {c["cell_id"] for c in store.cells("finished")}
        assert finished == {cell_id({"cell": i}) for i in range(3)}
        assert len(store.cells()) == 3
        fourth = cell_id({"cell": 3})
        assert store.get_cell(fourth) is None
        assert count(db, "scores", fourth) == 0
        assert count(db, "scores") == 15
        assert store.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert store.conn.execute("PRAGMA foreign_key_check").fetchall() == []
        # The store stays writable: the killed cell can now be committed.
        run = store.start_run(["rerun"], {})
        store.commit_cell(run, fourth, {"cell": 3}, "unlearn", {}, rows(2))
        assert store.is_finished(fourth)


# -- sharing and opening ---------------------------------------------------------------------


def test_two_stores_on_one_file_see_each_other(db):
    with ResultStore(db) as a, ResultStore(db) as b:
        assert a.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        run_a = a.start_run(["a"], {})
        run_b = b.start_run(["b"], {})
        a.commit_cell(run_a, "cell-a", {"k": "a"}, "base", {}, rows(2))
        assert b.is_finished("cell-a")
        b.commit_cell(run_b, "cell-b", {"k": "b"}, "base", {}, rows(3))
        assert a.is_finished("cell-b")
        # b lost the race for cell-a (a finished it since b checked): a's commit stands.
        assert b.commit_cell(run_b, "cell-a", {"k": "a"}, "base", {}, rows(9)) is False
        assert len(a.scores_frame()) == 5


def test_first_commit_wins_between_runs_and_a_second_in_one_run_is_an_error(db):
    """Two processes sharing a store compute the cells their runs share (base, oracle) at once;
    the later commit writes nothing and says so. Within one run, or under another key, a second
    commit is a caller's bug and raises; a failure never replaces a finished cell."""
    with ResultStore(db) as a, ResultStore(db) as b:
        run_a, run_b = a.start_run(["a"], {}), b.start_run(["b"], {})
        assert a.commit_cell(run_a, "c", {"k": 1}, "base", {}, rows(2, value=0.1)) is True
        assert b.commit_cell(run_b, "c", {"k": 1}, "base", {}, rows(5, value=0.9)) is False
        assert b.record_failure(run_b, "c", {"k": 1}, "base", {}, "out of memory") is False
        with pytest.raises(UnlearnbenchError, match="already finished under another key"):
            b.commit_cell(run_b, "c", {"k": 2}, "base", {}, rows(2))
        with pytest.raises(UnlearnbenchError, match="already finished by this run"):
            a.commit_cell(run_a, "c", {"k": 1}, "base", {}, rows(2))
        cell = b.get_cell("c")
        assert cell["status"] == "finished" and cell["run_id"] == run_a
        assert b.scores_frame(["c"])["value"].tolist() == pytest.approx([0.1, 1.1])


def test_a_store_locked_past_the_busy_timeout_is_one_error_and_loses_nothing(db):
    with ResultStore(db) as s:
        run = s.start_run(["x"], {})
        s.commit_cell(run, "kept", {"k": 0}, "base", {}, rows(2))
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process in the middle of a write, for too long
    try:
        with ResultStore(db, busy_timeout=0.2) as s:
            assert s.is_finished("kept")  # readers do not wait (WAL)
            t0 = time.monotonic()
            with pytest.raises(UnlearnbenchError, match=r"stayed locked by another process for 0.2 s") as err:
                s.commit_cell(run, "new", {"k": 1}, "base", {}, rows(3))
            assert time.monotonic() - t0 >= 0.15 and "\n" not in str(err.value)
            assert "committing cell new" in str(err.value)
            with pytest.raises(UnlearnbenchError, match="locked"):
                s.start_run(["y"], {})
            with pytest.raises(UnlearnbenchError, match="locked"):
                s.finish_run(run)
            holder.execute("ROLLBACK")
            assert s.commit_cell(run, "new", {"k": 1}, "base", {}, rows(3)) is True
    finally:
        holder.close()
    assert count(db, "scores", "kept") == 2 and count(db, "scores", "new") == 3


def test_creates_parent_dir_and_reopens(db):
    assert not db.parent.exists()
    with ResultStore(db) as s:
        rid = s.start_run([], {})
        s.commit_cell(rid, "c", {"k": 1}, "base", {}, rows(1))
    with ResultStore(db) as s:
        assert s.is_finished("c")


def test_non_sqlite_file_is_refused(tmp_path):
    junk = tmp_path / "notes.sqlite"
    junk.write_text("this is not a database, just some text " * 50)
    with pytest.raises(UnlearnbenchError, match="is not an unlearnbench store") as info:
        ResultStore(junk)
    assert "\n" not in str(info.value)
    assert str(junk) in str(info.value)


def test_foreign_sqlite_db_is_refused(tmp_path):
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE users(id INTEGER)")
    with pytest.raises(UnlearnbenchError, match="not an unlearnbench store"):
        ResultStore(other)


def test_newer_schema_is_refused(db):
    ResultStore(db).close()
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(ResultStore.SCHEMA_VERSION + 1),))
    with pytest.raises(UnlearnbenchError, match="newer") as info:
        ResultStore(db)
    assert "\n" not in str(info.value)


# -- frames and export -----------------------------------------------------------------------


@pytest.fixture
def filled(store, run_id):
    """Two cells: a base cell (no attack fields) and an attack cell with two checkpoints."""
    base_scores = [ScoreRow("base", -1, "forget", "qa", f"q{i}", "prob", v) for i, v in enumerate([0.2, 0.4, 0.9])]
    store.commit_cell(run_id, "base-cell", {"k": "base"}, "base", {"model": "m", "seed": 1}, base_scores)
    attack_scores = (
        [ScoreRow("epoch=0", 0, "forget", "qa", f"q{i}", "prob", v) for i, v in enumerate([0.1, 0.3])]
        + [ScoreRow("epoch=1", 1, "forget", "qa", f"q{i}", "prob", v) for i, v in enumerate([0.5, 0.7])]
        + [ScoreRow("epoch=1", 1, "retain", "cloze", "r0", "em", 1.0)]
    )
    store.commit_cell(run_id, "attack-cell", {"k": "attack"}, "attack", LABEL, attack_scores)
    return store


def test_scores_frame_long_format_with_labels(filled):
    frame = filled.scores_frame()
    assert len(frame) == 8
    assert {"cell_id", "kind", "model", "method", "attack", "checkpoint", "step", "value"} <= set(frame.columns)
    attack = frame[frame.cell_id == "attack-cell"]
    assert set(attack.attack) == {"relearn"}
    assert frame.value.dtype == "float64" and frame.step.dtype == "int64"
    assert len(filled.scores_frame(["base-cell"])) == 3
    assert filled.scores_frame([]).empty
    cells = filled.cells_frame()
    assert sorted(cells.cell_id) == ["attack-cell", "base-cell"]


def test_item_means_frame_per_step_of_the_asked_forms_without_aggregate_rows(filled, run_id):
    filled.commit_cell(
        run_id,
        "js-cell",
        {"k": "js"},
        "unlearn",
        {"model": "m"},
        [
            ScoreRow("unlearned", 0, "forget", "js", "i0", "js", 0.2),
            ScoreRow("unlearned", 0, "forget", "js", "i1", "js", 0.4),
            ScoreRow("unlearned", 0, "forget", "js", "i2", "js", math.nan),  # skipped by the mean
            ScoreRow("unlearned", 0, "forget", "js", "*", "js", 9.0),  # aggregate row: left out
            ScoreRow("unlearned", 0, "retain", "js", "i0", "js", math.nan),
        ],
    )
    frame = filled.item_means_frame(["js", "qa"])
    assert list(frame.columns) == ["cell_id", "step", "split", "form", "metric", "value"]
    means = {(r.cell_id, r.step, r.split, r.form): r.value for r in frame.itertuples()}
    assert means[("js-cell", 0, "forget", "js")] == pytest.approx(0.3)
    assert math.isnan(means[("js-cell", 0, "retain", "js")])  # only NaN: NaN
    assert means[("attack-cell", 1, "forget", "qa")] == pytest.approx(0.6)
    assert means[("base-cell", -1, "forget", "qa")] == pytest.approx(0.5)
    assert len(frame) == 5 and frame.value.dtype == "float64" and frame.step.dtype == "int64"
    assert filled.item_means_frame(["cloze"]).metric.tolist() == ["em"]
    assert filled.item_means_frame(["nothing"]).empty and filled.item_means_frame([]).empty


def test_nan_round_trip(store, run_id, db):
    scores = [
        ScoreRow("attacked", 0, "forget", "qa", "a", "loss", float("nan")),
        ScoreRow("attacked", 0, "forget", "qa", "b", "loss", 2.0),
        ScoreRow("attacked", 0, "forget", "qa", "c", "loss", float("inf")),
    ]
    store.commit_cell(run_id, "nan-cell", {"k": "nan"}, "attack", {}, scores)
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT value FROM scores WHERE item_id = 'a'").fetchone()[0] is None
    frame = store.scores_frame().set_index("item_id")
    assert math.isnan(frame.loc["a", "value"])
    assert frame.loc["b", "value"] == 2.0
    assert frame.loc["c", "value"] == math.inf
    items = {r["item_id"]: r["value"] for r in json.loads(export(store, "json"))}
    assert items == {"a": None, "b": 2.0, "c": None}
    csv = pd.read_csv(io.StringIO(export(store, "csv"))).set_index("item_id")
    assert math.isnan(csv.loc["a", "value"]) and csv.loc["c", "value"] == math.inf
    (summary,) = json.loads(export(store, "json", level="summary"))
    assert summary["n"] == 3 and summary["value"] is None  # mean over 2.0 and inf is inf -> null


def test_json_export_keeps_full_float_precision(store, run_id):
    value = 0.12345678901234567
    store.commit_cell(run_id, "p", {"k": "p"}, "base", {}, [ScoreRow("base", 0, "forget", "qa", "a", "prob", value)])
    assert json.loads(export(store, "json"))[0]["value"] == value


def test_unknown_label_field_is_a_bug(store, run_id):
    with pytest.raises(ValueError, match="unknown cell label"):
        store.commit_cell(run_id, "x", {"k": 1}, "base", {"modle": "m"}, rows(1))


def _open_and_write(path: str, barrier, results) -> None:
    barrier.wait()  # every process opens the new file at the same instant
    try:
        with ResultStore(path) as s:
            s.finish_run(s.start_run(["race"], {}))
        results.put("ok")
    except Exception as exc:  # reported to the parent, which asserts on it
        results.put(f"{type(exc).__name__}: {exc}")


def test_processes_opening_one_new_store_together_all_succeed(tmp_path):
    """Six processes open the same new store at once, 20 times. Switching a new file to WAL while
    another connection converts it answers SQLITE_BUSY at once, without SQLite's busy handler (before
    the opening retried, 2 of 20 such trials failed here with 'stayed locked ... for 30 s' after no
    wait at all); every process must now open it and write its run."""
    import multiprocessing

    ctx = multiprocessing.get_context("spawn" if sys.platform == "darwin" else "fork")
    failures = []
    for trial in range(20):
        path = str(tmp_path / f"{trial}.sqlite")
        barrier, results = ctx.Barrier(6), ctx.Queue()
        procs = [ctx.Process(target=_open_and_write, args=(path, barrier, results)) for _ in range(6)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(timeout=120)
        outcome = [results.get(timeout=10) for _ in procs]
        failures += [f"trial {trial}: {o}" for o in outcome if o != "ok"]
        with ResultStore(path) as s:
            assert s.conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 6 - len(
                [o for o in outcome if o != "ok"]
            )
    assert not failures, failures


def test_generated_text_is_committed_with_the_scores_and_read_back(store, run_id):
    from unlearnbench.store import TextRow

    rows = [
        ScoreRow("base", -1, "forget", "qa", "q0", "em", 1.0),
        TextRow("base", -1, "forget", "qa", "q0", "Alice lives in Oslo"),
        ScoreRow("base", -1, "forget", "qa", "q1", "em", 0.0),
        TextRow("base", -1, "forget", "qa", "q1", ""),
    ]
    assert store.commit_cell(run_id, "g", {"k": "g"}, "base", {}, rows)
    texts = store.generations_frame()
    assert texts[["item_id", "text"]].values.tolist() == [["q0", "Alice lives in Oslo"], ["q1", ""]]
    assert len(store.scores_frame()) == 2  # text rows are not scores
    assert store.generations_frame(["other"]).empty


def test_a_duplicate_generation_rolls_the_whole_cell_back(store, run_id):
    from unlearnbench.store import TextRow

    rows = [ScoreRow("base", -1, "forget", "qa", "q0", "em", 1.0)] + [
        TextRow("base", -1, "forget", "qa", "q0", "x")
    ] * 2
    with pytest.raises(UnlearnbenchError, match="duplicate generation row"):
        store.commit_cell(run_id, "g", {"k": "g"}, "base", {}, rows)
    assert not store.is_finished("g") and store.scores_frame().empty and store.generations_frame().empty


def test_a_store_made_before_generations_were_kept_gains_the_table(db):
    with ResultStore(db) as s:
        s.conn.execute("DROP TABLE generations")
        s.conn.commit()
    with ResultStore(db) as s:
        assert s.generations_frame().empty
        run = s.start_run([], {})
        from unlearnbench.store import TextRow

        assert s.commit_cell(run, "c", {"k": 1}, "base", {}, [TextRow("base", -1, "forget", "qa", "i", "t")])
        assert s.generations_frame().text.tolist() == ["t"]
