"""The parts of the Ray executor that need no Ray: the worker's stand-in store and the driver's commit."""

from unlearnbench.ray_executor import CellCollector
from unlearnbench.runner import CellResult, commit_collected
from unlearnbench.store import ResultStore, ScoreRow


def _row(v: float) -> ScoreRow:
    return ScoreRow("unlearned", 0, "forget", "qa", "i1", "correct", v)


def test_collector_reads_the_snapshot_and_keeps_writes_in_memory():
    col = CellCollector({"done": {"cell_id": "done", "meta": {"checkpoint_sha256": "ab"}}})
    assert col.start_run(["x"], {"harness": "0"}) == "worker" and col.run_meta == {"harness": "0"}
    assert col.is_finished("done") and col.get_cell("done")["meta"]["checkpoint_sha256"] == "ab"
    assert not col.commit_cell("w", "done", {"k": 1}, "unlearn", {}, [_row(1.0)], {})  # finished in the store
    assert col.commit_cell("w", "new", {"k": 2}, "attack", {"method": "npo"}, [_row(0.0)], {"s": 1})
    assert col.is_finished("new") and col.get_cell("new")["meta"] == {"s": 1}
    assert not col.commit_cell("w", "new", {"k": 2}, "attack", {}, [], {})  # once only
    assert col.record_failure("w", "bad", {"k": 3}, "attack", {}, "boom")
    assert not col.record_failure("w", "new", {"k": 2}, "attack", {}, "late")
    assert [(c.cid, c.failed) for c in col.commits] == [("new", None), ("bad", "boom")]


def test_the_driver_commits_collected_cells_and_keeps_what_another_run_committed(tmp_path):
    with ResultStore(tmp_path / "s.sqlite") as store:
        other = store.start_run(["first"], {})
        store.commit_cell(other, "shared", {"k": "s"}, "oracle", {"method": "oracle"}, [_row(1.0)], {})
        store.finish_run(other)
        col = CellCollector({})
        col.commit_cell("w", "shared", {"k": "s"}, "oracle", {"method": "oracle"}, [_row(0.5)], {})
        col.commit_cell("w", "mine", {"k": "m"}, "unlearn", {"method": "npo"}, [_row(0.0)], {"x": 1})
        col.record_failure("w", "broken", {"k": "b"}, "attack", {"method": "npo"}, "NaN loss")
        cells = [
            CellResult("oracle", "shared", {}, "finished"),
            CellResult("unlearn", "mine", {}, "finished"),
            CellResult("attack", "broken", {}, "failed", "NaN loss"),
        ]
        out = commit_collected(store, ["sweep"], {"executor": "ray"}, col.commits, cells)
        assert [c.status for c in out] == ["cached", "finished", "failed"]
        assert store.scores_frame(["shared"])["value"].tolist() == [1.0]  # the first commit stands
        assert store.is_finished("mine") and not store.is_finished("broken")
        assert store.get_cell("broken")["status"] == "failed"
        runs = store.conn.execute("SELECT status, meta FROM runs ORDER BY started_at").fetchall()
        assert [r[0] for r in runs] == ["finished", "finished"] and '"executor": "ray"' in runs[1][1]
