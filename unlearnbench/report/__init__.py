"""Reports, read from the results store only (through :class:`~unlearnbench.store.ResultStore`'s
methods; never from a model).

* :mod:`.summary` — :func:`run_summary`: one run's cells as the document ``unlearnbench run --json``
  prints;
* :mod:`.frames` — :func:`collect` a store into :class:`ReportData` (forget-quality records, recall
  means, aggregate rows), the figures' frames (:func:`heatmap_frame`, :func:`curves_frame`, the curves'
  x-axes), the worst point of each curve and the readable method/attack :func:`labels`;
* :mod:`.attack_kinds` — what kind of attack a stored cell is (name, argument, the task it trained
  on), its row label and its curve's x-axis unit, from the store alone;
* :mod:`.tables` — :class:`Table` (Markdown, HTML, LaTeX, CSV) and :func:`form_table`,
  :func:`muse_table`, :func:`change_table`, :func:`failures_table`, :func:`distance_fluency_table`
  (rows: :data:`DISTANCE_METRICS`);
* :mod:`.items` — :func:`~.items.leaked_items_table`: the forget items the unlearned and attacked
  models still answer and the oracle does not, with the text each generated;
* :mod:`.figures` — the matplotlib heatmap and curves, and :func:`~.figures.cell_text`;
* :mod:`.page` — :func:`write_report`: every figure and table as files, plus one ``report.html``
  (``unlearnbench report``).
"""

from __future__ import annotations

from .frames import ReportData, collect, curves_frame, heatmap_frame, labels
from .page import write_report
from .summary import run_summary
from .tables import (
    DISTANCE_METRICS,
    Table,
    change_table,
    distance_fluency_table,
    failures_table,
    form_table,
    muse_table,
)

__all__ = [
    "DISTANCE_METRICS",
    "ReportData",
    "Table",
    "change_table",
    "collect",
    "curves_frame",
    "distance_fluency_table",
    "failures_table",
    "form_table",
    "heatmap_frame",
    "labels",
    "muse_table",
    "run_summary",
    "write_report",
]
