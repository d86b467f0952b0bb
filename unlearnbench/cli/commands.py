"""The command handlers: turn parsed arguments into library calls and render what comes back.

Each handler takes the ``argparse`` namespace and returns the exit code. Library modules (and
Rich) are imported inside the handlers, so building the parser stays light.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys

from . import leaderboard

#: Libraries whose log records --quiet raises to errors only (their warnings and load reports).
QUIET_LOGGERS = (
    "transformers",
    "datasets",
    "peft",
    "huggingface_hub",
    "accelerate",
    "torch",
    "ray",
    "mlflow",
    "alembic",
)


#: Environment variables --quiet sets while a command runs (read by the libraries as they set up logging).
QUIET_ENV = {
    "TRANSFORMERS_VERBOSITY": "error",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
    "WANDB_SILENT": "true",  # the trackers set their loggers up on import: tell them first
    "MLFLOW_LOGGING_LEVEL": "ERROR",
}


@contextlib.contextmanager
def quiet_libraries(enabled: bool = True):
    """--quiet, for the duration of one command: no warnings from the libraries underneath
    (deprecations, load reports, generation flags); errors still print, and the harness's own
    warnings (e.g. prompts cut to fit) still log. Everything is put back afterwards, so a caller of
    :func:`unlearnbench.cli.main` in a longer-lived process (a test, a notebook) keeps its logging."""
    if not enabled:
        yield
        return
    import logging
    import warnings

    env = {k: os.environ.get(k) for k in QUIET_ENV}
    levels = {name: logging.getLogger(name).level for name in QUIET_LOGGERS}
    hf_before = _hf_verbosity()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore")
        os.environ.update(QUIET_ENV)
        for name in QUIET_LOGGERS:
            logging.getLogger(name).setLevel(logging.ERROR)
        if "transformers" in sys.modules:
            from transformers.utils import logging as hf_logging

            hf_logging.set_verbosity_error()
        try:
            yield
        finally:
            for k, v in env.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
            for name, level in levels.items():
                logging.getLogger(name).setLevel(level)
            if "transformers" in sys.modules:  # imported before or during the command
                from transformers.utils import logging as hf_logging

                hf_logging.set_verbosity(hf_before if hf_before is not None else logging.WARNING)


def _hf_verbosity() -> int | None:
    if "transformers" not in sys.modules:
        return None
    from transformers.utils import logging as hf_logging

    return hf_logging.get_verbosity()


def cmd_run(args) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    tracking = _tracking(args)  # before anything: a tracker that is not installed is one line, exit 2
    _select_backend(args)
    from .. import runner
    from ..report import run_summary
    from ..store import ResultStore
    from ..sweep import split_specs

    request = runner.RunRequest(
        method=_method_arg(args),
        attacks=args.attack,
        benchmark=args.benchmark,
        probes=split_specs(args.probes) if args.probes else None,
        seed=args.seed,
        device=args.device,
        data=_data_args(args.data),
        controls=args.control or ["oracle"],
        model=_model_args(args),
        unlearned=args.unlearned or "",
        generations=args.generations,
    )
    planned = runner.plan(request)  # validate every spec before opening anything
    from .render import RichProgress, render_run

    progress = RichProgress(enabled=not (args.quiet or args.json))
    with ResultStore(args.store) as store, progress:
        with tracking.for_request(store, request) if tracking else contextlib.nullcontext() as heard:
            shown = tracking.progress(progress) if tracking else progress
            cells = runner.run(request, store, shown, argv=tuple(sys.argv), on_cell=heard, planned=planned)
        summary = run_summary(store, cells)
    if args.json:
        print(json.dumps(summary, indent=1))
    else:
        render_run(summary)
    return 1 if any(c.status == "failed" for c in cells) else 0


def cmd_sweep(args) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from ..store import ResultStore
    from ..sweep import SweepState, plan_sweep, run_summaries, sweep_summary
    from .render import SweepView, render_sweep

    execute = _executor(args)  # before anything is planned: a bad option is one line, exit 2
    tracking = _tracking(args)
    exp = _experiment_from_args(args)
    _select_backend(args)
    planned = plan_sweep(exp, args.device)  # every spec validated before the store is opened
    state = SweepState(exp.methods, exp.attacks, exp.seeds)
    with ResultStore(args.store) as store:
        with SweepView(state, enabled=not (args.quiet or args.json)) as view:
            # one tracker run per (method, seed) run, grouped under the experiment's name
            track = (lambda req: tracking.for_request(store, req, group=exp.name)) if tracking else None
            shown = tracking.progress(view) if tracking else view
            result = execute(exp, store, shown, args.device, state, argv=tuple(sys.argv), planned=planned, track=track)
        summaries = run_summaries(store, result.runs)
    summary = sweep_summary(result, summaries)
    if args.json:
        print(json.dumps(summary, indent=1))
    else:
        render_sweep(summary)
    return 1 if result.failed else 0


def cmd_study(args) -> int:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from ..study import load_study, run_study
    from .render import SweepView, render_study

    execute = _executor(args)
    exp = load_study(args.experiment, size=args.size, seeds=args.seeds)
    study = run_study(
        exp,
        execute=execute,
        out=args.out,
        store=args.store,
        device=args.device,
        backend=args.backend,
        view=lambda state: SweepView(state, enabled=not args.quiet),
        argv=tuple(sys.argv),
    )
    render_study(study)
    return 1 if study.sweep.failed else 0


def cmd_analyze(args) -> int:
    from ..errors import UnlearnbenchError
    from ..store import ResultStore
    from ..taskvec import analyze_store, summarize
    from .render import RichProgress, render_taskvec

    if not os.path.exists(args.store):
        raise UnlearnbenchError(f"no results store at '{args.store}' (run `unlearnbench run` or `sweep` first)")
    if args.analysis == "weightspace":
        return _analyze_weightspace(args)
    with ResultStore(args.store) as store, RichProgress(enabled=not (args.quiet or args.json)) as progress:
        rows = analyze_store(store, args.benchmark, args.attack, args.method, progress, args.device)
    summary = summarize(rows)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"schema": "unlearnbench.taskvec/1", "rows": rows, "summary": summary}, f, indent=1)
    if args.json:
        print(
            json.dumps(
                {
                    "schema": "unlearnbench.taskvec/1",
                    "summary": summary,
                    "rows": [{k: v for k, v in r.items() if k != "per_tensor"} for r in rows],
                },
                indent=1,
            )
        )
    else:
        render_taskvec(summary)
    return 0


def _analyze_weightspace(args) -> int:
    from .. import weightspace
    from ..store import ResultStore
    from .render import RichProgress, render_weightspace

    alphas = weightspace.parse_alphas(args.alphas)
    with ResultStore(args.store) as store, RichProgress(enabled=not (args.quiet or args.json)) as progress:
        doc = weightspace.analyze_store(
            store, args.benchmark, args.method, args.cell, alphas, args.attack, args.probe, progress, args.device
        )
    if args.out:
        with open(args.out, "w") as f:
            json.dump(doc, f, indent=1)
    if args.json:
        print(json.dumps(doc, indent=1))
    else:
        render_weightspace(doc)
    return 0


def cmd_list(args) -> int:
    from .. import registry
    from ..spec import config_help

    reg = {
        "methods": registry.METHODS,
        "attacks": registry.ATTACKS,
        "probes": registry.PROBES,
        "benchmarks": registry.BENCHMARKS,
        "tasks": registry.TASKS,
    }[args.kind]
    for name, cls in reg.items():
        arg = f":<{cls.needs_arg}>" if getattr(cls, "needs_arg", None) else ""
        print(f"{name}{arg}  (v{cls.version})  {getattr(cls, 'description', '')}")
        for field, typ, default, help_ in config_help(cls.Config):
            print(f"    {field}={default}  [{typ}]  {help_}")
    return 0


def cmd_regress(args) -> int:
    import tempfile

    from ..errors import UnlearnbenchError
    from ..regress import compare, load_baseline, run_matrix, update_baseline
    from ..store import ResultStore
    from .render import RichProgress, render_regress

    baseline = load_baseline(args.baseline)
    if args.update and not args.reason.strip():
        raise UnlearnbenchError('--update needs --reason "why the numbers changed" (it is recorded in the baseline)')
    with tempfile.TemporaryDirectory() as tmp:
        with (
            ResultStore(args.store or os.path.join(tmp, "regress.sqlite")) as store,
            RichProgress(enabled=not args.quiet) as progress,
        ):
            measured = run_matrix(baseline, store, progress)
    diffs = compare(baseline, measured)
    if args.update:
        update_baseline(args.baseline, baseline, measured, args.reason)
        print(f"updated {args.baseline}: {len(diffs)} number(s) changed; reason recorded")
        return 0
    render_regress(diffs, baseline)
    return 1 if diffs else 0


def cmd_report(args) -> int:
    from ..errors import UnlearnbenchError
    from ..report import write_report

    if not os.path.exists(args.store):
        raise UnlearnbenchError(f"no results store at '{args.store}' (run `unlearnbench run` first or pass --store)")
    similarity = None
    if args.similarity:
        import json

        try:
            with open(args.similarity, encoding="utf-8") as f:
                similarity = json.load(f)
        except (OSError, ValueError) as e:
            raise UnlearnbenchError(f"--similarity '{args.similarity}': not a readable JSON file ({e})") from None
        if not isinstance(similarity, dict) or not isinstance(similarity.get("rows"), list):
            raise UnlearnbenchError(f"--similarity '{args.similarity}': expected a task_similarity JSON with 'rows'")
    files = write_report(args.store, args.out, similarity=similarity)
    print(f"wrote {len(files)} files to {args.out}/ (open {os.path.join(args.out, 'report.html')})")
    return 0


def cmd_results(args) -> int:
    from ..errors import UnlearnbenchError
    from ..store import ResultStore

    if not os.path.exists(args.store):
        raise UnlearnbenchError(f"no results store at '{args.store}' (run `unlearnbench run` first or pass --store)")
    from ..export import export

    with ResultStore(args.store) as store:
        text = export(store, args.format, level=args.level, out=args.out)
    if text is not None:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0


def cmd_world(args) -> int:
    """``world build``: retrain the embedded models of one size and compare with the shipped copy."""
    from ..registry import BENCHMARKS
    from ..runner import resolve
    from ..toy.rebuild import rebuild
    from .render import RichProgress, render_world_build

    bench = resolve(BENCHMARKS, f"toy,size={args.size},seed={args.seed}").obj
    roles = ("target", "oracle") if args.role == "both" else (args.role,)
    with RichProgress(enabled=not (args.quiet or args.json)) as progress:
        records = rebuild(bench.world, bench.recipe, bench.model_name, roles, ship=args.ship, progress=progress)
    if args.json:
        print(json.dumps(records, indent=1))
    else:
        render_world_build(records)
    return 0


COMMANDS = {
    "world": cmd_world,
    "run": cmd_run,
    "sweep": cmd_sweep,
    "study": cmd_study,
    "analyze": cmd_analyze,
    "list": cmd_list,
    "results": cmd_results,
    "regress": cmd_regress,
    "report": cmd_report,
    "submit": leaderboard.cmd_submit,
    "leaderboard": leaderboard.cmd_leaderboard,
}


# -- arguments to library inputs -------------------------------------------------------------------


def _tracking(args):
    """The experiment tracking ``--log`` asks for (None without it); every tracker's library must
    be installed (checked here, before anything runs)."""
    from ..trackers import check, parse

    names = parse(args.log)
    if not names:
        return None
    check(names)
    from pathlib import Path

    from ..tracking import Tracking

    store = Path(args.store)
    return Tracking(names, args.log_dir or store.with_name(store.stem + "-logs"), args.log_project)


def _executor(args):
    """The sweep executor the arguments ask for, with :func:`unlearnbench.sweep.run_sweep`'s signature."""
    from ..errors import UnlearnbenchError

    if args.executor != "ray":
        if (
            args.address
            or args.cpus_per_task != 1
            or args.gpus_per_task
            or args.checkpoints != "cache"
            or args.worker_cache
        ):
            raise UnlearnbenchError(
                "--address, --cpus-per-task, --gpus-per-task, --checkpoints and --worker-cache need --executor ray"
            )
        from ..sweep import run_sweep

        return run_sweep
    import functools

    from ..ray_executor import RayOptions, run_sweep_ray

    if args.worker_cache and args.checkpoints != "object-store":
        raise UnlearnbenchError("--worker-cache needs --checkpoints object-store")
    options = RayOptions(
        address=args.address,
        num_cpus=args.cpus_per_task,
        num_gpus=args.gpus_per_task,
        checkpoints=args.checkpoints,
        worker_cache=args.worker_cache,
    )
    return functools.partial(run_sweep_ray, options=options)


def _select_backend(args) -> None:
    if getattr(args, "backend", None):  # validated now; probes read the choice from $UNLEARNBENCH_BACKEND
        from ..generation import set_backend

        set_backend(args.backend)


def _experiment_from_args(args):
    """The experiment of `sweep`: a YAML file or name, with command-line overrides."""
    from ..errors import UnlearnbenchError
    from ..sweep import Experiment, expand_grids, load_experiment, parse_seeds, split_specs, with_steps

    if args.experiment:
        exp = load_experiment(args.experiment)
    elif (args.methods or args.unlearned) and args.attacks:
        exp = Experiment(name="sweep", methods=[], attacks=[])
    else:
        raise UnlearnbenchError("give --experiment NAME_OR_YAML, or both --methods and --attacks")
    if args.methods:
        exp.methods = split_specs(args.methods)
    elif args.unlearned:
        exp.methods = ["none"]
    exp.model = {**exp.model, **_model_args(args)}
    exp.generations = args.generations
    if args.unlearned:
        exp.unlearned = args.unlearned
    if args.attacks:
        exp.attacks = expand_grids(split_specs(args.attacks))
    if args.seeds:
        exp.seeds = parse_seeds(args.seeds)
    if args.benchmark:
        exp.benchmark = args.benchmark
    if args.probes:
        exp.probes = split_specs(args.probes)
    if args.data:
        exp.data = {**exp.data, **_data_args(args.data)}
    if getattr(args, "control", None):
        exp.controls = list(args.control)
    if getattr(args, "attack_steps", None) is not None:
        exp.attacks = [with_steps(a, args.attack_steps) for a in exp.attacks]
    if not exp.methods or not exp.attacks:
        raise UnlearnbenchError("the sweep needs at least one method and one attack")
    return exp


def _method_arg(args) -> str:
    """--method, or 'none' when only --unlearned is given."""
    from ..errors import UnlearnbenchError

    if args.method:
        return args.method
    if args.unlearned:
        return "none"
    raise UnlearnbenchError(
        "give --method SPEC (e.g. --method npo), or --unlearned DIR to attack a model unlearned elsewhere"
    )


def _model_args(args) -> dict:
    """The model flags that were given, as runner.RunRequest.model (benchmark options)."""
    from ..runner import MODEL_OPTIONS

    flags = {name: getattr(args, name) for name in MODEL_OPTIONS}
    return {k: v for k, v in flags.items() if v not in (None, "", False)}


def _data_args(items: list[str]) -> dict[str, str]:
    """['gsm8k=a.jsonl', 'gsm8k:test=b.jsonl'] -> {'gsm8k': 'a.jsonl', 'gsm8k:test': 'b.jsonl'}."""
    from ..errors import UnlearnbenchError

    data: dict[str, str] = {}
    for item in items:
        key, sep, path = (part.strip() for part in item.partition("="))
        if not sep or not key or not path:
            raise UnlearnbenchError(
                f"--data {item!r}: expected NAME=PATH or NAME:test=PATH, e.g. --data gsm8k=path/to/train.jsonl"
            )
        key = key.removesuffix(":train")
        if key in data:
            raise UnlearnbenchError(f"--data {key} is given twice ('{data[key]}' and '{path}')")
        data[key] = path
    return data
