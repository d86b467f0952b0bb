"""The report's per-layer frame of the white-box probes (lens, linear), from a synthetic store whose
means are known by hand; and that the report draws it (and leaves it out when no cell ran them)."""

import math

from unlearnbench.report import write_report
from unlearnbench.report.frames import collect
from unlearnbench.report.layers import chance_levels, layer_frame
from unlearnbench.store import ResultStore, ScoreRow, cell_id

N = 10  # items per split


def _rows(checkpoint, step, lens, linear, majority=None):
    """``lens``/``linear``: {split: [fraction right at layer 0, layer 1]} -> per-item 0/1 rows."""
    rows = []
    for form, stem, values in (("lens", "top1", lens), ("linear", "acc", linear)):
        for split, per_layer in values.items():
            for layer, v in enumerate(per_layer):
                right = round(v * N)
                for i in range(N):
                    rows.append(ScoreRow(checkpoint, step, split, form, f"i{i}", f"{stem}@{layer}", float(i < right)))
                    rows.append(ScoreRow(checkpoint, step, split, form, f"i{i}", f"rank@{layer}", 3.0))  # ignored
    rows.append(ScoreRow(checkpoint, step, "forget", "qa", "i0", "correct", 1.0))
    if majority is not None:
        rows.append(ScoreRow(checkpoint, step, "forget", "linear", "*", "majority", majority))
        rows.append(ScoreRow(checkpoint, step, "forget", "linear", "*", "best_acc", 0.9))  # not per layer
    return rows


def _commit(store, run, kind, method, seed, rows, method_config=None):
    label = {"model": "m", "method": method, "probe_suite": "qa,lens,linear", "seed": seed}
    if method_config:
        label["method_config"] = method_config
    key = {"kind": kind, **label}
    store.commit_cell(run, cell_id(key), key, kind, label, rows)


def _store(path):
    store = ResultStore(path)
    run = store.start_run(["test"], {})
    _commit(store, run, "base", "base", 0, _rows("base", -1, {"forget": [0.5, 1.0]}, {"forget": [0.6, 0.9]}, 0.2))
    _commit(store, run, "oracle", "oracle", 0, _rows("oracle", -1, {"forget": [0.0, 0.0]}, {"forget": [0.2, 0.1]}, 0.2))
    for seed, (l1, a1) in enumerate(((0.2, 0.7), (0.4, 0.5))):
        rows = _rows("unlearned", -1, {"forget": [0.1, l1]}, {"forget": [0.3, a1]})
        _commit(store, run, "unlearn", "npo", seed, rows, {"lr": 1, "seed": seed})
    return store


def test_layer_frame_means_over_items_then_seeds(tmp_path):
    with _store(tmp_path / "s.sqlite") as store:
        frame = layer_frame(store)
        data = collect(store)
    got = {(r.probe, r.column, r.layer): (r.mean, r.min, r.max, r.n) for r in frame.itertuples()}
    assert got[("lens", "base", 1)] == (1.0, 1.0, 1.0, 1)
    assert got[("lens", "oracle", 0)] == (0.0, 0.0, 0.0, 1)
    mean, lo, hi, n = got[("lens", "npo", 1)]
    assert math.isclose(mean, 0.3) and (lo, hi, n) == (0.2, 0.4, 2)
    assert math.isclose(got[("linear", "npo", 1)][0], 0.6)
    assert {k[2] for k in got} == {0, 1}  # rank@L and best_acc are not layer profiles
    assert list(dict.fromkeys(frame[frame.probe == "lens"].column)) == ["base", "oracle", "npo"]
    assert chance_levels(data.aggregates) == {"forget": 0.2}


def test_report_draws_the_layer_figure_only_when_the_probes_ran(tmp_path):
    _store(tmp_path / "s.sqlite").close()
    written = write_report(tmp_path / "s.sqlite", tmp_path / "out")
    assert "layer_profiles.png" in written and "layer_profiles.svg" in written
    page = (tmp_path / "out" / "report.html").read_text()
    assert "What the hidden states still hold" in page

    plain = ResultStore(tmp_path / "p.sqlite")
    _commit(
        plain,
        plain.start_run(["test"], {}),
        "base",
        "base",
        0,
        [ScoreRow("base", -1, "forget", "qa", "i0", "correct", 1.0)],
    )
    plain.close()
    written = write_report(tmp_path / "p.sqlite", tmp_path / "out2")
    assert "layer_profiles.png" not in written
    assert "What the hidden states still hold" not in (tmp_path / "out2" / "report.html").read_text()
