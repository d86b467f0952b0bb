"""How long the README's first command takes to show its table, from a clean clone with an empty cache.
Prints figures and writes JSON; nothing here asserts.

    python benchmarks/first_run.py [--repo .] [--out FILE]

The clone is ``git clone`` of the repository's committed HEAD into a temporary folder; the command
is ``unlearnbench run --method npo --attack finetune:arith`` run from it (``PYTHONPATH`` pointing at
the clone, so its code and its shipped weights are the ones measured) with this interpreter's
packages (the install itself is not timed: it depends on the network and pip's cache), a fresh
store and an empty model cache. With the shipped weights nothing is trained: the figure is loading,
evaluation, unlearning and the attack with its control. The per-cell seconds come from the store.
Say the machine's load when quoting it: the script records ``os.getloadavg()`` before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repo", default=str(Path(__file__).resolve().parent.parent))
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        clone = Path(tmp) / "clone"
        subprocess.run(["git", "clone", "-q", args.repo, str(clone)], check=True)
        commit = subprocess.run(
            ["git", "-C", str(clone), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
        env = {k: v for k, v in os.environ.items() if k not in ("UNLEARNBENCH_SHIPPED", "UNLEARNBENCH_TASKS")}
        env.update(
            PYTHONPATH=str(clone),
            UNLEARNBENCH_CACHE=f"{tmp}/cache",
            HF_HUB_OFFLINE="1",
            HF_DATASETS_OFFLINE="1",
        )
        store = f"{tmp}/results.sqlite"
        cmd = [sys.executable, "-m", "unlearnbench.cli", "run", "--method", "npo", "--attack", "finetune:arith"]
        t0 = time.time()
        out = subprocess.run([*cmd, "--store", store, "--quiet"], cwd=clone, env=env, capture_output=True, text=True)
        seconds = round(time.time() - t0, 1)
        cells = []
        if out.returncode == 0:
            with sqlite3.connect(store) as c:
                for kind, meta in c.execute("SELECT kind, meta_json FROM cells ORDER BY finished_at"):
                    m = json.loads(meta or "{}")
                    cells.append({"kind": kind, "seconds": m.get("seconds") or (m.get("stats") or {}).get("seconds")})
        trained = any("-tokenizer-" in p.name for p in Path(f"{tmp}/cache/models").glob("*"))
    print(f"README first command: {seconds} s (exit {out.returncode}; commit {commit}; models trained: {trained})")
    for c in cells:
        print(f"  {c['kind']:8s} {c['seconds']} s")
    doc = {
        "command": " ".join(cmd[2:]),
        "commit": commit,
        "seconds": seconds,
        "exit": out.returncode,
        "models_trained": trained,
        "cells": cells,
        "cores": os.cpu_count(),
        "load": {"before": load_before, "after": os.getloadavg()},
    }
    if args.out:
        Path(args.out).write_text(json.dumps(doc, indent=1) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
