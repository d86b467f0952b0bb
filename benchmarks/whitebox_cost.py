"""What the white-box probes and attacks of issue 14 cost on the embedded world. Prints figures and
writes JSON; nothing here asserts.

    python benchmarks/whitebox_cost.py [--size micro|small] [--out FILE] [--repeat N]

In one process, on the world's target model (weights from the package), 1 torch thread:

- each probe's ``score`` on every split (one evaluation's worth), seconds per evaluation and per
  item, beside the ``qa`` form probe for scale;
- each attack's ``run`` with an evaluation callback that does nothing, so the figure is the attack's
  own cost (each checkpoint it stores then costs one evaluation of the run's probes on top).

The best of ``--repeat`` runs is reported (the machine is shared; the load is recorded before and after).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PROBES = ["qa", "lens", "linear"]
ATTACKS = [
    "quantize:4",
    "quantize:q4_0",
    "quantize:q8_0",
    "ablate",
    "softprompt",
]


def _best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return round(min(times), 3)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", choices=("micro", "small"), default="small")
    ap.add_argument("--out", default=None)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(1)
    from unlearnbench.benchmarks.toy import ToyBenchmark, ToyConfig
    from unlearnbench.registry import ATTACKS as ATTACK_REGISTRY
    from unlearnbench.registry import PROBES as PROBE_REGISTRY
    from unlearnbench.runner import resolve

    load_before = os.getloadavg()
    bench = ToyBenchmark(ToyConfig(size=args.size))
    target = bench.load("target")
    model, tok = target.model, target.tokenizer
    probes = {}
    for spec in PROBES:
        obj = resolve(PROBE_REGISTRY, spec).obj
        items = {s: obj.items(bench, s) for s in bench.splits}
        n = sum(len(v) for v in items.values())

        def evaluate_once(obj=obj, items=items):
            for split_items in items.values():
                if split_items:
                    obj.score(model, tok, split_items)

        seconds = _best(evaluate_once, args.repeat)
        probes[spec] = {
            "seconds_per_evaluation": seconds,
            "items": n,
            "ms_per_item": round(1000 * seconds / max(n, 1), 2),
        }
        print(f"probe {spec:10s} {seconds:7.2f} s per evaluation ({n} items)", flush=True)
    attacks = {}
    for spec in ATTACKS:
        try:
            att = resolve(ATTACK_REGISTRY, spec, bench.defaults("attacks", spec.split(":")[0].split(",")[0])).obj
        except Exception as e:  # a format this machine cannot run: say so, keep going
            attacks[spec] = {"error": str(e)}
            print(f"attack {spec}: {e}", flush=True)
            continue
        checkpoints: list[str] = []

        def run_once(att=att, checkpoints=checkpoints):
            checkpoints.clear()
            att.run(model, tok, None, lambda ck, _step, _m: checkpoints.append(ck), benchmark=bench)

        seconds = _best(run_once, args.repeat)
        attacks[spec] = {"seconds": seconds, "checkpoints": len(checkpoints)}
        print(f"attack {spec:14s} {seconds:7.2f} s ({len(checkpoints)} checkpoints)", flush=True)
    result = {
        "size": args.size,
        "model_parameters": sum(p.numel() for p in model.parameters()),
        "torch_threads": 1,
        "repeat": args.repeat,
        "probes": probes,
        "attacks": attacks,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "load_before": load_before,
            "load_after": os.getloadavg(),
        },
    }
    out = Path(args.out or ROOT / "benchmarks" / "results" / f"whitebox_cost-{args.size}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
