"""Sweeps: methods x attacks x seeds, each method unlearned once per seed.

A sweep is a list of :class:`~unlearnbench.runner.RunRequest` (one per method and seed), each
carrying every attack. The runner already gives the guarantees a sweep needs:

* one unlearning per (method, config, seed): its weights are kept as safetensors under the cache,
  keyed by the unlearning cell's hash, and every attack of that seed starts from them;
* finished cells are skipped (base/oracle cells are shared by every method of a seed);
* a failing cell (NaN loss, out of memory, a plugin bug) is recorded as failed with its reason and
  the sweep goes on.

Experiments can also be declared in YAML (``tasks/experiments/<name>.yaml``)::

    name: ilu-robustness
    benchmark: toy
    methods: [npo, "ilu,base=npo,envs=arith"]
    attacks: ["finetune:arith", "finetune:topic"]
    seeds: [0, 1, 2]
    probes: [bio, qa, cloze]      # optional (default: the benchmark's)
    data: {gsm8k: path/train.jsonl}   # optional, as --data

Command-line lists are comma-separated; a comma followed by ``key=value`` continues the previous
spec, so ``--methods npo,beta=0.1,rmu`` is the two specs ``npo,beta=0.1`` and ``rmu``.
"""

from __future__ import annotations

import contextlib
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .errors import UnlearnbenchError
from .progress import SILENT, Progress
from .spec import canonical_spec

_OPTION = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")


def split_specs(text: str) -> list[str]:
    """'npo,beta=0.1,rmu' -> ['npo,beta=0.1', 'rmu'] (an option continues the spec before it)."""
    specs: list[str] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        if _OPTION.match(part):
            if not specs:
                raise UnlearnbenchError(f"'{text}': option '{part}' comes before any method or attack name")
            specs[-1] += "," + part
        else:
            specs.append(part)
    return specs


#: Separates the values of one option in an attack grid: ``finetune:arith,lr=1e-4|1e-3,lora=false|true``.
GRID = "|"
#: The most specs one grid may expand to (a typo must not plan a thousand runs).
MAX_GRID = 64


def expand_grid(spec: str) -> list[str]:
    """Every combination of the ``|``-separated option values of ``spec``, in the order written:
    ``finetune:arith,lr=1e-4|1e-3,lora=false|true`` -> 4 specs. A spec without ``|`` is itself.
    Each spec is validated when the sweep is planned, like any other."""
    import itertools

    head, *options = spec.split(",")
    if GRID in head:
        raise UnlearnbenchError(f"'{spec}': a grid varies option values (key=a|b), not the plugin name")
    axes = []
    for opt in options:
        key, sep, value = opt.partition("=")
        values = value.split(GRID) if sep else [value]
        if sep and any(not v.strip() for v in values):
            raise UnlearnbenchError(f"'{spec}': option '{key}' has an empty value in its grid '{value}'")
        axes.append([f"{key}={v.strip()}" if sep else opt for v in values])
    n = 1
    for a in axes:
        n *= len(a)
    if n > MAX_GRID:
        raise UnlearnbenchError(f"'{spec}': the grid has {n} combinations (at most {MAX_GRID})")
    return [",".join([head, *combo]) for combo in itertools.product(*axes)] if axes else [spec]


def expand_grids(specs: list[str]) -> list[str]:
    """:func:`expand_grid` over a list, duplicates dropped (first kept)."""
    return list(dict.fromkeys(s for spec in specs for s in expand_grid(spec)))


def parse_seeds(text: str) -> list[int]:
    """'0,1,2' or '0-2' -> [0, 1, 2]."""
    seeds: list[int] = []
    try:
        for part in (p.strip() for p in text.split(",") if p.strip()):
            if "-" in part[1:]:
                lo, hi = part.split("-", 1)
                seeds += list(range(int(lo), int(hi) + 1))
            else:
                seeds.append(int(part))
    except ValueError:
        raise UnlearnbenchError(f"--seeds '{text}': expected integers like 0,1,2 or 0-2") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise UnlearnbenchError(f"--seeds '{text}': give at least one seed, each once")
    return seeds


@dataclass
class Experiment:
    """A sweep's matrix (and, for a study, the findings it is expected to show)."""

    name: str
    methods: list[str]
    attacks: list[str]
    seeds: list[int] = field(default_factory=lambda: [0])
    benchmark: str = "toy"
    probes: list[str] | None = None
    data: dict[str, str] = field(default_factory=dict)
    description: str = ""
    expected: list[dict] = field(default_factory=list)  # studies only; see unlearnbench.study
    source: str = ""
    controls: list[str] = field(default_factory=lambda: ["oracle"])  # see runner.CONTROLS
    model: dict[str, object] = field(default_factory=dict)  # --model etc.: see runner.RunRequest.model
    unlearned: str = ""  # --unlearned DIR: see runner.RunRequest.unlearned
    generations: int = 1000  # --generations CHARS: see runner.RunRequest.generations

    def requests(self, device: str = "cpu"):
        from .runner import RunRequest

        return [
            RunRequest(
                method=m,
                attacks=list(self.attacks),
                benchmark=self.benchmark,
                probes=self.probes,
                seed=s,
                device=device,
                data=dict(self.data),
                controls=list(self.controls),
                model=dict(self.model),
                unlearned=self.unlearned,
                generations=self.generations,
            )
            for s in self.seeds
            for m in self.methods
        ]


_FIELDS = {"name", "methods", "attacks", "seeds", "benchmark", "probes", "data", "description", "expected", "controls"}


def with_steps(attack: str, steps: int) -> str:
    """``attack`` with a budget of ``steps`` optimiser steps, if its plugin has a step budget
    (``steps`` in its Config); other attacks (quantize) unchanged. A spec that sets steps keeps it."""
    from .registry import ATTACKS
    from .spec import parse_spec

    if steps < 1:
        raise UnlearnbenchError(f"--attack-steps {steps}: the budget must be a positive number of steps")
    spec = parse_spec(attack)
    fields = getattr(ATTACKS.get(spec.name).Config, "__dataclass_fields__", {})
    if "steps" not in fields or "steps" in spec.options:
        return attack
    return f"{attack},steps={steps}"


def load_experiment(name_or_path: str) -> Experiment:
    """An experiment from a YAML file, or by name from ``tasks/experiments/<name>.yaml``."""
    from .spec import read_yaml, tasks_dir

    path = Path(name_or_path)
    if not path.is_file():
        folder = tasks_dir() / "experiments"
        path = folder / f"{name_or_path}.yaml"
        if not path.is_file():
            import difflib

            known = sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []
            close = difflib.get_close_matches(name_or_path, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise UnlearnbenchError(
                f"no experiment file or name '{name_or_path}'{hint} (known: {', '.join(known) or 'none'})"
            )
    raw = read_yaml(path)
    unknown = sorted(set(raw) - _FIELDS)
    if unknown:
        raise UnlearnbenchError(f"{path}: unknown key '{unknown[0]}' (allowed: {', '.join(sorted(_FIELDS))})")
    for key in ("methods", "attacks"):
        if not isinstance(raw.get(key), list) or not raw[key]:
            raise UnlearnbenchError(f"{path}: '{key}' must be a non-empty list of specs")
    seeds = raw.get("seeds", [0])
    if not isinstance(seeds, list) or not all(isinstance(s, int) for s in seeds) or not seeds:
        raise UnlearnbenchError(f"{path}: 'seeds' must be a list of integers")
    return Experiment(
        name=str(raw.get("name", path.stem)),
        methods=[str(m) for m in raw["methods"]],
        attacks=expand_grids([str(a) for a in raw["attacks"]]),
        seeds=seeds,
        benchmark=str(raw.get("benchmark", "toy")),
        probes=[str(p) for p in raw["probes"]] if raw.get("probes") else None,
        data={str(k): str(v) for k, v in (raw.get("data") or {}).items()},
        description=str(raw.get("description", "")).strip(),
        expected=list(raw.get("expected") or []),
        source=str(path),
        controls=[str(c) for c in (raw.get("controls") or ["oracle"])],
    )


# -- the matrix ----------------------------------------------------------------------------------

PENDING, RUNNING, FINISHED, CACHED, FAILED, SKIPPED = "pending", "running", "finished", "cached", "failed", "skipped"


@dataclass
class SweepState:
    """Status of every (method, seed) x (unlearn + attacks) cell, for the live view and the summary."""

    methods: list[str]
    attacks: list[str]
    seeds: list[int]
    status: dict[tuple[str, int, str], str] = field(default_factory=dict)  # (method, seed, column) -> status
    reasons: dict[tuple[str, int, str], str] = field(default_factory=dict)
    started: float = field(default_factory=time.time)
    # the cells every method shares: ("base" | "oracle", seed, column) -> status; column "unlearn" is
    # the model's own evaluation, an attack column its control cell (that attack on that model)
    refs: dict[tuple[str, int, str], str] = field(default_factory=dict)
    # called as listener(row, seed, column, status, reason) on every change (the plain-text view)
    listener: Callable[..., None] | None = field(default=None, repr=False, compare=False)

    @property
    def columns(self) -> list[str]:
        return ["unlearn", *self.attacks]

    def __post_init__(self):
        for m in self.methods:
            for s in self.seeds:
                for c in self.columns:
                    self.status.setdefault((m, s, c), PENDING)

    def set(self, method: str, seed: int, column: str, status: str, reason: str = "") -> None:
        self.status[(method, seed, column)] = status
        if reason:
            self.reasons[(method, seed, column)] = reason
        if self.listener is not None:
            self.listener(method, seed, column, status, reason)

    def set_ref(self, row: str, seed: int, column: str, status: str, reason: str = "") -> None:
        """A shared cell's status; the next method's run reusing a cell this sweep computed is no news."""
        previous = self.refs.get((row, seed, column))
        if previous == status or (previous == FINISHED and status == CACHED):
            return
        self.refs[(row, seed, column)] = status
        if self.listener is not None:
            self.listener(row, seed, column, status, reason)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for v in self.status.values():
            out[v] = out.get(v, 0) + 1
        return out

    def eta(self, now: float | None = None) -> float | None:
        """Seconds left, from the mean time of the cells computed so far (reused cells cost nothing
        and are not counted); None before the first one is done or once nothing is left."""
        counts = self.counts()
        done = sum(counts.get(k, 0) for k in (FINISHED, FAILED))
        left = counts.get(PENDING, 0) + counts.get(RUNNING, 0)
        if not done or not left:
            return None
        return ((now or time.time()) - self.started) / done * left


@dataclass
class SweepResult:
    experiment: Experiment
    state: SweepState
    runs: list[list] = field(default_factory=list)  # the runner's CellResults, one list per (method, seed)
    seconds: float = 0.0

    @property
    def cells(self) -> list:
        return [c for run in self.runs for c in run]

    @property
    def failed(self) -> list:
        return [c for c in self.cells if c.status == "failed"]


def show_cell(state: SweepState, method: str, seed: int, cell, attacks) -> bool:
    """Put one of a (method, seed) run's cells into the matrix view; False for the cells that are
    not in it (base, oracle and controls: shared by every method). ``attacks`` iterates the sweep's
    attack columns and is shared by the run's calls (the runner yields attacks in that order)."""
    if cell.kind in ("base", "oracle"):
        state.set_ref(cell.kind, seed, "unlearn", cell.status, cell.reason)
        return False
    if cell.kind == "control":
        attack = cell.label.get("attack")
        column = next((a for a in state.attacks if canonical_spec(a) == attack), None)
        if column is not None:
            state.set_ref(cell.label.get("method", "oracle"), seed, column, cell.status, cell.reason)
        return False
    column = "unlearn" if cell.kind == "unlearn" else next(attacks)
    status = SKIPPED if cell.reason == "unlearning failed" else cell.status
    state.set(method, seed, column, status, cell.reason)
    return True


def plan_sweep(experiment: Experiment, device: str = "cpu") -> list[tuple]:
    """Validate every spec of the matrix before running anything; returns (request, plan) pairs."""
    from .runner import plan

    return [(r, plan(r)) for r in experiment.requests(device)]


def run_sweep(
    experiment: Experiment,
    store,
    progress: Progress = SILENT,
    device: str = "cpu",
    state: SweepState | None = None,
    argv: tuple[str, ...] = (),
    planned: list[tuple] | None = None,
    track: Callable | None = None,
) -> SweepResult:
    """Run (or resume) the whole matrix into ``store``. ``state`` is updated live as cells finish.
    ``planned``: :func:`plan_sweep`'s result when the caller validated the matrix already.
    ``track(request)``: a context manager around each (method, seed) run that yields a callable to
    hear each of its cells as it is decided (:meth:`unlearnbench.tracking.Tracking.for_request`)."""
    from .runner import run

    planned = planned or plan_sweep(experiment, device)
    state = state or SweepState(experiment.methods, experiment.attacks, experiment.seeds)
    result = SweepResult(experiment, state)
    t0 = time.time()
    for req, req_plan in planned:
        method, seed = req.method, req.seed
        state.set(method, seed, "unlearn", RUNNING)
        attack_iter = iter(experiment.attacks)
        with track(req) if track else contextlib.nullcontext() as heard:

            def on_cell(cell, _m=method, _s=seed, _it=attack_iter, _heard=heard) -> None:
                if _heard is not None:
                    _heard(cell)
                if not show_cell(state, _m, _s, cell, _it) or (cell.kind == "unlearn" and cell.status == "failed"):
                    return
                nxt = [a for a in experiment.attacks if state.status[(_m, _s, a)] == PENDING]
                if nxt:
                    state.set(_m, _s, nxt[0], RUNNING)

            try:
                result.runs.append(run(req, store, progress, argv=argv, on_cell=on_cell, planned=req_plan))
            except UnlearnbenchError as e:
                # the benchmark or model could not be loaded: nothing of this request ran
                for column in state.columns:
                    if state.status[(method, seed, column)] in (PENDING, RUNNING):
                        state.set(method, seed, column, FAILED, str(e))
                from .runner import CellResult

                result.runs.append([CellResult("unlearn", "", {"method": method, "seed": seed}, "failed", str(e))])
    result.seconds = round(time.time() - t0, 1)
    return result


# -- what a sweep found --------------------------------------------------------------------------


def run_summaries(store, runs: list[list]) -> list[dict]:
    """One :func:`unlearnbench.report.run_summary` per (method, seed) run of the sweep.

    Summaries are per run because their column names ('base', 'unlearned', 'finetune:arith ep2')
    are unique only within one method's run.
    """
    from .report import run_summary

    out = []
    for cells in runs:
        ok = [c for c in cells if c.cell_id and c.status in ("finished", "cached")]
        unlearn = next((c for c in ok if c.kind == "unlearn"), None)
        if unlearn is None:
            continue
        out.append(
            {
                "method": unlearn.label.get("method"),
                "seed": unlearn.label.get("seed"),
                "summary": run_summary(store, ok),
            }
        )
    return out


def fq_matrix(summaries: list[dict]) -> dict:
    """Forget quality after each attack (last epoch) and after unlearning, per method and seed,
    from :func:`run_summaries`.

    Returns ``{method_label: {column: {seed: fq}}}`` with column 'unlearned' or the attack label.
    Forget quality is the mean over informative forms (:func:`unlearnbench.report.run_summary`).
    """
    out: dict[str, dict[str, dict[int, float | None]]] = {}
    for r in summaries:
        method, seed, summary = r["method"], r["seed"], r["summary"]
        fq = summary["forget_quality"]
        last: dict[str, tuple[int, str]] = {}
        for col in summary["columns"]:
            if col["kind"] == "unlearn":
                out.setdefault(method, {}).setdefault("unlearned", {})[seed] = fq.get(col["column"], {}).get("mean")
            elif col["kind"] == "attack":
                if col["attack"] not in last or col["step"] > last[col["attack"]][0]:
                    last[col["attack"]] = (col["step"], col["column"])
        for attack, (_step, column) in last.items():
            out.setdefault(method, {}).setdefault(attack, {})[seed] = fq.get(column, {}).get("mean")
    return out


#: Worst-case numbers of a run summary's ``worst_case`` kept per (method, attack, seed) in a sweep.
WORST = {
    "min_forget_quality": "worst forget quality over the curve",
    "min_forget_quality_attacked_oracle": "worst forget quality against the attacked oracle",
    "max_recovery": "highest recovery over the curve",
}


def worst_matrix(summaries: list[dict]) -> dict:
    """``{measure: {method_label: {attack: {seed: value}}}}`` for the measures of :data:`WORST`, plus
    ``last_forget_quality_attacked_oracle`` and ``last_recovery`` (at the attack's last checkpoint)."""
    out: dict[str, dict] = {}
    for r in summaries:
        method, seed = r["method"], r["seed"]
        for attack, w in (r["summary"].get("worst_case") or {}).items():
            values = {k: (w.get(k) or {}).get("value") for k in WORST}
            values["last_forget_quality_attacked_oracle"] = w["last"]["forget_quality_attacked_oracle"]
            values["last_recovery"] = w["last"]["recovery"]
            for k, v in values.items():
                out.setdefault(k, {}).setdefault(method, {}).setdefault(attack, {})[seed] = v
    return out


def worst_attacker(under_attack: dict) -> dict:
    """Per method, over every attack of the sweep (e.g. an expanded grid): the configuration with the
    lowest mean (over seeds) worst-case forget quality — against the attacked oracle where there is
    one, else against the oracle — and the one with the highest mean worst-case recovery."""
    out: dict[str, dict] = {}

    def best(per_attack: dict, lowest: bool):
        pts = [(v["mean"], a, v) for a, v in per_attack.items() if v.get("mean") is not None]
        if not pts:
            return None
        value, attack, v = (min if lowest else max)(pts, key=lambda t: t[0])
        return {"attack": attack, "mean": value, "std": v.get("std"), "n": v.get("n")}

    fq_ao = under_attack.get("min_forget_quality_attacked_oracle", {})
    fq = under_attack.get("min_forget_quality", {})
    rec = under_attack.get("max_recovery", {})
    for method in dict.fromkeys([*fq_ao, *fq, *rec]):
        by_ao = best(fq_ao.get(method, {}), True)
        out[method] = {
            "forget_quality": by_ao or best(fq.get(method, {}), True),
            "against": "attacked oracle" if by_ao else "oracle",
            "recovery": best(rec.get(method, {}), False),
        }
    return out


def _over_seeds(seeds: dict) -> dict:
    import statistics

    vals = [v for v in seeds.values() if v is not None]
    return {
        "mean": round(statistics.fmean(vals), 4) if vals else None,
        "std": round(statistics.stdev(vals), 4) if len(vals) > 1 else None,
        "n": len(vals),
        "per_seed": {str(k): v for k, v in sorted(seeds.items())},
    }


def sweep_summary(result: SweepResult, summaries: list[dict]) -> dict:
    """A JSON-ready summary: the matrix of forget quality (mean, std over seeds) and failed cells.
    ``summaries``: :func:`run_summaries` of the result's runs."""
    matrix = fq_matrix(summaries)
    table: dict[str, dict[str, dict]] = {}
    for method, cols in matrix.items():
        for col, seeds in cols.items():
            table.setdefault(method, {})[col] = _over_seeds(seeds)
    worst = {
        measure: {m: {a: _over_seeds(seeds) for a, seeds in attacks.items()} for m, attacks in methods.items()}
        for measure, methods in worst_matrix(summaries).items()
    }
    return {
        "schema": "unlearnbench.sweep/1",
        "experiment": result.experiment.name,
        "benchmark": result.experiment.benchmark,
        "seeds": result.experiment.seeds,
        "methods": [canonical_spec(m) for m in result.experiment.methods],
        "attacks": [canonical_spec(a) for a in result.experiment.attacks],
        "seconds": result.seconds,
        "counts": result.state.counts(),
        "forget_quality": table,
        "under_attack": worst,
        "worst_attacker": worst_attacker(worst),
        "failed": [
            {
                "kind": c.kind,
                "method": c.label.get("method"),
                "attack": c.label.get("attack"),
                "seed": c.label.get("seed"),
                "reason": c.reason,
            }
            for c in result.failed
        ],
    }
