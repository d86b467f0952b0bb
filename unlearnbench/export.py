"""Exports of a results store (``unlearnbench results``): every score, or summaries with forget
quality and recovery, as CSV, JSON or parquet.

Levels:

* ``items``: every score row (:meth:`ResultStore.scores_frame`): one per (cell, checkpoint, split,
  form, item, metric), with the cell's labels, and ``generation``: the text the model generated for
  that item at that checkpoint where the run kept it (``--generations``; empty otherwise).
* ``summary``: the mean per (cell, checkpoint, split, form, metric) with its row count ``n``
  (:meth:`ResultStore.summary_frame`), then the forget-quality rows of every unlearn and attack
  checkpoint, computed by the report's one computation (:func:`unlearnbench.report.frames.collect`,
  so the export and report.html never disagree): split ``forget``, metric ``forget_quality`` per
  informative form, for the headline (form ``headline``, :mod:`unlearnbench.headline`, with
  ``forget_quality_ci_low``/``_high``, its bootstrap interval over items) and as the plain mean of
  the informative forms (form ``mean_of_forms``), and for attack checkpoints ``forget_quality_ao``
  (against the attacked oracle), ``recovery``, ``excess`` and ``control_recovery`` (form
  ``headline``; see :mod:`unlearnbench.metrics`). On headline rows ``n`` is the number of items
  behind the headline; on ``mean_of_forms`` the forms averaged; 1 on a per-form row.

Formats: ``csv`` and ``json`` (a list of records; non-finite values are ``null``; floats written
exactly) as text; ``parquet`` (pyarrow) only to a file, being binary — about 1/100 of the CSV's
size for a per-item export.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

from .errors import UnlearnbenchError
from .store import ResultStore

LEVELS = ("items", "summary")
FORMATS = ("csv", "json", "parquet")
#: fq-record column -> exported metric name (attack measures; see report.frames.ATTACK_MEASURES)
_MEASURES = {
    "fq_ao": "forget_quality_ao",
    "recovery": "recovery",
    "excess": "excess",
    "control_recovery": "control_recovery",
}
HEADLINE = "headline"


def export_frame(store: ResultStore, level: str = "items"):
    """The frame ``level`` names (see the module docstring)."""
    if level not in LEVELS:
        raise UnlearnbenchError(f"unknown export level '{level}'; choose {' or '.join(LEVELS)}")
    import pandas as pd

    if level == "items":
        items = store.scores_frame()
        texts = store.generations_frame().drop(columns=["step"]).rename(columns={"text": "generation"})
        keys = ["cell_id", "checkpoint", "split", "form", "item_id"]
        merged = items.merge(texts, on=keys, how="left", validate="many_to_one")
        merged["generation"] = merged["generation"].fillna("")
        return merged

    summary = store.summary_frame()
    fq = forget_quality_frame(store, summary)
    if fq.empty:
        return summary
    return pd.concat([summary, fq[summary.columns]], ignore_index=True)


def forget_quality_frame(store: ResultStore, summary=None):
    """Forget quality and the attack measures of every unlearn/attack checkpoint, as summary rows."""
    import pandas as pd

    from .report.frames import collect

    summary = store.summary_frame() if summary is None else summary
    records = collect(store).fq
    if records.empty or summary.empty:
        return pd.DataFrame(columns=summary.columns)
    labels = summary.drop(columns=["split", "form", "metric", "value", "n"]).drop_duplicates(["cell_id", "checkpoint"])
    rows = []
    for r in records.itertuples():
        per_form, n = r.per_form or {}, int(r.n_items)
        rows += [
            (r.cell_id, r.checkpoint, HEADLINE, "forget_quality", r.fq, n),
            (r.cell_id, r.checkpoint, HEADLINE, "forget_quality_ci_low", r.fq_lo, n),
            (r.cell_id, r.checkpoint, HEADLINE, "forget_quality_ci_high", r.fq_hi, n),
            (r.cell_id, r.checkpoint, "mean_of_forms", "forget_quality", r.fq_forms_mean, len(per_form)),
        ]
        rows += [(r.cell_id, r.checkpoint, form, "forget_quality", q, 1) for form, q in sorted(per_form.items())]
        if r.kind == "attack":
            rows += [(r.cell_id, r.checkpoint, HEADLINE, name, getattr(r, col), n) for col, name in _MEASURES.items()]
    fq = pd.DataFrame(rows, columns=["cell_id", "checkpoint", "form", "metric", "value", "n"])
    fq["split"] = "forget"
    fq["value"] = fq["value"].astype(float)
    return fq.merge(labels, on=["cell_id", "checkpoint"], how="inner")


def export(store: ResultStore, fmt: str, level: str = "items", out: str | Path | None = None) -> str | None:
    """Write the ``level`` frame as ``fmt``: to ``out`` when given (returns None), else returned as text."""
    if fmt not in FORMATS:
        raise UnlearnbenchError(f"unknown export format '{fmt}'; choose {', '.join(FORMATS)}")
    if fmt == "parquet" and out is None:
        raise UnlearnbenchError("parquet is a binary format: give --out FILE.parquet")
    frame = export_frame(store, level)
    if fmt == "parquet":
        frame.to_parquet(out, index=False)  # pyarrow
        return None
    if fmt == "csv":
        buffer = io.StringIO()
        frame.to_csv(buffer, index=False)
        text = buffer.getvalue()
    else:
        # Built by hand rather than DataFrame.to_json, which rounds floats to 10 digits.
        records = [
            {col: _json_value(val) for col, val in zip(frame.columns, row)}
            for row in frame.itertuples(index=False, name=None)
        ]
        text = json.dumps(records, allow_nan=False)
    if out is None:
        return text
    Path(out).write_text(text, encoding="utf-8")
    return None


def _json_value(value: Any) -> Any:
    """A frame cell as a JSON-safe Python value: numpy scalars unwrapped, NaN/inf -> None."""
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()  # numpy scalar -> Python scalar
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
