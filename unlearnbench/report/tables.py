"""The report's tables: :class:`Table` (one table, rendered as Markdown, HTML, LaTeX and CSV) and
the tables themselves, read from :class:`~unlearnbench.report.frames.ReportData` or the store:

* :func:`form_table` — recall after unlearning per form, forget and neighbour splits, with base and
  oracle columns; best method per row in bold (ORT style);
* :func:`muse_table` — MUSE-style rows (original, retrain, unlearned, post-attack by attack kind);
* :func:`change_table` — per (method, attack), the change from the unlearned model to the attack's
  worst checkpoint in forget recall, forget quality and retain recall;
* :func:`failures_table` — the failed cells of the store and the attack cells skipped because their
  unlearn cell failed;
* :func:`distance_fluency_table` — JS divergence to the oracle and fluency of generations per split
  (only where the js/fluency probes ran).
"""

from __future__ import annotations

import csv
import html
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from ..metrics import privleak
from ..store import ResultStore
from .frames import ReportData, label_cells, worst_points

# MUSE columns -> (split, form) in the embedded world.
MUSE_COLUMNS = (
    ("VerbMem-like (bio, D_f)", "forget", "bio"),
    ("KnowMem on D_f (qa)", "forget", "qa"),
    ("KnowMem on D_r (qa)", "retain", "qa"),
)
# MUSE's own columns, when the store holds its probes (benchmarks muse-news / muse-books).
MUSE_REAL_COLUMNS = (
    ("VerbMem on D_f", "forget", "verbmem"),
    ("KnowMem on D_f", "forget", "knowmem"),
    ("KnowMem on D_r", "retain", "knowmem"),
)
#: The distance/fluency table's rows, (probe form, metric, row label) in table order; also the
#: ``distance`` numbers of :func:`unlearnbench.report.run_summary`.
DISTANCE_METRICS = (
    ("js", "js", "JS to oracle (nats)"),
    ("fluency", "ngram_entropy", "n-gram entropy (bits)"),
    ("fluency", "repetition_rate", "repetition rate"),
    ("fluency", "empty", "empty generations"),
)
SPLIT_ORDER = ("forget", "neighbour", "retain", "holdout")


@dataclass
class Table:
    header: list[str]
    rows: list[list]  # first entry of a row is its label (str), then numbers / str
    bold: set = field(default_factory=set)  # (row index, column index)
    caption: str = ""

    def cell(self, i, j) -> str:
        v = self.rows[i][j]
        if isinstance(v, float):
            return "–" if math.isnan(v) else f"{v:.3f}"
        return "–" if v is None else str(v)

    def markdown(self) -> str:
        lines = [
            "| " + " | ".join(h.replace("|", "\\|") for h in self.header) + " |",
            "|" + "|".join(["---"] + ["---:"] * (len(self.header) - 1)) + "|",
        ]
        for i, row in enumerate(self.rows):
            cells = [
                (f"**{self.cell(i, j)}**" if (i, j) in self.bold else self.cell(i, j)).replace("|", "\\|")
                for j in range(len(row))
            ]
            lines.append("| " + " | ".join(cells) + " |")
        return (f"{self.caption}\n\n" if self.caption else "") + "\n".join(lines) + "\n"

    def html(self) -> str:
        out = ['<table class="tbl">']
        if self.caption:
            out.append(f"<caption>{html.escape(self.caption)}</caption>")
        out.append("<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in self.header) + "</tr>")
        for i, row in enumerate(self.rows):
            tds = []
            for j in range(len(row)):
                text = html.escape(self.cell(i, j))
                tds.append(f"<td><b>{text}</b></td>" if (i, j) in self.bold else f"<td>{text}</td>")
            out.append("<tr>" + "".join(tds) + "</tr>")
        return "\n".join(out + ["</table>"]) + "\n"

    def latex(self) -> str:
        def esc(s: str) -> str:
            for a, b in (
                ("\\", r"\textbackslash{}"),
                ("&", r"\&"),
                ("%", r"\%"),
                ("_", r"\_"),
                ("#", r"\#"),
                ("{", r"\{"),
                ("}", r"\}"),
                ("$", r"\$"),
                ("–", "--"),
            ):
                s = s.replace(a, b) if a != "\\" else s.replace(a, "\0")
            return s.replace("\0", r"\textbackslash{}")

        lines = [
            r"\begin{table}[t]",
            r"\centering",
            r"\begin{tabular}{l" + "r" * (len(self.header) - 1) + "}",
            r"\toprule",
            " & ".join(esc(h) for h in self.header) + r" \\",
            r"\midrule",
        ]
        for i, row in enumerate(self.rows):
            cells = [
                (r"\textbf{" + esc(self.cell(i, j)) + "}") if (i, j) in self.bold else esc(self.cell(i, j))
                for j in range(len(row))
            ]
            lines.append(" & ".join(cells) + r" \\")
        lines += [r"\bottomrule", r"\end{tabular}"]
        if self.caption:
            lines.append(r"\caption{" + esc(self.caption) + "}")
        return "\n".join(lines + [r"\end{table}"]) + "\n"

    def write_csv(self, path: Path, extra: dict | None = None) -> None:
        with open(path, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(self.header + list((extra or {}).keys()))
            for i, row in enumerate(self.rows):
                vals = ["" if (isinstance(v, float) and math.isnan(v)) or v is None else v for v in row]
                w.writerow(vals + [col[i] for col in (extra or {}).values()])


def _mean_over_seeds(recall, mask, split, form) -> float:
    sub = recall[mask & (recall.split == split) & (recall.form == form)]
    return float(sub.value.mean()) if len(sub) else float("nan")


def form_table(data: ReportData) -> tuple[Table, list[str]]:
    """Forms x (base, oracle, methods) for forget and neighbour recall after unlearning; bold = best
    (closest to the oracle on forget, highest on neighbour). Also returns the best method per row."""
    rec = data.recall
    if rec.empty:
        return Table(["split / form"], [], caption="No recall scores."), []
    unl = rec[rec.kind == "unlearn"]
    methods = list(dict.fromkeys(unl.method_label))
    # reference cells: those sharing model/probes/seed with an unlearn cell (all of them if none do)
    keys = set(zip(unl.model, unl.probe_suite, unl.seed))
    ref_mask = rec.apply(lambda r: (r.model, r.probe_suite, r.seed) in keys, axis=1) if keys else rec.kind == rec.kind
    header = ["split / form", "base", "oracle"] + methods
    rows, bold, best = [], set(), []
    for split in ("forget", "neighbour"):
        forms = list(dict.fromkeys(rec[(rec.split == split) & (rec.kind.isin(["base", "oracle", "unlearn"]))].form))
        for form in forms:
            b = _mean_over_seeds(rec, ref_mask & (rec.kind == "base"), split, form)
            o = _mean_over_seeds(rec, ref_mask & (rec.kind == "oracle"), split, form)
            vals = [
                _mean_over_seeds(rec, (rec.kind == "unlearn") & (rec.method_label == m), split, form) for m in methods
            ]
            i = len(rows)
            rows.append([f"{split} / {form}", b, o] + vals)
            score = [-abs(v - o) if not math.isnan(o) else float("nan") for v in vals] if split == "forget" else vals
            finite = [s for s in score if not math.isnan(s)]
            names = []
            if finite:
                top = max(finite)
                for j, s in enumerate(score):
                    if not math.isnan(s) and abs(s - top) < 1e-12:
                        bold.add((i, 3 + j))
                        names.append(methods[j])
            best.append(";".join(names))
    cap = (
        "Recall after unlearning per form (mean over seeds). Bold: closest to the oracle on forget, "
        "highest on neighbour."
    )
    return Table(header, rows, bold, cap), best


def _muse_select(frame, kind: str, method: str | None = None, attack: str | None = None):
    """Mask of one MUSE-table row's rows in ``frame``; attack rows: the last epoch of each cell."""
    mask = frame.kind == kind
    if method is not None:
        mask &= frame.method_label == method
    if attack is not None:
        mask &= frame.attack_label == attack
        if mask.any():
            last = frame[mask].groupby("cell_id").step.transform("max")
            mask &= frame.index.isin(last[frame[mask].step == last].index)
    return mask


def _variant(attack_text, label: str) -> str:
    """What tells an attack apart from others of its kind in a row label: the options of its spec
    (``finetune:arith,lr=1e-4`` -> ' [lr=1e-4]') and the config keys :func:`.frames.labels` added."""
    text = str(attack_text)
    opts = text.split(",", 1)[1] if "," in text else ""
    extra = label[len(text) :].strip() if label.startswith(text) else ""
    return (f" [{opts}]" if opts else "") + (f" {extra}" if extra else "")


def muse_table(data: ReportData) -> Table:
    """MUSE-style rows: Original (base), Retrain (oracle), Unlearned per method, and per attack and
    method a row labelled by the attack's kind (Post-finetune on <task>, Post-relearn on <source>,
    Post-quantize to <N> bits; :func:`~.attack_kinds.post_attack_label`) at its last checkpoint;
    forget/retain recall and FA (task accuracy) on each task an attack fine-tuned on.

    When the store holds MUSE's own probes (verbmem, knowmem, privleak) the columns are MUSE's:
    VerbMem on D_f, KnowMem on D_f / D_r (ROUGE-L F1 x 100), PrivLeak (%, from the privleak AUC
    against the oracle's AUC where there is an oracle cell, else the benchmark's constant) and FA;
    otherwise the embedded world's equivalents (recall of bio/qa)."""
    rec = data.recall
    if rec.empty:
        return Table(["model"], [], caption="No recall scores.")
    agg = data.aggregates
    agg = agg if agg is not None and len(agg) else None
    real = bool({"verbmem", "knowmem"} & set(rec.form)) or (agg is not None and "privleak" in set(agg.form))
    columns = MUSE_REAL_COLUMNS if real else MUSE_COLUMNS
    scale = 100.0 if real else 1.0
    # FA: the tasks attacks trained on (finetune:<task>; not quantize:4's bits nor relearn:forget's source)
    tasks = sorted(set(rec[rec.kind == "attack"].attack_task.dropna()))
    if not tasks:
        tasks = sorted(set(rec[rec.split == "task"].form))
    header = ["model"] + [c[0] for c in columns] + (["PrivLeak (%)"] if real else []) + [f"FA ({t})" for t in tasks]

    ref, ref_note = float("nan"), ""
    if real and agg is not None:
        auc = agg[(agg.form == "privleak") & (agg.metric == "auc")]
        oracle_auc = auc[auc.kind == "oracle"].value.mean()
        if not math.isnan(oracle_auc):
            ref, ref_note = oracle_auc, f"AUC_retrain = the oracle's AUC ({oracle_auc:.4f})"
        else:
            ref = agg[(agg.form == "privleak") & (agg.metric == "auc_retrain")].value.mean()
            ref_note = f"AUC_retrain = the benchmark's constant ({ref:.4f}; no oracle cell)"

    def row(label, kind, method=None, attack=None):
        mask = _muse_select(rec, kind, method, attack)
        vals = [_mean_over_seeds(rec, mask, split, form) * scale for _, split, form in columns]
        if real:
            leak = float("nan")
            if agg is not None:
                sub = agg[_muse_select(agg, kind, method, attack) & (agg.form == "privleak") & (agg.metric == "auc")]
                leak = privleak(float(sub.value.mean()), ref) if len(sub) else float("nan")
            vals.append(leak)
        return [label] + vals + [_mean_over_seeds(rec, mask, "task", t) for t in tasks]

    rows = [row("Original (base)", "base"), row("Retrain (oracle)", "oracle")]
    for m in dict.fromkeys(rec[rec.kind == "unlearn"].method_label):
        rows.append(row(f"Unlearned: {m}", "unlearn", m))
    att = rec[rec.kind == "attack"]
    for a in dict.fromkeys(att.attack_label):
        first = att[att.attack_label == a].iloc[0]
        for m in dict.fromkeys(att[att.attack_label == a].method_label):
            rows.append(row(f"{first.attack_row}{_variant(first.attack, a)}: {m}", "attack", m, a))
    if real:
        cap = (
            "MUSE summary (mean over seeds; post-attack rows = the attack's last checkpoint). VerbMem on D_f and "
            "KnowMem on "
            "D_f / D_r: ROUGE-L F1 x 100; PrivLeak = (AUC - AUC_retrain) / AUC_retrain x 100 of the Min-40% "
            f"AUC (forget vs holdout; mean AUC over seeds), {ref_note or 'no privleak scores'}; "
            "FA = task accuracy (on the tasks the attacks fine-tuned on)."
        )
    else:
        cap = (
            "MUSE-style summary (mean over seeds; post-attack rows = the attack's last checkpoint). VerbMem-like = "
            "bio recall on the forget split, KnowMem = qa recall on forget (D_f) / retain (D_r), FA = task accuracy "
            "(on the tasks the attacks fine-tuned on)."
        )
    return Table(header, rows, caption=cap)


# -- distribution distance and fluency ----------------------------------------------------------


def distance_fluency_table(store: ResultStore) -> Table:
    """The js and fluency means, from the store only.

    Rows: one per (metric, split) among :data:`DISTANCE_METRICS`: the ``js`` probe's Jensen-Shannon
    divergence to the retrain oracle (nats, 0..ln 2; :mod:`unlearnbench.probes.js`) and the ``fluency``
    probe's ROME n-gram entropy (bits), repetition rate (seq-rep-4) and fraction of empty generations
    (:mod:`unlearnbench.probes.fluency`). Columns: the base model, the oracle, each method after
    unlearning and each method + attack at the attack's last checkpoint. A value is the mean over the
    split's items (:meth:`ResultStore.item_means_frame`), then over seeds. Empty when no run used these
    probes."""
    frame = store.item_means_frame(list(dict.fromkeys(form for form, _metric, _label in DISTANCE_METRICS)))
    caption = (
        "Distribution distance and fluency (mean over items, then seeds; attack columns: last "
        "checkpoint). JS: Jensen-Shannon divergence of next-token distributions to the retrain oracle over "
        "answer tokens, natural log, 0..ln 2 = 0.693. n-gram entropy: ROME's mean(2/3 H2, 4/3 H3) of each "
        "greedy generation, bits. Repetition: seq-rep-4. Empty: fraction of empty generations."
    )
    if frame.empty:
        return Table(
            ["metric / split"], [], caption="No js or fluency scores in the store (run with --probes ...,fluency,js)."
        )
    cells = store.cells_frame()
    cells = label_cells(cells[cells.cell_id.isin(set(frame.cell_id))])

    def column(c) -> str:
        if c.kind in ("base", "oracle"):
            return c.kind
        return c.method_label if c.kind == "unlearn" else f"{c.method_label} + {c.attack_label}"

    cells["column"] = [column(c) for c in cells.itertuples()]
    frame = frame.merge(cells[["cell_id", "column"]], on="cell_id")
    frame = frame[frame.step == frame.groupby("cell_id").step.transform("max")]  # attacks: last checkpoint
    means = frame.groupby(["form", "metric", "split", "column"]).value.mean()
    columns = [c for c in ("base", "oracle") if c in set(frame.column)] + [
        c for c in dict.fromkeys(cells.column) if c not in ("base", "oracle")
    ]
    splits = sorted(set(frame.split), key=lambda s: (SPLIT_ORDER.index(s) if s in SPLIT_ORDER else 99, s))
    table_rows = []
    for form, metric, label in DISTANCE_METRICS:
        for split in splits:
            vals = [float(means.get((form, metric, split, col), math.nan)) for col in columns]
            if not all(math.isnan(v) for v in vals):
                table_rows.append([f"{label} / {split}"] + vals)
    return Table(["metric / split"] + columns, table_rows, caption=caption)


# -- change against the unlearned model ---------------------------------------------------------


def _nanmean(values) -> float:
    vals = [v for v in values if not math.isnan(v)]
    return sum(vals) / len(vals) if vals else float("nan")


def change_table(data: ReportData) -> Table:
    """Per (method, attack): how far the attack's worst checkpoint moved the unlearned model.

    The worst checkpoint of each attack cell is the one with the lowest forget quality after step 0
    (:func:`~.frames.worst_points` of the ``fq`` records, as in the worst-case heatmap without
    control cells); the unlearned model is the same cell's step 0 (the unlearned weights, evaluated
    before the attack's first step). Per cell: the change (worst - unlearned) in forget recall (mean
    over the forms forget quality is computed on), in forget quality (the records' ``fq``) and in
    retain recall (mean over the retain split's forms); then the mean over seeds."""
    header = ["method", "attack", "worst checkpoint", "Δ forget recall", "Δ forget quality", "Δ retain recall"]
    header.append("seeds")
    fq, rec = data.fq, data.recall
    worst = worst_points(fq, "fq")
    if worst.empty:
        return Table(header[:2], [], caption="No attack cell with forget quality after step 0.")
    att = fq[fq.kind == "attack"]
    start = {r.cell_id: r for r in att[att.step.astype(int) == 0].itertuples()}

    def recall_mean(cid, checkpoint, split, forms=None) -> float:
        sub = rec[(rec.cell_id == cid) & (rec.checkpoint == checkpoint) & (rec.split == split)]
        if forms is not None:
            sub = sub[sub.form.isin(forms)]
        return float(sub.value.mean()) if len(sub) else float("nan")

    groups: dict[tuple, list[dict]] = {}
    for w in worst.itertuples():
        s0 = start.get(w.cell_id)
        if s0 is None:
            continue
        forms = sorted(set(w.per_form) | set(s0.per_form))
        groups.setdefault((w.method, w.attack), []).append(
            {
                "checkpoint": w.checkpoint,
                "forget": recall_mean(w.cell_id, w.checkpoint, "forget", forms)
                - recall_mean(w.cell_id, s0.checkpoint, "forget", forms),
                "fq": w.fq - s0.fq,
                "retain": recall_mean(w.cell_id, w.checkpoint, "retain")
                - recall_mean(w.cell_id, s0.checkpoint, "retain"),
            }
        )
    rows = [
        [method, attack, ", ".join(dict.fromkeys(c["checkpoint"] for c in cells))]
        + [_nanmean(c[k] for c in cells) for k in ("forget", "fq", "retain")]
        + [len(cells)]
        for (method, attack), cells in groups.items()
    ]
    caption = (
        "Change against the unlearned model: attacked model at the attack's worst checkpoint (lowest forget "
        "quality after step 0) minus the unlearned model (the same cell's step 0), mean over seeds. Forget "
        "recall: mean over the forms forget quality uses; retain recall: mean over the retain split's forms. "
        "A rising forget recall and a falling forget quality mean the attack brought knowledge back."
    )
    return Table(header, rows, caption=caption)


# -- failed and skipped cells -------------------------------------------------------------------


def failures_table(store: ResultStore) -> Table:
    """One row per failed cell of the store (kind, method, attack, seed, the recorded reason), each
    failed unlearn cell followed by the attack cells its run then skipped (the attacks of the run's
    request, ``meta["request"]["attacks"]``: they have no row in the store)."""
    header = ["kind", "status", "method", "attack", "seed", "reason"]
    requests = {r["run_id"]: (r["meta"] or {}).get("request") or {} for r in store.runs()}
    rows = []
    for c in store.cells(status="failed"):
        rows.append([c["kind"], "failed", c["method"], c["attack"], c["seed"], c["reason"]])
        if c["kind"] == "unlearn":
            for attack in requests.get(c["run_id"], {}).get("attacks") or []:
                rows.append(["attack", "skipped", c["method"], attack, c["seed"], "not run: its unlearn cell failed"])
    caption = (
        "Cells that failed (the store keeps their reason and no scores; a re-run retries them) and the attack "
        "cells not run because the unlearning they attack failed. The figures and tables above leave them out."
    )
    return Table(header, rows, caption=caption)


def headline_table(data: ReportData) -> Table:
    """The headline forget quality with both of its uncertainties and its utility companion, per
    (method, attack): after unlearning and at each attack's worst checkpoint (lowest forget quality
    after step 0). Per cell: mean over seeds, the sample std over seeds, the item interval (the mean
    over seeds of each seed's 95% bootstrap bounds, :mod:`unlearnbench.headline`), the items behind
    it, and at the same checkpoint the retain recall and FA (mean over the task rows scored there:
    the benchmark's utility tasks after unlearning, the attacked task under attack)."""
    header = ["method", "attack", "forget quality", "± seeds", "95% CI (items)", "n items", "retain recall", "FA"]
    header.append("seeds")
    fq, rec = data.fq, data.recall
    if fq.empty:
        return Table(header[:2], [], caption="No unlearned or attacked model with forget quality.")
    points = list(fq[fq.kind == "unlearn"].itertuples()) + list(worst_points(fq, "fq").itertuples())

    def fa_of(cid, checkpoint) -> float:
        sub = rec[(rec.cell_id == cid) & (rec.checkpoint == checkpoint) & (rec.split == "task")]
        return float(sub.value.mean()) if len(sub) else float("nan")

    groups: dict[tuple, list] = {}
    for p in points:
        groups.setdefault((p.method, p.attack), []).append(p)
    rows = []
    for (method, attack), ps in groups.items():
        values = [p.fq for p in ps if not math.isnan(p.fq)]
        std = float(statistics.stdev(values)) if len(values) > 1 else float("nan")
        lo, hi = _nanmean(p.fq_lo for p in ps), _nanmean(p.fq_hi for p in ps)
        ci = "–" if math.isnan(lo) else f"{lo:.2f}–{hi:.2f}"
        n = sorted({int(p.n_items) for p in ps})
        rows.append(
            [method, attack, _nanmean(p.fq for p in ps), std, ci, "/".join(map(str, n)),
             _nanmean(p.retain for p in ps), _nanmean(fa_of(p.cell_id, p.checkpoint) for p in ps), len(ps)]
        )  # fmt: skip
    caption = (
        "Headline forget quality (forms with >= 10 items and a base-oracle gap of >= 3 items, weighted by "
        "items) after unlearning ('no attack') and at each attack's worst checkpoint; mean over seeds, the "
        "spread over seeds and the 95% bootstrap interval over items (mean of the seeds' bounds) side by side; "
        "retain recall and FA of the same checkpoint beside it."
    )
    if all(r[-1] < 2 for r in rows):  # one seed everywhere: no spread over seeds to show
        header, rows = header[:3] + header[4:], [r[:3] + r[4:] for r in rows]
        caption += " One seed per cell: no spread over seeds."
    return Table(header, rows, caption=caption)
