"""Summaries read from the results store (never from a model): what a run found, per form and split.

:func:`run_summary` turns the cells of one run into one document — the same document that
``unlearnbench run --json`` prints (its schema is in the README) and that the CLI renders as a table.

Forget quality, its attacked-oracle version and recovery have their ``mean`` from the headline rule
(:mod:`unlearnbench.headline`: forms that enter by item count and gap, weighted by items, with
``n`` and a bootstrap ``ci`` over items); ``mean_of_forms`` is the plain mean over every informative
form. The leaderboard bundles' aggregates (``leaderboard/bundle.py``) hold the same two.
"""

from __future__ import annotations

import math

from ..headline import group_items, headline, weighted_mean
from ..metrics import MIN_GAP, excess, forget_quality, forget_quality_attacked, privleak, recovery
from ..store import ResultStore
from .tables import DISTANCE_METRICS

#: The headline metric, "recall": em for generative forms, accuracy for choice forms.
HEADLINE = "correct"
# Distribution-level numbers shown beside recall (JS to the oracle, fluency): the report's distance table's metrics
_DISTANCE_KEYS = {(probe, metric) for probe, metric, _label in DISTANCE_METRICS}
#: The white-box probes' aggregates the summary keeps (``hidden``: column -> split -> "probe.metric").
_HIDDEN_KEYS = {
    ("lens", "best_top1"),
    ("lens", "best_layer"),
    ("linear", "best_acc"),
    ("linear", "best_layer"),
    ("linear", "majority"),
    ("linear", "coverage"),
}


def _clean(x: float) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(float(x), 4)


def run_summary(store: ResultStore, cells) -> dict:
    """``cells``: the runner's CellResult list. Returns a JSON-ready dict (see README schema)."""
    ids = [c.cell_id for c in cells if c.cell_id and c.status in ("finished", "cached")]
    frame = store.scores_frame(ids) if ids else None
    columns: list[dict] = []
    control_columns: list[dict] = []  # the attacked oracle (and base): their recall is in ``recall`` too
    recall: dict[str, dict[str, dict[str, float | None]]] = {}  # column -> split -> form -> value
    probs: dict[str, dict[str, dict[str, float | None]]] = {}
    fa: dict[str, dict[str, float | None]] = {}
    tofu: dict[str, dict[str, dict[str, float | None]]] = {}  # column -> split -> TOFU metric (mean/aggregate)
    aucs: dict[str, dict[str, float]] = {}  # column -> MUSE privleak aggregates (auc, auc_retrain)
    wmdp: dict[str, dict[str, dict[str, float | None]]] = {}  # column -> split -> wmdp_mcq aggregate
    distance: dict[str, dict[str, dict[str, float | None]]] = {}  # column -> split -> js / fluency means
    hidden: dict[str, dict[str, dict[str, float | None]]] = {}  # column -> split -> lens / linear aggregates
    raw: dict[str, dict[str, float]] = {}  # column -> forget-split recall per form, unrounded (forget quality)
    items: dict[str, dict[str, dict[str, float]]] = {}  # column -> form -> item -> correct (forget split)
    if frame is not None and len(frame):
        forget = frame[(frame.split == "forget") & (frame.metric == HEADLINE)]
        by_point = group_items(
            ((r.cell_id, r.checkpoint), r.form, r.item_id, r.value)
            for r in forget[["cell_id", "checkpoint", "form", "item_id", "value"]].itertuples(index=False)
        )
        g = frame.groupby(["cell_id", "checkpoint", "step", "split", "form", "metric"], dropna=False)["value"].mean()
        g = g.reset_index()
        for c in cells:
            if c.cell_id not in ids:
                continue
            sub = g[g.cell_id == c.cell_id]
            checkpoints = sorted({(int(r.step), r.checkpoint) for r in sub.itertuples()})
            for step, checkpoint in checkpoints:
                if c.kind in ("attack", "control") and step == 0:
                    continue  # identical weights to the unlearned column
                col = _column_name(c, checkpoint)
                items[col] = by_point.get((c.cell_id, checkpoint), {})
                rows = sub[(sub.checkpoint == checkpoint)]
                (control_columns if c.kind == "control" else columns).append(
                    {
                        "column": col,
                        "kind": c.kind,
                        "cell_id": c.cell_id,
                        "checkpoint": checkpoint,
                        "step": step,
                        "method": c.label.get("method"),
                        "attack": c.label.get("attack"),
                        **({"control": c.label.get("method")} if c.kind == "control" else {}),
                    }
                )
                for r in rows.itertuples():
                    if r.form == "tofu":  # TOFU's table: split means of each metric and its aggregates
                        # 6 significant digits, not _clean's 4 decimals: KS p-values are often < 1e-4
                        tofu.setdefault(col, {}).setdefault(r.split, {})[r.metric] = (
                            None if math.isnan(r.value) else float(f"{r.value:.6g}")
                        )
                    if r.form == "wmdp_mcq" and r.metric not in (HEADLINE, "prob"):  # forget_quality, acc_<subset>
                        wmdp.setdefault(col, {}).setdefault(r.split, {})[r.metric] = _clean(r.value)
                    if (r.form, r.metric) in _HIDDEN_KEYS:
                        hidden.setdefault(col, {}).setdefault(r.split, {})[f"{r.form}.{r.metric}"] = _clean(r.value)
                    if (r.form, r.metric) in _DISTANCE_KEYS:
                        distance.setdefault(col, {}).setdefault(r.split, {})[f"{r.form}.{r.metric}"] = _clean(r.value)
                    if r.split == "task":
                        if r.metric == HEADLINE:
                            fa.setdefault(col, {})[r.form] = _clean(r.value)
                    elif r.metric == HEADLINE:
                        recall.setdefault(col, {}).setdefault(r.split, {})[r.form] = _clean(r.value)
                        if r.split == "forget" and not math.isnan(r.value):
                            raw.setdefault(col, {})[r.form] = r.value
                    elif r.metric == "prob":
                        probs.setdefault(col, {}).setdefault(r.split, {})[r.form] = _clean(r.value)
                    elif r.form == "privleak" and r.metric in ("auc", "auc_retrain"):
                        aucs.setdefault(col, {})[r.metric] = r.value
    fq = _forget_quality(columns, raw, items)
    robustness, worst, notes = _robustness(cells, columns, control_columns, raw, items, fq)
    return {
        "schema": "unlearnbench.run/1",
        "cells": [
            {
                "kind": c.kind,
                "cell_id": c.cell_id,
                "status": c.status,
                "reason": c.reason,
                "label": c.label,
                "meta": {k: v for k, v in c.meta.items() if k != "loss_history"},
            }
            for c in cells
        ],
        "columns": columns,
        "recall": recall,
        "prob": probs,
        "task_accuracy": fa,
        "forget_quality": fq,
        **({"control_columns": control_columns} if control_columns else {}),
        **({"robustness": robustness, "worst_case": worst} if robustness else {}),
        **({"notes": notes} if notes else {}),
        **({"tofu": tofu} if tofu else {}),
        **({"wmdp": wmdp} if wmdp else {}),
        **({"privleak": _privleak(aucs)} if aucs else {}),
        **({"distance": distance} if distance else {}),
        **({"hidden": hidden} if hidden else {}),
    }


def _privleak(aucs: dict) -> dict:
    """MUSE PrivLeak per column: (AUC - AUC_retrain) / AUC_retrain x 100, with AUC_retrain the
    oracle column's AUC where the run has an oracle, else the benchmark's constant."""
    oracle = aucs.get("oracle", {}).get("auc")
    out = {}
    for col, a in aucs.items():
        use_oracle = oracle is not None and not math.isnan(oracle)
        ref = oracle if use_oracle else a.get("auc_retrain", float("nan"))
        out[col] = {
            "auc": _clean(a.get("auc")),
            "auc_retrain": _clean(ref),
            "reference": "oracle" if use_oracle else "constant",
            "privleak": _clean(privleak(a.get("auc", float("nan")), ref)),
        }
    return out


def _column_name(cell, checkpoint: str) -> str:
    if cell.kind in ("base", "oracle"):
        return cell.kind
    if cell.kind == "unlearn":
        return "unlearned"
    name = f"{cell.label.get('attack')} {checkpoint.replace('epoch=', 'ep')}"
    return f"[{cell.label.get('method')}] {name}" if cell.kind == "control" else name


def _robustness(cells, columns, control_columns, raw, items, fq) -> tuple[dict, dict, list[str]]:
    """Per attack column: forget quality against the attacked oracle at the same step, recovery and
    excess over the attacked oracle (definitions and NaN rules: :mod:`unlearnbench.metrics`), each
    per form and as the headline (``mean``: the forms and weights of the column's forget-quality
    headline, :mod:`unlearnbench.headline`; the attacked-oracle one with its item ``ci``); per
    attack: the last checkpoint and the worst case over its curve. Returns (per column, per attack,
    notes)."""
    b, o0, u0 = raw.get("base"), raw.get("oracle"), raw.get("unlearned")
    attack_cols = [c for c in columns if c["kind"] == "attack"]
    notes = []
    if not attack_cols or not b or not u0:
        return {}, {}, notes
    controls = {(c["control"], c["attack"], c["step"]): c["column"] for c in control_columns}
    wanted = {c["attack"] for c in attack_cols}
    if any(c.status == "failed" and c.kind == "control" for c in cells):
        notes.append("a control cell failed: forget quality against the attacked oracle is missing where it did")
    if o0 and not any(k[0] == "oracle" for k in controls) and wanted:
        notes.append(
            "no attacked-oracle control in this run: forget quality under attack is against the unattacked oracle only"
        )

    out: dict[str, dict] = {}
    for c in attack_cols:
        u = raw.get(c["column"], {})
        ctrl = controls.get(("oracle", c["attack"], c["step"]))
        ot = raw.get(ctrl, {}) if ctrl else {}
        weights = (fq.get(c["column"]) or {}).get("forms") or {}
        fq_ao, rec, exc = {}, {}, {}
        for f, ut in u.items():
            if f in b and f in u0:
                rec[f] = recovery(ut, u0[f], b[f])
            if ctrl and f in ot and f in b and o0 and f in o0:
                fq_ao[f] = forget_quality_attacked(ut, b[f], ot[f], o0[f])
                exc[f] = excess(ut, ot[f])
        # without an oracle there is no headline: recovery is then the plain mean of the forms it is defined on
        rec_weights = weights if o0 else {f: 1 for f in rec if not math.isnan(rec[f])}
        # the plain means over every informative form (mean_of_forms; see the module docstring)
        informative = [f for f in u if o0 and f in b and f in o0 and abs(b[f] - o0[f]) >= MIN_GAP]
        removed = [f for f in rec if not math.isnan(rec[f]) and (not o0 or f in informative)]
        h_ao = (
            headline(items.get(c["column"], {}), items.get("base", {}), items.get("oracle", {}), items[ctrl])
            if ctrl
            else None
        )
        out[c["column"]] = {
            "attack": c["attack"],
            "step": c["step"],
            "control": ctrl,
            "base_control": controls.get(("base", c["attack"], c["step"])),
            "forget_quality_attacked_oracle": {
                "mean": _clean(h_ao["value"]) if h_ao else None,
                "ci": [_clean(x) for x in h_ao["ci"]] if h_ao and h_ao["ci"] else None,
                "mean_of_forms": _plain_mean(fq_ao.get(f) for f in informative),
                "per_form": {f: _clean(v) for f, v in fq_ao.items()},
            },
            "recovery": {
                "mean": _clean(weighted_mean(rec, rec_weights)),
                "mean_of_forms": _plain_mean(rec[f] for f in removed),
                "per_form": {f: _clean(v) for f, v in rec.items()},
            },
            "excess": {"mean": _clean(weighted_mean(exc, weights)), "per_form": {f: _clean(v) for f, v in exc.items()}},
        }
    worst: dict[str, dict] = {}
    for attack in dict.fromkeys(c["attack"] for c in attack_cols):
        curve = [c for c in attack_cols if c["attack"] == attack]
        last = max(curve, key=lambda c: c["step"])

        def point(c, value):
            return {"value": value, "column": c["column"], "step": c["step"], "checkpoint": c["checkpoint"]}

        def pick(metric, lowest, curve=curve):
            pts = [(v, c) for c in curve if (v := metric(c)) is not None]
            if not pts:
                return None
            v, c = (min if lowest else max)(
                pts, key=lambda t: (t[0], t[1]["step"]) if lowest else (t[0], -t[1]["step"])
            )
            return point(c, v)

        worst[attack] = {
            "last": {
                "column": last["column"],
                "step": last["step"],
                "forget_quality": fq.get(last["column"], {}).get("mean"),
                "forget_quality_attacked_oracle": out[last["column"]]["forget_quality_attacked_oracle"]["mean"],
                "recovery": out[last["column"]]["recovery"]["mean"],
            },
            "min_forget_quality": pick(lambda c: fq.get(c["column"], {}).get("mean"), True),
            "min_forget_quality_attacked_oracle": pick(
                lambda c: out[c["column"]]["forget_quality_attacked_oracle"]["mean"], True
            ),
            "max_recovery": pick(lambda c: out[c["column"]]["recovery"]["mean"], False),
        }
    return out, worst, notes


def _plain_mean(values) -> float | None:
    vals = [v for v in values if v is not None and not math.isnan(v)]
    return _clean(sum(vals) / len(vals)) if vals else None


def _forget_quality(columns: list[dict], raw: dict, items: dict) -> dict:
    """Per column: forget quality per form, and the headline (:func:`unlearnbench.headline.headline`:
    the forms that enter by its rule, weighed by item count, with ``n``, a bootstrap ``ci`` over items
    and the forms ``left_out``) as ``mean``; ``mean_of_forms`` is the plain mean over every
    informative form (this document's ``mean`` before the headline rule)."""
    base, oracle = raw.get("base"), raw.get("oracle")
    out: dict[str, dict] = {}
    if not base or not oracle:
        return out
    for col in (c["column"] for c in columns):
        forget = raw.get(col, {})
        per_form = {f: forget_quality(u, base[f], oracle[f]) for f, u in forget.items() if f in base and f in oracle}
        vals = [v for v in per_form.values() if not math.isnan(v)]
        h = headline(items.get(col, {}), items.get("base", {}), items.get("oracle", {}))
        out[col] = {
            "mean": _clean(h["value"]),
            "ci": [_clean(x) for x in h["ci"]] if h["ci"] else None,
            "n": h["n"],
            "forms": h["forms"],
            "left_out": h["left_out"],
            "mean_of_forms": _clean(sum(vals) / len(vals)) if vals else None,
            "per_form": {f: _clean(v) for f, v in per_form.items()},
        }
    return out
