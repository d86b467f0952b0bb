"""Leaderboard format 2 (issue 10, items 4 and 6): matrix v2, control cells in bundles and their
verification, the under-attack aggregates and the worst-case headline, the held-out grid.

Bundles are the synthetic ones of tests/helpers_leaderboard.py (no model is run). Their numbers, by
hand: base forget recall 1 (bio, qa), oracle 0; seed 0 unlearned bio 0.25, qa 0.0 (seed 1: qa 0.5);
the attack raises bio by 0.25 per epoch (0.25, 0.5, 0.75) and leaves qa; the oracle control's forget
recall is (bio, qa) = (0, 0), (0, 0.25), (0.5, 0.25) at epochs 0, 1, 2.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from helpers_leaderboard import (
    ATTACK,
    ATTACK_FA,
    CONTROL_FORGET,
    HELD_OUT_FILE,
    RETAIN_BIO,
    TARGET,
    empty_columns,
    html_tables,
    make_bundle,
    write_matrix,
)
from helpers_leaderboard import read_manifest as _manifest
from helpers_leaderboard import refusal_reasons as _reasons
from helpers_leaderboard import save_manifest as _save

from unlearnbench.errors import UnlearnbenchError
from unlearnbench.leaderboard import bundle as B
from unlearnbench.leaderboard.heldout import held_out_sha256, load_held_out
from unlearnbench.leaderboard.verify import check_schema, verify
from unlearnbench.spec import canonical_spec
from unlearnbench.store import cell_id

REPO = Path(__file__).resolve().parents[1]


def _example_entry() -> dict:
    return load_held_out(HELD_OUT_FILE).as_matrix_entry()


@pytest.fixture()
def tasks(tmp_path, monkeypatch):
    folder = tmp_path / "tasks"
    write_matrix(folder, held_out=_example_entry())
    monkeypatch.setenv("UNLEARNBENCH_TASKS", str(folder))
    return folder


@pytest.fixture()
def full_tasks(tasks):
    """The test matrix beside the real benchmark specs (what planning a run reads)."""
    for sub in (REPO / "tasks").iterdir():
        if sub.is_dir() and sub.name != "leaderboard":
            (tasks / sub.name).symlink_to(sub)
    return tasks


@pytest.fixture()
def good(tmp_path, tasks):
    out = tmp_path / "bundle"
    make_bundle(tmp_path, out)
    return out


def _cell(m, kind, seed=0):
    return next(c for c in m["cells"] if c["kind"] == kind and c["seed"] == seed)


def _rekey(folder, m, cell, key):
    """Give ``cell`` a new key, the id that key hashes to, and its rows under that id, with the
    scores file and every hash fixed: a careful forger's bundle, consistent but for what is tested."""
    scores = B.read_scores(folder / B.SCORES)
    old = cell["cell_id"]
    cell["key"], cell["cell_id"] = key, cell_id(key)
    scores[cell["cell_id"]] = scores.pop(old)
    flat = [(c["cell_id"], *r) for c in m["cells"] for r in scores[c["cell_id"]]]
    m["scores_file"]["sha256"] = B.write_scores(folder / B.SCORES, flat)
    _save(folder, m)


# -- matrix v2 -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["toy-micro", "toy-small"])
def test_v2_matrices_load_and_every_spec_validates(name, monkeypatch):
    from unlearnbench.leaderboard.matrix import load_matrix
    from unlearnbench.leaderboard.submit import matrix_requests
    from unlearnbench.runner import plan

    monkeypatch.delenv("UNLEARNBENCH_TASKS", raising=False)
    m = load_matrix(name)
    assert m.name == name and m.controls == ("oracle",)
    assert m.benchmark == f"toy,size={name.split('-')[1]}" and 1 <= len(m.seeds) <= 2
    assert m.attacks == (
        "finetune:retain,eval_every=10,steps=30",
        "finetune:syntax,eval_every=10,steps=30",
        "finetune:arith,eval_every=10,steps=30",
        "relearn:forget,eval_every=10,steps=30",
    )
    assert m.tolerance["recovery"] == 0.02  # read from the YAML (both: below one probe item, measured)
    for request in matrix_requests("npo", m):
        p = plan(request)  # every spec resolves and validates; nothing is loaded
        assert [a.label() for a, _ in p.attacks] == list(m.attacks) and p.controls == ("oracle",)
        assert {a.config.steps for a, _ in p.attacks} == {30} and {a.config.eval_every for a, _ in p.attacks} == {10}
    if name == "toy-micro":
        assert m.held_out["count"] == 2 and len(m.held_out["sha256"]) == 64


@pytest.mark.parametrize(
    "edit, message",
    [
        ({"controls": ["base"]}, "'controls' must include oracle"),
        ({"controls": ["oracle", "nope"]}, "'controls' must be a list of oracle, base"),
        ({"held_out": {"sha256": "xyz", "count": 1}}, "'held_out' must be {sha256"),
        ({"held_out": {"sha256": "a" * 64, "count": 0}}, "'held_out' must be {sha256"),
    ],
)
def test_bad_matrix_controls_and_held_out_are_one_line_errors(tasks, edit, message):
    from unlearnbench.leaderboard.matrix import load_matrix

    path = tasks / "leaderboard" / "test-mini.yaml"
    doc = yaml.safe_load(path.read_text())
    path.write_text(yaml.safe_dump({**doc, **edit}))
    with pytest.raises(UnlearnbenchError, match=message.replace("{", r"\{")) as e:
        load_matrix("test-mini")
    assert "\n" not in str(e.value)


# -- control cells in bundles ------------------------------------------------------------------------


def test_missing_control_cell_is_refused(good):
    m = _manifest(good)
    control = _cell(m, "control", seed=1)
    m["cells"].remove(control)
    m["scores_file"]["rows"] -= control["n_scores"]
    scores = B.read_scores(good / B.SCORES)
    flat = [(c["cell_id"], *r) for c in m["cells"] for r in scores[c["cell_id"]]]
    m["scores_file"]["sha256"] = B.write_scores(good / B.SCORES, flat)
    _save(good, m)
    reasons = _reasons(good)
    assert f"incomplete: no seed 1 control oracle {ATTACK} cell" in reasons
    # and the attack cell's under-attack numbers, which that control gave, no longer match
    assert any(r.startswith("aggregates:") and "forget_quality_attacked_oracle" in r for r in reasons), reasons


def test_control_cell_on_other_weights_is_refused(good):
    m = _manifest(good)
    control = _cell(m, "control")
    key = json.loads(json.dumps(control["key"]))
    key["model"]["sha256"] = TARGET  # the attack ran on the target, not on the oracle
    _rekey(good, m, control, key)
    assert _reasons(good) == [
        f"provenance: cell {control['cell_id']}: oracle control weights sha256 differs from models.oracle_sha256"
    ]


def test_control_cell_with_another_attack_config_is_refused(good):
    m = _manifest(good)
    control = _cell(m, "control")
    key = json.loads(json.dumps(control["key"]))
    key["attack"]["config"]["lr"] = 0.1  # a stronger attack on the oracle
    _rekey(good, m, control, key)
    reasons = _reasons(good)
    assert reasons == [
        f"provenance: cell {control['cell_id']}: its attack or task (name, version, config) differs from seed 0's "
        f"attack cell {_cell(m, 'attack')['cell_id']}"
    ]


def test_control_of_an_attack_outside_the_matrix_and_a_duplicate_are_refused(good):
    original = _manifest(good)
    m = _manifest(good)
    control = _cell(m, "control")
    control["attack"] = "finetune:arith,epochs=9"
    _save(good, m)
    reasons = _reasons(good)
    assert "matrix: cell seed 0 control oracle finetune:arith,epochs=9 is not in matrix 'test-mini'" in reasons
    assert f"incomplete: no seed 0 control oracle {ATTACK} cell" in reasons
    assert any("its key has epochs=2, the spec 'finetune:arith,epochs=9' says 9" in r for r in reasons), reasons
    m = original
    m["cells"].append(dict(_cell(m, "control", seed=1), seed=0))
    _save(good, m)
    assert f"matrix: 2 cells for seed 0 control oracle {ATTACK} (expected one)" in _reasons(good)


def test_control_with_a_method_or_wrong_kind_is_refused(good):
    m = _manifest(good)
    control = _cell(m, "control")
    key = json.loads(json.dumps(control["key"]))
    key["method"] = _cell(m, "unlearn")["key"]["method"]
    _rekey(good, m, control, key)
    reasons = _reasons(good)
    assert any("a control cell's key holds a method" in r for r in reasons), reasons
    m = _manifest(good)
    _cell(m, "control")["control"] = "base"
    _save(good, m)
    reasons = _reasons(good)
    assert any("its control 'base' is not its key's 'oracle'" in r for r in reasons), reasons


def test_attack_cell_labelled_with_another_spec_is_refused(good):
    m = _manifest(good)
    attack = _cell(m, "attack")
    key = json.loads(json.dumps(attack["key"]))
    key["attack"]["config"]["epochs"] = 1  # ran one epoch, labelled as the matrix's two
    twin = _cell(m, "control")
    ckey = json.loads(json.dumps(twin["key"]))
    ckey["attack"]["config"]["epochs"] = 1
    _rekey(good, m, attack, key)
    _rekey(good, m, twin, ckey)
    reasons = _reasons(good)
    assert f"provenance: cell {attack['cell_id']}: its key has epochs=1, the spec '{ATTACK}' says 2" in reasons


def test_format_1_bundle_is_refused_in_one_line_naming_the_format(good):
    m = _manifest(good)
    m["schema"] = "unlearnbench.submission/1"
    _save(good, m)
    reasons = _reasons(good)
    assert len(reasons) == 1 and reasons[0].startswith("format: a format 1 bundle (unlearnbench.submission/1);")
    assert "format 2 only" in reasons[0]
    m["schema"] = "unlearnbench.submission/3"
    _save(good, m)
    assert any(r.startswith("schema: schema:") for r in _reasons(good))


def test_schema_requires_controls_and_the_control_field(good):
    m = _manifest(good)
    del m["matrix"]["controls"]
    del m["cells"][2]["control"]
    m["cells"][4]["aggregates"][1]["recovery"] = {"mean": 0.1}
    errors = check_schema(m)
    assert any("'controls' is a required property" in e for e in errors)
    assert any("'control' is a required property" in e for e in errors)
    assert any("'per_form' is a required property" in e for e in errors)


# -- the under-attack aggregates and the headline -------------------------------------------------------


def test_attacked_oracle_and_recovery_aggregates_are_the_hand_computed_numbers(good):
    m = _manifest(good)
    assert CONTROL_FORGET == ((0.0, 0.0), (0.0, 0.25), (0.5, 0.25))
    # seed 0: u_t bio 0.25/0.5/0.75, qa 0; o_t bio 0/0/0.5, qa 0/0.25/0.25; b 1, o_0 0, u_0 bio 0.25 qa 0
    want = {
        0: [
            ({"bio": 0.75, "qa": 1.0}, 0.875, {"bio": 0.0, "qa": 0.0}, 0.0),
            ({"bio": 0.5, "qa": 0.75}, 0.625, {"bio": 0.333333, "qa": 0.0}, 0.166667),
            ({"bio": 0.75, "qa": 0.75}, 0.75, {"bio": 0.666667, "qa": 0.0}, 0.333333),
        ],
        # seed 1: u_0 qa 0.5 (0.125 + 0.25 of 4 items, rounded to 2 items)
        1: [
            ({"bio": 0.75, "qa": 0.5}, 0.625, {"bio": 0.0, "qa": 0.0}, 0.0),
            ({"bio": 0.5, "qa": 0.75}, 0.625, {"bio": 0.333333, "qa": 0.0}, 0.166667),
            ({"bio": 0.75, "qa": 0.75}, 0.75, {"bio": 0.666667, "qa": 0.0}, 0.333333),
        ],
    }
    for seed, rows in want.items():
        aggs = _cell(m, "attack", seed)["aggregates"]
        assert [a["step"] for a in aggs] == [0, 1, 2]
        for agg, (fq_forms, fq_mean, rec_forms, rec_mean) in zip(aggs, rows):
            # bio and qa have 16 items each: the headline's item weights equal the plain mean's
            assert agg["forget_quality_attacked_oracle"] == {
                "mean": fq_mean,
                "mean_of_forms": fq_mean,
                "per_form": fq_forms,
            }
            assert agg["recovery"] == {"mean": rec_mean, "mean_of_forms": rec_mean, "per_form": rec_forms}
            assert agg["forget_quality"]["forms"] == {"bio": 16, "qa": 16} and agg["forget_quality"]["n"] == 32
    for kind in ("base", "oracle", "unlearn", "control"):  # only attack cells carry them
        assert all("recovery" not in a for a in _cell(m, kind)["aggregates"])


def test_tampered_attacked_oracle_aggregate_is_refused(good):
    m = _manifest(good)
    attack = _cell(m, "attack")
    attack["aggregates"][1]["forget_quality_attacked_oracle"]["mean"] = 0.9
    attack["aggregates"][2]["recovery"]["per_form"]["bio"] = 0.0
    _save(good, m)
    reasons = _reasons(good)
    assert len(reasons) == 1 and reasons[0].startswith(f"aggregates: cell {attack['cell_id']}")
    assert "forget_quality_attacked_oracle mean at epoch=1: 0.9 vs 0.625 (+1 more)" in reasons[0]


def test_worst_case_headline_picks_the_lowest_attacked_oracle_step_not_the_last(good):
    m = _manifest(good)
    head = B.attack_headline(_cell(m, "attack")["aggregates"])
    assert head["worst"] == {"value": 0.625, "step": 1, "checkpoint": "epoch=1"}
    assert head["last"] == {
        "step": 2,
        "checkpoint": "epoch=2",
        "forget_quality_attacked_oracle": 0.75,
        "forget_quality": 0.625,
        "recovery": 0.333333,
    }
    # against the unattacked oracle the worst step is another one (2): the headline is not that
    assert head["worst_forget_quality"]["step"] == 2 and head["max_recovery"]["step"] == 2


def _agg(step, fq_ao):
    return {"checkpoint": f"step={step}", "step": step, "forget_quality_attacked_oracle": {"mean": fq_ao}}


def test_worst_case_skips_step_0_and_missing_values_and_takes_the_earliest_tie():
    aggs = [_agg(0, 0.1), _agg(10, 0.5), _agg(20, None), _agg(30, 0.4), _agg(40, 0.4), _agg(50, 0.6)]
    assert B.curve_extreme(aggs, "forget_quality_attacked_oracle") == {
        "value": 0.4,
        "step": 30,
        "checkpoint": "step=30",
    }
    assert B.curve_extreme(aggs, "forget_quality_attacked_oracle", lowest=False)["step"] == 50
    assert B.curve_extreme([_agg(0, 0.1), _agg(10, None)], "forget_quality_attacked_oracle") is None


def test_site_shows_the_worst_case_with_its_step_the_last_checkpoint_and_the_controls(tmp_path, tasks):
    from unlearnbench.leaderboard.site import build, summarise

    subs = tmp_path / "subs"
    m = make_bundle(tmp_path, subs / "npo")
    s = summarise(m, {})
    assert s["worst_case"][ATTACK] == (0.625, 0.0, 2) and s["worst_steps"][ATTACK] == [1, 1]
    assert s["last"][ATTACK] == (0.75, 0.0, 2) and s["worst"] == 0.625 and s["n_controls"] == 2
    build(subs, tmp_path / "site")
    index = (tmp_path / "site" / "index.html").read_text()
    assert "worst FQ-AO finetune:arith" in index and "last FQ-AO finetune:arith" in index
    assert "0.62 ± 0.00 <span" in index and "step 1/1" in index and "0.75 ± 0.00" in index
    assert "0.62 ± 0.00 @1/1" in index  # the heatmap cell
    detail = (tmp_path / "site" / "submission-test-mini-npo.html").read_text()
    assert "control cells</th>" in detail and "present: 2 (oracle;" in detail
    assert "<h2>Under attack</h2>" in detail and '0.62 <span class="note">step 1</span>' in detail


# -- the site: legend, utility under attack, results first, a curve per cell (issue 13, item 9) --------------


def test_site_utility_under_attack_is_at_the_worst_checkpoint_not_after_unlearning_nor_last(tmp_path, tasks):
    """Retain recall and FA under attack come from the attack cell's aggregates at the worst case's
    step (epoch 1 in both seeds): retain bio 0.75, qa 1 -> 0.875, arith 0.25; after unlearning
    they are 1.0 and 0.5, at the last checkpoint 0.75 and 0.75."""
    from unlearnbench.leaderboard.site import build, summarise

    assert (RETAIN_BIO, ATTACK_FA) == ((1.0, 0.75, 0.5), (0.5, 0.25, 0.75))
    subs = tmp_path / "subs"
    m = make_bundle(tmp_path, subs / "npo")
    s = summarise(m, {"utility_split": "retain", "utility_forms": ["bio", "qa"]})
    assert s["worst_steps"][ATTACK] == [1, 1]
    assert s["retain"] == (1.0, 0.0, 2) and s["fa"] == (0.5, 0.0, 2)
    assert s["retain_at_worst"][ATTACK] == (0.875, 0.0, 2) and s["fa_at_worst"][ATTACK] == (0.25, 0.0, 2)
    assert s["fa_tasks"][ATTACK] == ["arith"] and s["fa_unlearned_same_tasks"][ATTACK] == (0.5, 0.0, 2)
    attack = _cell(m, "attack")
    at = B.at_point(attack["aggregates"], B.attack_headline(attack["aggregates"])["worst"])
    assert at["checkpoint"] == "epoch=1" and B.utility(at, "retain", ["bio", "qa"])["recall"] == 0.875
    assert B.utility(attack["aggregates"][-1], "retain", ["bio", "qa"]) == {
        "recall": 0.75,
        "fa": 0.75,
        "fa_tasks": ["arith"],
    }
    build(subs, tmp_path / "site")
    index = (tmp_path / "site" / "index.html").read_text()
    assert 'id="utility-test-mini"' in index and "retain recall @worst finetune:arith</th>" in index
    assert "FA arith after unlearning</th>" in index and "FA arith @worst finetune:arith</th>" in index
    assert '<td data-v="0.875000">0.88 ± 0.00</td>' in index and '<td data-v="0.250000">0.25 ± 0.00</td>' in index
    assert "<b>worst case's checkpoint</b> of each seed" in index  # the page says which checkpoint
    detail = (tmp_path / "site" / "submission-test-mini-npo.html").read_text()
    assert '<td data-v="0.875000">0.88 ± 0.00</td>' in detail  # the headline table
    assert '0.25 ± 0.00 <span class="note">on arith; after unlearning 0.50 ± 0.00</span>' in detail
    assert '<td>0.88</td><td>0.25 <span class="note">on arith; after unlearning 0.50</span></td>' in detail


def test_site_without_a_utility_task_under_attack_has_no_fa_column_and_says_so(tmp_path, tasks):
    """An attack whose checkpoints score no utility task (here: its task renamed) gets no FA column
    on either page, and the note names it; retain recall under attack is still there."""
    from unlearnbench.leaderboard.site import detail_page, matrix_section, summarise
    from unlearnbench.leaderboard.verify import Verdict

    m = make_bundle(tmp_path, tmp_path / "subs" / "npo")
    for c in m["cells"]:
        if c["kind"] == "attack":
            for a in c["aggregates"]:
                a["task_accuracy"] = {"other": a["task_accuracy"]["arith"]}
    s = summarise(m, {})
    assert s["fa_tasks"][ATTACK] == [] and s["fa_at_worst"][ATTACK][2] == 0
    index = matrix_section("test-mini", [("p.html", m, s)], "d", {})
    assert "@worst finetune:arith</th>" in index and "FA arith" not in index
    assert "finetune:arith scores no utility task after the attack (no FA column)" in index
    detail = detail_page(m, Verdict("x", manifest=m), s)
    assert "FA @worst" not in detail and "retain recall @worst</th>" in detail
    assert empty_columns(index) == [] and empty_columns(detail) == []


def test_site_has_a_legend_no_empty_column_and_results_before_provenance(tmp_path, tasks):
    from unlearnbench.leaderboard.site import _colour, build

    subs = tmp_path / "subs"
    for method, strength in (("npo", 0.25), ("graddiff", 0.5), ("rmu", 0.0)):
        make_bundle(tmp_path, subs / method, method=method, strength=strength)
    build(subs, tmp_path / "site")
    index = (tmp_path / "site" / "index.html").read_text()
    legend = index[index.index('<svg xmlns="http://www.w3.org/2000/svg" class="legend"') :]
    legend = legend[: legend.index("</svg>")]
    assert 'aria-label="colour legend of the heatmap"' in legend
    assert f'fill="{_colour(0.01)}"' in legend and f'fill="{_colour(0.99)}"' in legend  # the cells' own scale
    assert f'fill="{_colour(float("nan"))}"' in legend and "n/a: no number" in legend
    assert all(f">{t}</text>" in legend for t in ("0", "0.25", "0.5", "0.75", "1"))
    assert "1 = like the (attacked) oracle" in legend
    pages = sorted((tmp_path / "site").glob("*.html"))
    assert len(pages) == 4
    for page in pages:
        assert empty_columns(page.read_text()) == [], page.name
    detail = (tmp_path / "site" / "submission-test-mini-npo.html").read_text()
    order = [detail.index(h) for h in ("<h2>Headline</h2>", "<h2>Curves</h2>", "<h2>Cells</h2>", "<h2>Provenance</h2>")]
    assert order == sorted(order) and detail.index('<section id="results">') < detail.index('<section id="provenance">')
    assert detail.index("<h2>Environment</h2>") > detail.index("<h2>Cells</h2>")


def test_committed_site_has_no_empty_column_a_legend_and_a_curve_per_attack_cell():
    """The committed pages (leaderboard/site, rebuilt by `leaderboard build`), read as they are."""
    site = REPO / "leaderboard" / "site"
    pages = sorted(site.glob("submission-*.html"))
    assert pages, "no committed site"
    index = (site / "index.html").read_text()
    assert index.count('class="legend"') == index.count('class="heatmap"') >= 1
    assert empty_columns(index) == []
    for page in pages:
        text = page.read_text()
        assert empty_columns(text) == [], page.name
        attack_rows = [r for tid, _h, body in html_tables(text) if tid == "cells" for r in body if r[1] == "attack"]
        assert text.count('<svg xmlns="http://www.w3.org/2000/svg" class="curve"') == len(attack_rows) > 0, page.name
        assert text.index('<section id="results">') < text.index('<section id="provenance">'), page.name


def test_a_curve_per_attack_cell_with_its_oracle_control_and_labelled_axes(tmp_path, tasks):
    from unlearnbench.leaderboard.curve import CONTROL, METHOD, curve_svg
    from unlearnbench.leaderboard.site import build

    subs = tmp_path / "subs"
    m = make_bundle(tmp_path, subs / "npo")
    build(subs, tmp_path / "site")
    detail = (tmp_path / "site" / "submission-test-mini-npo.html").read_text()
    attacks = [c for c in m["cells"] if c["kind"] == "attack"]
    svgs = detail.split('<svg xmlns="http://www.w3.org/2000/svg" class="curve"')[1:]
    assert len(attacks) == len(svgs) == 2
    for c, svg in zip(sorted(attacks, key=lambda c: c["seed"]), svgs):
        svg = svg[: svg.index("</svg>")]
        assert f'aria-label="curve: {ATTACK} seed {c["seed"]}"' in svg
        assert svg.count('class="xlabel"') == 2 and svg.count(">epoch</text>") == 2  # finetune by epochs
        assert ">forget quality (1 = like the oracle)</text>" in svg and ">retain recall (bio/qa)</text>" in svg
        assert svg.count(f'stroke="{METHOD}"') >= 3 and svg.count(f'stroke="{CONTROL}"') >= 2  # lines + legend
        assert ">oracle control, FQ (vs oracle)</text>" in svg
        # seed 0 FQ-AO 0.875, 0.625, 0.75: the worst (0.625, epoch 1) is ringed, every point has a tip
        if c["seed"] == 0:
            assert "attacked model, FQ-AO (vs attacked oracle) at epoch 1: 0.62" in svg
            assert "worst case over the curve: FQ-AO 0.62 at 1" in svg
            assert "oracle control, retain recall at epoch 2: 1.00" in svg
            assert "attacked model, retain recall at epoch 2: 0.75" in svg
    alone = curve_svg(attacks[0], None, "retain", ["bio", "qa"])
    assert "oracle control" not in alone and CONTROL not in alone and alone.count("<polyline") == 3


@pytest.mark.parametrize(
    "attack, checkpoints, label, ticks",
    [
        ("finetune:arith,epochs=2", [("epoch=0", 0), ("epoch=1", 1), ("epoch=2", 2)], "epoch", ["0", "1", "2"]),
        (
            "relearn:forget,steps=30",
            [("step=0", 0), ("step=10", 10), ("step=30", 30)],
            "optimiser step",
            ["0", "10", "30"],
        ),
        ("quantize:4", [("before", 0), ("quantized", 1)], "quantization", ["before", "after"]),
        ("other:x", [("a", 0), ("b", 5)], "checkpoint", ["a", "b"]),
    ],
)
def test_curve_axis_unit_follows_the_attack(attack, checkpoints, label, ticks):
    from unlearnbench.leaderboard.curve import x_axis

    unit, placed = x_axis(attack, [{"checkpoint": c, "step": s} for c, s in checkpoints])
    assert unit == label and [t for _p, t in placed] == ticks
    if label in ("epoch", "optimiser step"):  # placed at the step, not evenly
        assert [p for p, _t in placed] == [float(s) for _c, s in checkpoints]


def test_curve_breaks_its_line_at_a_missing_value():
    from unlearnbench.leaderboard.curve import curve_svg

    aggs = [
        {
            "checkpoint": f"step={s}",
            "step": s,
            "recall": {"retain/bio": 1.0},
            "forget_quality_attacked_oracle": {"mean": v},
        }
        for s, v in ((0, 0.9), (10, None), (20, 0.5), (30, 0.6))
    ]
    svg = curve_svg({"attack": "relearn:forget", "seed": 0, "aggregates": aggs}, None, "retain", ["bio"])
    fq_ao = [line for line in svg.splitlines() if line.startswith("<polyline") and "stroke-dasharray" not in line]
    assert len(fq_ao) == 3  # FQ-AO in two runs (0 | 20-30), retain recall in one
    assert fq_ao[0].count(",") == 1 and fq_ao[1].count(",") == 2
    assert "worst case over the curve: FQ-AO 0.50 at 20" in svg


# -- verify --rerun compares the control cells -----------------------------------------------------------


def test_rerun_compares_control_cells_within_tolerance(good, monkeypatch):
    """The re-run is faked (the bundle's own cells, the control's recall moved by 0.5): the control
    cell is compared and refused, the attack and unlearn cells pass."""
    from unlearnbench.leaderboard import rerun

    m = _manifest(good)

    def fake_run_seed(manifest, matrix, seed, attacks, progress):
        assert attacks == [ATTACK] and list(matrix.controls) == ["oracle"]
        entries = [c for c in manifest["cells"] if c["seed"] == seed]
        measured = {c["cell_id"]: json.loads(json.dumps(c["aggregates"])) for c in entries}
        control = next(c for c in entries if c["kind"] == "control")
        measured[control["cell_id"]][1]["recall"]["forget/bio"] += 0.5
        return entries, measured

    monkeypatch.setattr(rerun, "_run_seed", fake_run_seed)
    v = verify(good, rerun=1)
    seed = next(c["seed"] for c in rerun.sample_cells(m, 1))
    assert v.reasons == [
        f"rerun seed {seed} control oracle {ATTACK} cell: outside the matrix tolerance: "
        f"recall forget/bio at epoch=1: 0.0 vs 0.5"
    ]
    assert any(
        n.startswith(f"rerun seed {seed} attack {ATTACK} cell: re-run here, same cell id, within") for n in v.notes
    )
    assert any(n.startswith(f"rerun seed {seed} unlearn cell: re-run here") for n in v.notes)


# -- the held-out grid ------------------------------------------------------------------------------------


def test_held_out_hash_is_canonical_and_salted():
    held = load_held_out(HELD_OUT_FILE)
    assert held.attacks == ("relearn:forget,eval_every=2,steps=2",) and held.salt
    assert held_out_sha256(["relearn:forget,steps=2,eval_every=2"], held.salt) == held.sha256
    assert held_out_sha256(["relearn:forget,steps=2,eval_every=2"], "") != held.sha256
    assert held_out_sha256(["a:x", "b:y"]) != held_out_sha256(["b:y", "a:x"])


def test_held_out_hash_cli_prints_the_matrix_entry(capsys):
    from unlearnbench.cli import main

    assert main(["leaderboard", "held-out-hash", str(HELD_OUT_FILE)]) == 0
    out = capsys.readouterr().out
    entry = yaml.safe_load(out)["held_out"]
    assert entry == _example_entry() and entry["count"] == 1


def test_held_out_mismatch_is_refused_with_exit_2(good, tmp_path, capsys):
    from unlearnbench.cli import main

    wrong = tmp_path / "held.yaml"
    doc = yaml.safe_load(HELD_OUT_FILE.read_text())
    wrong.write_text(yaml.safe_dump({**doc, "attacks": ["finetune:arith,steps=4,eval_every=2"]}))
    assert main(["leaderboard", "verify", str(good), "--rerun", "1", "--held-out", str(wrong)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith(f"unlearnbench: error: --held-out {wrong}: its hash ")
    assert "is not the held-out grid matrix 'test-mini' commits to" in err
    wrong.write_text(yaml.safe_dump({**doc, "salt": "guessed"}))  # the right attacks, the wrong salt
    assert main(["leaderboard", "verify", str(good), "--held-out", str(wrong)]) == 2
    capsys.readouterr()
    assert main(["leaderboard", "verify", str(good), "--held-out", str(tmp_path / "none.yaml")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_held_out_file_for_a_matrix_without_a_grid_is_exit_2(tmp_path, monkeypatch, capsys):
    from unlearnbench.cli import main

    folder = tmp_path / "tasks"
    write_matrix(folder)  # no held_out
    monkeypatch.setenv("UNLEARNBENCH_TASKS", str(folder))
    make_bundle(tmp_path, tmp_path / "b")
    assert main(["leaderboard", "verify", str(tmp_path / "b"), "--held-out", str(HELD_OUT_FILE)]) == 2
    assert "matrix 'test-mini' declares no held-out grid" in capsys.readouterr().err


def test_held_out_runs_every_seed_and_is_reported_beside_the_headline(good, monkeypatch):
    """The re-run is faked: the held-out attack's curve on each seed is the public attack's."""
    from unlearnbench.leaderboard import rerun

    calls = []

    def fake_run_seed(manifest, matrix, seed, attacks, progress):
        calls.append((seed, attacks))
        entries = [c for c in manifest["cells"] if c["seed"] == seed]
        held = dict(_cell(manifest, "attack", seed), attack=attacks[-1], cell_id="h" * 20)
        measured = {c["cell_id"]: c["aggregates"] for c in entries + [held]}
        return entries + [held], measured

    monkeypatch.setattr(rerun, "_run_seed", fake_run_seed)
    v = verify(good, held_out=HELD_OUT_FILE)
    assert v.accepted, v.reasons
    held = "relearn:forget,eval_every=2,steps=2"
    assert calls == [(0, [held]), (1, [held])]  # every seed; no sampled cell with --rerun 0
    r = v.held_out["attacks"][held]
    assert r["worst"] == {"mean": 0.625, "std": 0.0, "n": 2} and r["worst_steps"] == {"0": 1, "1": 1}
    assert v.held_out["bundle"]["worst"] == 0.625
    assert any(n.startswith(f"HELD OUT {held}: worst forget quality vs attacked oracle 0.62 ± 0.00") for n in v.notes)
    assert any(n.startswith("HELD OUT vs bundle:") for n in v.notes)
    assert v.as_json()["held_out"]["sha256"] == _example_entry()["sha256"]


def test_submit_never_plans_held_out_attacks(tmp_path, full_tasks, monkeypatch):
    """submit's runs hold the matrix's public attacks and controls only, even when the held-out
    file sits beside it; a micro submission is stopped at its first run."""
    import unlearnbench.runner as runner
    from unlearnbench.leaderboard.matrix import load_matrix
    from unlearnbench.leaderboard.submit import submit

    held = set(load_held_out(HELD_OUT_FILE).attacks)
    planned, ran = [], []
    real_plan = runner.plan

    def spy_plan(request, *a, **k):
        planned.append(request)
        return real_plan(request, *a, **k)

    class Stop(Exception):
        pass

    def spy_run(request, *a, **k):
        ran.append(request)
        raise Stop

    monkeypatch.setattr(runner, "plan", spy_plan)
    monkeypatch.setattr(runner, "run", spy_run)
    matrix = load_matrix("test-mini")
    assert matrix.held_out == _example_entry()
    with pytest.raises(Stop):
        submit("npo", matrix, None, tmp_path / "out")
    assert [r.seed for r in planned] == [0, 1] and len(ran) == 1
    for r in planned + ran:
        assert r.attacks == [ATTACK] and r.controls == ["oracle"]
        assert not held & {canonical_spec(a) for a in r.attacks}


def test_committed_matrix_held_out_is_not_in_the_repository(monkeypatch):
    """The toy-micro commitment's file is not committed anywhere under tasks/ or tests/."""
    from unlearnbench.leaderboard.heldout import HeldOut
    from unlearnbench.leaderboard.matrix import load_matrix

    monkeypatch.delenv("UNLEARNBENCH_TASKS", raising=False)
    want = load_matrix("toy-micro").held_out["sha256"]
    for path in list((REPO / "tasks").rglob("*.yaml")) + list((REPO / "tests").rglob("*.yaml")):
        try:
            held = load_held_out(path)
        except (UnlearnbenchError, AttributeError):
            continue
        assert isinstance(held, HeldOut) and held.sha256 != want, path
