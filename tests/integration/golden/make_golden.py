"""Regenerate micro_npo_arith.json from a run document (see README.md here; state why in the commit).

    UNLEARNBENCH_CACHE=$(mktemp -d) unlearnbench run --benchmark toy,size=micro --method npo \\
        --attack finetune:arith,epochs=2 --store /tmp/g.sqlite --json --quiet > /tmp/g.json
    python tests/integration/golden/make_golden.py /tmp/g.json SHA256_OF_THE_TARGET_WEIGHTS
"""

import json
import sys
from pathlib import Path

COLUMNS = ("base", "oracle", "unlearned", "finetune:arith,epochs=2 ep2")
# Forms with enough items to be stable under floating-point noise, and above chance on this model.
# MCQ and TF sit at chance (a flip of near-tied letters moves them by 0.2), reverse has 2 forget items.
FORMS = ("bio", "qa", "cloze", "paraphrase")


def _provenance() -> dict:
    """The commit the numbers were made at (a reference result comes from a clean, committed tree)."""
    import subprocess

    root = Path(__file__).resolve().parents[3]
    git = ["git", "-C", str(root)]
    commit = subprocess.run(git + ["rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = bool(
        subprocess.run(
            git + ["status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True
        ).stdout.strip()
    )
    return {"commit": commit, "dirty": dirty}


def main(path: str, target_sha: str = "") -> None:
    doc = json.loads(Path(path).read_text())
    golden = {
        "made_at": _provenance(),
        "target_sha256": target_sha,
        "about": "Golden numbers of the micro-world run in tests/integration/test_run_micro.py "
        "(npo + finetune:arith,epochs=2, seed 0, CPU). Regenerate with make_golden.py; a change "
        "needs a reason in the commit message.",
        "tolerance": {"recall": 0.02, "task_accuracy": 0.02, "forget_quality": 0.02},
        "recall": {
            c: {s: {f: doc["recall"][c][s][f] for f in FORMS} for s in ("forget", "neighbour", "retain")}
            for c in COLUMNS
        },
        "task_accuracy": {c: doc["task_accuracy"][c] for c in COLUMNS},
        "forget_quality": {c: {f: doc["forget_quality"][c]["per_form"][f] for f in FORMS} for c in COLUMNS},
    }
    out = Path(__file__).with_name("micro_npo_arith.json")
    out.write_text(json.dumps(golden, indent=1, sort_keys=True) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
