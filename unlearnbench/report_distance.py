"""The report's "distribution distance and fluency" table, from the store only.

Rows: one per (metric, split) among the ``js`` probe's Jensen-Shannon divergence to the retrain
oracle (nats, 0..ln 2; :mod:`unlearnbench.probes.js`) and the ``fluency`` probe's ROME n-gram
entropy (bits), repetition rate (seq-rep-4) and fraction of empty generations
(:mod:`unlearnbench.probes.fluency`). Columns: the base model, the oracle, each method after
unlearning and each method + attack at the attack's last checkpoint. A value is the mean over the
split's items, then over seeds. Empty when no run used these probes.
"""

from __future__ import annotations

import math

#: (probe, metric, row label) in table order.
METRICS = (("js", "js", "JS to oracle (nats)"),
           ("fluency", "ngram_entropy", "n-gram entropy (bits)"),
           ("fluency", "repetition_rate", "repetition rate"),
           ("fluency", "empty", "empty generations"))
SPLIT_ORDER = ("forget", "neighbour", "retain", "holdout")


def distance_fluency_table(store):
    """A :class:`unlearnbench.reports.Table` of the js and fluency means (see the module docstring)."""
    import pandas as pd

    from .reports import Table, _labels

    rows = store.conn.execute(
        "SELECT s.cell_id, s.step, s.split, s.form, s.metric, AVG(s.value) FROM scores s "
        "JOIN cells c ON c.cell_id = s.cell_id WHERE c.status = 'finished' AND s.item_id != '*' "
        "AND s.form IN ('js', 'fluency') GROUP BY s.cell_id, s.step, s.split, s.form, s.metric").fetchall()
    caption = ("Distribution distance and fluency (mean over items, then seeds; attack columns: last "
               "checkpoint). JS: Jensen-Shannon divergence of next-token distributions to the retrain oracle over "
               "answer tokens, natural log, 0..ln 2 = 0.693. n-gram entropy: ROME's mean(2/3 H2, 4/3 H3) of each "
               "greedy generation, bits. Repetition: seq-rep-4. Empty: fraction of empty generations.")
    if not rows:
        return Table(["metric / split"], [], caption="No js or fluency scores in the store "
                                                     "(run with --probes ...,fluency,js).")
    frame = pd.DataFrame(rows, columns=["cell_id", "step", "split", "form", "metric", "value"])
    cells = store.cells_frame()
    cells = cells[cells.cell_id.isin(set(frame.cell_id))].copy()
    cells["method_label"] = _labels(cells.method.fillna(""), cells.method_config)
    cells["attack_label"] = _labels(cells.attack.fillna(""), cells.attack_config)

    def column(c) -> str:
        if c.kind in ("base", "oracle"):
            return c.kind
        return c.method_label if c.kind == "unlearn" else f"{c.method_label} + {c.attack_label}"

    cells["column"] = [column(c) for c in cells.itertuples()]
    frame = frame.merge(cells[["cell_id", "column"]], on="cell_id")
    frame = frame[frame.step == frame.groupby("cell_id").step.transform("max")]   # attacks: last checkpoint
    means = frame.groupby(["form", "metric", "split", "column"]).value.mean()
    columns = ([c for c in ("base", "oracle") if c in set(frame.column)]
               + [c for c in dict.fromkeys(cells.column) if c not in ("base", "oracle")])
    splits = sorted(set(frame.split), key=lambda s: (SPLIT_ORDER.index(s) if s in SPLIT_ORDER else 99, s))
    table_rows = []
    for form, metric, label in METRICS:
        for split in splits:
            vals = [float(means.get((form, metric, split, col), math.nan)) for col in columns]
            if not all(math.isnan(v) for v in vals):
                table_rows.append([f"{label} / {split}"] + vals)
    return Table(["metric / split"] + columns, table_rows, caption=caption)
