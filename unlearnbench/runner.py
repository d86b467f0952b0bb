"""The runner: unlearn once, stress-test with every attack, evaluate all along, store every number.

One call of :func:`run` works through these cells (each a row in the results store, keyed by the
hash of everything that determines it; finished cells are skipped on a re-run):

1. ``base``: the target model before unlearning;
2. ``oracle``: the retrain oracle (never saw the forget set), where the benchmark has one;
3. ``unlearn``: the target after the method; its weights are kept as a safetensors checkpoint under
   the cache directory, keyed by the cell id, so attacks can start from it later;
4. one ``attack`` cell per attack: a curve of evaluations (before the first epoch and after each).

Every evaluation scores all probes (forms) on every split, and task accuracy (FA) on the
benchmark's utility tasks (base/oracle/unlearn) or on the attacked task (attack cells).
Only this module writes the store.
"""

from __future__ import annotations

import copy
import difflib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from . import __version__
from .cache import find_checkpoint, load_checkpoint, save_checkpoint
from .data.types import PlanContext, call_hook, declared
from .errors import UnlearnbenchError
from .progress import SILENT, Progress
from .registry import ATTACKS, BENCHMARKS, METHODS, PROBES, TASKS, Registry, plugin_version
from .spec import Spec, build_config, config_to_dict, load_yaml, parse_spec
from .store import ResultStore, ScoreRow, TextRow, cell_id


@dataclass
class RunRequest:
    method: str
    attacks: list[str] = field(default_factory=list)
    benchmark: str = "toy"
    probes: list[str] | None = None
    seed: int = 0
    device: str = "cpu"
    # local data files for dataset tasks: {"gsm8k": train file, "gsm8k:test": test file}
    data: dict[str, str] = field(default_factory=dict)
    # models every attack is also run on (same data, seed, budget): see CONTROLS
    controls: list[str] = field(default_factory=lambda: ["oracle"])
    # --model/--oracle/--dtype/--revision/--trust-remote-code: options of the benchmark (see MODEL_OPTIONS)
    model: dict[str, object] = field(default_factory=dict)
    # --unlearned DIR: a checkpoint unlearned elsewhere, attacked as method 'none' (checkpoint=DIR)
    unlearned: str = ""
    # --generations N: keep each item's generated text, cut to N characters (0: keep none). Not part
    # of any cell key: the text annotates the scores, it does not change them.
    generations: int = 1000


#: The run's model flags (``--model`` ... ``--trust-remote-code``): each sets the benchmark option of its name.
MODEL_OPTIONS = ("model", "oracle", "dtype", "revision", "trust_remote_code")

#: Control kinds: ``oracle`` (the retrain oracle attacked the same way: the floor an attack should
#: be measured against; the default), ``base`` (the base model attacked too: the ceiling; implies
#: ``oracle``), ``none`` (no control cells).
CONTROLS = ("oracle", "base", "none")


@dataclass
class Plugin:
    """A plugin resolved from a spec string, with the options that were really used."""

    name: str
    arg: str | None
    version: str
    config: object
    obj: object
    spec: str = ""

    def key(self) -> dict:
        # key_extra: what else decides the result (ILU: its resolved base method and config)
        return {
            "name": self.name,
            "arg": self.arg,
            "version": self.version,
            "config": config_to_dict(self.config),
            **call_hook(self.obj, "key_extra"),
        }

    def label(self) -> str:
        """The spec as the user wrote it, canonicalised (options sorted): two configs of one
        plugin in a run get different labels and so different report columns."""
        return self.spec or (self.name + (f":{self.arg}" if self.arg else ""))


@dataclass
class CellResult:
    kind: str
    cell_id: str
    label: dict
    status: str  # 'finished' (this run), 'cached' (an earlier run), 'failed'
    reason: str = ""
    meta: dict = field(default_factory=dict)


@dataclass
class RunPlan:
    benchmark: Plugin
    method: Plugin
    attacks: list[tuple[Plugin, Plugin]]  # (attack, task)
    probes: list[Plugin]
    seed: int
    device: str
    controls: tuple[str, ...] = ("oracle",)
    notes: list[str] = field(default_factory=list)  # said once in the run's output (e.g. a control left out)


def resolve(registry: Registry, spec: Spec | str, defaults: dict | None = None, forced: dict | None = None) -> Plugin:
    """The plugin a spec names, configured and built (a one-line error for any bad part).

    ``defaults``: options the benchmark tunes for it (the spec's own options win); ``forced``:
    options set for every plugin that has the field (the run's ``seed``) unless the spec sets them.
    """
    spec = parse_spec(spec) if isinstance(spec, str) else spec
    cls = registry.get(spec.name)
    options = {**(defaults or {}), **spec.options}
    fields = set(getattr(cls.Config, "__dataclass_fields__", {}))
    for k, v in (forced or {}).items():
        if k in fields:
            options.setdefault(k, v)
    config = build_config(cls.Config, options, plugin=spec.name)
    needs_arg = declared(cls, "needs_arg")
    if spec.arg and not needs_arg:
        raise UnlearnbenchError(f"{registry.kind} '{spec.name}' takes no ':' argument (got '{spec}')")
    if needs_arg and not spec.arg:
        raise UnlearnbenchError(f"{registry.kind} '{spec.name}' needs a {needs_arg}, e.g. {spec.name}:arith")
    obj = cls(config, spec.arg) if needs_arg else cls(config)
    return Plugin(spec.name, spec.arg, plugin_version(cls), config, obj, str(spec))


def _file_tasks() -> list[str]:
    """Tasks that read local data files (``reads_files``; their Config has ``train`` and ``test``)."""
    return [n for n in TASKS.names() if declared(TASKS.get(n), "reads_files")]


def _data_tasks(data: dict[str, str]) -> dict[str, Plugin]:
    """``--data`` ({"gsm8k": path, "gsm8k:test": path}) -> task plugins configured with the files."""
    options: dict[str, dict[str, str]] = {}
    for key, path in data.items():
        name, sep, role = key.partition(":")
        role = role if sep else "train"
        if role not in ("train", "test"):
            raise UnlearnbenchError(
                f"--data {key}: the split after ':' must be train or test, e.g. --data {name}:test=PATH"
            )
        readers = _file_tasks()
        if name not in readers:
            close = difflib.get_close_matches(name, readers, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            what = f"task {name!r} reads no data files" if name in TASKS else f"unknown dataset {name!r}"
            raise UnlearnbenchError(f"--data {key}: {what}{hint} (datasets: {', '.join(readers) or 'none'})")
        if role in options.setdefault(name, {}):
            raise UnlearnbenchError(f"--data {name}:{role} is given twice")
        options[name][role] = path
    return {name: resolve(TASKS, name, opts) for name, opts in options.items()}


def benchmark_spec(text: str, model: dict | None) -> Spec:
    """The benchmark spec with the run's model flags (``--model`` ...) added as its options.

    A benchmark whose Config has no ``model`` field (the embedded world) refuses them: its probes
    ask about fictitious people only its own models were trained on.
    """
    spec = parse_spec(text)
    given = {k: v for k, v in (model or {}).items() if v not in (None, "", False)}
    if not given:
        return spec
    unknown = sorted(set(given) - set(MODEL_OPTIONS))
    if unknown:
        raise UnlearnbenchError(f"unknown model option {unknown[0]!r} (options: {', '.join(MODEL_OPTIONS)})")
    fields = set(getattr(BENCHMARKS.get(spec.name).Config, "__dataclass_fields__", {}))
    if "model" not in fields:
        first = "--" + next(iter(given)).replace("_", "-")
        raise UnlearnbenchError(
            f"{first} does not apply to benchmark {spec.name}: its probes ask about the embedded world's fictitious "
            "people, which only its own models were trained on, so any other model scores zero for reasons that "
            "have nothing to do with unlearning. Use a benchmark on real data (tofu, muse, wmdp, ort) with --model, "
            f"or --unlearned DIR for a checkpoint unlearned elsewhere from the {spec.name} target"
        )
    options = dict(spec.options)
    for option, value in given.items():
        flag = "--" + option.replace("_", "-")
        if option not in fields:
            raise UnlearnbenchError(f"{flag}: benchmark {spec.name} has no {option} option")
        if option in options:
            raise UnlearnbenchError(f"{flag} and {spec.name},{option}= both name the {option}: give it once")
        options[option] = "true" if value is True else str(value)
    return Spec(spec.name, spec.arg, options)


def _method_spec(request: RunRequest, bench_spec: Spec) -> Spec:
    """The method spec; ``--unlearned DIR`` makes it ``none,checkpoint=DIR`` (method none only)."""
    spec = parse_spec(request.method)
    if not request.unlearned:
        return spec
    if spec.name != "none":
        raise UnlearnbenchError(
            f"--unlearned is a checkpoint unlearned elsewhere: use it with --method none (or no --method), "
            f"not {spec.name}"
        )
    if "checkpoint" in spec.options:
        raise UnlearnbenchError("--unlearned and none,checkpoint= both name the checkpoint: give it once")
    cls = BENCHMARKS.get(bench_spec.name)
    takes_model = "model" in getattr(cls.Config, "__dataclass_fields__", {})
    spec_file = getattr(cls, "spec_file", None)
    if takes_model and "model" not in bench_spec.options and not (spec_file and load_yaml(spec_file).get("model")):
        raise UnlearnbenchError(
            f"--unlearned needs --model: the model {request.unlearned} was unlearned from (its original, "
            "against which forgetting is measured and whose tokenizer is used)"
        )
    return Spec(spec.name, spec.arg, {**spec.options, "checkpoint": request.unlearned})


def plan(request: RunRequest) -> RunPlan:
    """Resolve and validate every spec before any model is touched (bad input fails fast).

    Each spec is parsed once. Methods and attacks hear of their run through their optional
    ``bind(PlanContext)`` hook (ILU: its base method's tuned defaults and ``--data`` environments;
    relearn:<task>: a ``--data`` source); every ``--data`` file must be used by someone. The device
    is checked and the data of every task the run trains on is read here too (ILU and relearn read
    theirs in ``bind``), so no bad input is found only after minutes of building or loading models.
    """
    from .models import resolve_device

    resolve_device(request.device)  # a typo ("did you mean") or a missing GPU: one line, now
    if request.generations < 0:
        raise UnlearnbenchError("--generations must be >= 0 (characters kept per generated text; 0: none)")
    bench_spec = benchmark_spec(request.benchmark, request.model)
    method_spec = _method_spec(request, bench_spec)  # --unlearned without --model: said before any loading
    bench = resolve(BENCHMARKS, bench_spec)
    b = bench.obj
    data_tasks = _data_tasks(request.data or {})
    ctx = PlanContext(
        defaults_for=lambda n: b.defaults("methods", n),
        data_tasks={n: t.obj for n, t in data_tasks.items()},
        benchmark=b,
    )
    used: set[str] = set()
    method = resolve(METHODS, method_spec, b.defaults("methods", method_spec.name), {"seed": request.seed})
    used.update(call_hook(method.obj, "bind", ctx))
    attacks = []
    for text in request.attacks:
        attack_spec = parse_spec(text)
        attack = resolve(ATTACKS, attack_spec, b.defaults("attacks", attack_spec.name), {"seed": request.seed})
        # needs_arg "task": the argument names a task plugin the runner loads (finetune:<task>);
        # other attacks read their argument themselves (relearn:forget, quantize:4)
        task = None
        if declared(attack.obj, "needs_arg") == "task":
            task = data_tasks.get(attack.arg) or resolve(TASKS, attack.arg)
            used.add(task.name)
            call_hook(task.obj, "bind", ctx)  # tasks built from the benchmark's data (retain, syntax)
            task.obj.load()  # read now: a missing hub split or a malformed file fails before any model
        used.update(call_hook(attack.obj, "bind", ctx))
        attacks.append((attack, task))
    unused = sorted(set(data_tasks) - used)
    if unused:
        raise UnlearnbenchError(
            f"--data {unused[0]}: no attack or ILU environment of this run uses task "
            f"{unused[0]!r} (e.g. --attack finetune:{unused[0]})"
        )
    probe_names = request.probes or list(b.default_probes)
    probes = [resolve(PROBES, p) for p in probe_names]
    controls, notes = _controls(request.controls, declared(b, "has_oracle"), bool(attacks))
    return RunPlan(bench, method, attacks, probes, request.seed, request.device, controls, notes)


def _controls(kinds, has_oracle: bool, has_attacks: bool) -> tuple[tuple[str, ...], list[str]]:
    """The control models of a run (see :data:`CONTROLS`) and what the output should say about them."""
    kinds = list(dict.fromkeys(kinds or []))
    for k in kinds:
        if k not in CONTROLS:
            close = difflib.get_close_matches(str(k), CONTROLS, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise UnlearnbenchError(f"--control {k}: unknown control{hint} (controls: {', '.join(CONTROLS)})")
    if "none" in kinds:
        if len(kinds) > 1:
            raise UnlearnbenchError("--control none cannot be combined with other controls")
        return (), []
    wanted = ["oracle"] + (["base"] if "base" in kinds else [])
    notes = []
    if not has_oracle and has_attacks:
        wanted.remove("oracle")
        notes.append(
            "the benchmark has no retrain oracle: no attacked-oracle control, so forget quality under "
            "attack is measured against nothing and recovery is reported alone"
        )
    return tuple(wanted), notes


class Evaluator:
    """Scores probes on every split and task accuracy; returns store rows.

    Two optional probe hooks (see :mod:`unlearnbench.probes.base`):

    * ``aggregate(scores_by_split) -> list[(split, metric, value)]``: numbers that are not means of
      per-item scores (e.g. MUSE's Min-K% AUC of forget vs holdout); stored with item id ``*``;
    * ``needs_reference = True``: ``score`` also gets ``reference=`` (the retrain oracle's
      ``LoadedModel``), e.g. for the Jensen-Shannon distance to the oracle's next-token
      distributions. ``reference`` is ``None`` where the benchmark has no oracle.

    A string value in an item's scores (``"generation"``) is the text the probe generated: it
    becomes a :class:`~unlearnbench.store.TextRow`, cut to ``max_text_chars`` (0: dropped).
    """

    AGGREGATE_ITEM = "*"

    def __init__(self, benchmark, probes: list[Plugin], progress: Progress, reference=None, max_text_chars=1000):
        self.benchmark = benchmark
        self.probes = probes
        self.progress = progress
        self.reference = reference  # a callable returning the oracle LoadedModel (loaded once, lazily)
        self.max_text_chars = max_text_chars
        self._items = {(p.name, s): p.obj.items(benchmark, s) for p in probes for s in benchmark.splits}

    def __call__(self, model, tokenizer, checkpoint: str, step: int, tasks=()) -> list[ScoreRow | TextRow]:
        from .inference import task_item_scores

        rows: list[ScoreRow | TextRow] = []
        n = len(self._items) + len(tasks)
        by_probe: dict[str, dict[str, list[dict]]] = {}
        with self.progress.task(f"evaluate {checkpoint}", n) as bar:
            for (probe_name, split), items in self._items.items():
                probe = next(p for p in self.probes if p.name == probe_name).obj
                if not items:
                    bar.advance()
                    continue
                kwargs = {}
                if declared(probe, "needs_reference"):
                    kwargs["reference"] = self.reference() if self.reference else None
                scores_list = probe.score(model, tokenizer, items, **kwargs)
                by_probe.setdefault(probe_name, {})[split] = scores_list
                for item, scores in zip(items, scores_list):
                    for m, v in scores.items():
                        if not isinstance(v, str):
                            rows.append(ScoreRow(checkpoint, step, split, probe_name, item.item_id, m, float(v)))
                        elif self.max_text_chars > 0:
                            rows.append(
                                TextRow(checkpoint, step, split, probe_name, item.item_id, v[: self.max_text_chars])
                            )
                bar.advance()
            for p in self.probes:
                if p.name in by_probe:
                    rows += [
                        ScoreRow(checkpoint, step, split, p.name, self.AGGREGATE_ITEM, m, float(v))
                        for split, m, v in call_hook(p.obj, "aggregate", by_probe[p.name])
                    ]
            for task in tasks:
                for item_id, correct in task_item_scores(model, tokenizer, task):
                    rows.append(ScoreRow(checkpoint, step, "task", task.name, item_id, "correct", correct))
                bar.advance()
        return rows


def _begin(progress: Progress, kind: str, label: dict) -> None:
    """Tell ``progress`` which cell comes next (a Progress of its own making may lack the hook)."""
    begin = getattr(progress, "begin_cell", None)
    if begin is not None:
        begin(kind, label)


def _attack_cell(store, run_id, kind, key, label, attack, task, model, tokenizer, evaluate, progress, bench):
    """Run (or reuse) one attack curve on ``model`` as a cell of ``kind`` (attack or control)."""
    cid = cell_id(key)
    if store.is_finished(cid):
        return CellResult(kind, cid, label, "cached")
    _begin(progress, kind, label)
    task_data = task.obj.load() if task else None
    rows: list[ScoreRow] = []
    t0 = time.time()

    def on_checkpoint(checkpoint: str, step: int, m) -> None:
        rows.extend(evaluate(m, tokenizer, checkpoint, step, [task_data] if task_data else []))

    try:
        stats = attack.obj.run(model, tokenizer, task_data, on_checkpoint, progress, benchmark=bench)
    except Exception as e:  # one failing attack must not stop the run
        reason = failure_reason(e)
        store.record_failure(run_id, cid, key, kind, label, reason)
        return CellResult(kind, cid, label, "failed", reason)
    meta = {"stats": stats, "seconds": round(time.time() - t0, 3)}
    if not store.commit_cell(run_id, cid, key, kind, label, rows, meta):  # another process committed it first
        return CellResult(kind, cid, label, "cached", meta=store.get_cell(cid)["meta"])
    return CellResult(kind, cid, label, "finished", meta=meta)


# -- cell keys: everything that determines a cell's rows (its id is their hash) --------------------


def _common_key(p: RunPlan) -> dict:
    return {
        "harness": __version__,
        "benchmark": p.benchmark.key(),
        "seed": p.seed,
        "probes": [pr.key() for pr in p.probes],
    }


def model_cell_key(common: dict, p: RunPlan, kind: str, sha256: str) -> dict:
    """The key of the ``base`` or ``oracle`` cell (the model evaluated as it is)."""
    name = p.benchmark.obj.model_name + ("" if kind == "base" else "-oracle")
    return {**common, "kind": kind, "model": {"name": name, "sha256": sha256}}


def unlearn_cell_key(common: dict, p: RunPlan, target_sha256: str) -> dict:
    return {
        **common,
        "kind": "unlearn",
        "model": {"name": p.benchmark.obj.model_name, "sha256": target_sha256},
        "method": p.method.key(),
    }


def control_cell_key(common: dict, p: RunPlan, control: str, sha256: str, attack: Plugin, task: Plugin | None) -> dict:
    """The key of a ``control`` cell: ``attack`` run on the oracle (or base) model. It holds no
    method, so every method of a sweep with the same seed and attack shares it."""
    name = p.benchmark.obj.model_name + ("-oracle" if control == "oracle" else "")
    return {
        **common,
        "kind": "control",
        "control": control,
        "model": {"name": name, "sha256": sha256},
        "attack": attack.key(),
        "task": task.key() if task else None,
    }


def attack_cell_key(unlearn_key: dict, attack: Plugin, task: Plugin | None) -> dict:
    return {
        **unlearn_key,
        "kind": "attack",
        "unlearn_cell": cell_id(unlearn_key),
        "attack": attack.key(),
        "task": task.key() if task else None,
    }


def cell_ids(p: RunPlan, target_sha256: str, oracle_sha256: str | None = None) -> dict[str, str]:
    """The ids of every cell of a planned run, given the weights' hashes: ``base``, ``oracle`` (when
    given), ``unlearn``, ``attack <label>`` per attack and ``control <kind> <label>`` per control
    and attack (what :func:`run` stores them under)."""
    common = _common_key(p)
    out = {"base": cell_id(model_cell_key(common, p, "base", target_sha256))}
    if oracle_sha256 is not None:
        out["oracle"] = cell_id(model_cell_key(common, p, "oracle", oracle_sha256))
    ukey = unlearn_cell_key(common, p, target_sha256)
    out["unlearn"] = cell_id(ukey)
    for attack, task in p.attacks:
        out["attack " + attack.label()] = cell_id(attack_cell_key(ukey, attack, task))
    shas = {"oracle": oracle_sha256, "base": target_sha256}
    for control in p.controls:
        if shas[control] is None:
            continue
        for attack, task in p.attacks:
            key = control_cell_key(common, p, control, shas[control], attack, task)
            out[f"control {control} {attack.label()}"] = cell_id(key)
    return out


class _Results(list):
    """The run's cells in order; ``on_cell`` hears of each one as soon as it is decided."""

    def __init__(self, on_cell: Callable[[CellResult], None] | None):
        super().__init__()
        self.on_cell = on_cell

    def append(self, cell: CellResult) -> None:
        super().append(cell)
        if self.on_cell is not None:
            self.on_cell(cell)


def failure_reason(e: BaseException) -> str:
    """A failure reason for the store: our own errors as they are, anything else with its type."""
    if isinstance(e, UnlearnbenchError):
        return str(e)
    first = (str(e).strip().splitlines() or [""])[0]
    return f"{type(e).__name__}: {first}"[:500]


def run(
    request: RunRequest,
    store: ResultStore,
    progress: Progress = SILENT,
    argv: tuple[str, ...] = (),
    on_cell: Callable[[CellResult], None] | None = None,
    planned: RunPlan | None = None,
) -> list[CellResult]:
    """Run (or resume) every cell the request implies; returns them in order.

    ``planned``: the request's :func:`plan`, when the caller validated it already (planning builds
    the benchmark and every plugin, so it is not done twice).

    A cell that raises is recorded as failed with its reason (``ExceptionType: message`` for errors
    that are not the harness's own) and the run goes on with the next cell; attacks of a failed
    unlearning cell are reported failed ("unlearning failed") without running.
    """
    import torch
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # the runner reports its own progress
    p = planned or plan(request)
    bench = p.benchmark.obj
    from .generation import resolve as generation_backend  # hf|vllm; one-line error if unusable

    run_id = store.start_run(
        list(argv),
        {
            "request": request.__dict__,
            "harness": __version__,
            "torch": torch.__version__,
            "generation_backend": generation_backend(),
        },
    )
    results: list[CellResult] = _Results(on_cell)
    status = "failed"
    try:
        common = _common_key(p)
        probe_suite = ",".join(pr.name for pr in p.probes)
        oracle_cache: dict = {}

        def reference():
            if not declared(bench, "has_oracle"):
                return None
            if "lm" not in oracle_cache:
                oracle_cache["lm"] = bench.load("oracle", p.device, progress)
            return oracle_cache["lm"]

        evaluate = Evaluator(bench, p.probes, progress, reference, request.generations)
        utility_tasks = [resolve(TASKS, t).obj.load() for t in declared(bench, "eval_tasks")]
        torch.manual_seed(p.seed)

        target = bench.load("target", p.device, progress)
        label_base = {"model": bench.model_name, "probe_suite": probe_suite, "seed": p.seed}

        # 1-2. base and oracle
        for kind in ("base", "oracle") if declared(bench, "has_oracle") else ("base",):
            lm = target if kind == "base" else reference()
            key = model_cell_key(common, p, kind, lm.weights_sha256)
            cid = cell_id(key)
            label = {**label_base, "method": kind}
            if store.is_finished(cid):
                results.append(CellResult(kind, cid, label, "cached"))
                continue
            _begin(progress, kind, label)
            rows = evaluate(lm.model, lm.tokenizer, kind, -1, utility_tasks)
            won = store.commit_cell(run_id, cid, key, kind, label, rows, {"model_source": str(lm.source)})
            results.append(CellResult(kind, cid, label, "finished" if won else "cached"))

        # 2b. controls: every attack on the oracle (and base), once per (attack, seed) for all methods
        for control in p.controls:
            lm = target if control == "base" else reference()
            for attack, task in p.attacks:
                key = control_cell_key(common, p, control, lm.weights_sha256, attack, task)
                label = {
                    **label_base,
                    "method": control,  # a control cell's "method" is the control model: oracle or base
                    "attack": attack.label(),
                    "attack_config": config_to_dict(attack.config),
                }
                results.append(
                    _attack_cell(
                        store,
                        run_id,
                        "control",
                        key,
                        label,
                        attack,
                        task,
                        lm.model,
                        lm.tokenizer,
                        evaluate,
                        progress,
                        bench,
                    )
                )

        # 3. unlearn
        m = p.method
        ukey = unlearn_cell_key(common, p, target.weights_sha256)
        ucid = cell_id(ukey)
        ulabel = {**label_base, "method": m.label(), "method_config": config_to_dict(m.config)}
        unlearned = None
        if store.is_finished(ucid):
            results.append(CellResult("unlearn", ucid, ulabel, "cached", meta=store.get_cell(ucid)["meta"]))
        else:
            _begin(progress, "unlearn", ulabel)
            try:
                model = copy.deepcopy(target.model)
                stats = m.obj.unlearn(model, bench.unlearn_data(target.tokenizer), progress)
                sha = save_checkpoint(model, target.tokenizer, ucid)
                rows = evaluate(model, target.tokenizer, "unlearned", 0, utility_tasks)
            except Exception as e:  # one failing cell (NaN loss, OOM, a plugin bug) must not stop a sweep
                reason = failure_reason(e)
                store.record_failure(run_id, ucid, ukey, "unlearn", ulabel, reason)
                results.append(CellResult("unlearn", ucid, ulabel, "failed", reason))
                for attack, _task in p.attacks:
                    results.append(
                        CellResult("attack", "", {**ulabel, "attack": attack.label()}, "failed", "unlearning failed")
                    )
                status = "finished"
                return results
            meta = {
                "stats": {k: v for k, v in stats.items() if k != "history"},
                "loss_history": stats["history"],
                "checkpoint_sha256": sha,
                "effective_batch_size": stats.get("effective_batch_size"),
            }
            if store.commit_cell(run_id, ucid, ukey, "unlearn", ulabel, rows, meta):
                results.append(CellResult("unlearn", ucid, ulabel, "finished", meta=meta))
            else:  # another process committed the same cell first: its rows and checkpoint stand
                results.append(CellResult("unlearn", ucid, ulabel, "cached", meta=store.get_cell(ucid)["meta"]))
            unlearned = model

        # 4. attacks
        for attack, task in p.attacks:
            akey = attack_cell_key(ukey, attack, task)
            alabel = {**ulabel, "attack": attack.label(), "attack_config": config_to_dict(attack.config)}
            if unlearned is None and not store.is_finished(cell_id(akey)):
                unlearned = load_unlearned(ucid, store, p.device)
            results.append(
                _attack_cell(
                    store,
                    run_id,
                    "attack",
                    akey,
                    alabel,
                    attack,
                    task,
                    unlearned,
                    target.tokenizer,
                    evaluate,
                    progress,
                    bench,
                )
            )
        status = "finished"
        return results
    finally:
        store.finish_run(run_id, status)


def commit_collected(
    store: ResultStore, argv, run_meta: dict, commits: list, cells: list[CellResult]
) -> list[CellResult]:
    """Write the cells a run computed elsewhere (a Ray worker's :class:`~unlearnbench.ray_executor.CellCollector`)
    into ``store``: one run, each cell in its own transaction, as :func:`run` would have. Returns the
    run's cells with the statuses the store decided (a cell another run committed first is
    'cached')."""
    run_id = store.start_run(list(argv), run_meta)
    status = "failed"
    try:
        decided: dict[str, str] = {}
        for c in commits:
            if c.failed is not None:
                store.record_failure(run_id, c.cid, c.key, c.kind, c.label, c.failed)
                decided[c.cid] = "failed"
            else:
                won = store.commit_cell(run_id, c.cid, c.key, c.kind, c.label, c.rows, c.meta)
                decided[c.cid] = "finished" if won else "cached"
        status = "finished"
        return [
            CellResult(c.kind, c.cell_id, c.label, decided.get(c.cell_id, c.status), c.reason, c.meta) for c in cells
        ]
    finally:
        store.finish_run(run_id, status)


def load_unlearned(ucid: str, store: ResultStore, device: str = "cpu"):
    """The unlearned weights of a finished cell, checked against the hash stored with it."""
    return load_checkpoint(ucid, _stored_sha(ucid, store), device)


def unlearned_path(ucid: str, store: ResultStore) -> Path:
    """The checkpoint folder of a finished unlearning cell (content-addressed by its weights' hash)."""
    return find_checkpoint(ucid, _stored_sha(ucid, store))


def _stored_sha(ucid: str, store: ResultStore) -> str | None:
    return ((store.get_cell(ucid) or {}).get("meta") or {}).get("checkpoint_sha256")
