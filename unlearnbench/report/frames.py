"""What the report is drawn from, read from the results store (never from a model): forget-quality
records, recall means and the probes' aggregate rows (:class:`ReportData`, :func:`collect`), the
frames of the two figures (:func:`heatmap_frame`, :func:`curves_frame`) and the readable labels of
methods and attacks (:func:`labels`).

Forget quality (``metrics.forget_quality``) of a checkpoint is computed per form on the *forget*
split against the base and oracle cells with the same model label, probe suite and seed, then
averaged over the informative forms (base and oracle recall differ by >= ``metrics.MIN_GAP``).
Cells without such references get no forget quality; the report says so instead of failing.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field

from ..metrics import forget_quality
from ..store import ResultStore

#: An unlearn cell's forget-quality record: its ``step`` (attack records have the attack epoch) ...
AFTER_UNLEARNING = "after unlearning"
#: ... and its ``attack`` (the heatmap's first column).
NO_ATTACK = "no attack"


@dataclass
class ReportData:
    """Everything the figures and tables are drawn from (plain pandas frames)."""

    fq: "object"  # DataFrame: one row per (unlearn/attack cell, checkpoint)
    recall: "object"  # DataFrame: mean `metric` per (cell_id, kind, labels, checkpoint, step, split, form)
    notes: list[str] = field(default_factory=list)
    # DataFrame: the probes' aggregate rows (item '*', e.g. MUSE privleak auc) with the cell labels
    aggregates: "object" = None


# -- labels --------------------------------------------------------------------------------------


def _config_dict(text) -> dict:
    if text is None or (isinstance(text, float) and math.isnan(text)):
        return {}
    try:
        value = json.loads(text)
    except (TypeError, ValueError):
        return {"_": str(text)}
    return value if isinstance(value, dict) else {"_": value}


def _identity(cfg: dict) -> str:
    """Canonical config text without the seed (seeds are averaged over, not told apart)."""
    return json.dumps({k: v for k, v in cfg.items() if k != "seed"}, sort_keys=True, default=str)


def labels(names, configs) -> list[str]:
    """Readable labels: the name alone, or name [k=v ...] with the keys that differ between the
    configs sharing that name (e.g. ILU variants by their envs), or a short hash as a last resort."""
    cfgs = [_config_dict(c) for c in configs]
    ids = [_identity(c) for c in cfgs]
    by_name: dict[str, dict[str, dict]] = {}
    for n, i, c in zip(names, ids, cfgs):
        by_name.setdefault(n, {})[i] = {k: v for k, v in c.items() if k != "seed"}
    out = []
    for n, i in zip(names, ids):
        variants = by_name[n]
        if len(variants) <= 1:
            out.append(str(n))
            continue
        keys = sorted({k for v in variants.values() for k in v})
        differing = [
            k for k in keys if len({json.dumps(v.get(k), sort_keys=True, default=str) for v in variants.values()}) > 1
        ]
        cfg = variants[i]
        parts = [
            f"{k}={json.dumps(cfg.get(k), default=str) if not isinstance(cfg.get(k), (int, float, str)) else cfg.get(k)}"
            for k in differing
        ]
        text = " ".join(parts)
        if not text or len(text) > 60:
            text = hashlib.sha256(i.encode()).hexdigest()[:6]
        out.append(f"{n} [{text}]")
    return out


def label_cells(cells):
    """``cells`` (rows of :meth:`ResultStore.cells_frame`) with ``method_label`` and ``attack_label``
    columns: :func:`labels` of the method / attack names and configs among these cells."""
    return cells.assign(
        method_label=labels(cells.method.fillna(""), cells.method_config),
        attack_label=labels(cells.attack.fillna(""), cells.attack_config),
    )


# -- aggregation ---------------------------------------------------------------------------------


def collect(store: ResultStore, metric: str = "correct") -> ReportData:
    """Aggregate the finished cells of ``store`` into forget-quality records and recall means."""
    import pandas as pd

    notes: list[str] = []
    cells = store.cells_frame()
    cells = cells[cells.status == "finished"].copy()
    empty_fq = pd.DataFrame(
        columns=["cell_id", "kind", "model", "method", "attack", "seed", "checkpoint", "step", "fq", "per_form"]
    )
    if cells.empty:
        notes.append("The store holds no finished cells.")
        return ReportData(empty_fq, pd.DataFrame(), notes)
    cells = label_cells(cells)
    for col in ("model", "probe_suite", "seed"):
        cells[col] = cells[col].fillna("").astype(str)
    all_scores = store.scores_frame(list(cells.cell_id))
    aggregates = all_scores[all_scores.item_id == "*"][
        ["cell_id", "checkpoint", "step", "split", "form", "metric", "value"]
    ]
    aggregates = aggregates.merge(
        cells[["cell_id", "kind", "model", "probe_suite", "seed", "method_label", "attack_label", "attack"]],
        on="cell_id",
    )
    scores = all_scores[all_scores.metric == metric]
    if scores.empty:
        notes.append(f"No score rows with metric '{metric}'.")
    recall = scores.groupby(["cell_id", "checkpoint", "step", "split", "form"])["value"].mean().reset_index()
    recall = recall.merge(
        cells[["cell_id", "kind", "model", "probe_suite", "seed", "method_label", "attack_label", "attack"]],
        on="cell_id",
    )

    def forget_of(cid, checkpoint=None):
        sub = recall[(recall.cell_id == cid) & (recall.split == "forget")]
        if checkpoint is not None:
            sub = sub[sub.checkpoint == checkpoint]
        return dict(zip(sub.form, sub.value))

    refs: dict[tuple, dict[str, str]] = {}
    for kind in ("base", "oracle"):
        for r in cells[cells.kind == kind].itertuples():  # ordered by created_at: the newest wins
            refs.setdefault((r.model, r.probe_suite, r.seed), {})[kind] = r.cell_id
    records, missing = [], set()
    for cell in cells[cells.kind.isin(["unlearn", "attack"])].itertuples():
        ref = refs.get((cell.model, cell.probe_suite, cell.seed), {})
        if "base" not in ref or "oracle" not in ref:
            missing.add(
                (
                    cell.model,
                    cell.probe_suite,
                    cell.seed,
                    "oracle" if "base" in ref else "base" if "oracle" in ref else "base and oracle",
                )
            )
            continue
        base, oracle = forget_of(ref["base"]), forget_of(ref["oracle"])
        ckpts = recall[recall.cell_id == cell.cell_id][["checkpoint", "step"]].drop_duplicates()
        for ck in ckpts.sort_values("step").itertuples():
            per_form = {}
            for form, u in forget_of(cell.cell_id, ck.checkpoint).items():
                if form in base and form in oracle:
                    q = forget_quality(u, base[form], oracle[form])
                    if not math.isnan(q):
                        per_form[form] = q
            records.append(
                {
                    "cell_id": cell.cell_id,
                    "kind": cell.kind,
                    "model": cell.model,
                    "method": cell.method_label,
                    "attack": cell.attack_label if cell.kind == "attack" else NO_ATTACK,
                    "attack_task": (
                        str(cell.attack).split(":", 1)[1].split(",")[0]
                        if cell.kind == "attack" and ":" in str(cell.attack)
                        else None
                    ),
                    "seed": cell.seed,
                    "checkpoint": ck.checkpoint,
                    "step": int(ck.step) if cell.kind == "attack" else AFTER_UNLEARNING,
                    "fq": sum(per_form.values()) / len(per_form) if per_form else float("nan"),
                    "per_form": per_form,
                }
            )
    for model, suite, seed, what in sorted(missing):
        notes.append(
            f"Forget quality unavailable for model '{model}', seed {seed} (probes {suite}): "
            f"no finished {what} cell in the store; those cells are left out of the figures."
        )
    fq = pd.DataFrame(records) if records else empty_fq
    return ReportData(fq, recall, notes, aggregates)


def heatmap_frame(data: ReportData):
    """Rows (method, attack) with mean, std (sample, NaN for one seed), min, max, n over seeds of the
    forget quality after the attack's last epoch; the 'no attack' column is after unlearning."""
    import pandas as pd

    fq = data.fq
    if fq.empty:
        return pd.DataFrame(columns=["method", "attack", "mean", "std", "min", "max", "n"])
    att = fq[fq.kind == "attack"]
    last = att.loc[att.groupby("cell_id")["step"].idxmax()] if len(att) else att
    unl = fq[fq.kind == "unlearn"]
    both = pd.concat([unl, last])
    g = both.groupby(["method", "attack"], sort=False)["fq"]
    out = g.agg(["mean", "std", "min", "max", "count"]).reset_index().rename(columns={"count": "n"})
    return out


def curves_frame(data: ReportData):
    """Rows (attack, method, epoch) with mean, min, max, n over seeds of the forget quality."""
    import pandas as pd

    att = data.fq[data.fq.kind == "attack"] if not data.fq.empty else data.fq
    if att.empty:
        return pd.DataFrame(columns=["attack", "method", "epoch", "mean", "min", "max", "n"])
    att = att.assign(epoch=att.step.astype(int))
    g = att.groupby(["attack", "method", "epoch"], sort=False)["fq"]
    return g.agg(["mean", "min", "max", "count"]).reset_index().rename(columns={"count": "n"})
