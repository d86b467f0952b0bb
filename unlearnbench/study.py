"""Study presets: a sweep, its report, and the papers' findings checked against what was measured.

A study is an experiment file (``tasks/experiments/<name>.yaml``) with an ``expected:`` list. Each
entry states a finding of the seed paper in words (``claim``) and how to check it on the measured
numbers (``check``). :func:`check_findings` evaluates every check and says, per claim, whether it
holds here — with the numbers — whether it holds or not. Check kinds:

``drop``            {method, from: unlearned, to: attacks, min, measure}: mean forget quality at ``from``
                    minus its mean over the attack columns is > ``min`` (fine-tuning brings knowledge back).
``compare``         {better, worse, columns: attacks | [labels], worse_columns, measure}: ``better``'s mean
                    forget quality over the columns is >= ``worse``'s over ``worse_columns`` (default:
                    the same columns; set it to compare two attacks on one method).
``close``           {a, b, column, tol}: the two methods' mean forget quality at ``column`` differ by <= tol.
``form_gap``        {methods, trained, others}: per method, the relative recall drop ((base - unlearned)
                    / base, forget split) on the ``trained`` form exceeds the mean relative drop on the
                    ``others`` (relative, because the base model knows some forms far less well).
``form_even``       {method, forms, tol}: the method's relative recall drops over ``forms`` span <= tol.
``neighbour_kept``  {methods, form, tol}: |unlearned - base| recall on the neighbour split <= tol.
``hidden_gap``      {methods, key, split, min}: per method, a white-box probe's aggregate ``key``
                    (``linear.best_acc`` or ``lens.best_top1``; ``split`` default forget) after
                    unlearning minus the same run's oracle exceeds ``min``: the hidden states still hold
                    what the outputs no longer say (Łucki et al., arXiv 2409.18025).
``matched``         {methods, tol}: the methods' mean forget quality after unlearning spans <= tol, so
                    their robustness is compared at matched forget quality (a method that forgot less
                    has less to recover; comparing unmatched methods mixes the two).

Methods are named by their label in the results (the spec as written, options sorted).

``measure`` (``drop``, ``compare``; default ``last``) picks which forget quality an attack column
stands for (:data:`MEASURES`): at the attack's last checkpoint against the oracle (``last``), the
lowest over its curve (``worst``), and the same two against the attacked oracle (``last_ao``,
``worst_ao``: the control cells; definitions in :mod:`unlearnbench.metrics`). The ``unlearned``
column is always the forget quality after unlearning.

:func:`load_study` reads a preset (with ``--size``/``--seeds`` overrides); :func:`run_study` runs it end
to end (``unlearnbench study``): the sweep, the findings (:func:`write_findings`) and the report.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .errors import UnlearnbenchError

CHECK_KINDS = ("drop", "compare", "close", "form_gap", "form_even", "neighbour_kept", "matched", "hidden_gap")
#: A check's ``measure`` -> the sweep's ``worst_matrix`` measure an attack column reads (None: fq_matrix).
MEASURES = {
    "last": None,
    "worst": "min_forget_quality",
    "last_ao": "last_forget_quality_attacked_oracle",
    "worst_ao": "min_forget_quality_attacked_oracle",
}


@dataclass
class Finding:
    claim: str
    check: dict
    holds: bool | None  # None: could not be measured (missing numbers), with the reason
    measured: dict = field(default_factory=dict)
    detail: str = ""


def _mean(xs):
    xs = [x for x in xs if x is not None]
    return statistics.fmean(xs) if xs else None


class _Numbers:
    """Forget quality and per-form recall per method (means over seeds) from a finished sweep."""

    def __init__(self, summaries: list[dict], result):
        from .spec import canonical_spec
        from .sweep import fq_matrix, worst_matrix

        self.attacks = [canonical_spec(a) for a in result.experiment.attacks]
        self.fq = fq_matrix(summaries)
        self.worst = worst_matrix(summaries)
        self.recall: dict[str, dict[str, list[dict]]] = {}  # method -> column -> [per seed recall dicts]
        self.hidden: dict[str, dict[str, list[dict]]] = {}  # method -> column -> [per seed white-box aggregates]
        for r in summaries:
            rec = r["summary"]["recall"]
            for col in ("base", "unlearned"):
                if col in rec:
                    self.recall.setdefault(r["method"], {}).setdefault(col, []).append(rec[col])
            hid = r["summary"].get("hidden", {})
            for col in ("base", "oracle", "unlearned"):
                if col in hid:
                    self.hidden.setdefault(r["method"], {}).setdefault(col, []).append(hid[col])

    def columns(self, columns) -> list[str]:
        """A check's ``columns``: 'attacks' (or absent) means every attack of the study; attack specs
        may be written with their options in any order."""
        from .spec import canonical_spec

        if columns in (None, "attacks"):
            return self.attacks
        return [c if c == "unlearned" else canonical_spec(c) for c in columns]

    def seeds(self, method: str, column: str, measure: str = "last") -> dict:
        """seed -> the forget quality ``measure`` stands for at ``column`` (see :data:`MEASURES`)."""
        if measure not in MEASURES:
            raise UnlearnbenchError(f"study check measure {measure!r} is unknown (known: {', '.join(MEASURES)})")
        source = MEASURES[measure]
        if source is None or column == "unlearned":
            return self.fq.get(method, {}).get(column, {})
        return self.worst.get(source, {}).get(method, {}).get(column, {})

    def per_seed_over(self, method: str, columns, measure: str = "last") -> dict:
        """seed -> mean forget quality over ``columns`` for that seed."""
        seeds: dict = {}
        for c in self.columns(columns):
            for seed, v in self.seeds(method, c, measure).items():
                if v is not None:
                    seeds.setdefault(seed, []).append(v)
        return {s: statistics.fmean(v) for s, v in seeds.items()}

    def fq_mean(self, method: str, column: str, measure: str = "last") -> float | None:
        return _mean(self.seeds(method, column, measure).values())

    def fq_over(self, method: str, columns, measure: str = "last") -> float | None:
        return _mean([self.fq_mean(method, c, measure) for c in self.columns(columns)])

    def recall_mean(self, method: str, column: str, split: str, form: str) -> float | None:
        return _mean([d.get(split, {}).get(form) for d in self.recall.get(method, {}).get(column, [])])

    def hidden_mean(self, method: str, column: str, split: str, key: str) -> float | None:
        return _mean([d.get(split, {}).get(key) for d in self.hidden.get(method, {}).get(column, [])])

    def drop(self, method: str, split: str, form: str) -> float | None:
        b, u = self.recall_mean(method, "base", split, form), self.recall_mean(method, "unlearned", split, form)
        return None if b is None or u is None else b - u

    def rel_drop(self, method: str, split: str, form: str) -> float | None:
        """The fraction of the base model's recall that unlearning removed: (b - u) / b.

        Forms differ in how well the base model knows them (held-out paraphrases ~0.25 on the
        embedded world, trained forms ~1.0), so absolute drops are not comparable across forms.
        None where the base recall is below 0.1 (nothing to remove)."""
        b, u = self.recall_mean(method, "base", split, form), self.recall_mean(method, "unlearned", split, form)
        return None if b is None or u is None or b < 0.1 else (b - u) / b


def _r(x):
    return None if x is None else round(x, 4)


def check_findings(expected: list[dict], summaries: list[dict], result) -> list[Finding]:
    """``summaries``: :func:`unlearnbench.sweep.run_summaries` of the sweep's runs."""
    nums = _Numbers(summaries, result)
    out = []
    for entry in expected:
        claim, check = str(entry.get("claim", "")), dict(entry.get("check") or {})
        kind = check.get("kind")
        if kind not in CHECK_KINDS:
            raise UnlearnbenchError(f"study check kind {kind!r} is unknown (known: {', '.join(CHECK_KINDS)})")
        if check.get("measure", "last") not in MEASURES:
            raise UnlearnbenchError(
                f"study check measure {check['measure']!r} is unknown (known: {', '.join(MEASURES)})"
            )
        out.append(_CHECKS[kind](claim, check, nums))
    return out


def _missing(claim, check, what) -> Finding:
    return Finding(claim, check, None, {}, f"not measured: {what}")


def _check_drop(claim, c, n: _Numbers) -> Finding:
    ms = c.get("measure", "last")
    before = n.fq_mean(c["method"], c.get("from", "unlearned"), ms)
    after = n.fq_over(c["method"], c.get("to", "attacks"), ms)
    if before is None or after is None:
        return _missing(claim, c, f"forget quality ({ms}) of {c['method']}")
    d = before - after
    se, sig = significance(
        n.per_seed_over(c["method"], [c.get("from", "unlearned")], ms),
        n.per_seed_over(c["method"], c.get("to", "attacks"), ms),
    )
    return Finding(
        claim,
        c,
        d > float(c.get("min", 0.0)),
        {
            "fq_unlearned": _r(before),
            "fq_after_attacks": _r(after),
            "drop": _r(d),
            "std_error": _r(se),
            "significant": sig,
        },
        f"FQ {before:.3f} after unlearning -> {after:.3f} under the attacks ({_MEASURE_TEXT[ms]}; drop {d:+.3f})"
        + _noise_note(se, sig),
    )


def significance(a_seeds: dict, b_seeds: dict) -> tuple[float | None, bool | None]:
    """Standard error of mean(a) - mean(b) over seeds, and whether |difference| > 2 of them
    (None with fewer than two seeds on either side: a single seed cannot tell noise from effect)."""
    a, b = list(a_seeds.values()), list(b_seeds.values())
    if len(a) < 2 or len(b) < 2:
        return None, None
    se = (statistics.variance(a) / len(a) + statistics.variance(b) / len(b)) ** 0.5
    return se, abs(statistics.fmean(a) - statistics.fmean(b)) > 2 * se


def _noise_note(se, significant) -> str:
    if significant is None:
        return " (one seed: significance unknown)"
    return f"; difference {'>' if significant else '<='} 2 standard errors over seeds ({2 * se:.3f})" + (
        "" if significant else ": within seed noise"
    )


def _check_compare(claim, c, n: _Numbers) -> Finding:
    cols, ms = c.get("columns", "attacks"), c.get("measure", "last")
    wcols = c.get("worse_columns", cols)
    a, b = n.fq_over(c["better"], cols, ms), n.fq_over(c["worse"], wcols, ms)
    if a is None or b is None:
        return _missing(claim, c, f"forget quality ({ms}) of {c['better'] if a is None else c['worse']}")
    per = {col: {"better": _r(n.fq_mean(c["better"], col, ms))} for col in n.columns(cols)}
    for col in n.columns(wcols):
        per.setdefault(col, {})["worse"] = _r(n.fq_mean(c["worse"], col, ms))
    se, sig = significance(n.per_seed_over(c["better"], cols, ms), n.per_seed_over(c["worse"], wcols, ms))
    return Finding(
        claim,
        c,
        a >= b,
        {"better": _r(a), "worse": _r(b), "per_column": per, "std_error": _r(se), "significant": sig},
        f"mean FQ under attack ({_MEASURE_TEXT[ms]}): {c['better']} {a:.3f} vs {c['worse']} {b:.3f}"
        + _noise_note(se, sig),
    )


_MEASURE_TEXT = {
    "last": "last checkpoint, vs the oracle",
    "worst": "worst over the curve, vs the oracle",
    "last_ao": "last checkpoint, vs the attacked oracle",
    "worst_ao": "worst over the curve, vs the attacked oracle",
}


def _check_close(claim, c, n: _Numbers) -> Finding:
    a, b = n.fq_mean(c["a"], c.get("column", "unlearned")), n.fq_mean(c["b"], c.get("column", "unlearned"))
    if a is None or b is None:
        return _missing(claim, c, "forget quality")
    return Finding(
        claim,
        c,
        abs(a - b) <= float(c.get("tol", 0.1)),
        {"a": _r(a), "b": _r(b)},
        f"FQ at {c.get('column', 'unlearned')}: {c['a']} {a:.3f} vs {c['b']} {b:.3f} (tol {c.get('tol', 0.1)})",
    )


def _check_form_gap(claim, c, n: _Numbers) -> Finding:
    measured, verdicts, lines = {}, [], []
    for m in c["methods"]:
        t = n.rel_drop(m, "forget", c["trained"])
        others = [n.rel_drop(m, "forget", f) for f in c["others"]]
        o = _mean(others)
        if t is None or o is None:
            continue
        measured[m] = {
            "rel_drop_trained": _r(t),
            "rel_drop_others": _r(o),
            "rel_drop_per_form": {f: _r(d) for f, d in zip(c["others"], others)},
            "abs_drop_per_form": {f: _r(n.drop(m, "forget", f)) for f in (c["trained"], *c["others"])},
        }
        verdicts.append(t > o)
        lines.append(f"{m}: {c['trained']} {t:.0%} of base recall removed vs others {o:.0%}")
    if not verdicts:
        return _missing(claim, c, "recall per form")
    return Finding(
        claim, c, all(verdicts), measured, "; ".join(lines) + f" (holds for {sum(verdicts)}/{len(verdicts)})"
    )


def _check_form_even(claim, c, n: _Numbers) -> Finding:
    drops = {f: n.rel_drop(c["method"], "forget", f) for f in c["forms"]}
    vals = [d for d in drops.values() if d is not None]
    if not vals:
        return _missing(claim, c, f"recall of {c['method']}")
    span = max(vals) - min(vals)
    return Finding(
        claim,
        c,
        span <= float(c.get("tol", 0.15)),
        {"drops": {f: _r(d) for f, d in drops.items()}, "span": _r(span)},
        f"{c['method']} removed "
        + ", ".join(f"{f} {d:.0%}" for f, d in drops.items() if d is not None)
        + " of base recall"
        + f" (span {span:.2f}, tol {c.get('tol', 0.15)})",
    )


def _check_neighbour_kept(claim, c, n: _Numbers) -> Finding:
    measured, verdicts = {}, []
    for m in c["methods"]:
        d = n.drop(m, "neighbour", c.get("form", "bio"))
        if d is None:
            continue
        measured[m] = _r(d)
        verdicts.append(abs(d) <= float(c.get("tol", 0.2)))
    if not verdicts:
        return _missing(claim, c, "neighbour recall")
    return Finding(
        claim,
        c,
        all(verdicts),
        {"neighbour_drop": measured},
        "neighbour recall drop: "
        + ", ".join(f"{m} {d:+.2f}" for m, d in measured.items())
        + f" (tol {c.get('tol', 0.2)}; holds for {sum(verdicts)}/{len(verdicts)})",
    )


def _check_matched(claim, c, n: _Numbers) -> Finding:
    fq = {m: n.fq_mean(m, "unlearned") for m in c["methods"]}
    have = {m: v for m, v in fq.items() if v is not None}
    if len(have) < 2:
        return _missing(claim, c, "forget quality after unlearning of at least two methods")
    span = max(have.values()) - min(have.values())
    return Finding(
        claim,
        c,
        span <= float(c.get("tol", 0.1)),
        {"fq_unlearned": {m: _r(v) for m, v in fq.items()}, "span": _r(span)},
        "FQ after unlearning: "
        + ", ".join(f"{m} {v:.3f}" for m, v in have.items())
        + f" (span {span:.3f}, tol {c.get('tol', 0.1)})",
    )


def _check_hidden_gap(claim, c, n: _Numbers) -> Finding:
    key, split, floor = c["key"], c.get("split", "forget"), float(c.get("min", 0.0))
    measured, verdicts, lines = {}, [], []
    for m in c["methods"]:
        u, o = n.hidden_mean(m, "unlearned", split, key), n.hidden_mean(m, "oracle", split, key)
        if u is None or o is None:
            continue
        b = n.hidden_mean(m, "base", split, key)
        measured[m] = {"base": _r(b), "unlearned": _r(u), "oracle": _r(o), "gap": _r(u - o)}
        verdicts.append(u - o > floor)
        lines.append(f"{m} {u:.3f} vs oracle {o:.3f}")
    if not verdicts:
        return _missing(claim, c, f"{key} on the {split} split (run the lens/linear probes)")
    return Finding(
        claim,
        c,
        all(verdicts),
        measured,
        f"{key} on {split} after unlearning: "
        + "; ".join(lines)
        + f" (gap > {floor}: holds for {sum(verdicts)}/{len(verdicts)})",
    )


_CHECKS = {
    "hidden_gap": _check_hidden_gap,
    "matched": _check_matched,
    "drop": _check_drop,
    "compare": _check_compare,
    "close": _check_close,
    "form_gap": _check_form_gap,
    "form_even": _check_form_even,
    "neighbour_kept": _check_neighbour_kept,
}


# -- the whole study -----------------------------------------------------------------------------


def write_findings(out_dir: str | os.PathLike, result, findings: list[Finding], sweep_doc: dict) -> list[Path]:
    """``findings.md`` (claims, verdicts, numbers, wall time) and ``study.json``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    exp = result.experiment
    env = {
        "cores": os.cpu_count(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "wall_seconds": result.seconds,
        "date": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
    }
    mark = {True: "holds", False: "does NOT hold", None: "not measured"}
    counts = result.state.counts()
    lines = [
        f"# Study: {exp.name}",
        "",
        exp.description,
        "",
        f"Benchmark `{exp.benchmark}`, seeds {exp.seeds}, methods {', '.join(f'`{m}`' for m in exp.methods)}, "
        f"attacks {', '.join(f'`{a}`' for a in exp.attacks)}.",
        f"Wall time {result.seconds:.0f} s on {env['cores']} cores ({env['machine']}), {env['date']} UTC; "
        f"{counts.get('finished', 0)} cells run, {counts.get('cached', 0)} reused from the store"
        + (" (the wall time covers only the cells run now)." if counts.get("cached") else "."),
        "",
        "| # | expected (paper) | here | measured |",
        "|---|---|---|---|",
    ]
    for i, f in enumerate(findings, 1):
        lines.append(f"| {i} | {f.claim} | **{mark[f.holds]}** | {f.detail} |")
    lines += [
        "",
        "Forget quality (mean ± std over seeds; 1 = like the retrained oracle):",
        "",
        "| method | " + " | ".join(["unlearned", *sweep_doc["attacks"]]) + " |",
        "|---|" + "---|" * (1 + len(sweep_doc["attacks"])),
    ]
    for m, row in sweep_doc["forget_quality"].items():
        cells = []
        for col in ["unlearned", *sweep_doc["attacks"]]:
            v = row.get(col)
            cells.append(
                "–"
                if not v or v["mean"] is None
                else f"{v['mean']:.2f}" + (f" ± {v['std']:.2f}" if v["std"] is not None else "")
            )
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    for measure, title in (
        ("min_forget_quality", "Worst forget quality over each attack's curve (against the unattacked oracle)"),
        ("min_forget_quality_attacked_oracle", "Worst forget quality over the curve, against the attacked oracle"),
        ("max_recovery", "Highest recovery over the curve (share of the removed recall that came back)"),
    ):
        per_method = sweep_doc.get("under_attack", {}).get(measure) or {}
        if not per_method:
            continue
        lines += ["", f"{title}:", "", "| method | " + " | ".join(sweep_doc["attacks"]) + " |"]
        lines.append("|---|" + "---|" * len(sweep_doc["attacks"]))
        for m, row in per_method.items():
            lines.append(f"| {m} | " + " | ".join(_cell(row.get(a)) for a in sweep_doc["attacks"]) + " |")
    if sweep_doc["failed"]:
        lines += ["", "Failed cells:", ""] + [
            f"- {x['kind']} {x['method']} {x['attack'] or ''} seed {x['seed']}: {x['reason']}"
            for x in sweep_doc["failed"]
        ]
    md = out / "findings.md"
    md.write_text("\n".join(lines) + "\n")
    js = out / "study.json"
    js.write_text(
        json.dumps(
            {
                "schema": "unlearnbench.study/1",
                "study": exp.name,
                "environment": env,
                "findings": [asdict(f) for f in findings],
                "sweep": sweep_doc,
            },
            indent=1,
        )
    )
    return [md, js]


def _cell(v) -> str:
    if not v or v.get("mean") is None:
        return "–"
    return f"{v['mean']:.2f}" + (f" ± {v['std']:.2f}" if v.get("std") is not None else "")


def load_study(name_or_yaml: str, size: str | None = None, seeds: str | list[int] | None = None):
    """A study preset (an experiment with ``expected:`` findings) with the command line's overrides:
    ``size`` makes the benchmark ``toy,size=SIZE`` (toy only); ``seeds`` replaces the preset's
    (a list, or text such as '0,1' or '0-2')."""
    from .sweep import load_experiment, parse_seeds

    exp = load_experiment(name_or_yaml)
    if not exp.expected:
        raise UnlearnbenchError(
            f"'{name_or_yaml}' declares no expected findings: use `unlearnbench sweep --experiment`"
        )
    if size:
        if not exp.benchmark.split(",")[0] == "toy":
            raise UnlearnbenchError(f"--size applies to the toy benchmark, not '{exp.benchmark}'")
        exp.benchmark = f"toy,size={size}"
    if seeds:
        exp.seeds = parse_seeds(seeds) if isinstance(seeds, str) else list(seeds)
    return exp


@dataclass
class StudyRun:
    """What :func:`run_study` did: the sweep, its summary, the findings checked and the files written."""

    out: str
    sweep: object  # unlearnbench.sweep.SweepResult
    summary: dict  # unlearnbench.sweep.sweep_summary
    findings: list[Finding]
    files: list[Path]  # findings.md, study.json
    report_dir: str
    report_files: list


def run_study(
    experiment,
    out: str | None = None,
    store: str | None = None,
    device: str = "cpu",
    backend: str | None = None,
    view=None,
    argv: tuple[str, ...] = (),
    execute=None,
) -> StudyRun:
    """Run a study end to end: the sweep (resumed from the store), the findings checked against its
    numbers (``findings.md``, ``study.json``) and the report (``OUT/report/``).

    ``out``: output folder (default ``study-<name>``); ``store``: results store (default
    ``OUT/results.sqlite``); ``backend``: generation backend to select first (see
    :func:`unlearnbench.generation.set_backend`); ``view``: called with the sweep's
    :class:`~unlearnbench.sweep.SweepState`, returns a context manager yielding the
    :class:`~unlearnbench.progress.Progress` the sweep reports to (the CLI's live matrix; default silent);
    ``execute``: the sweep executor, :func:`~unlearnbench.sweep.run_sweep` (default) or one with its
    signature (:func:`unlearnbench.ray_executor.run_sweep_ray` with its options bound).
    Every spec is validated before the store is opened.
    """
    from contextlib import nullcontext

    from .progress import SILENT
    from .report import write_report
    from .store import ResultStore
    from .sweep import SweepState, plan_sweep, run_summaries, run_sweep, sweep_summary

    out = out or f"study-{experiment.name}"
    store_path = store or os.path.join(out, "results.sqlite")
    if backend:  # validated now; probes read the choice from $UNLEARNBENCH_BACKEND
        from .generation import set_backend

        set_backend(backend)
    planned = plan_sweep(experiment, device)
    os.makedirs(out, exist_ok=True)  # only once the plan is valid: bad input leaves nothing behind
    state = SweepState(experiment.methods, experiment.attacks, experiment.seeds)
    make_view = view or (lambda _state: nullcontext(SILENT))
    with ResultStore(store_path) as results:
        with make_view(state) as progress:
            result = (execute or run_sweep)(experiment, results, progress, device, state, argv=argv, planned=planned)
        summaries = run_summaries(results, result.runs)
    summary = sweep_summary(result, summaries)
    findings = check_findings(experiment.expected, summaries, result)
    files = write_findings(out, result, findings, summary)
    report_dir = os.path.join(out, "report")
    return StudyRun(out, result, summary, findings, files, report_dir, write_report(store_path, report_dir))
