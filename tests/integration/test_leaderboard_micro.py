"""A real leaderboard submission on the micro world: submit, verify, re-run, and catch a forgery.

The matrix is a one-seed, one-attack cut of toy-micro (in a tmp tasks folder) so the test stays
under a minute. A *self-consistent* forgery (per-item scores, hashes and aggregates all rewritten
together) passes the offline checks by construction; ``--rerun`` is what catches it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from unlearnbench.leaderboard import bundle as B
from unlearnbench.leaderboard.verify import verify

ATTACK = "finetune:arith,epochs=1"


@pytest.fixture()
def tasks(tmp_path, monkeypatch):
    real = Path(__file__).resolve().parents[2] / "tasks"
    folder = tmp_path / "tasks"
    folder.mkdir()
    for sub in real.iterdir():
        if sub.is_dir() and sub.name != "leaderboard":
            (folder / sub.name).symlink_to(sub)
    doc = yaml.safe_load((real / "leaderboard" / "toy-micro.yaml").read_text())
    doc.update(name="micro-cut", attacks=[ATTACK], seeds=[0])
    (folder / "leaderboard").mkdir()
    (folder / "leaderboard" / "micro-cut.yaml").write_text(yaml.safe_dump(doc))
    monkeypatch.setenv("UNLEARNBENCH_TASKS", str(folder))
    return folder


def _forge(folder: Path) -> None:
    """Claim the attack brought everything back: every forget-split `correct` of the attack cell -> 1,
    then rewrite the scores file, the cell's hash and every aggregate so the bundle is consistent."""
    manifest = json.loads((folder / B.MANIFEST).read_text())
    scores = B.read_scores(folder / B.SCORES)
    attack = next(c for c in manifest["cells"] if c["kind"] == "attack")
    scores[attack["cell_id"]] = [
        r[:6] + (1.0,) if r[2] == "forget" and r[5] == "correct" else r for r in scores[attack["cell_id"]]
    ]
    attack["scores_sha256"] = B.scores_sha256(scores[attack["cell_id"]])
    aggregates = B.all_aggregates(manifest["cells"], scores)
    for c in manifest["cells"]:
        c["aggregates"] = aggregates[c["cell_id"]]
    flat = [(c["cell_id"], *r) for c in manifest["cells"] for r in scores[c["cell_id"]]]
    manifest["scores_file"]["sha256"] = B.write_scores(folder / B.SCORES, flat)
    (folder / B.MANIFEST).write_text(json.dumps(manifest, indent=1))


def test_submit_verify_rerun_and_forgery(micro_cache, tasks, tmp_path, capsys):
    from unlearnbench.cli import main

    out = tmp_path / "bundle"
    assert (
        main(
            [
                "submit",
                "--method",
                "npo",
                "--matrix",
                "micro-cut",
                "--out",
                str(out),
                "--store",
                str(tmp_path / "s.sqlite"),
                "--quiet",
            ]
        )
        == 0
    )
    assert "wrote" in capsys.readouterr().out
    manifest = json.loads((out / B.MANIFEST).read_text())
    assert [c["kind"] for c in manifest["cells"]] == ["base", "oracle", "unlearn", "attack"]
    assert manifest["method"]["config"]["beta"] == 0.1  # toy.yaml's tuned NPO defaults
    assert manifest["environment"]["torch"] and manifest["models"]["unlearned_sha256"]["0"]
    attack = manifest["cells"][3]
    assert [a["checkpoint"] for a in attack["aggregates"]] == ["epoch=0", "epoch=1"]

    v = verify(out, rerun=1)
    assert v.accepted, v.reasons
    assert any("attack cell re-run here, same cell id, within tolerance" in n for n in v.notes), v.notes

    _forge(out)
    assert verify(out).accepted  # consistent, so the offline checks pass
    v = verify(out, rerun=1)
    assert not v.accepted
    assert any(
        r.startswith(f"rerun seed 0 {ATTACK}: attack cell outside the matrix tolerance: recall forget/")
        for r in v.reasons
    ), v.reasons
