"""`unlearnbench regress` on the committed micro baseline: passes as committed, fails when a number
moves beyond its tolerance, and refuses an update without a reason."""

import json
import shutil
from pathlib import Path

from unlearnbench.cli import main

BASELINE = Path(__file__).resolve().parents[2] / "leaderboard" / "baselines" / "micro.json"


def test_regress_passes_then_catches_a_moved_number(micro_cache, tmp_path, capsys):
    store = str(tmp_path / "r.sqlite")
    assert main(["regress", "--baseline", str(BASELINE), "--store", store, "--quiet"]) == 0
    assert "no regression" in capsys.readouterr().out

    moved = tmp_path / "moved.json"
    doc = json.loads(BASELINE.read_text())
    doc["numbers"]["npo"]["unlearned"]["recall"]["forget/bio"] += 0.03  # less than one probe item
    moved.write_text(json.dumps(doc))
    assert main(["regress", "--baseline", str(moved), "--store", store, "--quiet"]) == 1
    out = capsys.readouterr().out
    assert "1 of" in out and "forget/bio" in out

    copy = tmp_path / "copy.json"
    shutil.copy(moved, copy)
    assert main(["regress", "--baseline", str(copy), "--store", store, "--quiet", "--update"]) == 2
    assert main(["regress", "--baseline", str(copy), "--store", store, "--quiet", "--update", "--reason", "test"]) == 0
    updated = json.loads(copy.read_text())
    assert updated["history"][-1]["reason"] == "test"
    assert main(["regress", "--baseline", str(copy), "--store", store, "--quiet"]) == 0
