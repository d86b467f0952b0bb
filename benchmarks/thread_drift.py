"""How far the regress numbers move between CPU settings, starting from the shipped weights.
Prints figures and writes JSON; nothing here asserts.

    python benchmarks/thread_drift.py --baseline leaderboard/baselines/micro.json \\
        --setting threads=1 --setting threads=2 --setting threads=2,isa=avx2 \\
        --out benchmarks/results/thread_drift-micro.json

With the shipped embedded weights every machine starts from the same bytes. What can still differ
between machines is how unlearning and the attacks sum floats: the number of torch threads and the
CPU's vector width (``isa=avx2`` runs torch's AVX2 kernels, ``isa=avx2_blas`` also MKL's and
oneDNN's AVX2 paths — what an AVX2-only CPU runs —, ``isa=scalar_blas`` the oldest paths each
offers; ``isa=default`` leaves the machine's own). Each setting runs the baseline's whole matrix in its
own process (the settings must be in place before torch is imported), into its own store and an
empty model cache (so the shipped weights are what loads), and the script reports, per metric, the
largest absolute difference between any two settings and where it is — the figure the regress and
leaderboard tolerances are set from — and, finer, how many of the stored per-item scores (losses and
probabilities included) differ at all. ``wait=active`` runs with ``OMP_WAIT_POLICY=ACTIVE`` and
``wait=default`` with it unset (the harness sets PASSIVE unless the user set it), to show the wait
policy changes no number; the per-setting seconds show what it costs on this machine.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: isa= values: the environment that makes torch's own kernels (ATEN_CPU_CAPABILITY) and, for the
#: ``*_blas`` ones, MKL's and oneDNN's, run the code paths of a CPU without AVX-512.
ISA = {
    "default": {},
    "avx2": {"ATEN_CPU_CAPABILITY": "avx2"},
    "avx2_blas": {"ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2", "ONEDNN_MAX_CPU_ISA": "AVX2"},
    "scalar_blas": {
        "ATEN_CPU_CAPABILITY": "default",
        "MKL_ENABLE_INSTRUCTIONS": "SSE4_2",
        "ONEDNN_MAX_CPU_ISA": "SSE41",
    },
}


def _parse(setting: str) -> dict:
    out = {"threads": 2, "isa": "default", "wait": "passive"}
    for part in setting.split(","):
        key, _, value = part.partition("=")
        if key not in out:
            raise SystemExit(f"--setting {setting!r}: unknown key {key!r} (threads, isa, wait)")
        out[key] = int(value) if key == "threads" else value
    if out["wait"] not in ("passive", "active", "default"):
        raise SystemExit(f"--setting {setting!r}: wait must be passive, active or default (unset)")
    if out["isa"] not in ISA:
        raise SystemExit(f"--setting {setting!r}: isa must be one of {', '.join(ISA)}")
    return out


def _child(baseline_path: str, threads: int, dump: str) -> None:
    import torch

    torch.set_num_threads(threads)
    from unlearnbench.regress import load_baseline, run_matrix
    from unlearnbench.store import ResultStore

    baseline = load_baseline(baseline_path)
    with tempfile.TemporaryDirectory() as tmp, ResultStore(Path(tmp) / "s.sqlite") as store:
        numbers = run_matrix(baseline, store)
        frame = store.scores_frame()
    cols = ["cell_id", "checkpoint", "step", "split", "form", "item_id", "metric", "value"]
    scores = [[*row[:-1], float(row[-1])] for row in frame[cols].itertuples(index=False, name=None)]
    doc = {"numbers": numbers, "scores": scores, "cpu_capability": torch.backends.cpu.get_cpu_capability()}
    Path(dump).write_text(json.dumps(doc))


def _flat(numbers: dict) -> dict:
    """(method, column, metric, where) -> value, for the compared metrics only."""
    out = {}
    for method, cols in numbers.items():
        for col, metrics in cols.items():
            for metric, where in metrics.items():
                if metric == "steps":
                    continue
                for key, value in where.items():
                    out[(method, col, metric, key)] = value
    return out


def compare(runs: dict[str, dict]) -> dict:
    """Per metric: the largest |a - b| over every pair of settings, where, and how many differ."""
    flat = {name: _flat(r["numbers"]) for name, r in runs.items()}
    result: dict[str, dict] = {}
    for a, b in itertools.combinations(sorted(flat), 2):
        for key in sorted(set(flat[a]) | set(flat[b])):
            va, vb = flat[a].get(key), flat[b].get(key)
            metric = key[2]
            entry = result.setdefault(metric, {"max_abs_diff": 0.0, "where": None, "n_differ": 0, "n": 0})
            entry["n"] += 1
            if va is None or vb is None:
                if va is not vb:
                    entry["n_differ"] += 1
                continue
            d = abs(va - vb)
            if d > 1e-12:
                entry["n_differ"] += 1
            if d > entry["max_abs_diff"]:
                entry.update(max_abs_diff=round(d, 6), where={"pair": [a, b], "number": list(key), "values": [va, vb]})
    return result


def compare_scores(runs: dict[str, dict]) -> dict:
    """Every stored per-item score (same cells: the cell ids do not depend on the setting), per
    score metric: rows compared, rows whose value differs at all, and the largest |a - b|."""
    result: dict[str, dict] = {}
    keyed = {name: {tuple(r[:-1]): r[-1] for r in run["scores"]} for name, run in runs.items()}
    for a, b in itertools.combinations(sorted(keyed), 2):
        for key in sorted(set(keyed[a]) | set(keyed[b])):
            va, vb = keyed[a].get(key), keyed[b].get(key)
            entry = result.setdefault(key[6], {"rows": 0, "differ": 0, "missing": 0, "max_abs_diff": 0.0})
            entry["rows"] += 1
            if va is None or vb is None:
                entry["missing"] += 1
                continue
            both_nan = va != va and vb != vb
            if not both_nan and va != vb:
                entry["differ"] += 1
                entry["max_abs_diff"] = max(entry["max_abs_diff"], abs(va - vb))
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline", default=str(ROOT / "leaderboard/baselines/micro.json"))
    ap.add_argument(
        "--setting",
        action="append",
        default=None,
        help=f"threads=N[,isa={'|'.join(ISA)}][,wait=passive|active|default]",
    )
    ap.add_argument("--out", default=None)
    ap.add_argument("--child", nargs=3, metavar=("BASELINE", "THREADS", "DUMP"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        _child(args.child[0], int(args.child[1]), args.child[2])
        return
    settings = args.setting or ["threads=1", "threads=2"]
    runs, seconds = {}, {}
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        for setting in settings:
            s = _parse(setting)
            env = {
                **os.environ,
                "OMP_WAIT_POLICY": s["wait"].upper(),
                "HF_HUB_OFFLINE": "1",
                "HF_DATASETS_OFFLINE": "1",
                "UNLEARNBENCH_CACHE": f"{tmp}/cache-{len(runs)}",  # empty: the shipped weights load
                "OMP_NUM_THREADS": str(s["threads"]),
            }
            env.pop("UNLEARNBENCH_SHIPPED", None)
            if s["wait"] == "default":  # libgomp's own: spin a while, then sleep (torch is imported first)
                env.pop("OMP_WAIT_POLICY")
            env.update(ISA[s["isa"]])
            dump = f"{tmp}/{len(runs)}.json"
            t0 = time.time()
            subprocess.run(
                [sys.executable, __file__, "--child", args.baseline, str(s["threads"]), dump], env=env, check=True
            )
            seconds[setting] = round(time.time() - t0, 1)
            runs[setting] = json.loads(Path(dump).read_text())
            print(f"{setting}: {seconds[setting]} s (kernels: {runs[setting]['cpu_capability']})", flush=True)
    drift = compare(runs)
    for metric, d in sorted(drift.items()):
        print(f"{metric:15s} largest difference {d['max_abs_diff']:.4f}  ({d['n_differ']} of {d['n']} pairs differ)")
        if d["where"]:
            print(f"{'':15s} at {d['where']['number']} between {d['where']['pair']}: {d['where']['values']}")
    scores = compare_scores(runs)
    for metric, d in sorted(scores.items()):
        print(
            f"stored score {metric:12s} {d['differ']} of {d['rows']} row pairs differ "
            f"(largest {d['max_abs_diff']:.3g}; {d['missing']} missing on one side)"
        )
    doc = {
        "baseline": os.path.relpath(args.baseline, ROOT),
        "stored_scores": scores,
        "settings": settings,
        "cpu_capability": {k: v["cpu_capability"] for k, v in runs.items()},
        "seconds": seconds,
        "drift": drift,
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()},
        "load": {"before": load_before, "after": os.getloadavg()},
    }
    if args.out:
        Path(args.out).write_text(json.dumps(doc, indent=1) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
