"""Comparing a bundle's aggregates with aggregates measured again, and choosing which cells to re-run:
the helpers shared by :mod:`.verify` (aggregates recomputed from the bundle's scores, exactly) and
:mod:`.rerun` (aggregates of cells re-run here, within the matrix's tolerance).

An *aggregate list* is a cell's ``aggregates`` (:func:`unlearnbench.leaderboard.bundle.all_aggregates`):
one dict per checkpoint with ``checkpoint``, ``step``, ``recall``, ``task_accuracy`` and
``forget_quality`` (``mean`` and ``per_form``), and on attack cells ``forget_quality_attacked_oracle``
and ``recovery`` (the same shape).
"""

from __future__ import annotations

import math
import random

MEASURES = ("forget_quality", "forget_quality_attacked_oracle", "recovery")


def _diff(a, b, tol: float) -> float | None:
    """|a - b| when it exceeds tol (None/NaN on one side only counts as infinite), else None."""
    na = a is None or (isinstance(a, float) and math.isnan(a))
    nb = b is None or (isinstance(b, float) and math.isnan(b))
    if na or nb:
        return None if na == nb else math.inf
    d = abs(float(a) - float(b))
    return d if d > tol + 1e-12 else None


def _measure(cp: dict, name: str) -> dict:
    m = cp.get(name)
    return {} if m is None else {"mean": m["mean"], **m["per_form"]}


def _tolerance(tolerance: dict, metric: str) -> float:
    """The tolerance of a metric: forget quality against the attacked oracle shares forget quality's;
    recovery has its own (the matrix defaults it to forget quality's)."""
    if metric == "forget_quality_attacked_oracle":
        return tolerance["forget_quality"]
    return tolerance.get(metric, tolerance["forget_quality"])


def compare_aggregates(claimed: list[dict], measured: list[dict], tolerance: dict) -> list[str]:
    """Differences between two aggregate lists beyond ``tolerance`` ({metric: absolute tolerance} for
    recall, task_accuracy, forget_quality and optionally recovery), one line each; empty when they
    agree. A measure one side has and the other lacks counts as a difference."""
    out = []
    cl = {(c["checkpoint"], c["step"]): c for c in claimed}
    me = {(c["checkpoint"], c["step"]): c for c in measured}
    for k in sorted(set(cl) | set(me), key=lambda t: (t[1], t[0])):
        if k not in cl or k not in me:
            out.append(f"checkpoint {k[0]} is {'missing' if k not in me else 'not in the scores'}")
            continue
        pairs = [
            ("recall", cl[k]["recall"], me[k]["recall"]),
            ("task_accuracy", cl[k]["task_accuracy"], me[k]["task_accuracy"]),
        ]
        for name in MEASURES:
            if (name in cl[k]) != (name in me[k]):
                out.append(f"{name} at {k[0]}: {'absent' if name not in cl[k] else 'present'} in the bundle")
                continue
            pairs.append((name, _measure(cl[k], name), _measure(me[k], name)))
        for metric, a, b in pairs:
            for where in sorted(set(a) | set(b)):
                d = _diff(a.get(where), b.get(where), _tolerance(tolerance, metric))
                if d is not None:
                    out.append(f"{metric} {where} at {k[0]}: {a.get(where)} vs {b.get(where)}")
    return out


def max_difference(claimed: list[dict], measured: list[dict]) -> float:
    """Largest absolute difference between two aggregate lists over the numbers both have."""
    me = {(c["checkpoint"], c["step"]): c for c in measured}
    worst = 0.0
    for c in claimed:
        m = me.get((c["checkpoint"], c["step"]))
        if m is None:
            continue
        pairs = [(c["recall"], m["recall"]), (c["task_accuracy"], m["task_accuracy"])]
        pairs += [(c[n]["per_form"], m[n]["per_form"]) for n in MEASURES if n in c and n in m]
        for a, b in pairs:
            for k in set(a) & set(b):
                if a[k] is not None and b[k] is not None:
                    worst = max(worst, abs(a[k] - b[k]))
    return worst


def sample_cells(manifest: dict, k: int) -> list[dict]:
    """K attack cells drawn deterministically (seeded by the scores file's hash)."""
    attacks = sorted((c for c in manifest["cells"] if c["kind"] == "attack"), key=lambda c: c["cell_id"])
    return random.Random(manifest["scores_file"]["sha256"]).sample(attacks, min(k, len(attacks)))
