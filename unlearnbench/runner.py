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
from .errors import UnlearnbenchError
from .progress import SILENT, Progress
from .registry import ATTACKS, BENCHMARKS, METHODS, PROBES, TASKS, plugin_version
from .spec import build_config, config_to_dict, parse_spec
from .store import ResultStore, ScoreRow, cell_id


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
        extra = getattr(self.obj, "key_extra", None)
        return {"name": self.name, "arg": self.arg, "version": self.version, "config": config_to_dict(self.config),
                **(extra() if extra else {})}

    def label(self) -> str:
        """The spec as the user wrote it, canonicalised (options sorted): two configs of one
        plugin in a run get different labels and so different report columns."""
        return self.spec or (self.name + (f":{self.arg}" if self.arg else ""))


@dataclass
class CellResult:
    kind: str
    cell_id: str
    label: dict
    status: str          # 'finished' (this run), 'cached' (an earlier run), 'failed'
    reason: str = ""
    meta: dict = field(default_factory=dict)


@dataclass
class RunPlan:
    benchmark: Plugin
    method: Plugin
    attacks: list[tuple[Plugin, Plugin]]   # (attack, task)
    probes: list[Plugin]
    seed: int
    device: str


def _resolve(registry, text: str, defaults: dict | None = None, forced: dict | None = None,
             with_arg: bool = False) -> Plugin:
    spec = parse_spec(text)
    cls = registry.get(spec.name)
    options = {**(defaults or {}), **spec.options}
    for k, v in (forced or {}).items():
        if k in {f for f in getattr(cls.Config, "__dataclass_fields__", {})}:
            options.setdefault(k, v)
    config = build_config(cls.Config, options, plugin=spec.name)
    needs_arg = getattr(cls, "needs_arg", None)
    if spec.arg and not needs_arg:
        raise UnlearnbenchError(f"{registry.kind} '{spec.name}' takes no ':' argument (got '{text}')")
    if needs_arg and not spec.arg:
        raise UnlearnbenchError(f"{registry.kind} '{spec.name}' needs a {needs_arg}, e.g. {spec.name}:arith")
    obj = cls(config, spec.arg) if needs_arg else cls(config)
    return Plugin(spec.name, spec.arg, plugin_version(cls), config, obj, str(spec))


def _file_tasks() -> list[str]:
    """Tasks that read local data files (their Config has ``train`` and ``test``)."""
    return [n for n in TASKS.names()
            if {"train", "test"} <= set(getattr(TASKS.get(n).Config, "__dataclass_fields__", {}))]


def _data_tasks(data: dict[str, str]) -> dict[str, Plugin]:
    """``--data`` ({"gsm8k": path, "gsm8k:test": path}) -> task plugins configured with the files."""
    options: dict[str, dict[str, str]] = {}
    for key, path in data.items():
        name, sep, role = key.partition(":")
        role = role if sep else "train"
        if role not in ("train", "test"):
            raise UnlearnbenchError(f"--data {key}: the split after ':' must be train or test, e.g. --data {name}:test=PATH")
        readers = _file_tasks()
        if name not in readers:
            close = difflib.get_close_matches(name, readers, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            what = f"task {name!r} reads no data files" if name in TASKS else f"unknown dataset {name!r}"
            raise UnlearnbenchError(f"--data {key}: {what}{hint} (datasets: {', '.join(readers) or 'none'})")
        if role in options.setdefault(name, {}):
            raise UnlearnbenchError(f"--data {name}:{role} is given twice")
        options[name][role] = path
    return {name: _resolve(TASKS, name, opts) for name, opts in options.items()}


def plan(request: RunRequest) -> RunPlan:
    """Resolve and validate every spec before any model is touched (bad input fails fast)."""
    bench = _resolve(BENCHMARKS, request.benchmark)
    b = bench.obj
    data_tasks = _data_tasks(request.data or {})
    used: set[str] = set()
    method = _resolve(METHODS, request.method, b.defaults("methods", parse_spec(request.method).name),
                      {"seed": request.seed})
    if hasattr(method.obj, "bind_base"):  # ILU: its base method gets the benchmark's tuned defaults
        method.obj.bind_base(lambda n: b.defaults("methods", n))
    if hasattr(method.obj, "bind_tasks"):  # ILU: environments read from --data files
        used.update(method.obj.bind_tasks({n: t.obj for n, t in data_tasks.items()}))
    attacks = []
    for text in request.attacks:
        name = parse_spec(text).name
        attack = _resolve(ATTACKS, text, b.defaults("attacks", name), {"seed": request.seed})
        # finetune:<task> names a task plugin; other attacks read their argument themselves
        # (relearn:forget, quantize:4) and may use the benchmark passed to run()
        task = None
        if getattr(type(attack.obj), "needs_arg", None) == "task":
            task = data_tasks.get(attack.arg) or _resolve(TASKS, attack.arg)
            used.add(task.name)
        if hasattr(attack.obj, "bind_tasks"):  # relearn:<task>
            used.update(attack.obj.bind_tasks({n: t.obj for n, t in data_tasks.items()}))
        attacks.append((attack, task))
    unused = sorted(set(data_tasks) - used)
    if unused:
        raise UnlearnbenchError(f"--data {unused[0]}: no attack or ILU environment of this run uses task "
                                f"{unused[0]!r} (e.g. --attack finetune:{unused[0]})")
    probe_names = request.probes or list(b.default_probes)
    probes = [_resolve(PROBES, p) for p in probe_names]
    return RunPlan(bench, method, attacks, probes, request.seed, request.device)


class Evaluator:
    """Scores probes on every split and task accuracy; returns store rows.

    Two optional probe hooks (see :mod:`unlearnbench.probes.base`):

    * ``aggregate(scores_by_split) -> list[(split, metric, value)]``: numbers that are not means of
      per-item scores (e.g. MUSE's Min-K% AUC of forget vs holdout); stored with item id ``*``;
    * ``needs_reference = True``: ``score`` also gets ``reference=`` (the retrain oracle's
      ``LoadedModel``), e.g. for the Jensen-Shannon distance to the oracle's next-token
      distributions. ``reference`` is ``None`` where the benchmark has no oracle.
    """

    AGGREGATE_ITEM = "*"

    def __init__(self, benchmark, probes: list[Plugin], progress: Progress, reference=None):
        self.benchmark = benchmark
        self.probes = probes
        self.progress = progress
        self.reference = reference  # a callable returning the oracle LoadedModel (loaded once, lazily)
        self._items = {(p.name, s): p.obj.items(benchmark, s) for p in probes for s in benchmark.splits}

    def __call__(self, model, tokenizer, checkpoint: str, step: int, tasks=()) -> list[ScoreRow]:
        from .taskeval import task_item_scores

        rows: list[ScoreRow] = []
        n = len(self._items) + len(tasks)
        by_probe: dict[str, dict[str, list[dict]]] = {}
        with self.progress.task(f"evaluate {checkpoint}", n) as bar:
            for (probe_name, split), items in self._items.items():
                probe = next(p for p in self.probes if p.name == probe_name).obj
                if not items:
                    bar.advance()
                    continue
                kwargs = {}
                if getattr(probe, "needs_reference", False):
                    kwargs["reference"] = self.reference() if self.reference else None
                scores_list = probe.score(model, tokenizer, items, **kwargs)
                by_probe.setdefault(probe_name, {})[split] = scores_list
                for item, scores in zip(items, scores_list):
                    rows += [ScoreRow(checkpoint, step, split, probe_name, item.item_id, m, float(v))
                             for m, v in scores.items()]
                bar.advance()
            for p in self.probes:
                if hasattr(p.obj, "aggregate") and p.name in by_probe:
                    rows += [ScoreRow(checkpoint, step, split, p.name, self.AGGREGATE_ITEM, m, float(v))
                             for split, m, v in p.obj.aggregate(by_probe[p.name])]
            for task in tasks:
                for item_id, correct in task_item_scores(model, tokenizer, task):
                    rows.append(ScoreRow(checkpoint, step, "task", task.name, item_id, "correct", correct))
                bar.advance()
        return rows


def checkpoint_dir(cid: str, sha256: str | None = None) -> Path:
    """Where the unlearned weights of cell ``cid`` are kept: ``checkpoints/<cid>-<sha256[:16]>``.

    The weights' hash is part of the name because the cache is shared by every store: two stores
    can hold the same cell (same key) computed on machines whose float results differ (thread
    count, kernels), and neither may overwrite the other's checkpoint.
    """
    from .embedded import cache_dir

    root = cache_dir() / "checkpoints"
    return root / (f"{cid}-{sha256[:16]}" if sha256 else cid)


def _save_checkpoint(model, tokenizer, cid: str) -> str:
    """Save to its content-addressed place (``checkpoint_dir(cid, sha)``); returns the sha256."""
    from .models import save_model_atomically

    _path, sha = save_model_atomically(model, tokenizer, checkpoint_dir(cid).parent,
                                       lambda sha: checkpoint_dir(cid, sha).name)
    return sha


class _Results(list):
    """The run's cells in order; ``on_cell`` hears of each one as soon as it is decided."""

    def __init__(self, on_cell: Callable[[CellResult], None] | None):
        super().__init__()
        self.on_cell = on_cell

    def append(self, cell: CellResult) -> None:
        super().append(cell)
        if self.on_cell is not None:
            self.on_cell(cell)


def _reason(e: BaseException) -> str:
    """A failure reason for the store: our own errors as they are, anything else with its type."""
    if isinstance(e, UnlearnbenchError):
        return str(e)
    first = (str(e).strip().splitlines() or [""])[0]
    return f"{type(e).__name__}: {first}"[:500]


def run(request: RunRequest, store: ResultStore, progress: Progress = SILENT,
        argv: tuple[str, ...] = (), on_cell: Callable[[CellResult], None] | None = None,
        planned: RunPlan | None = None) -> list[CellResult]:
    """Run (or resume) every cell the request implies; returns them in order.

    ``planned``: the request's :func:`plan`, when the caller validated it already (planning builds
    the benchmark and every plugin, so it is not done twice).

    A cell that raises is recorded as failed with its reason (``ExceptionType: message`` for errors
    that are not the harness's own) and the run goes on with the next cell; attacks of a failed
    unlearning cell are reported failed ("unlearning failed") without running.
    """
    import torch
    from transformers.utils import logging as hf_logging

    from .models import load_model, save_model

    hf_logging.disable_progress_bar()  # the runner reports its own progress
    p = planned or plan(request)
    bench = p.benchmark.obj
    from .generation import resolve as generation_backend  # hf|vllm; one-line error if unusable

    run_id = store.start_run(list(argv), {"request": request.__dict__, "harness": __version__,
                                          "torch": torch.__version__, "generation_backend": generation_backend()})
    results: list[CellResult] = _Results(on_cell)
    status = "failed"
    try:
        common = {"harness": __version__, "benchmark": p.benchmark.key(), "seed": p.seed,
                  "probes": [pr.key() for pr in p.probes]}
        probe_suite = ",".join(pr.name for pr in p.probes)
        oracle_cache: dict = {}

        def reference():
            if not getattr(bench, "has_oracle", True):
                return None
            if "lm" not in oracle_cache:
                oracle_cache["lm"] = bench.load("oracle", p.device, progress)
            return oracle_cache["lm"]

        evaluate = Evaluator(bench, p.probes, progress, reference)
        utility_tasks = [_resolve(TASKS, t).obj.load() for t in getattr(bench, "eval_tasks", ())]
        torch.manual_seed(p.seed)

        target = bench.load("target", p.device, progress)
        model_key = {"name": bench.model_name, "sha256": target.weights_sha256}
        label_base = {"model": bench.model_name, "probe_suite": probe_suite, "seed": p.seed}

        # 1-2. base and oracle
        for kind in ("base", "oracle") if getattr(bench, "has_oracle", True) else ("base",):
            lm = target if kind == "base" else reference()
            key = {**common, "kind": kind, "model": {"name": bench.model_name + ("" if kind == "base" else "-oracle"),
                                                     "sha256": lm.weights_sha256}}
            cid = cell_id(key)
            label = {**label_base, "method": kind}
            if store.is_finished(cid):
                results.append(CellResult(kind, cid, label, "cached"))
                continue
            rows = evaluate(lm.model, lm.tokenizer, kind, -1, utility_tasks)
            store.commit_cell(run_id, cid, key, kind, label, rows, {"model_source": str(lm.source)})
            results.append(CellResult(kind, cid, label, "finished"))

        # 3. unlearn
        m = p.method
        ukey = {**common, "kind": "unlearn", "model": model_key, "method": m.key()}
        ucid = cell_id(ukey)
        ulabel = {**label_base, "method": m.label(), "method_config": config_to_dict(m.config)}
        unlearned = None
        if store.is_finished(ucid):
            results.append(CellResult("unlearn", ucid, ulabel, "cached", meta=store.get_cell(ucid)["meta"]))
        else:
            try:
                model = copy.deepcopy(target.model)
                stats = m.obj.unlearn(model, bench.unlearn_data(target.tokenizer), progress)
                sha = _save_checkpoint(model, target.tokenizer, ucid)
                rows = evaluate(model, target.tokenizer, "unlearned", 0, utility_tasks)
            except Exception as e:  # one failing cell (NaN loss, OOM, a plugin bug) must not stop a sweep
                reason = _reason(e)
                store.record_failure(run_id, ucid, ukey, "unlearn", ulabel, reason)
                results.append(CellResult("unlearn", ucid, ulabel, "failed", reason))
                for attack, task in p.attacks:
                    results.append(CellResult("attack", "", {**ulabel, "attack": attack.label()}, "failed",
                                              "unlearning failed"))
                status = "finished"
                return results
            meta = {"stats": {k: v for k, v in stats.items() if k != "history"}, "loss_history": stats["history"],
                    "checkpoint_sha256": sha, "effective_batch_size": stats.get("effective_batch_size")}
            store.commit_cell(run_id, ucid, ukey, "unlearn", ulabel, rows, meta)
            results.append(CellResult("unlearn", ucid, ulabel, "finished", meta=meta))
            unlearned = model

        # 4. attacks
        for attack, task in p.attacks:
            akey = {**ukey, "kind": "attack", "unlearn_cell": ucid, "attack": attack.key(),
                    "task": task.key() if task else None}
            acid = cell_id(akey)
            alabel = {**ulabel, "attack": attack.label(), "attack_config": config_to_dict(attack.config)}
            if store.is_finished(acid):
                results.append(CellResult("attack", acid, alabel, "cached"))
                continue
            if unlearned is None:
                unlearned = _load_unlearned(ucid, store, p.device, load_model)
            task_data = task.obj.load() if task else None
            rows: list[ScoreRow] = []
            t0 = time.time()

            def on_checkpoint(checkpoint: str, step: int, model, _task=task_data) -> None:
                rows.extend(evaluate(model, target.tokenizer, checkpoint, step, [_task] if _task else []))

            try:
                stats = attack.obj.run(unlearned, target.tokenizer, task_data, on_checkpoint, progress,
                                       benchmark=bench)
            except Exception as e:
                reason = _reason(e)
                store.record_failure(run_id, acid, akey, "attack", alabel, reason)
                results.append(CellResult("attack", acid, alabel, "failed", reason))
                continue
            meta = {"stats": stats, "seconds": round(time.time() - t0, 3)}
            store.commit_cell(run_id, acid, akey, "attack", alabel, rows, meta)
            results.append(CellResult("attack", acid, alabel, "finished", meta=meta))
        status = "finished"
        return results
    finally:
        store.finish_run(run_id, status)


def _load_unlearned(ucid: str, store: ResultStore, device: str, load_model):
    """The unlearned weights of a finished cell, checked against the hash stored with it."""
    expected = _stored_sha(ucid, store)
    lm = load_model(_unlearned_dir(ucid, expected), device=device, dtype="auto")  # float32 on CPU, bf16 on GPUs that support it
    if expected and lm.weights_sha256 != expected:
        raise UnlearnbenchError(f"the unlearned checkpoint of cell {ucid} does not match the hash stored for it")
    return lm.model


def unlearned_path(ucid: str, store: ResultStore) -> Path:
    """The checkpoint folder of a finished unlearning cell (content-addressed by its weights' hash)."""
    return _unlearned_dir(ucid, _stored_sha(ucid, store))


def _stored_sha(ucid: str, store: ResultStore) -> str | None:
    return ((store.get_cell(ucid) or {}).get("meta") or {}).get("checkpoint_sha256")


def _unlearned_dir(ucid: str, sha256: str | None) -> Path:
    path = checkpoint_dir(ucid, sha256)
    if not path.is_dir() and checkpoint_dir(ucid).is_dir():  # the layout before hashes were in the name
        path = checkpoint_dir(ucid)
    if not (path / "model.safetensors").exists() and not list(path.glob("*.safetensors")):
        raise UnlearnbenchError(f"the unlearned checkpoint of cell {ucid} is missing from {path}; "
                                "delete that cell from the store (or use a new --store) to re-run unlearning")
    return path
