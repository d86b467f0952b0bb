"""Sweep wall time: the local executor against Ray on this machine. Prints figures and writes JSON;
nothing here asserts.

    python benchmarks/ray_sweep.py [--size micro] [--methods npo,graddiff,rmu,gradascent]
        [--attacks finetune:arith,epochs=1] [--seeds 0,1] [--out FILE]

Each executor runs the same sweep in a fresh subprocess into a fresh store, with the models from the
same cache (copied from the shipped weights first, untimed). The local executor runs one
(method, seed) after another with torch's default threads (one per core); Ray runs one task per
(method, seed) with one CPU and one torch thread each, as many at once as the machine has cores,
after each seed's first method (which computes the shared base/oracle/control cells). Ray's own
start (a local instance: about 5-8 s here) is inside its figure. Say the machine's load when
quoting these: the script records ``os.getloadavg()`` before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CLI = [sys.executable, "-m", "unlearnbench.cli"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="micro")
    ap.add_argument("--methods", default="npo,graddiff,rmu,gradascent")
    ap.add_argument("--attacks", default="finetune:arith,epochs=1")
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    load_before = os.getloadavg()
    figures = {}
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "UNLEARNBENCH_CACHE": f"{tmp}/cache"}
        bench = f"toy,size={args.size}"
        warm = ["run", "--benchmark", bench, "--method", "npo", "--store", f"{tmp}/warm.sqlite", "--quiet"]
        subprocess.run(CLI + warm, env=env, check=True, capture_output=True)  # models into the cache
        sweep = ["sweep", "--benchmark", bench, "--methods", args.methods, "--attacks", args.attacks]
        sweep += ["--seeds", args.seeds, "--quiet", "--json"]
        for executor in ("local", "ray"):
            t0 = time.time()
            out = subprocess.run(
                CLI + sweep + ["--store", f"{tmp}/{executor}.sqlite", "--executor", executor],
                env=env,
                capture_output=True,
                text=True,
            )
            seconds = round(time.time() - t0, 1)
            counts = json.loads(out.stdout)["counts"] if out.returncode == 0 else None
            figures[executor] = {"seconds": seconds, "exit": out.returncode, "counts": counts}
            print(f"{executor:6s} {seconds:7.1f} s  exit {out.returncode}  cells {counts}", flush=True)
    if figures["local"]["exit"] == 0 and figures["ray"]["exit"] == 0:
        print(f"ray / local = {figures['ray']['seconds'] / figures['local']['seconds']:.2f}")
    doc = {
        "sweep": {"size": args.size, "methods": args.methods, "attacks": args.attacks, "seeds": args.seeds},
        "figures": figures,
        "cores": os.cpu_count(),
        "load": {"before": load_before, "after": os.getloadavg()},
    }
    if args.out:
        Path(args.out).write_text(json.dumps(doc, indent=1) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
