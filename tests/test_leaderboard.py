"""Leaderboard bundles: schema, the bundle writer and every refusal of ``leaderboard verify``.

The cells come from a synthetic store keyed like the runner's (tests/helpers_leaderboard.py); a
real micro-world submission is tested in tests/integration/test_leaderboard_micro.py; format 2's
control cells, worst-case headline and held-out grid in tests/test_leaderboard_v2.py.
"""

from __future__ import annotations

import gzip
import json
import math
import pickle
import sys

import pytest
from helpers_leaderboard import ATTACK, MATRIX, make_bundle, make_store, write_matrix
from helpers_leaderboard import read_manifest as _manifest
from helpers_leaderboard import refusal_reasons as _reasons
from helpers_leaderboard import save_manifest as _save

from unlearnbench.leaderboard import bundle as B
from unlearnbench.leaderboard.verify import check_schema, verify
from unlearnbench.store import cell_id


@pytest.fixture()
def tasks(tmp_path, monkeypatch):
    folder = tmp_path / "tasks"
    write_matrix(folder)
    monkeypatch.setenv("UNLEARNBENCH_TASKS", str(folder))
    return folder


@pytest.fixture()
def good(tmp_path, tasks):
    out = tmp_path / "bundle"
    make_bundle(tmp_path, out)
    return out


def test_good_bundle_is_accepted_and_matches_schema(good):
    v = verify(good)
    assert v.accepted, v.reasons
    assert v.checks == ["files", "format", "trust_remote_code", "schema", "matrix", "provenance", "scores"]
    m = _manifest(good)
    assert check_schema(m) == [] and m["schema"] == "unlearnbench.submission/2"
    assert sorted(p.name for p in good.iterdir()) == [B.MANIFEST, B.SCORES]
    assert len(m["cells"]) == 10 and m["seeds"] == [0, 1]
    assert [c["kind"] for c in m["cells"][:5]] == ["base", "oracle", "control", "unlearn", "attack"]
    assert m["matrix"]["controls"] == ["oracle"] and m["cells"][2]["control"] == "oracle"
    assert m["models"]["unlearned_sha256"] == {"0": "0" * 64, "1": "1" * 64}


def test_schema_rejects_a_manifest_without_cells(good):
    m = _manifest(good)
    del m["cells"]
    m["harness"]["git_commit"] = "not-a-commit"
    errors = check_schema(m)
    assert any("'cells' is a required property" in e for e in errors)
    assert any("git_commit" in e for e in errors)


def test_scores_hash_is_canonical():
    rows = [("epoch=1", 1, "forget", "bio", "i1", "correct", 1.0), ("base", -1, "forget", "qa", "i0", "prob", 0.25)]
    assert B.scores_sha256(rows) == B.scores_sha256(list(reversed(rows)))
    changed = [rows[0], rows[1][:6] + (0.2500001,)]
    assert B.scores_sha256(changed) != B.scores_sha256(rows)
    nan = [rows[0], rows[1][:6] + (math.nan,)]
    assert B.scores_sha256(nan) == B.scores_sha256([rows[0], rows[1][:6] + (float("nan"),)])


def test_aggregates_agree_with_run_summary(tmp_path, tasks):
    """The bundle's aggregates are the numbers `unlearnbench run --json` reports for the same cells,
    the under-attack ones (against the attacked oracle, recovery) included."""
    from unlearnbench.report import run_summary
    from unlearnbench.runner import CellResult

    out = tmp_path / "b"
    m = make_bundle(tmp_path, out)
    store, _ = make_store(tmp_path / "again.sqlite")
    with store:
        for seed in (0, 1):
            cells = [c for c in m["cells"] if c["seed"] == seed]
            results = [
                CellResult(c["kind"], c["cell_id"], {k: v for k, v in c["label"].items() if v is not None}, "finished")
                for c in cells
            ]
            summary = run_summary(store, results)
            attack = next(c for c in cells if c["kind"] == "attack")
            for agg in attack["aggregates"][1:]:  # run_summary drops the attack's step 0
                col = f"{ATTACK} {agg['checkpoint'].replace('epoch=', 'ep')}"
                for key, value in agg["recall"].items():
                    split, form = key.split("/")
                    assert summary["recall"][col][split][form] == pytest.approx(value, abs=1e-4)
                fq = summary["forget_quality"][col]  # the headline, and the plain mean over forms
                assert fq["mean"] == pytest.approx(agg["forget_quality"]["mean"], abs=1e-3)
                assert fq["mean_of_forms"] == pytest.approx(agg["forget_quality"]["mean_of_forms"], abs=1e-3)
                assert (
                    fq["ci"] == pytest.approx(agg["forget_quality"]["ci"], abs=1e-3)
                    and fq["n"] == agg["forget_quality"]["n"]
                )
                assert summary["task_accuracy"][col]["arith"] == pytest.approx(agg["task_accuracy"]["arith"])
                rob = summary["robustness"][col]
                for name in ("forget_quality_attacked_oracle", "recovery"):
                    for which in ("mean", "mean_of_forms"):
                        assert rob[name][which] == pytest.approx(agg[name][which], abs=1e-3), (name, col, which)
                    for form, value in agg[name]["per_form"].items():
                        assert rob[name]["per_form"][form] == pytest.approx(value, abs=1e-3), (name, col, form)
            worst = summary["worst_case"][ATTACK]["min_forget_quality_attacked_oracle"]
            head = B.attack_headline(attack["aggregates"])["worst"]
            assert (worst["step"], worst["value"]) == (head["step"], pytest.approx(head["value"], abs=1e-3))
    unlearn = next(c for c in m["cells"] if c["kind"] == "unlearn" and c["seed"] == 0)
    # forget recall 0.25 (bio) and 0.125 -> rounds to 0.0 or 0.25 of 4 items (qa); base 1, oracle 0
    fq = unlearn["aggregates"][0]["forget_quality"]
    assert fq["per_form"]["bio"] == pytest.approx(0.75)
    assert fq["mean"] == pytest.approx(sum(fq["per_form"].values()) / 2)


def test_tampered_aggregate_is_refused(good):
    m = _manifest(good)
    cell = next(c for c in m["cells"] if c["kind"] == "attack")
    cell["aggregates"][-1]["forget_quality"]["mean"] = 0.99
    _save(good, m)
    reasons = _reasons(good)
    assert len(reasons) == 1
    assert reasons[0].startswith(f"aggregates: cell {cell['cell_id']}") and "forget_quality mean" in reasons[0]


def test_tampered_score_is_refused_even_with_a_fixed_file_hash(good):
    path = good / B.SCORES
    lines = gzip.open(path, "rt").read().splitlines()
    i = next(n for n, line in enumerate(lines) if ",correct," in line and line.endswith(",0.0"))
    lines[i] = lines[i][: -len("0.0")] + "1.0"
    B.write_scores(path, [tuple(r) for r in _parse(lines)])
    m = _manifest(good)
    m["scores_file"]["sha256"] = B.sha256_file(path)  # a careful forger updates the file hash
    _save(good, m)
    reasons = _reasons(good)
    assert any("per-item scores do not match scores_sha256" in r for r in reasons)
    assert any(r.startswith("aggregates:") for r in reasons)


def _parse(lines):
    for line in lines[1:]:
        cid, c, s, sp, f, i, met, v = line.split(",")
        yield cid, c, int(s), sp, f, i, met, float(v) if v else math.nan


def test_changed_scores_file_is_refused(good):
    path = good / B.SCORES
    data = gzip.decompress(path.read_bytes()).replace(b",prob,", b",prob ,", 1)
    path.write_bytes(gzip.compress(data))
    assert _reasons(good) == [f"scores: {B.SCORES} sha256 differs from scores_file.sha256 (the file was changed)"]


def test_missing_cell_is_refused(good):
    m = _manifest(good)
    m["cells"] = [c for c in m["cells"] if not (c["kind"] == "attack" and c["seed"] == 1)]
    _save(good, m)
    reasons = _reasons(good)
    assert f"incomplete: no seed 1 attack {ATTACK} cell" in reasons
    assert any("which the manifest does not list" in r for r in reasons)


def test_unfinished_cell_is_refused(good):
    m = _manifest(good)
    next(c for c in m["cells"] if c["kind"] == "unlearn")["status"] = "failed"
    _save(good, m)
    assert "incomplete: the seed 0 unlearn cell is 'failed', not finished" in _reasons(good)


@pytest.mark.parametrize("name", ["model.pt", "weights.bin", "state.pkl", "adapter.pth"])
def test_pickled_weights_are_refused(good, name):
    (good / name).write_bytes(pickle.dumps({"w": [1.0, 2.0]}))
    reasons = _reasons(good)
    assert len(reasons) == 1 and reasons[0].startswith(f"{name}: pickled weights")


def test_pickle_magic_under_another_name_is_refused(good):
    (good / "README.md").write_bytes(pickle.dumps([1, 2, 3], protocol=4))
    assert _reasons(good) == ["README.md: starts with pickle magic bytes (pickled data is refused)"]


def test_python_file_is_refused_and_never_imported(good, tmp_path):
    marker = tmp_path / "imported"
    (good / "plugin.py").write_text(f"open({str(marker)!r}, 'w').write('x')\n")
    before = set(sys.modules)
    reasons = _reasons(good)
    assert reasons == ["plugin.py: executable code (.py) is refused; bundles hold data only"]
    assert not marker.exists() and "plugin" not in set(sys.modules) - before


def test_unexpected_file_and_subfolder_are_refused(good):
    (good / "notes.txt").write_text("hello")
    (good / "extra").mkdir()
    reasons = _reasons(good)
    assert "extra/: a sub-folder (bundles are flat: manifest.json, scores.csv.gz, README.md)" in reasons
    assert any(r.startswith("notes.txt: unexpected file") for r in reasons)


def test_trust_remote_code_is_refused(good):
    m = _manifest(good)
    m["method"]["config"]["trust_remote_code"] = True
    _save(good, m)
    reasons = _reasons(good)
    assert "config asks for trust_remote_code at method.config.trust_remote_code (remote code is never run)" in reasons


def test_wrong_harness_and_attack_versions_are_refused(tmp_path, tasks):
    out = tmp_path / "old"
    make_bundle(tmp_path, out, harness="0.0.9", attack_version="2")
    m = _manifest(out)
    m["harness"]["version"] = "0.0.9"
    _save(out, m)
    reasons = _reasons(out)
    assert any(r.startswith("version: harness 0.0.9 is not allowed by matrix 'test-mini'") for r in reasons)
    assert "version: attack finetune v2 is not allowed by the matrix" in reasons
    assert not any(r.startswith(("scores", "aggregates", "provenance")) for r in reasons)


def test_altered_key_is_refused(good):
    m = _manifest(good)
    cell = next(c for c in m["cells"] if c["kind"] == "unlearn")
    cell["key"]["method"]["config"]["lr"] = 0.5
    _save(good, m)
    reasons = _reasons(good)
    assert f"provenance: cell {cell['cell_id']}: its id is not the hash of its key (key or id altered)" in reasons


def test_attack_from_another_unlearned_model_is_refused(good):
    m = _manifest(good)
    attack = next(c for c in m["cells"] if c["kind"] == "attack" and c["seed"] == 0)
    other = next(c for c in m["cells"] if c["kind"] == "unlearn" and c["seed"] == 1)
    attack["key"]["unlearn_cell"] = other["cell_id"]
    attack["cell_id"] = cell_id(attack["key"])  # consistent id, wrong lineage
    _save(good, m)
    reasons = _reasons(good)
    assert f"provenance: cell {attack['cell_id']}: does not start from seed 0's unlearned cell" in reasons


def test_wrong_matrix_and_seeds_are_refused(good):
    m = _manifest(good)
    m["seeds"] = [0, 1, 2]
    _save(good, m)
    assert "matrix: seeds [0, 1, 2] are not the matrix's [0, 1]" in _reasons(good)
    m["matrix"]["name"] = "no-such-matrix"
    _save(good, m)
    assert any(r.startswith("matrix: unknown leaderboard matrix 'no-such-matrix'") for r in _reasons(good))


def test_rerun_is_skipped_when_the_method_is_not_installed(tmp_path, tasks):
    out = tmp_path / "ext"
    make_bundle(tmp_path, out, method="notinstalled")
    v = verify(out, rerun=1)
    assert v.accepted, v.reasons
    assert v.notes == ["rerun skipped: method 'notinstalled' is not installed here"]


def test_cli_verify_exit_codes_and_json(good, capsys):
    from unlearnbench.cli import main

    assert main(["leaderboard", "verify", str(good), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["accepted"] is True and doc["method"] == "npo" and doc["matrix"] == MATRIX
    (good / "x.py").write_text("print(1)\n")
    assert main(["leaderboard", "verify", str(good)]) == 1
    assert capsys.readouterr().out.strip() == "refused: x.py: executable code (.py) is refused; bundles hold data only"


def test_build_lists_only_verified_submissions_and_escapes(tmp_path, tasks):
    from unlearnbench.leaderboard.site import build

    subs = tmp_path / "subs"
    make_bundle(tmp_path, subs / "npo")
    make_bundle(tmp_path, subs / "graddiff", method="graddiff", strength=0.5)
    make_bundle(tmp_path, subs / "bad", method="gradascent")
    (subs / "bad" / "model.pt").write_bytes(b"\x80\x04junk")
    m = _manifest(subs / "graddiff")
    m["method"]["spec"] = "graddiff,note=<b>x</b>"
    _save(subs / "graddiff", m)
    result = build(subs, tmp_path / "site")
    assert sorted(result["listed"]) == sorted([str(subs / "npo"), str(subs / "graddiff")])
    assert list(result["refused"]) == [str(subs / "bad")]
    index = (tmp_path / "site" / "index.html").read_text()
    assert "gradascent" not in index and "<b>x</b>" not in index and "&lt;b&gt;x&lt;/b&gt;" in index
    assert index.count('<tr><td class="l"><a href=') == 2 * 2 and "<svg" in index  # ranking and utility tables
    detail = (tmp_path / "site" / f"submission-{MATRIX}-npo.html").read_text()
    assert "a" * 64 in detail and "Verified:" in detail
    again = build(subs, tmp_path / "site")
    assert (tmp_path / "site" / "index.html").read_text() == index and again["listed"] == result["listed"]


def test_build_names_pages_without_repeating_the_matrix_folder(tmp_path, tasks):
    """A bundle kept under a folder named after its matrix gets the same page name as one at the
    top; two bundles with one short name keep their whole paths apart."""
    from unlearnbench.leaderboard.site import build

    subs = tmp_path / "subs"
    make_bundle(tmp_path, subs / MATRIX / "npo")
    make_bundle(tmp_path, subs / "npo", method="npo", strength=0.5)
    result = build(subs, tmp_path / "site")
    pages = sorted(p.name for p in (tmp_path / "site").glob("submission-*.html"))
    assert len(result["listed"]) == 2
    assert pages == sorted([f"submission-{MATRIX}-npo.html", f"submission-{MATRIX}-{MATRIX}-npo.html"])


def test_committed_submissions_verify_and_site_is_current(tmp_path):
    """Every bundle under leaderboard/submissions passes verify, and leaderboard/site is what
    `unlearnbench leaderboard build` writes from them (rebuild and commit after a change)."""
    from unlearnbench.leaderboard.site import build

    root = __import__("pathlib").Path(__file__).resolve().parents[1] / "leaderboard"
    bundles = sorted(p.parent for p in (root / "submissions").rglob(B.MANIFEST))
    if not bundles:
        pytest.skip("no committed submissions")
    for folder in bundles:
        v = verify(folder)
        assert v.accepted, (folder.name, v.reasons)
    build(root / "submissions", tmp_path / "site")
    for page in sorted((tmp_path / "site").iterdir()):
        committed = root / "site" / page.name
        assert committed.is_file() and committed.read_text() == page.read_text(), (
            f"leaderboard/site/{page.name} is stale"
        )


def test_submit_refuses_unknown_matrix_and_a_busy_out_folder(tmp_path, tasks):
    from unlearnbench.cli import main
    from unlearnbench.errors import UnlearnbenchError

    assert (
        main(
            [
                "submit",
                "--method",
                "npo",
                "--matrix",
                "nope",
                "--out",
                str(tmp_path / "o"),
                "--store",
                str(tmp_path / "s.sqlite"),
            ]
        )
        == 2
    )
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "weights.safetensors").write_bytes(b"x")
    with pytest.raises(UnlearnbenchError, match="holds other files"):
        make_bundle(tmp_path, busy)


def test_reaggregate_rederives_the_aggregates_from_the_scores_and_refuses_changed_scores(tmp_path, tasks):
    import gzip

    from unlearnbench.errors import UnlearnbenchError
    from unlearnbench.leaderboard.reaggregate import reaggregate

    out = tmp_path / "b"
    make_bundle(tmp_path, out)
    m = _manifest(out)
    cell = next(c for c in m["cells"] if c["kind"] == "attack")
    cell["aggregates"][-1]["forget_quality"]["mean"] = 0.123  # an aggregate of an older definition
    (out / B.MANIFEST).write_text(json.dumps(m, indent=1, sort_keys=True) + "\n")
    assert not verify(out).accepted
    assert reaggregate(out) == 1
    assert verify(out).accepted
    assert reaggregate(out) == 0  # idempotent
    raw = gzip.decompress((out / B.SCORES).read_bytes()).replace(b",1.0\n", b",0.0\n", 1)
    (out / B.SCORES).write_bytes(gzip.compress(raw, mtime=0))
    with pytest.raises(UnlearnbenchError, match="does not match the manifest's sha256"):
        reaggregate(out)
