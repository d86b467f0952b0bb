"""What the report is drawn from, read from the results store (never from a model): forget-quality
records, recall means and the probes' aggregate rows (:class:`ReportData`, :func:`collect`), the
frames of the figures (:func:`heatmap_frame`, :func:`curves_frame`, :func:`curve_axes`), the worst
point of each attack's curve (:func:`worst_points`) and the readable labels of methods and attacks
(:func:`labels`).

Forget quality (``metrics.forget_quality``) of a checkpoint is computed per form on the *forget*
split against the base and oracle cells with the same model label, probe suite and seed, then
averaged over the informative forms (base and oracle recall differ by >= ``metrics.MIN_GAP``).
Cells without such references get no forget quality; the report says so instead of failing.

Under attack, each attack checkpoint is also compared with its control (``metrics`` module
docstring): the ``control`` cell that ran the same attack (same spec and config) on the oracle with
the same model label, probe suite and seed, at the same step. Per checkpoint the records then hold
``fq_ao`` (forget quality against the attacked oracle), ``recovery`` ((u_t - u_0) / (b - u_0), u_0
the attack cell's step-0 recall), ``excess`` (u_t - o_t) and ``control_recovery`` (the attacked
oracle on the method's recovery scale, (o_t - u_0) / (b - u_0): where a method's recovery would be
if it knew exactly what the control knows). Means are over the same informative forms as ``fq``
(recovery: those of them where it is defined). NaN where there is no control cell.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field

from ..headline import group_items, headline, weighted_mean
from ..metrics import excess, forget_quality, forget_quality_attacked, recovery
from ..store import ResultStore
from .attack_kinds import attack_identity, curve_axis, post_attack_label

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
    columns (:func:`labels` of the method / attack names and configs among these cells), and the
    attack's ``attack_task`` (the task it trained on, else None) and ``attack_row`` (its row label,
    'Post-quantize to 4 bits'), from :func:`~.attack_kinds.attack_identity` of the cell's key."""
    ids = [attack_identity(k, a) for k, a in zip(cells.key_json, cells.attack)]
    has_attack = cells.attack.notna().tolist()
    return cells.assign(
        method_label=labels(cells.method.fillna(""), cells.method_config),
        attack_label=labels(cells.attack.fillna(""), cells.attack_config),
        attack_task=[i.task if a else None for i, a in zip(ids, has_attack)],
        attack_row=[post_attack_label(i) if a else None for i, a in zip(ids, has_attack)],
    )


# -- aggregation ---------------------------------------------------------------------------------


def collect(store: ResultStore, metric: str = "correct") -> ReportData:
    """Aggregate the finished cells of ``store`` into forget-quality records and recall means."""
    import pandas as pd

    notes: list[str] = []
    cells = store.cells_frame()
    cells = cells[cells.status == "finished"].copy()
    empty_fq = pd.DataFrame(
        columns=[
            "cell_id",
            "kind",
            "model",
            "method",
            "attack",
            "attack_task",
            "seed",
            "checkpoint",
            "step",
            "attack_row",
            "fq",
            "fq_lo",
            "fq_hi",
            "n_items",
            "fq_forms_mean",
            "per_form",
            "retain",
            *ATTACK_MEASURES,
        ]
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
    label_columns = ["cell_id", "kind", "model", "probe_suite", "seed", "method_label", "attack_label", "attack"]
    label_columns += ["attack_task", "attack_row"]
    aggregates = aggregates.merge(cells[label_columns], on="cell_id")
    scores = all_scores[all_scores.metric == metric]
    if scores.empty:
        notes.append(f"No score rows with metric '{metric}'.")
    recall = scores.groupby(["cell_id", "checkpoint", "step", "split", "form"])["value"].mean().reset_index()
    recall = recall.merge(cells[label_columns], on="cell_id")

    def forget_of(cid, checkpoint=None, step=None):
        sub = recall[(recall.cell_id == cid) & (recall.split == "forget")]
        if checkpoint is not None:
            sub = sub[sub.checkpoint == checkpoint]
        if step is not None:
            sub = sub[sub.step == step]
        return dict(zip(sub.form, sub.value))

    def recall_of(cid, checkpoint, split):
        sub = recall[(recall.cell_id == cid) & (recall.split == split) & (recall.checkpoint == checkpoint)]
        return dict(zip(sub.form, sub.value))

    controls: dict[tuple, str] = {}
    for r in cells[cells.kind == "control"].itertuples():  # the newest wins, as for base/oracle
        controls[(r.model, r.probe_suite, r.seed, r.attack, _config_text(r.attack_config), r.method)] = r.cell_id

    refs: dict[tuple, dict[str, str]] = {}
    for kind in ("base", "oracle"):
        for r in cells[cells.kind == kind].itertuples():  # ordered by created_at: the newest wins
            refs.setdefault((r.model, r.probe_suite, r.seed), {})[kind] = r.cell_id
    forget_rows = scores[scores.split == "forget"]
    # (cell, checkpoint) -> form -> item -> value
    items_at = group_items(
        ((r.cell_id, r.checkpoint), r.form, r.item_id, r.value)
        for r in forget_rows[["cell_id", "checkpoint", "form", "item_id", "value"]].itertuples(index=False)
    )
    step_of = {  # (cell, step) -> checkpoint
        (r.cell_id, int(r.step)): r.checkpoint
        for r in forget_rows[["cell_id", "step", "checkpoint"]].itertuples(index=False)
    }

    def items_of(cid, checkpoint=None, step=None) -> dict:
        if checkpoint is None:
            checkpoint = (
                step_of.get((cid, step)) if step is not None else next((ck for (c, ck) in items_at if c == cid), None)
            )
        return items_at.get((cid, checkpoint), {})

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
        base_items, oracle_items = items_of(ref["base"]), items_of(ref["oracle"])
        ckpts = recall[recall.cell_id == cell.cell_id][["checkpoint", "step"]].drop_duplicates()
        ctrl = None
        if cell.kind == "attack":
            ctrl = controls.get(
                (cell.model, cell.probe_suite, cell.seed, cell.attack, _config_text(cell.attack_config), "oracle")
            )
            u0 = forget_of(cell.cell_id, step=0)
        for ck in ckpts.sort_values("step").itertuples():
            per_form = {}
            u_t = forget_of(cell.cell_id, ck.checkpoint)
            for form, u in u_t.items():
                if form in base and form in oracle:
                    q = forget_quality(u, base[form], oracle[form])
                    if not math.isnan(q):
                        per_form[form] = q
            model_items = items_of(cell.cell_id, ck.checkpoint)
            h = headline(model_items, base_items, oracle_items)
            measures = dict.fromkeys(ATTACK_MEASURES, float("nan"))
            if cell.kind == "attack":
                o_t = forget_of(ctrl, step=int(ck.step)) if ctrl else {}
                measures = _attack_measures(h["forms"], u_t, u0, o_t, base, oracle)
                if ctrl:
                    ctrl_items = items_of(ctrl, step=int(ck.step))
                    measures["fq_ao"] = headline(model_items, base_items, oracle_items, ctrl_items, n_boot=0)["value"]
            records.append(
                {
                    "cell_id": cell.cell_id,
                    "kind": cell.kind,
                    "model": cell.model,
                    "method": cell.method_label,
                    "attack": cell.attack_label if cell.kind == "attack" else NO_ATTACK,
                    "attack_task": cell.attack_task if cell.kind == "attack" else None,
                    "attack_row": cell.attack_row if cell.kind == "attack" else None,
                    "seed": cell.seed,
                    "checkpoint": ck.checkpoint,
                    "step": int(ck.step) if cell.kind == "attack" else AFTER_UNLEARNING,
                    "fq": h["value"],
                    "fq_lo": h["ci"][0] if h["ci"] else float("nan"),
                    "fq_hi": h["ci"][1] if h["ci"] else float("nan"),
                    "n_items": h["n"],
                    "fq_forms_mean": sum(per_form.values()) / len(per_form) if per_form else float("nan"),
                    "per_form": per_form,
                    "retain": _avg(recall_of(cell.cell_id, ck.checkpoint, "retain").values()),
                    **measures,
                }
            )
    for model, suite, seed, what in sorted(missing):
        notes.append(
            f"Forget quality unavailable for model '{model}', seed {seed} (probes {suite}): "
            f"no finished {what} cell in the store; those cells are left out of the figures."
        )
    attacks = [r for r in records if r["kind"] == "attack"]
    if attacks and all(math.isnan(r["fq_ao"]) for r in attacks):
        notes.append(
            "No attacked-oracle control cell matches the attack cells: forget quality under attack is against "
            "the unattacked oracle only, and the recovery figures have no control band."
        )
    fq = pd.DataFrame(records) if records else empty_fq
    return ReportData(fq, recall, notes, aggregates)


#: The per-checkpoint numbers of an attack record beside ``fq`` (NaN for unlearn records).
ATTACK_MEASURES = ("fq_ao", "recovery", "excess", "control_recovery")


def _config_text(text) -> str:
    return json.dumps(_config_dict(text), sort_keys=True, default=str)


def _avg(values) -> float:
    vals = [v for v in values if not math.isnan(v)]
    return sum(vals) / len(vals) if vals else float("nan")


def _attack_measures(weights: dict, u_t: dict, u0: dict, o_t: dict, base: dict, oracle: dict) -> dict:
    """:data:`ATTACK_MEASURES` over the headline's forms, weighted as it is (``weights``: form -> items,
    :func:`unlearnbench.headline.entering_forms`); ``fq_ao`` is replaced by the caller with the
    item-level headline against the attacked oracle where there is a control cell."""
    nan = float("nan")
    forms = [f for f in weights if f in u_t and f in base and f in oracle]
    fq_ao = {f: forget_quality_attacked(u_t[f], base[f], o_t.get(f, nan), oracle[f]) for f in forms}
    rec = {f: recovery(u_t[f], u0.get(f, nan), base[f]) for f in forms}
    defined = {f: w for f, w in weights.items() if f in rec and not math.isnan(rec[f])}
    return {
        "fq_ao": weighted_mean(fq_ao, weights),
        "recovery": weighted_mean(rec, weights),
        "excess": weighted_mean({f: excess(u_t[f], o_t.get(f, nan)) for f in forms}, weights),
        "control_recovery": weighted_mean({f: recovery(o_t.get(f, nan), u0[f], base[f]) for f in defined}, defined),
    }


#: What a heatmap or curve can show: the record column and whether lower is worse for the method.
MEASURES = {
    "fq": ("forget quality", True),
    "fq_ao": ("forget quality against the attacked oracle", True),
    "recovery": ("recovery", False),
    "retain": ("retain recall", True),  # the utility companion: mean recall over the retain split's forms
}


def _check_measure(measure: str) -> bool:
    if measure not in MEASURES:
        raise ValueError(f"measure {measure!r}: one of {', '.join(MEASURES)}")
    return MEASURES[measure][1]


def worst_points(fq, measure: str = "fq"):
    """The worst record of each attack cell of ``fq`` (:attr:`ReportData.fq`) over its curve after
    step 0: the lowest forget quality (``fq``, ``fq_ao``) or the highest recovery, the earliest step
    on a tie. One row per attack cell that has a value of ``measure`` there."""
    lower_is_worse = _check_measure(measure)
    if fq.empty:
        return fq
    att = fq[fq.kind == "attack"]
    att = att[(att.step.astype(int) > 0) & att[measure].notna()]
    if not len(att):
        return att
    order = att.sort_values([measure, "step"], ascending=[lower_is_worse, True])
    return order.groupby("cell_id", sort=False).head(1)


def heatmap_frame(data: ReportData, which: str = "last", measure: str = "fq"):
    """Rows (method, attack) with mean, std (sample, NaN for one seed), min, max, n over seeds of
    ``measure`` (:data:`MEASURES`) per attack cell: at its last checkpoint (``which="last"``) or the
    worst over its curve after step 0 (``"worst"``: the lowest forget quality, the highest
    recovery), with ``step``, the steps where the worst happened (one per seed, as text). The 'no
    attack' column is the forget quality after unlearning (not for recovery, 0 by definition)."""
    import pandas as pd

    _check_measure(measure)
    if which not in ("last", "worst"):
        raise ValueError(f"which {which!r}: 'last' or 'worst'")
    fq = data.fq
    cols = ["method", "attack", "mean", "std", "min", "max", "n", "step"]
    if fq.empty:
        return pd.DataFrame(columns=cols)
    att = fq[(fq.kind == "attack")]
    if which == "last":
        att = att.loc[att.groupby("cell_id")["step"].idxmax()] if len(att) else att
    else:
        att = worst_points(fq, measure)
    att = att.assign(value=att[measure])
    parts = [att]
    if measure != "recovery":
        unl = fq[fq.kind == "unlearn"]  # after unlearning, forget quality against either oracle is fq
        parts.insert(0, unl.assign(value=unl["fq" if measure == "fq_ao" else measure]))
    both = pd.concat(parts)
    if both.empty:
        return pd.DataFrame(columns=cols)
    g = both.groupby(["method", "attack"], sort=False)
    out = g["value"].agg(["mean", "std", "min", "max", "count"]).reset_index().rename(columns={"count": "n"})
    steps = g["step"].agg(lambda s: ",".join(str(x) for x in s if x != AFTER_UNLEARNING)).reset_index()
    return out.merge(steps, on=["method", "attack"], how="left")


def utility_frame(data: ReportData):
    """Per method (mean over seeds): forget quality and retain recall after unlearning, and at each
    attack's last checkpoint (the points and arrows of the forget-quality-vs-utility figure). Rows:
    method, attack ('no attack' for the unlearned model), fq, retain, n (seeds)."""
    import pandas as pd

    cols = ["method", "attack", "fq", "retain", "n"]
    fq = data.fq
    if fq.empty:
        return pd.DataFrame(columns=cols)
    att = fq[fq.kind == "attack"]
    last = att.loc[att.groupby("cell_id")["step"].idxmax()] if len(att) else att
    both = pd.concat([fq[fq.kind == "unlearn"], last])
    g = both.groupby(["method", "attack"], sort=False)
    out = g[["fq", "retain"]].mean().reset_index()
    out["n"] = g["fq"].count().values
    return out[cols]


def curves_frame(data: ReportData, measure: str = "fq"):
    """Rows (attack, method, epoch) with mean, min, max, n over seeds of ``measure`` (:data:`MEASURES`)
    at each attack checkpoint (``epoch`` is the stored step: the epoch, the optimiser step, or the
    index of a named checkpoint; :func:`curve_axes` says which per attack). For ``recovery`` also
    ``ctrl_mean``, ``ctrl_min``, ``ctrl_max``: the attacked oracle on the method's recovery scale (the
    control band)."""
    import pandas as pd

    _check_measure(measure)
    att = data.fq[data.fq.kind == "attack"] if not data.fq.empty else data.fq
    if att.empty:
        return pd.DataFrame(columns=["attack", "method", "epoch", "mean", "min", "max", "n"])
    att = att.assign(epoch=att.step.astype(int))
    g = att.groupby(["attack", "method", "epoch"], sort=False)
    out = g[measure].agg(["mean", "min", "max", "count"]).reset_index().rename(columns={"count": "n"})
    if measure == "recovery":
        ctrl = g["control_recovery"].agg(["mean", "min", "max"]).reset_index()
        ctrl = ctrl.rename(columns={"mean": "ctrl_mean", "min": "ctrl_min", "max": "ctrl_max"})
        out = out.merge(ctrl, on=["attack", "method", "epoch"])
    return out


def curve_axes(data: ReportData) -> dict[str, tuple[str, dict[int, str] | None]]:
    """{attack label: (x-axis label, tick labels or None)} of each attack's curve, from the
    checkpoint names its cells stored (:func:`~.attack_kinds.curve_axis`): attack epochs, optimiser
    steps, or named checkpoints (quantize: before / quantized)."""
    att = data.fq[data.fq.kind == "attack"] if not data.fq.empty else data.fq
    if att.empty:
        return {}
    return {
        attack: curve_axis(zip(sub.step, sub.checkpoint))
        for attack, sub in att[["attack", "step", "checkpoint"]].drop_duplicates().groupby("attack", sort=False)
    }


def similarity_frame(data: ReportData, similarity: dict):
    """Rows (method, attack, task) of the worst-case recovery (:func:`heatmap_frame` ``worst``) with the
    attack task's ``template_overlap`` and ``hidden_cosine`` to the forget set, read from
    ``similarity`` (the JSON that ``benchmarks/task_similarity.py`` writes: ``rows`` of ``task``,
    ``template_overlap``, ``hidden_cosine``). Attacks whose task it does not list are left out."""
    import pandas as pd

    cols = ["method", "attack", "task", "mean", "min", "max", "n", "template_overlap", "hidden_cosine"]
    sims = {r["task"]: r for r in (similarity or {}).get("rows", []) if isinstance(r, dict) and "task" in r}
    worst = heatmap_frame(data, "worst", "recovery")
    if worst.empty or data.fq.empty or not sims:
        return pd.DataFrame(columns=cols)
    att = data.fq[data.fq.kind == "attack"]
    task_of = dict(zip(att.attack, att.attack_task))
    worst = worst.assign(task=[task_of.get(a) for a in worst.attack])
    worst = worst[worst.task.isin(list(sims))]
    return worst.assign(
        template_overlap=[sims[t].get("template_overlap") for t in worst.task],
        hidden_cosine=[sims[t].get("hidden_cosine") for t in worst.task],
    )[cols]
