"""Speed and memory of the harness on the embedded world. Prints figures and writes JSON.

    python benchmarks/harness_speed.py [--size small|micro] [--out benchmarks/results/harness_speed-<size>.json]
                                       [--reuse-cache DIR]

Measures, each in a fresh subprocess (so peak RSS is per phase):
- world + model build time (target and oracle, from an empty cache unless --reuse-cache);
- the README run command with the models cached (targets: under 90 s on 2 cores), and again with
  every cell cached;
- unlearning time and attack time per epoch (from the run's own records);
- probe throughput (items scored per second, all forms and splits, base model);
- ``unlearnbench --help`` wall time (target: under 1 s) and whether it imported torch.
Targets are reported beside the figures; nothing here asserts.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "unlearnbench.cli"]


_WRAP = """
import resource, subprocess, sys
code = subprocess.call(sys.argv[2:])
open(sys.argv[1], "w").write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))
sys.exit(code)
"""


def timed(cmd: list[str], env: dict) -> tuple[float, float, subprocess.CompletedProcess]:
    """(wall seconds, peak RSS in MiB of this command alone, result): a wrapper process reports its
    own children's peak, so phases do not contaminate each other."""
    with tempfile.NamedTemporaryFile(suffix=".rss") as f:
        t0 = time.perf_counter()
        res = subprocess.run([sys.executable, "-c", _WRAP, f.name, *cmd], env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        rss = int(Path(f.name).read_text() or 0) / 1024
    if res.returncode != 0:
        raise SystemExit(f"command failed ({res.returncode}): {' '.join(cmd)}\n{res.stderr[-3000:]}")
    return wall, rss, res


BUILD = """
import sys, time
from unlearnbench.registry import BENCHMARKS
from unlearnbench.spec import build_config
cls = BENCHMARKS.get("toy")
b = cls(build_config(cls.Config, {"size": sys.argv[1]}))
t0 = time.perf_counter(); b.load("target"); t1 = time.perf_counter(); b.load("oracle"); t2 = time.perf_counter()
print(f"{t1 - t0:.3f} {t2 - t1:.3f}")
"""

PROBES = """
import sys, time, json
from unlearnbench.registry import BENCHMARKS, PROBES
from unlearnbench.spec import build_config
cls = BENCHMARKS.get("toy")
b = cls(build_config(cls.Config, {"size": sys.argv[1]}))
lm = b.load("target")
out = {}
t_all, n_all = 0.0, 0
for form in b.default_probes:
    probe = PROBES.get(form)()
    items = [it for s in b.splits for it in probe.items(b, s)]
    t0 = time.perf_counter(); probe.score(lm.model, lm.tokenizer, items); dt = time.perf_counter() - t0
    out[form] = round(len(items) / dt, 1); t_all += dt; n_all += len(items)
out["all"] = round(n_all / t_all, 1)
print(json.dumps(out))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="small", choices=("micro", "small"))
    ap.add_argument("--out", default=None)
    ap.add_argument("--reuse-cache", default=None, help="an existing model cache (skips the cold build figure)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ub-bench-"))
    cache = args.reuse_cache or str(work / "cache")
    env = {
        **os.environ,
        "UNLEARNBENCH_CACHE": cache,
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    bench = f"toy,size={args.size}"
    fig: dict = {
        "size": args.size,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform()},
    }

    wall, rss, res = timed([sys.executable, "-c", BUILD, args.size], env)
    t_target, t_oracle = map(float, res.stdout.split())
    fig["build"] = {
        "cold": args.reuse_cache is None,
        "target_s": round(t_target, 1),
        "oracle_s": round(t_oracle, 1),
        "wall_s": round(wall, 1),
        "peak_rss_mib": round(rss),
    }

    store = work / "results.sqlite"
    run = CLI + [
        "run",
        "--benchmark",
        bench,
        "--method",
        "npo",
        "--attack",
        "finetune:arith",
        "--store",
        str(store),
        "--json",
        "--quiet",
    ]
    wall, rss, res = timed(run, env)
    doc = json.loads(res.stdout)
    unlearn = next(c for c in doc["cells"] if c["kind"] == "unlearn")["meta"]["stats"]
    attack = next(c for c in doc["cells"] if c["kind"] == "attack")["meta"]["stats"]
    fig["run_models_cached"] = {
        "wall_s": round(wall, 1),
        "target_s": 90,
        "peak_rss_mib": round(rss),
        "unlearn_s": unlearn["seconds"],
        "unlearn_steps": unlearn["steps"],
        "attack_train_s_per_epoch": attack["epoch_train_seconds"],
    }
    wall, rss, _ = timed(run, env)
    fig["run_all_cells_cached"] = {"wall_s": round(wall, 1)}

    _, _, res = timed([sys.executable, "-c", PROBES, args.size], env)
    fig["probe_items_per_s"] = json.loads(res.stdout)

    helps = [timed(CLI + ["--help"], env)[0] for _ in range(5)]
    imp = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "unlearnbench.cli", "--help"],
        env=env,
        capture_output=True,
        text=True,
    )
    fig["help"] = {
        "median_s": round(statistics.median(helps), 3),
        "target_s": 1.0,
        "imports_torch": any(line.split("|")[-1].strip() == "torch" for line in imp.stderr.splitlines()),
    }

    text = json.dumps(fig, indent=1)
    print(text)
    out = Path(args.out or ROOT / "benchmarks" / "results" / f"harness_speed-{args.size}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n")
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
