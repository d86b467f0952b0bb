"""Every method on the embedded world: recall and answer probability per form and split, beside the
base model and the retrain oracle, plus unlearning time. Prints a Markdown table, writes JSON.

    python benchmarks/methods_forms.py [--size small] [--methods gradascent,graddiff,npo,simnpo,rmu,ilu,rocr]
                                       [--attack finetune:arith] [--store PATH]

Uses the tuned defaults of tasks/benchmarks/toy.yaml and the same results store as the CLI (cells
already there are reused), so it is also how the numbers in the closing notes were produced.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FORMS = ("bio", "qa", "cloze", "mcq", "tf", "reverse", "paraphrase")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="small")
    ap.add_argument("--methods", default="gradascent,graddiff,npo,simnpo,rmu,ilu,rocr")
    ap.add_argument("--attack", default=None, help="also run this attack from every unlearned model")
    ap.add_argument("--store", default=str(ROOT / "benchmarks" / "results" / "methods.sqlite"))
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    docs = {}
    for method in args.methods.split(","):
        cmd = [
            sys.executable,
            "-m",
            "unlearnbench.cli",
            "run",
            "--benchmark",
            f"toy,size={args.size}",
            "--method",
            method,
            "--store",
            args.store,
            "--json",
            "--quiet",
        ]
        if args.attack:
            cmd += ["--attack", args.attack]
        res = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if res.returncode not in (0, 1):
            raise SystemExit(f"{method}: {res.stderr.strip().splitlines()[-1]}")
        docs[method] = json.loads(res.stdout)
        print(f"ran {method}", file=sys.stderr)

    first = next(iter(docs.values()))
    rows = {"base": first["recall"]["base"], "oracle": first["recall"]["oracle"]}
    probs = {"base": first["prob"]["base"], "oracle": first["prob"]["oracle"]}
    extra = {}
    for method, doc in docs.items():
        rows[method] = doc["recall"].get("unlearned", {})
        probs[method] = doc["prob"].get("unlearned", {})
        cell = next(c for c in doc["cells"] if c["kind"] == "unlearn")
        extra[method] = {
            "status": cell["status"],
            "reason": cell["reason"],
            "unlearn_seconds": cell["meta"].get("stats", {}).get("seconds"),
            "forget_quality": doc["forget_quality"].get("unlearned", {}).get("mean"),
            "after_attack": {
                c["column"]: doc["forget_quality"].get(c["column"], {}).get("mean")
                for c in doc["columns"]
                if c["kind"] == "attack"
            },
        }
    lines = []
    for split in ("forget", "neighbour", "retain"):
        lines.append(f"\n**{split}** (recall; answer probability in brackets)\n")
        lines.append("| model | " + " | ".join(FORMS) + " | FQ | unlearn s |")
        lines.append("|---" * (len(FORMS) + 3) + "|")
        for name, rec in rows.items():
            cells = []
            for f in FORMS:
                r, p = rec.get(split, {}).get(f), probs[name].get(split, {}).get(f)
                cells.append("–" if r is None else f"{r:.2f} ({p:.2f})")
            fq = extra.get(name, {}).get("forget_quality")
            secs = extra.get(name, {}).get("unlearn_seconds")
            lines.append(
                f"| {name} | " + " | ".join(cells) + f" | {'' if fq is None else f'{fq:.2f}'} | "
                f"{'' if secs is None else secs} |"
            )
    text = "\n".join(lines)
    print(text)
    out = Path(args.out or ROOT / "benchmarks" / "results" / f"methods_forms-{args.size}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"recall": rows, "prob": probs, "methods": extra, "markdown": text}, indent=1) + "\n")
    print(f"wrote {out}", file=sys.stderr)


if __name__ == "__main__":
    main()
