"""Report rendering from a synthetic store whose forget qualities are known by hand.

Forget split: base recall 1.0 and oracle 0.0 on bio and qa, so per form fq = 1 - u; mcq has
base = oracle = 0.25 (uninformative: must be ignored although the models score 0.9 on it).

method ilu [envs=x] (two seeds), ilu [envs=y] (seed 0); attack finetune:arith, epochs 0..2:
  x seed 0: unlearned bio 0, qa .5 -> .75 | e1 bio .25, qa .5 -> .625 | e2 .5, .5 -> .5
  x seed 1: unlearned 0, 0 -> 1.0        | e1 0, .25 -> .875         | e2 .25, .25 -> .75
  y seed 0: unlearned .5, .5 -> .5       | e1 .75, .5 -> .375        | e2 1, 1 -> 0
"""

import math

import pytest

from unlearnbench.report import collect, curves_frame, form_table, heatmap_frame, muse_table, write_report
from unlearnbench.store import ResultStore, ScoreRow, cell_id

MODEL, SUITE = "tiny", "bio,qa,mcq"
STD2 = math.sqrt(2 * 0.125**2)  # sample std of two values 0.25 apart


#: Items per (split, form) in these stores: enough for a form to enter the headline (MIN_ITEMS), and
#: every recall below is a multiple of 1/ITEMS, so its mean is exact.
ITEMS = 20


def _rows(checkpoint, step, values):
    rows = []
    for (split, form), v in values.items():
        right = round(v * ITEMS)
        assert math.isclose(right / ITEMS, v), f"{v} is not a multiple of 1/{ITEMS}"
        for i in range(ITEMS):
            rows.append(ScoreRow(checkpoint, step, split, form, f"i{i}", "correct", float(i < right)))
            rows.append(ScoreRow(checkpoint, step, split, form, f"i{i}", "prob", 0.123))  # other metric: ignored
    return rows


def _forget(bio, qa, mcq=0.9):
    return {("forget", "bio"): bio, ("forget", "qa"): qa, ("forget", "mcq"): mcq}


def _commit(store, run, kind, label, rows):
    key = {"kind": kind, **label}
    store.commit_cell(run, cell_id(key), key, kind, label, rows)


def _references(store, run, seed):
    base = {
        **_forget(1.0, 1.0, 0.25),
        ("neighbour", "bio"): 1.0,
        ("neighbour", "qa"): 1.0,
        ("retain", "qa"): 1.0,
        ("task", "arith"): 0.1,
    }
    oracle = {
        **_forget(0.0, 0.0, 0.25),
        ("neighbour", "bio"): 1.0,
        ("neighbour", "qa"): 0.9,
        ("retain", "qa"): 1.0,
        ("task", "arith"): 0.2,
    }
    for kind, vals in (("base", base), ("oracle", oracle)):
        _commit(
            store,
            run,
            kind,
            {"model": MODEL, "method": kind, "probe_suite": SUITE, "seed": seed},
            _rows(kind, -1, vals),
        )


def _method(store, run, envs, seed, unlearned, epochs, neighbour, retain_qa, fa):
    label = {
        "model": MODEL,
        "method": "ilu",
        "method_config": {"envs": envs, "lr": 1, "seed": seed},
        "probe_suite": SUITE,
        "seed": seed,
    }
    extra = {("neighbour", "bio"): neighbour[0], ("neighbour", "qa"): neighbour[1], ("retain", "qa"): retain_qa}
    _commit(
        store, run, "unlearn", label, _rows("unlearned", 0, {**_forget(*unlearned), **extra, ("task", "arith"): 0.1})
    )
    rows = _rows("epoch=0", 0, {**_forget(*unlearned), **extra, ("task", "arith"): 0.1})
    for e, (bio, qa) in enumerate(epochs, start=1):
        rows += _rows(f"epoch={e}", e, {**_forget(bio, qa), **extra, ("task", "arith"): fa})
    attack = {**label, "attack": "finetune:arith", "attack_config": {"epochs": 2, "seed": seed}}
    _commit(store, run, "attack", attack, rows)


def _build(path, with_oracle=True):
    with ResultStore(path) as store:
        run = store.start_run(["test"], {})
        for seed in (0, 1):
            _references(store, run, seed)
        _method(store, run, "x", 0, (0.0, 0.5), [(0.25, 0.5), (0.5, 0.5)], (0.8, 0.5), 0.9, 0.6)
        _method(store, run, "x", 1, (0.0, 0.0), [(0.0, 0.25), (0.25, 0.25)], (0.6, 0.5), 0.9, 0.6)
        _method(store, run, "y", 0, (0.5, 0.5), [(0.75, 0.5), (1.0, 1.0)], (0.9, 0.4), 0.8, 0.4)
        if not with_oracle:
            store.conn.execute("DELETE FROM scores WHERE cell_id IN (SELECT cell_id FROM cells WHERE kind='oracle')")
            store.conn.execute("DELETE FROM cells WHERE kind = 'oracle'")
    return path


@pytest.fixture
def store_path(tmp_path):
    return _build(tmp_path / "store.sqlite")


def _data(path):
    with ResultStore(path) as store:
        return collect(store)


def test_heatmap_values_and_spread(store_path):
    hm = heatmap_frame(_data(store_path)).set_index(["method", "attack"])
    x, y = "ilu [envs=x]", "ilu [envs=y]"
    assert set(hm.index) == {(x, "no attack"), (x, "finetune:arith"), (y, "no attack"), (y, "finetune:arith")}
    assert hm.loc[(x, "finetune:arith"), "mean"] == pytest.approx(0.625)
    assert hm.loc[(x, "finetune:arith"), "std"] == pytest.approx(STD2)
    assert (hm.loc[(x, "finetune:arith"), "min"], hm.loc[(x, "finetune:arith"), "max"]) == (0.5, 0.75)
    assert hm.loc[(x, "finetune:arith"), "n"] == 2
    assert hm.loc[(x, "no attack"), "mean"] == pytest.approx(0.875)
    assert hm.loc[(y, "finetune:arith"), "mean"] == pytest.approx(0.0)
    assert math.isnan(hm.loc[(y, "finetune:arith"), "std"]) and hm.loc[(y, "finetune:arith"), "n"] == 1
    assert hm.loc[(y, "no attack"), "mean"] == pytest.approx(0.5)


def test_per_form_values_skip_uninformative_form(store_path):
    fq = _data(store_path).fq
    row = fq[(fq.method == "ilu [envs=x]") & (fq.seed == "0") & (fq.checkpoint == "epoch=1")].iloc[0]
    assert row.per_form == pytest.approx({"bio": 0.75, "qa": 0.5})  # no mcq
    assert row.fq == pytest.approx(0.625)


def test_curves_points(store_path):
    cv = curves_frame(_data(store_path))
    x = cv[cv.method == "ilu [envs=x]"].sort_values("epoch")
    assert list(x.epoch) == [0, 1, 2]
    assert list(x["mean"]) == pytest.approx([0.875, 0.75, 0.625])
    assert list(x["min"]) == pytest.approx([0.75, 0.625, 0.5])
    assert list(x["max"]) == pytest.approx([1.0, 0.875, 0.75])
    y = cv[cv.method == "ilu [envs=y]"].sort_values("epoch")
    assert list(y["mean"]) == pytest.approx([0.5, 0.375, 0.0])


def test_form_table_marks_best(store_path):
    table, best = form_table(_data(store_path))
    assert table.header == ["split / form", "base", "oracle", "ilu [envs=x]", "ilu [envs=y]"]
    rows = {r[0]: i for i, r in enumerate(table.rows)}
    # forget: closest to the oracle (0.0) wins -> x on bio (0.0 vs .5) and on qa (.25 vs .5)
    assert (rows["forget / bio"], 3) in table.bold and (rows["forget / bio"], 4) not in table.bold
    assert table.rows[rows["forget / qa"]][3:] == pytest.approx([0.25, 0.5])
    # neighbour: highest wins -> y on bio (.9 vs .7), x on qa (.5 vs .4)
    assert (rows["neighbour / bio"], 4) in table.bold and (rows["neighbour / bio"], 3) not in table.bold
    assert (rows["neighbour / qa"], 3) in table.bold
    assert best[rows["neighbour / bio"]] == "ilu [envs=y]"
    assert "**0.900**" in table.markdown() and r"\textbf{0.900}" in table.latex()


def test_muse_table(store_path):
    table = muse_table(_data(store_path))
    rows = {r[0]: r[1:] for r in table.rows}
    assert rows["Original (base)"] == pytest.approx([1.0, 1.0, 1.0, 0.1])
    assert rows["Unlearned: ilu [envs=x]"] == pytest.approx([0.0, 0.25, 0.9, 0.1])
    # a key without the runner's attack entries: the label's spec text says finetune's argument is its task
    assert rows["Post-finetune on arith: ilu [envs=x]"] == pytest.approx([0.375, 0.375, 0.9, 0.6])
    assert rows["Post-finetune on arith: ilu [envs=y]"] == pytest.approx([1.0, 1.0, 0.8, 0.4])


def test_write_report_files(store_path, tmp_path):
    from matplotlib.image import imread

    out = tmp_path / "report"
    written = write_report(store_path, out)
    for stem in ("form_table", "muse_table"):
        for ext in ("md", "csv", "html", "tex"):
            assert f"{stem}.{ext}" in written
    for name in ("fq_heatmap.png", "fq_heatmap.svg", "fq_curves.png", "fq_curves.svg", "report.html"):
        assert name in written
    for path in written.values():
        assert (out / path.rsplit("/", 1)[1]).stat().st_size > 0
    for name in ("fq_heatmap.png", "fq_curves.png"):
        img = imread(written[name])
        assert img.ndim == 3 and img.shape[0] > 100 and img.shape[1] > 100
    svg = (out / "fq_heatmap.svg").read_text()
    assert "0.62 ± 0.18" in svg  # mean ± sample std written in the cell
    page = (out / "report.html").read_text()
    # heatmap, its utility companion, fq vs utility, curves, the worst case (against the oracle: no
    # control cells here) and recovery
    assert page.count("data:image/png;base64,") == 6
    assert "worst_heatmap.png" in written and "recovery_curves.png" in written
    assert "<table" in page and "Post-finetune on arith" in page and "<b>0.900</b>" in page


def test_no_oracle_gives_note_not_heatmap(tmp_path):
    path = _build(tmp_path / "s.sqlite", with_oracle=False)
    written = write_report(path, tmp_path / "out")
    assert "fq_heatmap.png" not in written and "fq_curves.png" not in written
    page = (tmp_path / "out" / "report.html").read_text()
    assert "Forget quality unavailable" in page and "no finished oracle cell" in page
    assert "No forget-quality heatmap" in page
    assert "form_table.md" in written  # tables still written


# -- the attacked-oracle control (hand-computed; b = 1, o_0 = 0 on bio and qa) ---------------------
# control for seed 0: the oracle fine-tuned by the same finetune:arith: e1 (bio .25, qa 0), e2 (.5, .25).
# x seed 0: u_0 = (0, .5); e1 u = (.25, .5): fq_ao (1, .5) -> .75, recovery (.25, 0) -> .125,
#   excess (0, .5) -> .25, control recovery (.25, (0 - .5) / .5 = -1) -> -.375;
#   e2 u = (.5, .5): fq_ao (1, .75) -> .875, recovery (.5, 0) -> .25, excess (0, .25) -> .125, control (.5, -.5) -> 0.


def _control(store, run, seed, epochs):
    label = {
        "model": MODEL,
        "method": "oracle",
        "probe_suite": SUITE,
        "seed": seed,
        "attack": "finetune:arith",
        "attack_config": {"epochs": 2, "seed": seed},
    }
    rows = _rows("epoch=0", 0, _forget(0.0, 0.0, 0.25))
    for e, (bio, qa) in enumerate(epochs, start=1):
        rows += _rows(f"epoch={e}", e, _forget(bio, qa, 0.25))
    _commit(store, run, "control", label, rows)


@pytest.fixture
def control_store(tmp_path):
    path = _build(tmp_path / "store.sqlite")
    with ResultStore(path) as store:
        _control(store, store.start_run(["test"], {}), 0, [(0.25, 0.0), (0.5, 0.25)])
    return path


def test_attack_records_against_the_attacked_oracle(control_store):
    fq = _data(control_store).fq
    x0 = fq[(fq.method == "ilu [envs=x]") & (fq.seed == "0") & (fq.kind == "attack")].set_index("step")
    assert x0.loc[1, ["fq_ao", "recovery", "excess", "control_recovery"]].tolist() == pytest.approx(
        [0.75, 0.125, 0.25, -0.375]
    )
    assert x0.loc[2, ["fq_ao", "recovery", "excess", "control_recovery"]].tolist() == pytest.approx(
        [0.875, 0.25, 0.125, 0.0]
    )
    assert x0.loc[2, "fq"] == pytest.approx(0.5)  # today's number (against the unattacked oracle) is kept
    x1 = fq[(fq.method == "ilu [envs=x]") & (fq.seed == "1") & (fq.kind == "attack")]
    assert x1.fq_ao.isna().all() and x1.excess.isna().all()  # seed 1 has no control cell
    assert x1.set_index("step").loc[2, "recovery"] == pytest.approx(0.25)  # recovery needs no control
    unl = fq[fq.kind == "unlearn"]
    assert unl.recovery.isna().all()


def test_recovery_nan_where_nothing_was_removed(tmp_path):
    # the method removed nothing on bio (u_0 = b = 1): recovery is NaN there, the mean is over qa only
    path = tmp_path / "s.sqlite"
    with ResultStore(path) as store:
        run = store.start_run(["test"], {})
        _references(store, run, 0)
        _method(store, run, "x", 0, (1.0, 0.0), [(1.0, 0.5)], (0.8, 0.5), 0.9, 0.6)
        fq = collect(store).fq
    row = fq[(fq.kind == "attack") & (fq.step == 1)].iloc[0]
    assert row.recovery == pytest.approx(0.5)


def test_worst_case_heatmap_picks_the_worst_step(control_store):
    data = _data(control_store)
    x, y = "ilu [envs=x]", "ilu [envs=y]"
    ao = heatmap_frame(data, "worst", "fq_ao").set_index(["method", "attack"])
    assert ao.loc[(x, "finetune:arith"), "mean"] == pytest.approx(0.75)  # step 1 of seed 0; seed 1 has no control
    assert ao.loc[(x, "finetune:arith"), "n"] == 1 and ao.loc[(x, "finetune:arith"), "step"] == "1"
    assert ao.loc[(x, "no attack"), "mean"] == pytest.approx(0.875)
    rec = heatmap_frame(data, "worst", "recovery").set_index(["method", "attack"])
    assert (x, "no attack") not in rec.index  # recovery is 0 by definition before the attack
    assert rec.loc[(x, "finetune:arith"), "mean"] == pytest.approx(0.25)
    assert rec.loc[(y, "finetune:arith"), "mean"] == pytest.approx(1.0)
    assert rec.loc[(y, "finetune:arith"), "step"] == "2"
    fq = heatmap_frame(data, "worst", "fq").set_index(["method", "attack"])
    # lowest FQ over steps 1-2: x seed 0 .5 (step 2), seed 1 .75 (step 2)
    assert fq.loc[(x, "finetune:arith"), "mean"] == pytest.approx(0.625)
    last = heatmap_frame(data, "last", "fq").set_index(["method", "attack"])
    assert last.loc[(x, "finetune:arith"), "mean"] == pytest.approx(0.625)
    with pytest.raises(ValueError):
        heatmap_frame(data, "worst", "nonsense")


def test_recovery_curves_carry_the_control_band(control_store):
    rc = curves_frame(_data(control_store), "recovery")
    x = rc[rc.method == "ilu [envs=x]"].set_index("epoch")
    assert x.loc[2, "mean"] == pytest.approx(0.25)  # both seeds .25 at step 2
    assert x.loc[1, "ctrl_mean"] == pytest.approx(-0.375) and x.loc[2, "ctrl_max"] == pytest.approx(0.0)


def test_report_with_control_and_similarity(control_store, tmp_path):
    from unlearnbench.report.frames import similarity_frame

    sim = {"rows": [{"task": "arith", "template_overlap": 0.0, "hidden_cosine": 0.39}]}
    sf = similarity_frame(_data(control_store), sim).set_index("method")
    assert sf.loc["ilu [envs=y]", "mean"] == pytest.approx(1.0) and sf.loc["ilu [envs=y]", "hidden_cosine"] == 0.39
    written = write_report(control_store, tmp_path / "r", similarity=sim)
    for name in ("worst_heatmap.png", "recovery_curves.png", "recovery_similarity.png"):
        assert name in written
    page = (tmp_path / "r" / "report.html").read_text()
    assert "attacked oracle" in page and page.count("data:image/png;base64,") == 7
    assert "No attacked-oracle control" not in page
    assert similarity_frame(_data(control_store), {"rows": [{"task": "topic"}]}).empty


# -- attacks of three kinds, keyed as the runner keys them ------------------------------------------
# base 1 / oracle 0 on bio and qa (fq = 1 - mean(bio, qa)); retain qa; task arith. Method npo, seed 0:
#   finetune:arith (trains on task arith)  epoch=0 (0, 0) r .9 | epoch=1 (.25, .25) r .9 | epoch=2 (.5, .5) r .8
#   relearn:forget (source: forget set)    step=0  (0, 0) r .9 | step=10 (.5, .5) r .6  | step=20 (.25, .25) r .8
#   quantize:4     (4 bits)                before  (0, 0) r .9 | quantized (.5, 0) r .9
# worst (lowest fq after step 0): finetune epoch=2 (fq .5), relearn step=10 (.5; not the last), quantize (.75).
# rocr's unlearning failed in a run whose request had all three attacks: one failed, three skipped cells.

KINDS = {
    ("finetune", "arith", "arith"): [("epoch=0", 0, 0.0, 0.0, 0.9), ("epoch=1", 1, 0.25, 0.25, 0.9)]
    + [("epoch=2", 2, 0.5, 0.5, 0.8)],
    ("relearn", "forget", None): [("step=0", 0, 0.0, 0.0, 0.9), ("step=10", 10, 0.5, 0.5, 0.6)]
    + [("step=20", 20, 0.25, 0.25, 0.8)],
    ("quantize", "4", None): [("before", 0, 0.0, 0.0, 0.9), ("quantized", 1, 0.5, 0.0, 0.9)],
}
ROCR_REASON = "rocr: the null space of generic down_proj inputs is empty at layer(s) 0"


def _keyed_attack(store, run, method, seed, name, arg, task, points):
    label = {"model": MODEL, "method": method, "probe_suite": SUITE, "seed": seed, "attack": f"{name}:{arg}"}
    label["attack_config"] = {"seed": seed}
    attack_key = {"name": name, "arg": arg, "version": "1", "config": {"seed": seed}}
    key = {"kind": "attack", **label, "attack": attack_key, "task": {"name": task, "version": "1"} if task else None}
    rows = []
    for checkpoint, step, bio, qa, retain in points:
        values = {**_forget(bio, qa), ("retain", "qa"): retain}
        if task:
            values[("task", task)] = 0.1 + step * 0.3
        rows += _rows(checkpoint, step, values)
    store.commit_cell(run, cell_id(key), key, "attack", label, rows)


@pytest.fixture
def kinds_store(tmp_path):
    path = tmp_path / "kinds.sqlite"
    with ResultStore(path) as store:
        run = store.start_run(["test"], {})
        _references(store, run, 0)
        label = {"model": MODEL, "method": "npo", "probe_suite": SUITE, "seed": 0}
        _commit(store, run, "unlearn", label, _rows("unlearned", 0, {**_forget(0.0, 0.0), ("retain", "qa"): 0.9}))
        for (name, arg, task), points in KINDS.items():
            _keyed_attack(store, run, "npo", 0, name, arg, task, points)
        attacks = [f"{name}:{arg}" for name, arg, _task in KINDS]
        failed_run = store.start_run(["test"], {"request": {"method": "rocr", "attacks": attacks, "seed": 0}})
        rocr = {"model": MODEL, "method": "rocr", "probe_suite": SUITE, "seed": 0}
        key = {"kind": "unlearn", **rocr}
        store.record_failure(failed_run, cell_id(key), key, "unlearn", rocr, ROCR_REASON)
    return path


def test_muse_fa_columns_are_the_tasks_attacks_trained_on_and_rows_are_named_by_kind(kinds_store):
    table = muse_table(_data(kinds_store))
    assert table.header[-1] == "FA (arith)" and not [h for h in table.header[:-1] if h.startswith("FA")]
    rows = {r[0]: r[1:] for r in table.rows}
    assert set(rows) >= {"Post-finetune on arith: npo", "Post-relearn on forget: npo", "Post-quantize to 4 bits: npo"}
    assert not [label for label in rows if label.startswith("Post-finetune on") and "arith" not in label]
    assert rows["Post-finetune on arith: npo"] == pytest.approx([0.5, 0.5, 0.8, 0.7])  # last epoch
    assert rows["Post-relearn on forget: npo"][:3] == pytest.approx([0.25, 0.25, 0.8])
    assert rows["Post-quantize to 4 bits: npo"][:3] == pytest.approx([0.5, 0.0, 0.9])


def test_attack_task_is_the_trained_task_only(kinds_store):
    fq = _data(kinds_store).fq
    att = fq[fq.kind == "attack"]
    tasks = {a: (t if isinstance(t, str) else None) for a, t in zip(att.attack, att.attack_task)}  # NaN: none
    assert tasks == {"finetune:arith": "arith", "relearn:forget": None, "quantize:4": None}


def test_report_arg_words_agree_with_the_attack_plugins():
    from unlearnbench.data.types import declared
    from unlearnbench.registry import ATTACKS
    from unlearnbench.report.attack_kinds import ARG_WORDS

    assert {name: declared(ATTACKS.get(name), "needs_arg") for name in ARG_WORDS} == ARG_WORDS


def test_curve_axes_are_in_each_attack_kinds_unit(kinds_store, tmp_path):
    from unlearnbench.report.frames import curve_axes

    axes = curve_axes(_data(kinds_store))
    assert axes == {
        "finetune:arith": ("attack epoch (0 = unlearned)", None),
        "relearn:forget": ("optimiser step (0 = unlearned)", None),
        "quantize:4": ("checkpoint", {0: "before", 1: "quantized"}),
    }
    write_report(kinds_store, tmp_path / "r")
    for stem in ("fq_curves", "recovery_curves"):
        svg = (tmp_path / "r" / f"{stem}.svg").read_text()
        assert "<!-- attack epoch (0 = unlearned) -->" in svg and "<!-- optimiser step (0 = unlearned) -->" in svg
        assert "<!-- quantized -->" in svg and "<!-- before -->" in svg
        assert "attack step (or epoch)" not in svg
    page = (tmp_path / "r" / "report.html").read_text()
    assert "against attack epoch" not in page and "optimiser steps (relearn" in page


def test_change_table_is_worst_checkpoint_minus_unlearned(kinds_store):
    from unlearnbench.report.tables import change_table

    table = change_table(_data(kinds_store))
    assert table.header == [
        "method",
        "attack",
        "worst checkpoint",
        "Δ forget recall",
        "Δ forget quality",
        "Δ retain recall",
        "seeds",
    ]
    rows = {(r[0], r[1]): r[2:] for r in table.rows}
    assert rows[("npo", "finetune:arith")][0] == "epoch=2"
    assert rows[("npo", "finetune:arith")][1:] == pytest.approx([0.5, -0.5, -0.1, 1])
    assert rows[("npo", "relearn:forget")][0] == "step=10"  # the worst, not the last checkpoint
    assert rows[("npo", "relearn:forget")][1:] == pytest.approx([0.5, -0.5, -0.3, 1])
    assert rows[("npo", "quantize:4")][0] == "quantized"
    assert rows[("npo", "quantize:4")][1:] == pytest.approx([0.25, -0.25, 0.0, 1])


def test_change_table_means_over_seeds(store_path):
    from unlearnbench.report.tables import change_table

    rows = {(r[0], r[1]): r[2:] for r in change_table(_data(store_path)).rows}
    # x: seed 0 fq .75 -> .5 (epoch 2), seed 1 1.0 -> .75; forget recall (bio, qa) +.25 in both; retain flat
    assert rows[("ilu [envs=x]", "finetune:arith")] == pytest.approx(["epoch=2", 0.25, -0.25, 0.0, 2])
    assert rows[("ilu [envs=y]", "finetune:arith")] == pytest.approx(["epoch=2", 0.5, -0.5, 0.0, 1])


def test_failed_and_skipped_cells_are_listed(kinds_store, tmp_path):
    from unlearnbench.report.tables import failures_table

    with ResultStore(kinds_store) as store:
        table = failures_table(store)
    assert table.header == ["kind", "status", "method", "attack", "seed", "reason"]
    assert table.rows == [
        ["unlearn", "failed", "rocr", None, "0", ROCR_REASON],
        ["attack", "skipped", "rocr", "finetune:arith", "0", "not run: its unlearn cell failed"],
        ["attack", "skipped", "rocr", "relearn:forget", "0", "not run: its unlearn cell failed"],
        ["attack", "skipped", "rocr", "quantize:4", "0", "not run: its unlearn cell failed"],
    ]
    write_report(kinds_store, tmp_path / "r")
    page = (tmp_path / "r" / "report.html").read_text()
    assert "<h2 id='failures'>Failed and skipped cells</h2>" in page and ROCR_REASON in page
    assert "1 cell(s) failed and 3 were skipped" in page


def test_no_failures_says_so(store_path, tmp_path):
    write_report(store_path, tmp_path / "r")
    page = (tmp_path / "r" / "report.html").read_text()
    assert "Failed and skipped cells" in page and "No cell failed or was skipped." in page


def _html_tables(page: str) -> list[tuple[list[str], list[list[str]]]]:
    """(header, rows of cell texts) of every <table> of ``page``."""
    from html.parser import HTMLParser

    tables = []

    class Reader(HTMLParser):
        cell = None

        def handle_starttag(self, tag, attrs):
            if tag == "table":
                tables.append(([], []))
            elif tag == "tr":
                tables[-1][1].append([])
            elif tag in ("td", "th"):
                self.cell = []

        def handle_data(self, data):
            if self.cell is not None:
                self.cell.append(data)

        def handle_endtag(self, tag):
            if tag in ("td", "th") and self.cell is not None:
                tables[-1][1][-1].append("".join(self.cell).strip())
                self.cell = None

    Reader().feed(page)
    return [(rows[0], rows[1:]) for _, rows in tables if rows]


def _empty_columns(tables) -> list[str]:
    return [h for header, rows in tables if rows for j, h in enumerate(header) if all(r[j] == "–" for r in rows)]


def test_report_html_has_no_column_empty_in_every_row(kinds_store, tmp_path):
    write_report(kinds_store, tmp_path / "r")
    tables = _html_tables((tmp_path / "r" / "report.html").read_text())
    assert _empty_columns(tables) == [] and len(tables) >= 4
    assert _empty_columns([(["a", "b"], [["x", "–"], ["y", "–"]])]) == ["b"]  # the check can fail


def test_report_html_in_headless_chromium(kinds_store, tmp_path):
    """report.html in a real browser: no console errors, every table column filled in some row, the
    failed-cells section there. Skips where chromium, chromedriver or selenium is missing."""
    from test_leaderboard_site import _driver

    write_report(kinds_store, tmp_path / "r")
    driver = _driver(tmp_path)
    from selenium.webdriver.common.by import By

    try:
        driver.get((tmp_path / "r" / "report.html").as_uri())
        assert driver.title == "unlearnbench report"
        assert [e for e in driver.get_log("browser") if e["level"] in ("SEVERE", "ERROR")] == []
        tables = []
        for table in driver.find_elements(By.CSS_SELECTOR, "table.tbl"):
            rows = table.find_elements(By.TAG_NAME, "tr")
            header = [th.text for th in rows[0].find_elements(By.TAG_NAME, "th")]
            tables.append((header, [[td.text for td in r.find_elements(By.TAG_NAME, "td")] for r in rows[1:]]))
        assert len(tables) >= 4 and _empty_columns(tables) == []
        section = driver.find_element(By.ID, "failures")
        assert section.text == "Failed and skipped cells"
        assert ROCR_REASON in driver.find_element(By.TAG_NAME, "body").text
        assert all(img.get_property("naturalWidth") > 0 for img in driver.find_elements(By.TAG_NAME, "img"))
    finally:
        driver.quit()


def test_leaked_items_are_right_for_the_model_wrong_for_the_oracle_with_their_text(tmp_path):
    from unlearnbench.report.items import leaked_items_table
    from unlearnbench.store import TextRow

    path = tmp_path / "items.sqlite"
    label = {"model": MODEL, "probe_suite": SUITE, "seed": 0}
    with ResultStore(path) as store:
        run = store.start_run([], {})

        def cell(kind, method, checkpoint, step, right: dict, texts: dict):
            rows = [ScoreRow(checkpoint, step, "forget", f, i, "correct", v) for (f, i), v in right.items()]
            rows += [TextRow(checkpoint, step, "forget", f, i, t) for (f, i), t in texts.items()]
            _commit(store, run, kind, {**label, "method": method}, rows)

        everything = {("qa", "a"): 1.0, ("qa", "b"): 1.0, ("bio", "c"): 1.0}
        cell("base", "base", "base", -1, everything, {})
        cell("oracle", "oracle", "oracle", -1, {("qa", "a"): 0.0, ("qa", "b"): 1.0, ("bio", "c"): 0.0},
             {("qa", "a"): "Paris", ("qa", "b"): "Oslo"})  # fmt: skip
        cell("unlearn", "npo", "unlearned", 0, {("qa", "a"): 1.0, ("qa", "b"): 1.0, ("bio", "c"): 0.0},
             {("qa", "a"): "Lima", ("qa", "b"): "Oslo", ("bio", "c"): "no idea"})  # fmt: skip
        data = collect(store)
        table = leaked_items_table(store, data)
    # qa/a: the model is right, the oracle wrong -> leaked; qa/b: both right; bio/c: the model is wrong
    assert [r[3:] for r in table.rows] == [["qa", "a", "Lima", "Paris"]]
    assert table.rows[0][:3] == ["npo", "no attack", "unlearned"]


def test_leaked_items_without_text_have_no_text_columns(store_path):
    from unlearnbench.report.items import leaked_items_table

    with ResultStore(store_path) as store:
        table = leaked_items_table(store, collect(store))
    assert table.rows and len(table.header) == 5 and "--generations" in table.caption


def test_utility_companion_frames_and_figures(store_path, tmp_path):
    from unlearnbench.report.frames import utility_frame

    data = _data(store_path)
    frame = utility_frame(data)
    unl = data.fq[data.fq.kind == "unlearn"]
    for r in frame[frame.attack == "no attack"].itertuples():
        mine = unl[unl.method == r.method]
        assert r.fq == pytest.approx(mine.fq.mean()) and r.retain == pytest.approx(mine.retain.mean())
        assert r.n == len(mine)
    retain = heatmap_frame(data, "last", "retain")
    assert set(retain.attack) == set(frame.attack) and retain["mean"].between(0, 1).all()
    files = write_report(store_path, tmp_path / "r")
    assert {"retain_heatmap.png", "fq_vs_utility.png", "fq_vs_utility.svg"} <= set(files)
    page = (tmp_path / "r" / "report.html").read_text()
    assert "Utility after attacks" in page and "Forget quality against utility" in page


def test_headline_table_puts_seed_spread_item_interval_n_and_utility_side_by_side(store_path):
    from unlearnbench.report.tables import headline_table

    data = _data(store_path)
    table = headline_table(data)
    assert table.header[2:8] == ["forget quality", "± seeds", "95% CI (items)", "n items", "retain recall", "FA"]
    assert any(r[-1] > 1 for r in table.rows)  # this store has two seeds
    unl = data.fq[data.fq.kind == "unlearn"]
    for row in (r for r in table.rows if r[1] == "no attack"):
        mine = unl[unl.method == row[0]]
        assert row[2] == pytest.approx(mine.fq.mean())
        if len(mine) > 1:
            assert row[3] == pytest.approx(mine.fq.std())
        lo, hi = (float(x) for x in row[4].split("–"))
        assert lo <= row[2] + 0.01 and hi >= row[2] - 0.01
        assert row[5] == "/".join(str(n) for n in sorted(set(mine.n_items.astype(int))))
        assert row[6] == pytest.approx(mine.retain.mean()) and 0 <= row[7] <= 1
