"""What the attacked-oracle control costs, and how long a micro-world robustness sweep takes.
Prints figures and writes JSON; nothing here asserts.

    python benchmarks/control_cost.py [--size micro|small] [--cache DIR] [--out FILE]

Each measurement runs the CLI in a fresh subprocess against a fresh store (models come from the
cache; they are trained first, untimed, if missing):

- one run, ``npo`` with ``finetune:arith,steps=20,eval_every=5`` and ``relearn:forget``, with
  ``--control none`` and with the default control (the oracle attacked the same way);
- a sweep of two methods (``npo``, ``rmu``) x the same two attacks with controls: the controls are
  computed once per (attack, seed), so their share of the cost falls as methods are added.
  Goal from the issue: a micro-world study under 5 minutes on 2 cores.

Say the machine's load when quoting these: the script records ``os.getloadavg()`` before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "unlearnbench.cli"]
ATTACKS = ["finetune:arith,steps=20,eval_every=5", "relearn:forget"]


def _timed(args: list[str], env: dict) -> tuple[float, int]:
    t0 = time.time()
    code = subprocess.call(CLI + args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return round(time.time() - t0, 1), code


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", choices=("micro", "small"), default="micro")
    ap.add_argument("--cache", default=None, help="model cache (default: $UNLEARNBENCH_CACHE or the user cache)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    if args.cache:
        env["UNLEARNBENCH_CACHE"] = args.cache
    bench = f"toy,size={args.size}"
    run = ["run", "--benchmark", bench, "--method", "npo", "--quiet"] + [x for a in ATTACKS for x in ("--attack", a)]
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        warm, _ = _timed(
            ["run", "--benchmark", bench, "--method", "npo", "--store", f"{tmp}/warm.sqlite", "--quiet"], env
        )
        without, c1 = _timed(run + ["--control", "none", "--store", f"{tmp}/a.sqlite"], env)
        with_control, c2 = _timed(run + ["--store", f"{tmp}/b.sqlite"], env)
        sweep = ["sweep", "--benchmark", bench, "--methods", "npo,rmu", "--attacks", ",".join(ATTACKS), "--quiet"]
        sweep_without, c3 = _timed(sweep + ["--control", "none", "--store", f"{tmp}/c.sqlite"], env)
        sweep_with, c4 = _timed(sweep + ["--store", f"{tmp}/d.sqlite"], env)
    result = {
        "size": args.size,
        "attacks": ATTACKS,
        "exit_codes": [c1, c2, c3, c4],
        "warm_up_run_seconds": warm,
        "run_seconds": {"control none": without, "control oracle": with_control},
        "run_control_overhead": round(with_control / without - 1, 3) if without else None,
        "sweep_npo_rmu_seconds": {"control none": sweep_without, "control oracle": sweep_with},
        "sweep_control_overhead": round(sweep_with / sweep_without - 1, 3) if sweep_without else None,
        "goal": "a micro-world study under 5 minutes on 2 cores",
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "load_before": load_before,
            "load_after": os.getloadavg(),
        },
    }
    print(json.dumps(result, indent=1))
    out = Path(args.out or ROOT / "benchmarks" / "results" / f"control_cost-{args.size}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
