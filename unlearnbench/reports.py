"""Report rendering from the results store (never from a model): figures, tables and one HTML page.

:func:`write_report` reads a store and writes, into ``out_dir``:

* ``fq_heatmap.png/.svg`` — forget quality after each attack (last epoch), methods x attacks,
  mean over seeds with the spread (sample std) in each cell (ILU fig. 4 style);
* ``fq_curves.png/.svg`` — forget quality vs attack epoch, one panel per attack, one line per method,
  mean over seeds with a min-max band (ILU fig. 3 style);
* ``form_table.{md,csv,html,tex}`` — recall after unlearning per form, forget and neighbour splits,
  with base and oracle columns; best method per row in bold (ORT style);
* ``muse_table.{md,csv,html,tex}`` — MUSE-style rows (original, retrain, pre-/post-finetune);
* ``distance_fluency_table.{md,csv,html,tex}`` — JS divergence to the oracle and fluency of
  generations per split (:mod:`unlearnbench.report_distance`; only where the js/fluency probes ran);
* ``fq_records.csv`` — every aggregated forget-quality point (one row per cell and checkpoint);
* ``report.html`` — everything above in one self-contained page (PNGs inlined as base64).

Forget quality (``metrics.forget_quality``) of a checkpoint is computed per form on the *forget*
split against the base and oracle cells with the same model label, probe suite and seed, then
averaged over the informative forms (base and oracle recall differ by >= ``metrics.MIN_GAP``).
Cells without such references get no forget quality; the report says so instead of failing.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import html
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from .metrics import forget_quality, privleak
from .report_distance import distance_fluency_table
from .store import ResultStore

__all__ = ["ReportData", "collect", "write_report"]

AFTER_UNLEARNING = "after unlearning"
NO_ATTACK = "no attack"
# MUSE columns -> (split, form) in the embedded world.
MUSE_COLUMNS = (("VerbMem-like (bio, D_f)", "forget", "bio"),
                ("KnowMem on D_f (qa)", "forget", "qa"),
                ("KnowMem on D_r (qa)", "retain", "qa"))
# MUSE's own columns, when the store holds its probes (benchmarks muse-news / muse-books).
MUSE_REAL_COLUMNS = (("VerbMem on D_f", "forget", "verbmem"),
                     ("KnowMem on D_f", "forget", "knowmem"),
                     ("KnowMem on D_r", "retain", "knowmem"))


@dataclass
class ReportData:
    """Everything the figures and tables are drawn from (plain pandas frames)."""

    fq: "object"          # DataFrame: one row per (unlearn/attack cell, checkpoint)
    recall: "object"      # DataFrame: mean `metric` per (cell_id, kind, labels, checkpoint, step, split, form)
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


def _labels(names, configs) -> list[str]:
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
        differing = [k for k in keys if len({json.dumps(v.get(k), sort_keys=True, default=str)
                                             for v in variants.values()}) > 1]
        cfg = variants[i]
        parts = [f"{k}={json.dumps(cfg.get(k), default=str) if not isinstance(cfg.get(k), (int, float, str)) else cfg.get(k)}"
                 for k in differing]
        text = " ".join(parts)
        if not text or len(text) > 60:
            text = hashlib.sha256(i.encode()).hexdigest()[:6]
        out.append(f"{n} [{text}]")
    return out


# -- aggregation ---------------------------------------------------------------------------------

def collect(store: ResultStore, metric: str = "correct") -> ReportData:
    """Aggregate the finished cells of ``store`` into forget-quality records and recall means."""
    import pandas as pd

    notes: list[str] = []
    cells = store.cells_frame()
    cells = cells[cells.status == "finished"].copy()
    empty_fq = pd.DataFrame(columns=["cell_id", "kind", "model", "method", "attack", "seed", "checkpoint",
                                     "step", "fq", "per_form"])
    if cells.empty:
        notes.append("The store holds no finished cells.")
        return ReportData(empty_fq, pd.DataFrame(), notes)
    cells["method_label"] = _labels(cells.method.fillna(""), cells.method_config)
    cells["attack_label"] = _labels(cells.attack.fillna(""), cells.attack_config)
    for col in ("model", "probe_suite", "seed"):
        cells[col] = cells[col].fillna("").astype(str)
    all_scores = store.scores_frame(list(cells.cell_id))
    aggregates = all_scores[all_scores.item_id == "*"][["cell_id", "checkpoint", "step", "split", "form", "metric",
                                                        "value"]]
    aggregates = aggregates.merge(cells[["cell_id", "kind", "model", "probe_suite", "seed", "method_label",
                                         "attack_label", "attack"]], on="cell_id")
    scores = all_scores[all_scores.metric == metric]
    if scores.empty:
        notes.append(f"No score rows with metric '{metric}'.")
    recall = (scores.groupby(["cell_id", "checkpoint", "step", "split", "form"])["value"].mean()
              .reset_index())
    recall = recall.merge(cells[["cell_id", "kind", "model", "probe_suite", "seed", "method_label",
                                 "attack_label", "attack"]], on="cell_id")

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
            missing.add((cell.model, cell.probe_suite, cell.seed, "oracle" if "base" in ref else
                         "base" if "oracle" in ref else "base and oracle"))
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
            records.append({
                "cell_id": cell.cell_id, "kind": cell.kind, "model": cell.model,
                "method": cell.method_label,
                "attack": cell.attack_label if cell.kind == "attack" else NO_ATTACK,
                "attack_task": (str(cell.attack).split(":", 1)[1].split(",")[0]
                                if cell.kind == "attack" and ":" in str(cell.attack) else None),
                "seed": cell.seed, "checkpoint": ck.checkpoint,
                "step": int(ck.step) if cell.kind == "attack" else AFTER_UNLEARNING,
                "fq": sum(per_form.values()) / len(per_form) if per_form else float("nan"),
                "per_form": per_form,
            })
    for model, suite, seed, what in sorted(missing):
        notes.append(f"Forget quality unavailable for model '{model}', seed {seed} (probes {suite}): "
                     f"no finished {what} cell in the store; those cells are left out of the figures.")
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


# -- tables --------------------------------------------------------------------------------------

@dataclass
class Table:
    header: list[str]
    rows: list[list]                      # first entry of a row is its label (str), then numbers / str
    bold: set = field(default_factory=set)  # (row index, column index)
    caption: str = ""

    def cell(self, i, j) -> str:
        v = self.rows[i][j]
        if isinstance(v, float):
            return "–" if math.isnan(v) else f"{v:.3f}"
        return "–" if v is None else str(v)

    def markdown(self) -> str:
        lines = ["| " + " | ".join(h.replace("|", "\\|") for h in self.header) + " |",
                 "|" + "|".join(["---"] + ["---:"] * (len(self.header) - 1)) + "|"]
        for i, row in enumerate(self.rows):
            cells = [(f"**{self.cell(i, j)}**" if (i, j) in self.bold else self.cell(i, j)).replace("|", "\\|")
                     for j in range(len(row))]
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
            for a, b in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("_", r"\_"),
                         ("#", r"\#"), ("{", r"\{"), ("}", r"\}"), ("$", r"\$"), ("–", "--")):
                s = s.replace(a, b) if a != "\\" else s.replace(a, "\0")
            return s.replace("\0", r"\textbackslash{}")
        lines = [r"\begin{table}[t]", r"\centering", r"\begin{tabular}{l" + "r" * (len(self.header) - 1) + "}",
                 r"\toprule", " & ".join(esc(h) for h in self.header) + r" \\", r"\midrule"]
        for i, row in enumerate(self.rows):
            cells = [(r"\textbf{" + esc(self.cell(i, j)) + "}") if (i, j) in self.bold else esc(self.cell(i, j))
                     for j in range(len(row))]
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
            vals = [_mean_over_seeds(rec, (rec.kind == "unlearn") & (rec.method_label == m), split, form)
                    for m in methods]
            i = len(rows)
            rows.append([f"{split} / {form}", b, o] + vals)
            score = ([-abs(v - o) if not math.isnan(o) else float("nan") for v in vals] if split == "forget"
                     else vals)
            finite = [s for s in score if not math.isnan(s)]
            names = []
            if finite:
                top = max(finite)
                for j, s in enumerate(score):
                    if not math.isnan(s) and abs(s - top) < 1e-12:
                        bold.add((i, 3 + j))
                        names.append(methods[j])
            best.append(";".join(names))
    cap = ("Recall after unlearning per form (mean over seeds). Bold: closest to the oracle on forget, "
           "highest on neighbour.")
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


def muse_table(data: ReportData) -> Table:
    """MUSE-style rows: Original (base), Retrain (oracle), Pre-finetune per method (after
    unlearning), Post-finetune on <attack> per method (last epoch); forget/retain recall and FA.

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
    tasks = sorted({str(a).split(":", 1)[1].split(",")[0] for a in rec[rec.kind == "attack"].attack.dropna()
                    if ":" in str(a)})
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
        rows.append(row(f"Pre-finetune: {m}", "unlearn", m))
    att = rec[rec.kind == "attack"]
    for a in dict.fromkeys(att.attack_label):
        for m in dict.fromkeys(att[att.attack_label == a].method_label):
            rows.append(row(f"Post-finetune on {a}: {m}", "attack", m, a))
    if real:
        cap = ("MUSE summary (mean over seeds; post-finetune = last attack epoch). VerbMem on D_f and KnowMem on "
               "D_f / D_r: ROUGE-L F1 x 100; PrivLeak = (AUC - AUC_retrain) / AUC_retrain x 100 of the Min-40% "
               f"AUC (forget vs holdout; mean AUC over seeds), {ref_note or 'no privleak scores'}; "
               "FA = task accuracy.")
    else:
        cap = ("MUSE-style summary (mean over seeds; post-finetune = last attack epoch). VerbMem-like = bio recall "
               "on the forget split, KnowMem = qa recall on forget (D_f) / retain (D_r), FA = task accuracy.")
    return Table(header, rows, caption=cap)


# -- the report ----------------------------------------------------------------------------------

_EXPLAIN = {
    "fq": ("<p><b>Forget quality</b> per form is <code>clip(1 - |u - o| / |b - o|, 0, 1)</code> on the forget "
           "split, with <i>u</i>, <i>b</i>, <i>o</i> the recall of the evaluated model, of the base model and of "
           "the retrain oracle (same model label, probe suite and seed). 1 = indistinguishable from the oracle, "
           "0 = as far from it as the base model. A checkpoint's forget quality is the mean over the forms where "
           "base and oracle differ by at least 0.05; seeds are then averaged.</p>"),
    "heatmap": ("<p>Forget quality after each attack's last epoch (columns) for each unlearning method (rows); "
                "the <i>no attack</i> column is right after unlearning. Each cell shows the mean over seeds "
                "&plusmn; the sample standard deviation (no spread with one seed). Colour scale fixed to 0..1.</p>"),
    "curves": ("<p>Forget quality against attack epoch (epoch 0 = before the first attack epoch, i.e. the "
               "unlearned model), one panel per attack, one line per method; the line is the mean over seeds "
               "and the band the min&ndash;max over seeds. A falling line means the attack brings knowledge "
               "back.</p>"),
    "forms": "<p>Recall (mean of the headline metric) after unlearning, per probe form.</p>",
    "muse": ("<p>A MUSE-style table: MUSE's own metrics where the store holds the verbmem/knowmem/privleak "
             "probes, else the embedded world's equivalents.</p>"),
}


def write_report(store_path, out_dir, *, metric: str = "correct") -> dict[str, str]:
    """Render every figure and table of the store at ``store_path`` into ``out_dir``.

    Returns {name: path} of every file written. Never loads a model.
    """
    from . import report_plots

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with ResultStore(store_path) as store:
        data = collect(store, metric)
        dt = distance_fluency_table(store)
    written: dict[str, str] = {}

    def put(name: str, text: str) -> None:
        path = out / name
        path.write_text(text, encoding="utf-8")
        written[name] = str(path)

    hm = heatmap_frame(data)
    cv = curves_frame(data)
    fq_csv = data.fq.drop(columns=["per_form"], errors="ignore").copy()
    if not data.fq.empty:
        fq_csv["per_form"] = [json.dumps({k: round(v, 4) for k, v in pf.items()}) for pf in data.fq.per_form]
    fq_csv.to_csv(out / "fq_records.csv", index=False)
    written["fq_records.csv"] = str(out / "fq_records.csv")

    figures = {}
    if not hm.empty and hm["mean"].notna().any():
        figures["heatmap"] = report_plots.heatmap(hm, out / "fq_heatmap")
    else:
        data.notes.append("No forget-quality heatmap: no unlearn/attack cell has base and oracle references.")
    if not cv.empty and cv["mean"].notna().any():
        figures["curves"] = report_plots.curves(cv, out / "fq_curves")
    else:
        data.notes.append("No robustness curves: no attack cell with forget quality.")
    for paths in figures.values():
        for p in paths:
            written[Path(p).name] = str(p)

    ft, best = form_table(data)
    mt = muse_table(data)
    for stem, table, extra in (("form_table", ft, {"best": best}), ("muse_table", mt, None),
                               ("distance_fluency_table", dt, None)):
        put(f"{stem}.md", table.markdown())
        put(f"{stem}.html", table.html())
        put(f"{stem}.tex", table.latex())
        table.write_csv(out / f"{stem}.csv", extra)
        written[f"{stem}.csv"] = str(out / f"{stem}.csv")

    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>unlearnbench report</title><style>",
             "body{font-family:sans-serif;max-width:1100px;margin:2em auto;line-height:1.4}"
             ".tbl{border-collapse:collapse;margin:1em 0}.tbl td,.tbl th{border:1px solid #ccc;padding:3px 8px;"
             "text-align:right}.tbl td:first-child{text-align:left}caption{caption-side:bottom;font-size:90%}"
             ".note{background:#fff3cd;padding:.5em 1em;border-left:4px solid #e0a800}img{max-width:100%}",
             "</style></head><body>",
             f"<h1>unlearnbench report</h1><p>Store: <code>{html.escape(str(store_path))}</code>; "
             f"metric: <code>{html.escape(metric)}</code>.</p>", _EXPLAIN["fq"]]
    parts += [f"<p class='note'>{html.escape(n)}</p>" for n in data.notes]
    for key, title in (("heatmap", "Forget quality after attacks"), ("curves", "Robustness curves")):
        parts.append(f"<h2>{title}</h2>")
        if key in figures:
            png = next(p for p in figures[key] if str(p).endswith(".png"))
            b64 = base64.b64encode(Path(png).read_bytes()).decode("ascii")
            parts += [_EXPLAIN[key], f"<img alt='{title}' src='data:image/png;base64,{b64}'>"]
        else:
            parts.append("<p class='note'>Not available (see the notes above).</p>")
    parts += ["<h2>Recall per form after unlearning</h2>", _EXPLAIN["forms"], ft.html(),
              "<h2>MUSE-style summary</h2>", _EXPLAIN["muse"], mt.html(),
              "<h2>Distribution distance and fluency</h2>", dt.html(), "</body></html>"]
    put("report.html", "\n".join(parts))
    return written
