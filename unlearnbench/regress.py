"""Regression checks of robustness numbers: re-run a small deterministic matrix, compare with a baseline.

A baseline file (JSON, e.g. ``leaderboard/baselines/micro.json``) holds

- ``matrix``: the benchmark spec, method specs, attack specs and seed to run;
- ``forms``: the probe forms compared (those stable enough to compare: enough items, above chance);
- ``tolerance``: the largest absolute difference allowed per metric (``recall``, ``task_accuracy``,
  ``forget_quality``, and optionally ``worst_case``);
- ``numbers``: per method, per column (base, oracle, unlearned, each attack checkpoint), the recall
  per split and form, the FA per task and the forget quality per form; and per attack a column
  ``<attack> worst`` whose ``worst_case`` numbers are the run summary's worst case over the curve
  (``min/forget_quality``, ``min/forget_quality_attacked_oracle``, ``max/recovery``) and its last
  checkpoint (``last/forget_quality``, ``last/forget_quality_attacked_oracle``, ``last/recovery``),
  definitions in :mod:`unlearnbench.metrics`. The steps where the worst cases happened are kept
  beside them (``steps``) for the reader and not compared: on a flat curve the step of the minimum
  moves between near-equal checkpoints. A baseline without a ``worst_case`` tolerance (made before
  it existed) is compared on the other metrics only;
- ``history``: who changed the numbers, when, at which commit, and why.

:func:`compare` lists every number outside its tolerance (and every number that appeared or went
missing); the CLI prints them as a table and exits 1 when there are any. Updating a baseline is the
explicit ``--update --reason "..."``, which appends to ``history``.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .errors import UnlearnbenchError

METRICS = ("recall", "task_accuracy", "forget_quality")
#: Compared when the baseline's tolerance names it (see the module docstring).
OPTIONAL_METRICS = ("worst_case",)
_WORST = (
    ("min/forget_quality", "min_forget_quality"),
    ("min/forget_quality_attacked_oracle", "min_forget_quality_attacked_oracle"),
    ("max/recovery", "max_recovery"),
)


@dataclass
class Difference:
    method: str
    column: str
    metric: str
    where: str  # split/form, task or form
    baseline: float | None
    measured: float | None
    tolerance: float

    @property
    def delta(self) -> float | None:
        if self.baseline is None or self.measured is None:
            return None
        return self.measured - self.baseline


def load_baseline(path: str | Path) -> dict:
    p = Path(path)
    if not p.is_file():
        raise UnlearnbenchError(f"no baseline file at '{p}'")
    try:
        doc = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise UnlearnbenchError(f"baseline '{p}' is not valid JSON: {e}") from None
    for key in ("matrix", "forms", "tolerance"):
        if key not in doc:
            raise UnlearnbenchError(f"baseline '{p}' lacks '{key}'")
    missing = [m for m in METRICS if m not in doc["tolerance"]]
    if missing:
        raise UnlearnbenchError(f"baseline '{p}' has no tolerance for {', '.join(missing)}")
    return doc


def extract_numbers(summary: dict, forms) -> dict:
    """The compared numbers of one run document (report.run_summary)."""
    out: dict[str, dict] = {}
    for col in (c["column"] for c in summary["columns"]):
        rec = summary["recall"].get(col, {})
        out[col] = {
            "recall": {f"{s}/{f}": rec.get(s, {}).get(f) for s in sorted(rec) for f in forms},
            "task_accuracy": dict(sorted(summary["task_accuracy"].get(col, {}).items())),
            "forget_quality": {f: summary["forget_quality"].get(col, {}).get("per_form", {}).get(f) for f in forms},
        }
    for attack, w in (summary.get("worst_case") or {}).items():
        numbers = {
            f"last/{k}": w["last"].get(k) for k in ("forget_quality", "forget_quality_attacked_oracle", "recovery")
        }
        steps = {}
        for where, key in _WORST:
            point = w.get(key) or {}
            numbers[where] = point.get("value")
            steps[where] = point.get("step")
        out[f"{attack} worst"] = {"worst_case": numbers, "steps": steps}
    return out


def run_matrix(baseline: dict, store, progress=None) -> dict:
    """Run (or resume from ``store``) every method of the matrix; returns method -> numbers."""
    from .progress import SILENT
    from .report import run_summary
    from .runner import RunRequest, run

    m = baseline["matrix"]
    numbers = {}
    for method in m["methods"]:
        cells = run(
            RunRequest(
                method=method,
                attacks=list(m.get("attacks", [])),
                benchmark=m["benchmark"],
                seed=int(m.get("seed", 0)),
                controls=list(m.get("controls", ["none"])),  # a baseline's matrix says which controls it measured
            ),
            store,
            progress or SILENT,
        )
        failed = [c for c in cells if c.status == "failed"]
        if failed:
            raise UnlearnbenchError(f"regression matrix: {method} failed ({failed[0].reason})")
        numbers[method] = extract_numbers(run_summary(store, cells), baseline["forms"])
    return numbers


def _close(a: float | None, b: float | None, tol: float) -> bool:
    if a is None or b is None or (isinstance(a, float) and math.isnan(a)) or (isinstance(b, float) and math.isnan(b)):
        return (a is None or (isinstance(a, float) and math.isnan(a))) == (
            b is None or (isinstance(b, float) and math.isnan(b))
        )
    return abs(a - b) <= tol + 1e-12


def compare(baseline: dict, measured: dict) -> list[Difference]:
    """Every number outside tolerance, plus every number present on one side only."""
    tol = baseline["tolerance"]
    metrics = METRICS + tuple(m for m in OPTIONAL_METRICS if m in tol)
    diffs: list[Difference] = []
    expected = baseline.get("numbers", {})
    for method in sorted(set(expected) | set(measured)):
        cols_b, cols_m = expected.get(method, {}), measured.get(method, {})
        for col in sorted(set(cols_b) | set(cols_m)):
            if not any(m in cols_b.get(col, {}) or m in cols_m.get(col, {}) for m in metrics):
                continue  # e.g. a worst-case column against a baseline that does not compare worst cases
            for metric in metrics:
                b, m = cols_b.get(col, {}).get(metric, {}), cols_m.get(col, {}).get(metric, {})
                for where in sorted(set(b) | set(m)):
                    vb, vm = b.get(where), m.get(where)
                    if where not in b or where not in m or not _close(vb, vm, tol[metric]):
                        diffs.append(
                            Difference(
                                method,
                                col,
                                metric,
                                where,
                                vb if where in b else None,
                                vm if where in m else None,
                                tol[metric],
                            )
                        )
    return diffs


def _git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def update_baseline(path: str | Path, baseline: dict, measured: dict, reason: str) -> dict:
    """Replace the numbers and record why (never without a reason)."""
    if not reason or not reason.strip():
        raise UnlearnbenchError('updating a baseline needs --reason "why the numbers changed"')
    doc = dict(baseline)
    doc["numbers"] = measured
    doc["history"] = list(baseline.get("history", [])) + [
        {
            "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "commit": _git_commit(),
            "reason": reason.strip(),
        }
    ]
    Path(path).write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    return doc
