"""The argparse tree of the ``unlearnbench`` command: every subcommand, its flags and help texts.
Only the standard library is imported here (``unlearnbench --help`` must stay fast and torch-free).
"""

from __future__ import annotations

import argparse

DEFAULT_STORE = "unlearnbench-results.sqlite"
KINDS = ("methods", "attacks", "probes", "benchmarks", "tasks")


def build_parser() -> argparse.ArgumentParser:
    """The whole ``unlearnbench`` command line (subcommands, their flags and help texts)."""
    p = argparse.ArgumentParser(
        prog="unlearnbench",
        description="Does knowledge removed from an LLM stay removed? Unlearn, then "
        "stress-test with relearning fine-tunes and other forms of asking.",
    )
    p.add_argument("--version", action="store_true", help="print the version and exit")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    r = sub.add_parser(
        "run",
        help="unlearn with a method, attack the result, evaluate every form",
        description="Unlearn with METHOD on a benchmark, then run each ATTACK from the unlearned "
        "model, evaluating all probe forms before unlearning, after it and after "
        "every attack epoch. Finished cells in the store are reused.",
    )
    r.add_argument(
        "--method",
        default=None,
        help="method spec, e.g. npo or npo,beta=0.1,lr=5e-4 (required unless --unlearned is given: then none)",
    )
    r.add_argument(
        "--attack",
        action="append",
        default=[],
        metavar="SPEC",
        help="attack spec, e.g. finetune:arith or finetune:arith,epochs=3,lr=1e-4,lora=true (repeatable)",
    )
    r.add_argument("--benchmark", default="toy", help="benchmark spec (default: toy; e.g. toy,size=micro)")
    _add_model_args(r)
    r.add_argument(
        "--data",
        action="append",
        default=[],
        metavar="NAME[:test]=PATH",
        help="local file for a dataset task instead of the hub, e.g. gsm8k=train.jsonl or "
        "gsm8k:test=test.jsonl (repeatable; datasets: gsm8k, agnews, sst2, winogrande, mnli, qqp)",
    )
    r.add_argument(
        "--probes",
        default=None,
        help="comma-separated probe specs, an option after its probe, e.g. tofu,max_new_tokens=200 (default: the benchmark's)",
    )
    r.add_argument("--seed", type=int, default=0, help="seed for unlearning and attacks (default 0)")
    r.add_argument(
        "--control",
        action="append",
        default=None,
        metavar="KIND",
        help="also run every attack on this model as a control cell (repeatable): oracle (the default: "
        "the retrain oracle attacked the same way), base (the base model too: the ceiling), none",
    )
    r.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default cpu)")
    r.add_argument("--store", default=DEFAULT_STORE, help=f"results store (SQLite; default ./{DEFAULT_STORE})")
    r.add_argument(
        "--json", action="store_true", help="print one JSON document (schema in the README) instead of tables"
    )
    r.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_tracking_args(r)
    r.add_argument(
        "--backend",
        choices=("hf", "vllm", "auto"),
        default=None,
        help="generation backend for greedy decoding: hf (reference), vllm (CUDA, optional extra) "
        "or auto (default: $UNLEARNBENCH_BACKEND, else hf)",
    )

    sw = sub.add_parser(
        "sweep",
        help="methods x attacks x seeds: each method unlearned once per seed",
        description="Run a matrix: every method is unlearned once per seed and every attack starts "
        "from that checkpoint. Finished cells are reused; a failing cell is recorded "
        "with its reason and the sweep goes on. Lists are comma-separated; an option "
        "continues the spec before it (npo,beta=0.1,rmu = 'npo,beta=0.1' and 'rmu').",
    )
    sw.add_argument(
        "--experiment",
        default=None,
        metavar="NAME_OR_YAML",
        help="an experiment file, or a name in tasks/experiments/ (e.g. ilu-robustness)",
    )
    sw.add_argument("--methods", default=None, help="e.g. npo,rmu,ilu,rocr")
    sw.add_argument("--attacks", default=None, help="e.g. finetune:arith,finetune:topic,relearn:forget")
    sw.add_argument("--seeds", default=None, help="e.g. 0,1,2 or 0-2 (default 0)")
    sw.add_argument("--benchmark", default=None, help="benchmark spec (default: the experiment's, else toy)")
    _add_model_args(sw)
    sw.add_argument(
        "--probes",
        default=None,
        help="comma-separated probe specs, an option after its probe, e.g. tofu,max_new_tokens=200 (default: the benchmark's)",
    )
    sw.add_argument("--data", action="append", default=[], metavar="NAME[:test]=PATH", help="as for run")
    sw.add_argument("--control", action="append", default=None, metavar="KIND", help="as for run (default oracle)")
    sw.add_argument(
        "--attack-steps",
        type=int,
        default=None,
        metavar="N",
        help="give every training attack the same budget of N optimiser steps (steps=N; attacks without "
        "a step budget, such as quantize, are left as they are)",
    )
    sw.add_argument("--device", default="cpu")
    sw.add_argument("--backend", choices=("hf", "vllm", "auto"), default=None, help="generation backend (as for run)")
    sw.add_argument("--store", default=DEFAULT_STORE)
    _add_executor_args(sw)
    sw.add_argument("--json", action="store_true", help="print the sweep summary as JSON")
    sw.add_argument("--quiet", action="store_true", help="no live view")
    _add_tracking_args(sw)

    st = sub.add_parser(
        "study",
        help="a seed paper's experiment end to end: sweep, report, findings",
        description="Run a study preset (tasks/experiments/NAME.yaml with expected findings): the "
        "sweep, the report, and findings.md stating for every expected finding whether "
        "it holds here, with the numbers. Presets: ilu-robustness, form-dependence, whitebox.",
    )
    st.add_argument("experiment", metavar="NAME_OR_YAML", help="e.g. ilu-robustness or form-dependence")
    st.add_argument(
        "--size",
        choices=("micro", "small"),
        default=None,
        help="embedded world size (overrides the benchmark to toy,size=SIZE; default: the preset's)",
    )
    st.add_argument("--seeds", default=None, help="override the preset's seeds, e.g. 0 or 0-2")
    st.add_argument("--store", default=None, help="results store (default OUT/results.sqlite)")
    st.add_argument("--out", default=None, help="output folder (default ./study-NAME)")
    st.add_argument("--device", default="cpu")
    st.add_argument("--backend", choices=("hf", "vllm", "auto"), default=None, help="generation backend (as for run)")
    _add_executor_args(st)
    st.add_argument("--quiet", action="store_true")

    an = sub.add_parser("analyze", help="analyses of stored results (taskvec, weightspace)")
    an_sub = an.add_subparsers(dest="analysis", metavar="ANALYSIS", required=True)
    tv = an_sub.add_parser(
        "taskvec",
        help="task-vector cosines: does fine-tuning move back along the unlearning direction?",
        description="For every finished unlearning cell in the store: tau_u = unlearned - original, "
        "tau_ft = original fine-tuned - original, tau_u->ft = unlearned fine-tuned - unlearned, "
        "and their cosines over all parameters (streamed tensor by tensor). The fine-tunes "
        "are run once with the attack's options and cached.",
    )
    tv.add_argument("--attack", default="finetune:arith", help="fine-tuning attack spec (default finetune:arith)")
    tv.add_argument("--method", default=None, help="only this method (label or name)")
    tv.add_argument("--benchmark", default="toy", help="benchmark spec the cells were run on (default toy)")
    tv.add_argument("--store", default=DEFAULT_STORE)
    tv.add_argument("--device", default="cpu")
    tv.add_argument("--out", default=None, help="also write the per-seed rows as JSON here")
    tv.add_argument("--json", action="store_true")
    tv.add_argument("--quiet", action="store_true")
    ws = an_sub.add_parser(
        "weightspace",
        help="weight distances, linear mode connectivity, and their correlation with relearning recovery",
        description="For every finished unlearning cell in the store: the distance of its weights to the "
        "original (L2 and relative, per layer and in total) and to the retrain oracle; loss and forget / "
        "retain recall along original + alpha (unlearned - original) with the loss barrier; and across "
        "cells the Spearman / Pearson correlation of these figures with the worst-case recovery of the "
        "cells' relearning attacks (arXiv 2505.22310's question). Reads the store, never writes it.",
    )
    ws.add_argument("--benchmark", default=None, help="benchmark spec (default: the one of the store's cells)")
    ws.add_argument("--method", default=None, help="only this method (label or name)")
    ws.add_argument("--cell", default=None, help="only this unlearning cell (its id or a prefix)")
    ws.add_argument(
        "--alphas", default="0,0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1,1.1,1.2", help="interpolation grid (holds 0 and 1)"
    )
    ws.add_argument("--attack", default="relearn", help="attack whose recovery is correlated (default relearn)")
    ws.add_argument("--probe", default="qa", help="probe whose 'correct' is the recall along the path (default qa)")
    ws.add_argument("--store", default=DEFAULT_STORE)
    ws.add_argument("--device", default="cpu")
    ws.add_argument("--out", default=None, help="also write the full result (per layer, per alpha) as JSON here")
    ws.add_argument("--json", action="store_true")
    ws.add_argument("--quiet", action="store_true")

    ls = sub.add_parser("list", help="list registered plugins")
    ls.add_argument("kind", choices=KINDS)

    rg = sub.add_parser(
        "regress",
        help="re-run a baseline's matrix and fail on numbers outside tolerance",
        description="Re-run the small deterministic matrix a baseline file declares and compare "
        "every number with it (absolute tolerance per metric). Exit 1 on a regression.",
    )
    rg.add_argument("--baseline", required=True, help="baseline JSON, e.g. leaderboard/baselines/micro.json")
    rg.add_argument("--store", default=None, help="results store to run into (default: a temporary one)")
    rg.add_argument("--update", action="store_true", help="write the measured numbers into the baseline")
    rg.add_argument("--reason", default="", help="why the numbers changed (required with --update; recorded)")
    rg.add_argument("--quiet", action="store_true", help="no progress bars")

    rp = sub.add_parser(
        "report",
        help="figures and tables from the store (no model is run)",
        description="Write a forget-quality heatmap (methods x attacks), robustness curves, an "
        "ORT-style form table, a MUSE-style table and one self-contained report.html.",
    )
    rp.add_argument("--store", default=DEFAULT_STORE)
    rp.add_argument("--out", default="unlearnbench-report", help="output folder (default ./unlearnbench-report)")
    rp.add_argument(
        "--similarity",
        metavar="JSON",
        help="a benchmarks/task_similarity.py result: also draw worst-case recovery vs each attack task's similarity",
    )

    res = sub.add_parser(
        "results",
        help="export stored results as CSV, JSON or parquet",
        description="Every per-item score (--level items), or means per cell/checkpoint/split/form/metric with "
        "forget quality, recovery and the attacked-oracle measures of every checkpoint (--level summary).",
    )
    res.add_argument("--store", default=DEFAULT_STORE)
    res.add_argument("--format", choices=("csv", "json", "parquet"), default="csv", help="parquet needs --out")
    res.add_argument(
        "--level",
        choices=("items", "summary"),
        default="summary",
        help="every per-item score, or means per cell/checkpoint/split/form/metric (default)",
    )
    res.add_argument("--out", default=None, help="write to this file instead of stdout")

    w = sub.add_parser("world", help="the embedded world's models (shipped with the package)")
    wsub = w.add_subparsers(dest="world_command", metavar="ACTION", required=True)
    wb = wsub.add_parser(
        "build",
        help="retrain the embedded target and oracle from their recipe and compare with the shipped weights",
        description="Train the embedded models of one size from tasks/benchmarks/toy.yaml in a "
        "temporary folder (not the cache, not from the shipped copy), check the quality gate "
        "(exit 2 below it) and say whether this machine reproduces the shipped weights' sha256. "
        "Runs always use the shipped copy when its key matches; set UNLEARNBENCH_SHIPPED=0 to "
        "train into the cache instead.",
    )
    wb.add_argument("--size", default="micro", help="world size from toy.yaml (micro, small; default micro)")
    wb.add_argument("--seed", type=int, default=0, help="world seed (default 0)")
    wb.add_argument("--role", choices=("target", "oracle", "both"), default="both")
    wb.add_argument(
        "--ship",
        action="store_true",
        help="maintainers: copy the new folders into unlearnbench/toy/weights/ and its manifest (then commit)",
    )
    wb.add_argument("--json", action="store_true", help="print the records as JSON")
    wb.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_leaderboard_parsers(sub)
    return p


def _add_model_args(p) -> None:
    """--model, --oracle, --dtype, --revision, --trust-remote-code, --unlearned and --generations (run, sweep)."""
    p.add_argument(
        "--generations",
        type=int,
        default=1000,
        metavar="CHARS",
        help="keep each item's generated text in the store, cut to CHARS characters (default 1000; 0: keep none)",
    )
    p.add_argument(
        "--model",
        default=None,
        metavar="ID_OR_DIR",
        help="your model: a hub id, a local directory (config.json + *.safetensors) or a .gguf file; for "
        "benchmarks on real data (tofu, muse, wmdp, ort), not the embedded world",
    )
    p.add_argument(
        "--oracle",
        default=None,
        metavar="ID_OR_DIR",
        help="the retrain oracle (the same model trained without the forget set): forget quality and the "
        "attacked-oracle control are measured against it",
    )
    p.add_argument(
        "--dtype", default=None, help="weights dtype for --model/--oracle: auto (default), float32, bfloat16"
    )
    p.add_argument("--revision", default=None, help="hub revision (branch, tag or commit) of --model and --oracle")
    p.add_argument(
        "--trust-remote-code",
        action="store_true",
        help="let transformers run the model repository's own code (off unless given)",
    )
    p.add_argument(
        "--unlearned",
        default=None,
        metavar="DIR",
        help="a checkpoint unlearned elsewhere, from --model: evaluated and attacked as method none "
        "against its original (--model) and the oracle (--oracle)",
    )


def _add_tracking_args(p) -> None:
    """--log, --log-dir, --log-project (run, sweep)."""
    p.add_argument(
        "--log",
        action="append",
        default=[],
        metavar="TRACKER",
        help="also log to an experiment tracker: wandb, mlflow or tensorboard (repeatable or comma-separated; "
        "optional extras, e.g. pip install 'unlearnbench[wandb]'): per-step losses of unlearning and attacks, "
        "every evaluation, the run's config; wandb's mode is its own (WANDB_MODE=offline: no network)",
    )
    p.add_argument(
        "--log-dir",
        default=None,
        metavar="DIR",
        help="where the trackers write (wandb's run folders, mlflow.db, tensorboard/; default: "
        "STORE-logs beside the store)",
    )
    p.add_argument(
        "--log-project",
        default="unlearnbench",
        metavar="NAME",
        help="wandb project, MLflow experiment, TensorBoard folder (default unlearnbench)",
    )


def _add_executor_args(p) -> None:
    """--executor local|ray and the Ray options (sweep, study)."""
    p.add_argument(
        "--executor",
        choices=("local", "ray"),
        default="local",
        help="local: one run after another in this process (default); ray: each (method, seed) run is a Ray "
        "task, this process writes the store (pip install 'unlearnbench[ray]')",
    )
    p.add_argument("--address", default=None, help="with --executor ray: a Ray cluster to join (default: a local one)")
    p.add_argument(
        "--cpus-per-task",
        type=float,
        default=1,
        help="with --executor ray: CPUs each run declares (also its torch threads; default 1)",
    )
    p.add_argument(
        "--gpus-per-task", type=float, default=0, help="with --executor ray: GPUs each run declares (default 0)"
    )
    p.add_argument(
        "--checkpoints",
        choices=("cache", "object-store"),
        default="cache",
        help="with --executor ray: how unlearned checkpoints reach a resumed run's worker: a cache folder "
        "the workers share (default) or Ray's object store (workers keep a cache of their own)",
    )
    p.add_argument(
        "--worker-cache",
        default=None,
        metavar="DIR",
        help="with --checkpoints object-store: the workers' own cache (default: under each node's temp folder)",
    )


def _add_leaderboard_parsers(sub) -> None:
    """``submit`` and ``leaderboard {verify,build,held-out-hash}`` (handled by :mod:`unlearnbench.cli.leaderboard`)."""
    s = sub.add_parser(
        "submit",
        help="run a method through a leaderboard matrix and write a submission bundle",
        description="Run METHOD through every attack and seed a leaderboard matrix declares "
        "(tasks/leaderboard/<matrix>.yaml), each attack also on the matrix's controls (the retrain "
        "oracle), and write a bundle: manifest.json (schema leaderboard/schema/submission-2.json) and "
        "scores.csv.gz (every per-item score). A held-out grid is never run.",
    )
    s.add_argument("--method", required=True, help="method spec, e.g. npo or rocr,projector=none")
    s.add_argument("--matrix", default="toy-micro", help="leaderboard matrix name (default toy-micro)")
    s.add_argument("--out", required=True, help="bundle folder to write (new or empty)")
    s.add_argument(
        "--store",
        default=DEFAULT_STORE,
        help=f"results store to run into (default ./{DEFAULT_STORE}); finished cells are reused",
    )
    s.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default cpu)")
    s.add_argument("--quiet", action="store_true", help="no progress bars")

    lb = sub.add_parser("leaderboard", help="verify submission bundles and build the static leaderboard site")
    lsub = lb.add_subparsers(dest="leaderboard_command", metavar="ACTION", required=True)
    v = lsub.add_parser(
        "verify",
        help="accept or refuse a bundle, one line per reason (exit 1 if refused)",
        description="Check a submission bundle: files (no pickles, no code), schema, matrix "
        "completeness, provenance and versions, per-cell score hashes, aggregates "
        "recomputed from the per-item scores; optionally re-run K cells here.",
    )
    v.add_argument("bundle", help="bundle folder")
    v.add_argument(
        "--rerun",
        type=int,
        default=0,
        metavar="K",
        help="re-run K sampled attack cells here (method plugin must be installed), with their "
        "unlearn and control cells, and compare within the matrix's tolerance",
    )
    v.add_argument(
        "--held-out",
        default=None,
        metavar="FILE",
        help="maintainers: the matrix's held-out attack list (kept outside the repository); its hash "
        "must be the matrix's held_out.sha256 (exit 2 otherwise); the method is run on every held-out "
        "attack in every seed and their worst case is reported beside the bundle's",
    )
    v.add_argument("--json", action="store_true", help="print the verdict as one JSON document")
    b = lsub.add_parser("build", help="verify every bundle and render the static site (index.html + detail pages)")
    b.add_argument(
        "--submissions", default="leaderboard/submissions", help="folder of bundles (default leaderboard/submissions)"
    )
    b.add_argument("--out", default="leaderboard/site", help="site folder (default leaderboard/site)")
    h = lsub.add_parser(
        "held-out-hash",
        help="print the held_out: entry (sha256, count) a matrix declares for a held-out attack file",
        description="Hash a held-out attack file (YAML: salt, attacks) the way verify --held-out "
        "checks it: sha256 of the canonical JSON of {attacks: [canonical specs], salt}.",
    )
    h.add_argument("file", help="held-out file (YAML or JSON with 'attacks' and 'salt')")
    r = lsub.add_parser(
        "reaggregate",
        help="maintainers: re-derive bundles' aggregates from their own per-item scores (after a definition change)",
        description="Check each bundle's scores against its manifest's hashes, recompute every cell's aggregates "
        "with this harness's definitions and rewrite manifest.json; the scores are not touched.",
    )
    r.add_argument("bundles", nargs="+", help="bundle folders")
