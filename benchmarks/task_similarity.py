"""How much each fine-tuning task looks like the forget set, on the embedded world. Prints figures
and writes JSON.

    python benchmarks/task_similarity.py [--size micro] [--seed 0] [--out benchmarks/results/task_similarity-micro.json]

Tasks: the three benign tasks built from the world (``retain``, ``syntax``, ``filler``:
:mod:`unlearnbench.tasks.benign`) and the three synthetic stand-ins (``arith``, ``topic``,
``sentiment``), each with its default config (400 training examples). Reference: the forget
examples (the forget people's biography sentences, what unlearning methods get as the forget set).
Also shown, as a reference row: the retain set methods get (the kept people's biography sentences).

Measures (:mod:`unlearnbench.similarity`), on each task's training texts against the forget examples:

- ``template_overlap``: histogram intersection of masked word 3-gram distributions (names and
  numbers masked), no model;
- ``hidden_cosine``: cosine of the mean last-layer hidden states under the world's target model
  (``ToyBenchmark(ToyConfig(size)).load("target")``: cached, or trained on first use; micro about
  a minute on 2 cores, small about ten).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TASK_NAMES = ("retain", "syntax", "filler", "arith", "topic", "sentiment")


def _commit() -> str:
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True).stdout
        return sha + ("+dirty" if dirty.strip() else "")
    except OSError:
        return ""


def measure(size: str, seed: int) -> dict:
    import torch

    from unlearnbench.benchmarks.toy import ToyBenchmark, ToyConfig
    from unlearnbench.data.types import PlanContext, call_hook
    from unlearnbench.registry import TASKS
    from unlearnbench.similarity import hidden_state_cosine, template_overlap, texts_of

    torch.manual_seed(0)
    bench = ToyBenchmark(ToyConfig(size=size, seed=seed))
    t0 = time.time()
    lm = bench.load("target")
    load_s = time.time() - t0
    data = bench.unlearn_data(lm.tokenizer)
    forget = texts_of(data.forget)
    ctx = PlanContext(defaults_for=lambda name: {}, data_tasks={}, benchmark=bench)
    rows = []
    sets = []
    for name in TASK_NAMES:
        cls = TASKS.get(name)
        task = cls(cls.Config())
        call_hook(task, "bind", ctx)
        sets.append((name, texts_of(task.load().train)))
    sets.append(("(method retain set)", texts_of(data.retain)))
    for name, texts in sets:
        rows.append(
            {
                "task": name,
                "n_texts": len(texts),
                "template_overlap": round(template_overlap(texts, forget), 4),
                "hidden_cosine": round(hidden_state_cosine(lm.model, lm.tokenizer, texts, forget), 4),
            }
        )
    return {
        "benchmark": f"toy,size={size},seed={seed}",
        "target_sha256": lm.weights_sha256,
        "n_forget_examples": len(forget),
        "model_load_seconds": round(load_s, 1),
        "rows": rows,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", default="micro", choices=("micro", "small"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="JSON output (default benchmarks/results/task_similarity-SIZE.json)")
    args = ap.parse_args()
    out = Path(args.out or ROOT / "benchmarks" / "results" / f"task_similarity-{args.size}.json")
    doc = {
        **measure(args.size, args.seed),
        "commit": _commit(),
        "python": platform.python_version(),
        "definitions": {
            "template_overlap": "sum_g min(p(g), q(g)) over word 3-grams g, capitalised-word runs -> <N>, "
            "digit tokens -> <D>, texts padded with <s> </s>; p: the task's training texts, q: the forget examples",
            "hidden_cosine": "cosine(mean over texts of mean over tokens of last-layer hidden states, same for "
            "the forget examples) under the target model",
        },
    }
    print(f"{doc['benchmark']}  target {doc['target_sha256'][:12]}  forget examples: {doc['n_forget_examples']}")
    print(f"{'task':<22}{'texts':>7}{'template_overlap':>18}{'hidden_cosine':>15}")
    for r in doc["rows"]:
        print(f"{r['task']:<22}{r['n_texts']:>7}{r['template_overlap']:>18.4f}{r['hidden_cosine']:>15.4f}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
