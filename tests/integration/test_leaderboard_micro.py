"""A real leaderboard submission on the micro world: submit (with the oracle control), verify,
re-run (attack and control cells), the held-out grid, and catch forgeries.

The matrix is a one-seed, one-attack cut of toy-micro (in a tmp tasks folder; a 4-step attack, a
2-step held-out relearning from tests/leaderboard_held_out_example.yaml) so the test stays near a
minute. A *self-consistent* forgery (per-item scores, hashes and aggregates all rewritten together)
passes the offline checks by construction; ``--rerun`` is what catches it, in the attack cell and in
the control cell (an oracle control claimed to learn everything would flatter the attacked model).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from unlearnbench.leaderboard import bundle as B
from unlearnbench.leaderboard.verify import verify

ATTACK = "finetune:arith,eval_every=4,steps=4"
HELD_OUT_FILE = Path(__file__).resolve().parents[1] / "leaderboard_held_out_example.yaml"
HELD_OUT = "relearn:forget,eval_every=2,steps=2"


@pytest.fixture()
def tasks(tmp_path, monkeypatch):
    real = Path(__file__).resolve().parents[2] / "tasks"
    folder = tmp_path / "tasks"
    folder.mkdir()
    for sub in real.iterdir():
        if sub.is_dir() and sub.name != "leaderboard":
            (folder / sub.name).symlink_to(sub)
    doc = yaml.safe_load((real / "leaderboard" / "toy-micro.yaml").read_text())
    from unlearnbench.leaderboard.heldout import load_held_out

    doc.update(
        name="micro-cut",
        attacks=[ATTACK],
        seeds=[0],
        controls=["oracle"],
        held_out=load_held_out(HELD_OUT_FILE).as_matrix_entry(),
    )
    (folder / "leaderboard").mkdir()
    (folder / "leaderboard" / "micro-cut.yaml").write_text(yaml.safe_dump(doc))
    monkeypatch.setenv("UNLEARNBENCH_TASKS", str(folder))
    return folder


def _forge(folder: Path, kind: str) -> None:
    """Claim the ``kind`` cell (attack or control) recalls every forget fact after step 0: every such
    forget-split `correct` -> 1, then rewrite the scores file, the cell's hash and every aggregate
    so the bundle is consistent."""
    manifest = json.loads((folder / B.MANIFEST).read_text())
    scores = B.read_scores(folder / B.SCORES)
    cell = next(c for c in manifest["cells"] if c["kind"] == kind)
    scores[cell["cell_id"]] = [
        r[:6] + (1.0,) if r[1] > 0 and r[2] == "forget" and r[5] == "correct" else r for r in scores[cell["cell_id"]]
    ]
    cell["scores_sha256"] = B.scores_sha256(scores[cell["cell_id"]])
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
    assert [c["kind"] for c in manifest["cells"]] == ["base", "oracle", "control", "unlearn", "attack"]
    assert manifest["method"]["config"]["beta"] == 0.1  # toy.yaml's tuned NPO defaults
    assert manifest["environment"]["torch"] and manifest["models"]["unlearned_sha256"]["0"]
    control, attack = manifest["cells"][2], manifest["cells"][4]
    assert control["control"] == "oracle" and control["attack"] == attack["attack"] == ATTACK
    assert control["key"]["model"]["sha256"] == manifest["models"]["oracle_sha256"]
    assert [a["checkpoint"] for a in attack["aggregates"]] == ["step=0", "step=4"]
    assert attack["aggregates"][1]["forget_quality_attacked_oracle"]["mean"] is not None
    assert B.attack_headline(attack["aggregates"])["worst"]["step"] == 4

    v = verify(out, rerun=1, held_out=HELD_OUT_FILE)
    assert v.accepted, v.reasons
    for kind in ("unlearn", f"attack {ATTACK}", f"control oracle {ATTACK}"):
        assert any(n.startswith(f"rerun seed 0 {kind} cell: re-run here, same cell id, within") for n in v.notes), (
            kind,
            v.notes,
        )
    held = v.held_out["attacks"][HELD_OUT]
    assert held["worst"]["n"] == 1 and 0.0 <= held["worst"]["mean"] <= 1.0 and held["worst_steps"] == {"0": 2}
    assert any(n.startswith(f"HELD OUT {HELD_OUT}: worst forget quality vs attacked oracle") for n in v.notes)
    assert HELD_OUT not in json.dumps(json.loads((out / B.MANIFEST).read_text()))  # submit never ran it

    _forge(out, "attack")
    _forge(out, "control")
    assert verify(out).accepted  # consistent, so the offline checks pass
    v = verify(out, rerun=1)
    assert not v.accepted
    for kind in (f"attack {ATTACK}", f"control oracle {ATTACK}"):
        assert any(
            r.startswith(f"rerun seed 0 {kind} cell: outside the matrix tolerance: recall forget/") for r in v.reasons
        ), (kind, v.reasons)
