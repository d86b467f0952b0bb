"""How the per-method defaults in tasks/benchmarks/toy.yaml were chosen. Prints a grid, writes JSON.

    python benchmarks/tune_methods.py --method npo [--size small] [--grid lr=3e-4+1e-3+3e-3 epochs=5+10]

For every point of the grid the method unlearns the cached target model once (seed 0) and the
forget, neighbour and retain recall of the unlearning form (``bio``) and of ``qa`` are measured.
A point is *admissible* when forget bio recall <= oracle + 0.10 and retain bio recall >= 0.8 x base
(the acceptance bar of the core-harness issue). Among admissible points the one with the highest
mean retain recall wins (ties: fewer epochs, then lower lr). Copy the winner into toy.yaml's
``defaults:`` by hand — the grid and the choice are in the JSON written next to this script.
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--method", required=True)
    ap.add_argument("--size", default="small", choices=("micro", "small"))
    ap.add_argument(
        "--grid", nargs="*", default=["lr=3e-4+1e-3+3e-3", "epochs=5+10"], help="option=v1+v2 ... (cartesian product)"
    )
    ap.add_argument("--fixed", default="", help="extra fixed options, spec style: alpha=1,beta=0.1")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    from unlearnbench.data.types import PlanContext, call_hook
    from unlearnbench.registry import BENCHMARKS, METHODS, PROBES
    from unlearnbench.spec import build_config, parse_spec

    bcls = BENCHMARKS.get("toy")
    bench = bcls(build_config(bcls.Config, {"size": args.size}))
    target, oracle = bench.load("target"), bench.load("oracle")
    probes = {f: PROBES.get(f)() for f in ("bio", "qa")}

    def recall(model) -> dict:
        out = {}
        for split in bench.splits:
            for form, probe in probes.items():
                rows = probe.score(model, target.tokenizer, probe.items(bench, split))
                out[f"{split}/{form}"] = round(sum(r["correct"] for r in rows) / len(rows), 4)
        return out

    base, orc = recall(target.model), recall(oracle.model)
    cls = METHODS.get(args.method)
    fixed = parse_spec(f"x,{args.fixed}").options if args.fixed else {}
    axes = [(k, v.split("+")) for k, v in (g.split("=", 1) for g in args.grid)]
    rows = []
    for values in itertools.product(*[v for _, v in axes]):
        options = {**fixed, **dict(zip([k for k, _ in axes], values))}
        method = cls(build_config(cls.Config, options, plugin=args.method))
        # ILU: its base uses the benchmark's tuned defaults
        call_hook(method, "bind", PlanContext(lambda name: bench.defaults("methods", name), {}))
        model = copy.deepcopy(target.model)
        t0 = time.time()
        try:
            method.unlearn(model, bench.unlearn_data(target.tokenizer))
            r = recall(model)
            error = None
        except Exception as e:  # a diverged point is a result of the grid, not a crash of the script
            r, error = {}, str(e)
        seconds = round(time.time() - t0, 1)
        ok = bool(r) and r["forget/bio"] <= orc["forget/bio"] + 0.10 and r["retain/bio"] >= 0.8 * base["retain/bio"]
        rows.append({"options": options, "recall": r, "admissible": ok, "seconds": seconds, "error": error})
        print(json.dumps(rows[-1]), flush=True)
    good = [x for x in rows if x["admissible"]]
    best = (
        max(
            good,
            key=lambda x: (
                (x["recall"]["retain/bio"] + x["recall"]["retain/qa"]) / 2,
                -float(x["options"].get("epochs", 0)),
                -float(x["options"].get("lr", 0)),
            ),
        )
        if good
        else None
    )
    doc = {"method": args.method, "size": args.size, "base": base, "oracle": orc, "grid": rows, "chosen": best}
    out = Path(args.out or ROOT / "benchmarks" / "results" / f"tune-{args.method}-{args.size}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=1) + "\n")
    print("chosen:", json.dumps(best["options"]) if best else "none admissible", file=sys.stderr)


if __name__ == "__main__":
    main()
