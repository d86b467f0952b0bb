"""The items behind the worst numbers, with the text the models generated for them.

For every unlearned model and every attack's worst checkpoint (the lowest forget quality after step
0, :func:`~.frames.worst_points`), the forget-split items the model answers right (``correct`` = 1)
that the retrain oracle answers wrong: knowledge the oracle never had and the model still shows.
Each row shows the model's generated text beside the oracle's (``generations`` table; '–' where
the run kept no text, ``--generations 0``, or the form scores choices and generates nothing). Read
from the store only.
"""

from __future__ import annotations

from ..store import ResultStore
from .frames import ReportData, worst_points
from .tables import Table

#: At most this many items per (model, checkpoint), and this many rows in all.
PER_CHECKPOINT = 5
MAX_ROWS = 60


def _spread_over_forms(rows: list) -> list:
    """The rows in turns of form (first of each form, then second of each, ...): a short list shows
    every form that leaks, not five items of the first one."""
    by_form: dict[str, list] = {}
    for r in rows:
        by_form.setdefault(r.form, []).append(r)
    out, depth = [], 0
    while len(out) < len(rows):
        out += [items[depth] for items in by_form.values() if depth < len(items)]
        depth += 1
    return out


def leaked_items_table(store: ResultStore, data: ReportData) -> Table:
    """One row per leaked item (see the module docstring), the unlearned models first."""
    header = ["method", "attack", "checkpoint", "form", "item", "model's text", "oracle's text"]
    fq = data.fq
    if fq.empty:
        return Table(header, [], caption="No unlearned or attacked model with forget quality.")
    points = [r for r in fq[fq.kind == "unlearn"].itertuples()]
    points += list(worst_points(fq, "fq").itertuples())
    cells = store.cells_frame()
    cells = cells[cells.status == "finished"]
    oracle_of = {}
    for r in cells[cells.kind == "oracle"].itertuples():  # ordered by creation: the newest wins
        oracle_of[(r.model, r.probe_suite, str(r.seed))] = r.cell_id
    labels = {r.cell_id: (r.model, r.probe_suite, str(r.seed)) for r in cells.itertuples()}
    wanted = {p.cell_id for p in points} | {oracle_of.get(labels.get(p.cell_id)) for p in points}
    wanted.discard(None)
    scores = store.scores_frame(sorted(wanted))
    scores = scores[(scores.split == "forget") & (scores.metric == "correct") & (scores.item_id != "*")]
    texts = store.generations_frame(sorted(wanted))
    text_of = {(t.cell_id, t.checkpoint, t.form, t.item_id): t.text for t in texts.itertuples()}
    rows: list[list] = []
    for p in points:
        ocid = oracle_of.get(labels.get(p.cell_id))
        if ocid is None:
            continue
        oracle = scores[scores.cell_id == ocid]
        oracle_right = {(r.form, r.item_id) for r in oracle.itertuples() if r.value == 1.0}
        oracle_ckpt = oracle.checkpoint.iloc[0] if len(oracle) else "oracle"
        mine = scores[(scores.cell_id == p.cell_id) & (scores.checkpoint == p.checkpoint)]
        leaked = [r for r in mine.itertuples() if r.value == 1.0 and (r.form, r.item_id) not in oracle_right]
        for r in _spread_over_forms(leaked)[:PER_CHECKPOINT]:
            rows.append(
                [
                    p.method,
                    p.attack,
                    p.checkpoint,
                    r.form,
                    r.item_id,
                    text_of.get((p.cell_id, p.checkpoint, r.form, r.item_id)),
                    text_of.get((ocid, oracle_ckpt, r.form, r.item_id)),
                ]
            )
    caption = (
        f"Forget items the model answers right and the retrain oracle does not, after unlearning and at each "
        f"attack's worst checkpoint (lowest forget quality after step 0); at most {PER_CHECKPOINT} per "
        f"checkpoint and {MAX_ROWS} in all, with the text each model generated ('–': none kept or a choice form)."
    )
    rows = rows[:MAX_ROWS]
    if not rows:
        caption = "No forget item is answered right by an unlearned or attacked model and wrong by the oracle."
    elif all(r[5] is None and r[6] is None for r in rows):  # no text kept: no columns of dashes
        header, rows = header[:5], [r[:5] for r in rows]
        caption += " The store keeps no generated text for these items (run with --generations CHARS to keep it)."
    return Table(header, rows, caption=caption)
