"""What the hidden states still hold, layer by layer: the report's per-layer frame of the white-box
probes, read from the store alone (the report imports no plugin).

The ``lens`` probe stores per item ``top1@L`` (1 when the logit lens at block ``L``'s output ranks
the answer's first token first) and the ``linear`` probe ``acc@L`` (1 when a logistic regression
trained on the retain people's hidden states at block ``L`` predicts the item's attribute value);
``linear`` also stores the aggregate ``majority`` (always predicting the most frequent training
value: the chance floor). See :mod:`unlearnbench.probes.lens` and :mod:`unlearnbench.probes.linear`.

:func:`layer_frame` gives, per (probe, split, column, layer), the mean over items then over seeds
(``mean``), its min and max over seeds and the number of seeds. Columns are the base model, the
oracle and each method right after unlearning; attack checkpoints are left out (their curves are
elsewhere), and so are layers a cell did not store.
"""

from __future__ import annotations

import re

from ..store import ResultStore
from .frames import label_cells

#: probe -> the per-layer metric's stem (``stem@L``) and what it means, for axis labels.
LAYER_METRICS = {
    "lens": ("top1", "logit lens: answer's first token ranked first"),
    "linear": ("acc", "linear probe accuracy (trained on the kept people)"),
}
_LAYER = re.compile(r"^(?P<stem>[a-z0-9_]+)@(?P<layer>\d+)$")
COLUMNS = ["probe", "split", "column", "layer", "mean", "min", "max", "n"]


def _column(kind: str, method_label: str) -> str:
    return kind if kind in ("base", "oracle") else method_label


def layer_frame(store: ResultStore):
    """The per-layer means described in the module docstring (an empty frame when no cell of the
    store ran the ``lens`` or ``linear`` probe)."""
    import pandas as pd

    means = store.item_means_frame(list(LAYER_METRICS))
    if means.empty:
        return pd.DataFrame(columns=COLUMNS)
    parsed = means.metric.str.extract(_LAYER)
    means = means.assign(stem=parsed["stem"], layer=pd.to_numeric(parsed["layer"]))
    wanted = {p: s for p, (s, _) in LAYER_METRICS.items()}
    means = means[means.layer.notna() & (means.stem == means.form.map(wanted))]
    cells = store.cells_frame()
    cells = cells[cells.cell_id.isin(set(means.cell_id)) & cells.kind.isin(["base", "oracle", "unlearn"])]
    if means.empty or cells.empty:
        return pd.DataFrame(columns=COLUMNS)
    cells = label_cells(cells)
    cells["column"] = [_column(k, m) for k, m in zip(cells.kind, cells.method_label)]
    frame = means.merge(cells[["cell_id", "column", "seed"]], on="cell_id")
    per_seed = frame.groupby(["form", "split", "column", "seed", "layer"]).value.mean().reset_index()
    out = (
        per_seed.groupby(["form", "split", "column", "layer"])
        .value.agg(mean="mean", min="min", max="max", n="count")
        .reset_index()
        .rename(columns={"form": "probe"})
    )
    out["layer"] = out.layer.astype(int)
    order = {c: i for i, c in enumerate(dict.fromkeys(["base", "oracle", *cells.column]))}
    out = out.sort_values(
        ["probe", "split", "column", "layer"], key=lambda s: s.map(order) if s.name == "column" else s
    )
    return out[COLUMNS].reset_index(drop=True)


def chance_levels(aggregates) -> dict[str, float]:
    """split -> the linear probe's ``majority`` floor, from :class:`~.frames.ReportData`'s
    ``aggregates`` (the mean over the cells that stored it: the floor depends on the retain people's
    values only, so it is the same for every model of a benchmark)."""
    if aggregates is None or aggregates.empty:
        return {}
    sub = aggregates[(aggregates.form == "linear") & (aggregates.metric == "majority")]
    return {str(k): float(v) for k, v in sub.groupby("split").value.mean().items()}
