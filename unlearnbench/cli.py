"""The ``unlearnbench`` command: parse, call the library, render. Nothing heavy is imported here
at start-up (``unlearnbench --help`` must not import torch).

Exit codes: 0 ok; 2 bad input (one line on stderr, no traceback, nothing stored is lost); 1 a
cell failed (recorded in the store with its reason); 130 interrupted.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

DEFAULT_STORE = "unlearnbench-results.sqlite"
KINDS = ("methods", "attacks", "probes", "benchmarks", "tasks")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="unlearnbench",
                                description="Does knowledge removed from an LLM stay removed? Unlearn, then "
                                            "stress-test with relearning fine-tunes and other forms of asking.")
    p.add_argument("--version", action="store_true", help="print the version and exit")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    r = sub.add_parser("run", help="unlearn with a method, attack the result, evaluate every form",
                       description="Unlearn with METHOD on a benchmark, then run each ATTACK from the unlearned "
                                   "model, evaluating all probe forms before unlearning, after it and after "
                                   "every attack epoch. Finished cells in the store are reused.")
    r.add_argument("--method", required=True, help="method spec, e.g. npo or npo,beta=0.1,lr=5e-4")
    r.add_argument("--attack", action="append", default=[], metavar="SPEC",
                   help="attack spec, e.g. finetune:arith or finetune:arith,epochs=3,lr=1e-4,lora=true (repeatable)")
    r.add_argument("--benchmark", default="toy", help="benchmark spec (default: toy; e.g. toy,size=micro)")
    r.add_argument("--data", action="append", default=[], metavar="NAME[:test]=PATH",
                   help="local file for a dataset task instead of the hub, e.g. gsm8k=train.jsonl or "
                        "gsm8k:test=test.jsonl (repeatable; datasets: gsm8k, agnews, sst2, winogrande, mnli, qqp)")
    r.add_argument("--probes", default=None, help="comma-separated probe forms (default: the benchmark's)")
    r.add_argument("--seed", type=int, default=0, help="seed for unlearning and attacks (default 0)")
    r.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default cpu)")
    r.add_argument("--store", default=DEFAULT_STORE, help=f"results store (SQLite; default ./{DEFAULT_STORE})")
    r.add_argument("--json", action="store_true", help="print one JSON document (schema in the README) instead of tables")
    r.add_argument("--quiet", action="store_true", help="no progress bars")
    r.add_argument("--backend", choices=("hf", "vllm", "auto"), default=None,
                   help="generation backend for greedy decoding: hf (reference), vllm (CUDA, optional extra) "
                        "or auto (default: $UNLEARNBENCH_BACKEND, else hf)")

    sw = sub.add_parser("sweep", help="methods x attacks x seeds: each method unlearned once per seed",
                        description="Run a matrix: every method is unlearned once per seed and every attack starts "
                                    "from that checkpoint. Finished cells are reused; a failing cell is recorded "
                                    "with its reason and the sweep goes on. Lists are comma-separated; an option "
                                    "continues the spec before it (npo,beta=0.1,rmu = 'npo,beta=0.1' and 'rmu').")
    sw.add_argument("--experiment", default=None, metavar="NAME_OR_YAML",
                    help="an experiment file, or a name in tasks/experiments/ (e.g. ilu-robustness)")
    sw.add_argument("--methods", default=None, help="e.g. npo,rmu,ilu,rocr")
    sw.add_argument("--attacks", default=None, help="e.g. finetune:arith,finetune:topic,relearn:forget")
    sw.add_argument("--seeds", default=None, help="e.g. 0,1,2 or 0-2 (default 0)")
    sw.add_argument("--benchmark", default=None, help="benchmark spec (default: the experiment's, else toy)")
    sw.add_argument("--probes", default=None, help="comma-separated probe forms (default: the benchmark's)")
    sw.add_argument("--data", action="append", default=[], metavar="NAME[:test]=PATH", help="as for run")
    sw.add_argument("--device", default="cpu")
    sw.add_argument("--backend", choices=("hf", "vllm", "auto"), default=None, help="generation backend (as for run)")
    sw.add_argument("--store", default=DEFAULT_STORE)
    sw.add_argument("--json", action="store_true", help="print the sweep summary as JSON")
    sw.add_argument("--quiet", action="store_true", help="no live view")

    st = sub.add_parser("study", help="a seed paper's experiment end to end: sweep, report, findings",
                        description="Run a study preset (tasks/experiments/NAME.yaml with expected findings): the "
                                    "sweep, the report, and findings.md stating for every expected finding whether "
                                    "it holds here, with the numbers. Presets: ilu-robustness, form-dependence.")
    st.add_argument("experiment", metavar="NAME_OR_YAML", help="e.g. ilu-robustness or form-dependence")
    st.add_argument("--size", choices=("micro", "small"), default=None,
                    help="embedded world size (overrides the benchmark to toy,size=SIZE; default: the preset's)")
    st.add_argument("--seeds", default=None, help="override the preset's seeds, e.g. 0 or 0-2")
    st.add_argument("--store", default=None, help="results store (default OUT/results.sqlite)")
    st.add_argument("--out", default=None, help="output folder (default ./study-NAME)")
    st.add_argument("--device", default="cpu")
    st.add_argument("--backend", choices=("hf", "vllm", "auto"), default=None, help="generation backend (as for run)")
    st.add_argument("--quiet", action="store_true")

    an = sub.add_parser("analyze", help="analyses of stored results (taskvec)")
    an_sub = an.add_subparsers(dest="analysis", metavar="ANALYSIS", required=True)
    tv = an_sub.add_parser("taskvec", help="task-vector cosines: does fine-tuning move back along the unlearning direction?",
                           description="For every finished unlearning cell in the store: tau_u = unlearned - original, "
                                       "tau_ft = original fine-tuned - original, tau_u->ft = unlearned fine-tuned - unlearned, "
                                       "and their cosines over all parameters (streamed tensor by tensor). The fine-tunes "
                                       "are run once with the attack's options and cached.")
    tv.add_argument("--attack", default="finetune:arith", help="fine-tuning attack spec (default finetune:arith)")
    tv.add_argument("--method", default=None, help="only this method (label or name)")
    tv.add_argument("--benchmark", default="toy", help="benchmark spec the cells were run on (default toy)")
    tv.add_argument("--store", default=DEFAULT_STORE)
    tv.add_argument("--device", default="cpu")
    tv.add_argument("--out", default=None, help="also write the per-seed rows as JSON here")
    tv.add_argument("--json", action="store_true")
    tv.add_argument("--quiet", action="store_true")

    ls = sub.add_parser("list", help="list registered plugins")
    ls.add_argument("kind", choices=KINDS)

    rg = sub.add_parser("regress", help="re-run a baseline's matrix and fail on numbers outside tolerance",
                        description="Re-run the small deterministic matrix a baseline file declares and compare "
                                    "every number with it (absolute tolerance per metric). Exit 1 on a regression.")
    rg.add_argument("--baseline", required=True, help="baseline JSON, e.g. leaderboard/baselines/micro.json")
    rg.add_argument("--store", default=None, help="results store to run into (default: a temporary one)")
    rg.add_argument("--update", action="store_true", help="write the measured numbers into the baseline")
    rg.add_argument("--reason", default="", help="why the numbers changed (required with --update; recorded)")
    rg.add_argument("--quiet", action="store_true", help="no progress bars")

    rp = sub.add_parser("report", help="figures and tables from the store (no model is run)",
                        description="Write a forget-quality heatmap (methods x attacks), robustness curves, an "
                                    "ORT-style form table, a MUSE-style table and one self-contained report.html.")
    rp.add_argument("--store", default=DEFAULT_STORE)
    rp.add_argument("--out", default="unlearnbench-report", help="output folder (default ./unlearnbench-report)")

    res = sub.add_parser("results", help="export stored results (pandas) as CSV or JSON")
    res.add_argument("--store", default=DEFAULT_STORE)
    res.add_argument("--format", choices=("csv", "json"), default="csv")
    res.add_argument("--level", choices=("items", "summary"), default="summary",
                     help="every per-item score, or means per cell/checkpoint/split/form/metric (default)")
    res.add_argument("--out", default=None, help="write to this file instead of stdout")

    from .leaderboard.cli import add_parsers as add_leaderboard_parsers  # submit, leaderboard verify/build
    add_leaderboard_parsers(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.version:
        from . import __version__
        print(__version__)
        return 0
    if not args.command:
        _parser().print_help()
        return 2
    from .errors import UnlearnbenchError

    try:
        return {"run": _cmd_run, "sweep": _cmd_sweep, "study": _cmd_study, "analyze": _cmd_analyze, "list": _cmd_list, "results": _cmd_results,
                "regress": _cmd_regress, "report": _cmd_report,
                "submit": _cmd_submit, "leaderboard": _cmd_leaderboard}[args.command](args)
    except UnlearnbenchError as e:
        print(f"unlearnbench: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("unlearnbench: interrupted (finished cells are kept in the store)", file=sys.stderr)
        return 130


def _cmd_submit(args) -> int:
    from .leaderboard.cli import cmd_submit
    return cmd_submit(args)


def _cmd_leaderboard(args) -> int:
    from .leaderboard.cli import cmd_leaderboard
    return cmd_leaderboard(args)


def _cmd_run(args) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    _select_backend(args)
    from . import runner
    from .report import run_summary
    from .store import ResultStore

    request = runner.RunRequest(method=args.method, attacks=args.attack, benchmark=args.benchmark,
                                probes=args.probes.split(",") if args.probes else None,
                                seed=args.seed, device=args.device, data=_data_args(args.data))
    planned = runner.plan(request)  # validate every spec before opening anything
    from .ui import RichProgress, render_run

    progress = RichProgress(enabled=not (args.quiet or args.json))
    with ResultStore(args.store) as store, progress:
        cells = runner.run(request, store, progress, argv=tuple(sys.argv), planned=planned)
        summary = run_summary(store, cells)
    if args.json:
        print(json.dumps(summary, indent=1))
    else:
        render_run(summary)
    return 1 if any(c.status == "failed" for c in cells) else 0


def _experiment_from_args(args):
    """The experiment of `sweep`/`study`: a YAML file or name, with command-line overrides."""
    from .errors import UnlearnbenchError
    from .sweep import Experiment, load_experiment, parse_seeds, split_specs

    if args.experiment:
        exp = load_experiment(args.experiment)
    elif args.methods and args.attacks:
        exp = Experiment(name="sweep", methods=[], attacks=[])
    else:
        raise UnlearnbenchError("give --experiment NAME_OR_YAML, or both --methods and --attacks")
    if args.methods:
        exp.methods = split_specs(args.methods)
    if args.attacks:
        exp.attacks = split_specs(args.attacks)
    if args.seeds:
        exp.seeds = parse_seeds(args.seeds)
    if args.benchmark:
        exp.benchmark = args.benchmark
    if args.probes:
        exp.probes = args.probes.split(",")
    if args.data:
        exp.data = {**exp.data, **_data_args(args.data)}
    if not exp.methods or not exp.attacks:
        raise UnlearnbenchError("the sweep needs at least one method and one attack")
    return exp


def _select_backend(args) -> None:
    if getattr(args, "backend", None):  # validated now; probes read the choice from $UNLEARNBENCH_BACKEND
        from .generation import set_backend

        set_backend(args.backend)


def _sweep_live(exp, args, store_path: str, live: bool):
    """Validate, then run the sweep under the live matrix view; returns (result, run summaries, doc)."""
    from .store import ResultStore
    from .sweep import SweepState, plan_sweep, run_summaries, run_sweep, sweep_summary
    from .ui import SweepView

    _select_backend(args)
    planned = plan_sweep(exp, args.device)  # every spec validated before the store is opened
    state = SweepState(exp.methods, exp.attacks, exp.seeds)
    with ResultStore(store_path) as store:
        with SweepView(state, enabled=live) as view:
            result = run_sweep(exp, store, view, args.device, state, argv=tuple(sys.argv), planned=planned)
        summaries = run_summaries(store, result.runs)
        return result, summaries, sweep_summary(result, summaries)


def _cmd_sweep(args) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from .ui import render_sweep

    exp = _experiment_from_args(args)
    result, _, summary = _sweep_live(exp, args, args.store, live=not (args.quiet or args.json))
    if args.json:
        print(json.dumps(summary, indent=1))
    else:
        render_sweep(summary)
    return 1 if result.failed else 0


def _cmd_study(args) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from .errors import UnlearnbenchError
    from .reports import write_report
    from .study import check_findings, write_findings
    from .sweep import load_experiment, parse_seeds
    from .ui import render_sweep

    exp = load_experiment(args.experiment)
    if not exp.expected:
        raise UnlearnbenchError(f"'{args.experiment}' declares no expected findings: use `unlearnbench sweep --experiment`")
    if args.size:
        if not exp.benchmark.split(",")[0] == "toy":
            raise UnlearnbenchError(f"--size applies to the toy benchmark, not '{exp.benchmark}'")
        exp.benchmark = f"toy,size={args.size}"
    if args.seeds:
        exp.seeds = parse_seeds(args.seeds)
    out = args.out or f"study-{exp.name}"
    os.makedirs(out, exist_ok=True)
    store_path = args.store or os.path.join(out, "results.sqlite")
    result, summaries, doc = _sweep_live(exp, args, store_path, live=not args.quiet)
    findings = check_findings(exp.expected, summaries, result)
    files = write_findings(out, result, findings, doc)
    report_files = write_report(store_path, os.path.join(out, "report"))
    render_sweep(doc)
    mark = {True: "[holds]", False: "[does NOT hold]", None: "[not measured]"}
    for i, f in enumerate(findings, 1):
        print(f"{i}. {mark[f.holds]} {f.claim}\n   {f.detail}")
    print(f"wrote {files[0]}, {files[1]} and {len(report_files)} report files to {os.path.join(out, 'report')}/ "
          f"({result.seconds:.0f} s)")
    return 1 if result.failed else 0


def _cmd_analyze(args) -> int:
    from .errors import UnlearnbenchError
    from .store import ResultStore
    from .taskvec import analyze_store, summarize
    from .ui import RichProgress, render_taskvec

    if not os.path.exists(args.store):
        raise UnlearnbenchError(f"no results store at '{args.store}' (run `unlearnbench run` or `sweep` first)")
    with ResultStore(args.store) as store, RichProgress(enabled=not (args.quiet or args.json)) as progress:
        rows = analyze_store(store, args.benchmark, args.attack, args.method, progress, args.device)
    summary = summarize(rows)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"schema": "unlearnbench.taskvec/1", "rows": rows, "summary": summary}, f, indent=1)
    if args.json:
        print(json.dumps({"schema": "unlearnbench.taskvec/1", "summary": summary,
                          "rows": [{k: v for k, v in r.items() if k != "per_tensor"} for r in rows]}, indent=1))
    else:
        render_taskvec(summary)
    return 0


def _data_args(items: list[str]) -> dict[str, str]:
    """['gsm8k=a.jsonl', 'gsm8k:test=b.jsonl'] -> {'gsm8k': 'a.jsonl', 'gsm8k:test': 'b.jsonl'}."""
    from .errors import UnlearnbenchError

    data: dict[str, str] = {}
    for item in items:
        key, sep, path = (part.strip() for part in item.partition("="))
        if not sep or not key or not path:
            raise UnlearnbenchError(f"--data {item!r}: expected NAME=PATH or NAME:test=PATH, "
                                    f"e.g. --data gsm8k=path/to/train.jsonl")
        key = key.removesuffix(":train")
        if key in data:
            raise UnlearnbenchError(f"--data {key} is given twice ('{data[key]}' and '{path}')")
        data[key] = path
    return data


def _cmd_list(args) -> int:
    from . import registry
    from .spec import config_help

    reg = {"methods": registry.METHODS, "attacks": registry.ATTACKS, "probes": registry.PROBES,
           "benchmarks": registry.BENCHMARKS, "tasks": registry.TASKS}[args.kind]
    for name, cls in reg.items():
        arg = f":<{cls.needs_arg}>" if getattr(cls, "needs_arg", None) else ""
        print(f"{name}{arg}  (v{cls.version})  {getattr(cls, 'description', '')}")
        for field, typ, default, help_ in config_help(cls.Config):
            print(f"    {field}={default}  [{typ}]  {help_}")
    return 0


def _cmd_regress(args) -> int:
    import tempfile

    from .errors import UnlearnbenchError
    from .regress import compare, load_baseline, run_matrix, update_baseline
    from .store import ResultStore
    from .ui import RichProgress, render_regress

    baseline = load_baseline(args.baseline)
    if args.update and not args.reason.strip():
        raise UnlearnbenchError('--update needs --reason "why the numbers changed" (it is recorded in the baseline)')
    with tempfile.TemporaryDirectory() as tmp:
        with ResultStore(args.store or os.path.join(tmp, "regress.sqlite")) as store, \
                RichProgress(enabled=not args.quiet) as progress:
            measured = run_matrix(baseline, store, progress)
    diffs = compare(baseline, measured)
    if args.update:
        update_baseline(args.baseline, baseline, measured, args.reason)
        print(f"updated {args.baseline}: {len(diffs)} number(s) changed; reason recorded")
        return 0
    render_regress(diffs, baseline)
    return 1 if diffs else 0


def _cmd_report(args) -> int:
    from .errors import UnlearnbenchError
    from .reports import write_report

    if not os.path.exists(args.store):
        raise UnlearnbenchError(f"no results store at '{args.store}' (run `unlearnbench run` first or pass --store)")
    files = write_report(args.store, args.out)
    print(f"wrote {len(files)} files to {args.out}/ (open {os.path.join(args.out, 'report.html')})")
    return 0


def _cmd_results(args) -> int:
    from .errors import UnlearnbenchError
    from .store import ResultStore

    if not os.path.exists(args.store):
        raise UnlearnbenchError(f"no results store at '{args.store}' (run `unlearnbench run` first or pass --store)")
    with ResultStore(args.store) as store:
        text = store.export(args.format, level=args.level)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
