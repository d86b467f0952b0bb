"""The report on disk: :func:`write_report` reads a store and writes, into ``out_dir``:

* ``fq_heatmap.png/.svg`` — forget quality after each attack (last epoch), methods x attacks,
  mean over seeds with the spread (sample std) in each cell (ILU fig. 4 style);
* ``fq_curves.png/.svg`` — forget quality along each attack's curve, one panel per attack (its x-axis
  in the attack's unit: epochs, optimiser steps, or before/after for quantize), one line per method,
  mean over seeds with a min-max band (ILU fig. 3 style);
* ``worst_heatmap.png/.svg`` — the worst case over each attack's curve: the lowest forget quality
  against the attacked oracle (where the store has control cells; else against the oracle);
* ``recovery_curves.png/.svg`` — recovery vs attack step, with the attacked oracle as a grey band
  (where the store has control cells);
* ``recovery_similarity.png/.svg`` — worst-case recovery vs the attack task's similarity to the
  forget set (only with ``similarity=``, a ``benchmarks/task_similarity.py`` JSON);
* ``layer_profiles.png/.svg`` — per decoder block, what the hidden states hold about the forget
  people: the logit lens's top-1 rate and the linear probe's accuracy, base, oracle and each method
  after unlearning (only where the lens/linear probes ran; :mod:`.layers`);
* ``form_table.{md,csv,html,tex}`` — recall after unlearning per form, forget and neighbour splits,
  with base and oracle columns; best method per row in bold (ORT style);
* ``muse_table.{md,csv,html,tex}`` — MUSE-style rows (original, retrain, unlearned, post-attack by
  attack kind);
* ``change_table.{md,csv,html,tex}`` — per (method, attack), the change from the unlearned model to
  the attack's worst checkpoint in forget recall, forget quality and retain recall;
* ``failures_table.{md,csv,html,tex}`` — the failed cells and the attack cells skipped because their
  unlearning failed;
* ``distance_fluency_table.{md,csv,html,tex}`` — JS divergence to the oracle and fluency of
  generations per split (only where the js/fluency probes ran);
* ``fq_records.csv`` — every aggregated forget-quality point (one row per cell and checkpoint);
* ``report.html`` — everything above in one self-contained page (PNGs inlined as base64).

The numbers come from :mod:`.frames`, the tables from :mod:`.tables`, the figures from :mod:`.figures`.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from ..store import ResultStore
from .figures import curves, fq_utility, heatmap, layer_profiles, similarity_scatter
from .frames import collect, curve_axes, curves_frame, heatmap_frame, similarity_frame, utility_frame
from .items import leaked_items_table
from .layers import chance_levels, layer_frame
from .tables import change_table, distance_fluency_table, failures_table, form_table, headline_table, muse_table

_EXPLAIN = {
    "fq": (
        "<p><b>Forget quality</b> per form is <code>clip(1 - |u - o| / |b - o|, 0, 1)</code> on the forget "
        "split, with <i>u</i>, <i>b</i>, <i>o</i> the recall of the evaluated model, of the base model and of "
        "the retrain oracle (same model label, probe suite and seed). 1 = indistinguishable from the oracle, "
        "0 = as far from it as the base model. A checkpoint's forget quality is the mean over the forms where "
        "base and oracle differ by at least 0.05; seeds are then averaged.</p>"
    ),
    "heatmap": (
        "<p>Forget quality after each attack's last epoch (columns) for each unlearning method (rows); "
        "the <i>no attack</i> column is right after unlearning. Each cell shows the mean over seeds "
        "&plusmn; the sample standard deviation (no spread with one seed). Colour scale fixed to 0..1.</p>"
    ),
    "utility": (
        "<p>The utility companion of the heatmap above, same layout: mean recall over the retain split's forms "
        "(people the method must keep) after unlearning and at each attack's last checkpoint.</p>"
    ),
    "scatter": (
        "<p>Forget quality (headline) against retain recall: a dot per method after unlearning, an arrow to each "
        "attack's last checkpoint (means over seeds); grey squares: the base model (forget quality 0) and the "
        "oracle (1). Up and right is better; a downward arrow is knowledge coming back, a leftward one utility "
        "lost. A method that forgets everything sits high only if it keeps the retain people too.</p>"
    ),
    "curves": (
        "<p>Forget quality along each attack's curve, one panel per attack, one line per method; the line is "
        "the mean over seeds and the band the min&ndash;max over seeds. Each panel's x-axis is in its attack's "
        "unit: attack epochs (finetune), optimiser steps (relearn, finetune with a <code>steps=</code> or "
        "<code>eval_every=</code> budget) or named checkpoints (quantize: before / quantized); 0 (or "
        "<i>before</i>) is the unlearned model. A falling line means the attack brings knowledge back.</p>"
    ),
    "worst": (
        "<p>The worst case over each attack's curve (every stored checkpoint after step 0): the lowest "
        "forget quality per attack cell, then mean &plusmn; std over seeds. Measured against the "
        "<b>attacked oracle</b> (the oracle fine-tuned by the same attack, same data, seed and budget: "
        "<code>clip(1 - |u_t - o_t| / |b - o_0|, 0, 1)</code>) where the store has those control cells, so "
        "facts an attack simply teaches are not counted as coming back.</p>"
    ),
    "recovery": (
        "<p><b>Recovery</b> <code>(u_t - u_0) / (b - u_0)</code>: the share of the recall the method removed "
        "that the attack brought back (0 none, 1 all), mean over seeds per method. The grey band is the "
        "attacked oracle on the same scale, <code>(o_t - u_0) / (b - u_0)</code> (min&ndash;max over methods "
        "and seeds): a line above the band means the attacked model knows more than a model that never "
        "saw the forget people after the same attack.</p>"
    ),
    "similarity": (
        "<p>The highest recovery over each attack's curve against how much the attack's training data "
        "looks like the forget set (template 3-gram overlap with names and numbers masked; cosine of "
        "mean hidden states under the target model; <code>unlearnbench.similarity</code>).</p>"
    ),
    "layers": (
        "<p>White-box probes of the forget people, per decoder block (the x-axis; the last block's output "
        "through the final norm is the model's own prediction). Left: the <b>logit lens</b>, the share of "
        "items whose answer's first token the final norm and unembedding rank first when applied to that "
        "block's residual stream at the answer position. Right: a <b>linear probe</b> per block (logistic "
        "regression trained on the retain people's hidden states to predict the attribute's value), its "
        "accuracy on the forget people; dotted: always guessing the most common value. The oracle never saw "
        "the forget people, so its line is the floor that 'the knowledge is gone' means: a method whose line "
        "stays above it still holds the facts inside, whatever its outputs say.</p>"
    ),
    "forms": "<p>Recall (mean of the headline metric) after unlearning, per probe form.</p>",
    "muse": (
        "<p>A MUSE-style table: MUSE's own metrics where the store holds the verbmem/knowmem/privleak "
        "probes, else the embedded world's equivalents. Attack rows are named by the attack's kind "
        "(post-finetune on a task, post-relearn on a source, post-quantize to a bit width).</p>"
    ),
    "change": (
        "<p>What each attack changed: the attacked model at its worst checkpoint (the lowest forget quality "
        "after step 0) minus the unlearned model, for forget recall, forget quality and retain recall.</p>"
    ),
}


def write_report(store_path, out_dir, *, metric: str = "correct", similarity: dict | None = None) -> dict[str, str]:
    """Render every figure and table of the store at ``store_path`` into ``out_dir``.

    ``similarity``: the parsed JSON of ``benchmarks/task_similarity.py`` (draws recovery vs
    similarity). Returns {name: path} of every file written. Never loads a model.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with ResultStore(store_path) as store:
        data = collect(store, metric)
        dt = distance_fluency_table(store)
        failures = failures_table(store)
        it = leaked_items_table(store, data)
        lf = layer_frame(store)
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

    drawn = {}
    if not hm.empty and hm["mean"].notna().any():
        drawn["heatmap"] = heatmap(hm, out / "fq_heatmap")
    else:
        data.notes.append("No forget-quality heatmap: no unlearn/attack cell has base and oracle references.")
    uh = heatmap_frame(data, "last", "retain")
    if not uh.empty and uh["mean"].notna().any():
        drawn["utility"] = heatmap(
            uh,
            out / "retain_heatmap",
            title="Retain recall (utility), mean ± std over seeds",
            label="retain recall",
        )
        refs = data.recall[(data.recall.split == "retain") & data.recall.kind.isin(["base", "oracle"])]
        ref = refs.groupby("kind").value.mean().to_dict() if len(refs) else {}
        drawn["scatter"] = fq_utility(
            utility_frame(data), out / "fq_vs_utility", base_retain=ref.get("base"), oracle_retain=ref.get("oracle")
        )
    if not cv.empty and cv["mean"].notna().any():
        drawn["curves"] = curves(cv, out / "fq_curves", x_axes=curve_axes(data))
    else:
        data.notes.append("No robustness curves: no attack cell with forget quality.")
    has_control = not data.fq.empty and data.fq["fq_ao"].notna().any()
    worst_measure = "fq_ao" if has_control else "fq"
    wh = heatmap_frame(data, "worst", worst_measure)
    if not wh.empty and wh["mean"].notna().any():
        against = "the attacked oracle" if has_control else "the oracle (no control cells)"
        drawn["worst"] = heatmap(
            wh,
            out / "worst_heatmap",
            title=f"Worst forget quality over the curve, against {against}; mean ± std over seeds",
            xlabel="attack (worst checkpoint after step 0)",
        )
    rc = curves_frame(data, "recovery")
    if not rc.empty and rc["mean"].notna().any():
        drawn["recovery"] = curves(
            rc,
            out / "recovery_curves",
            ylabel="recovery",
            title="Recovery under attack (mean over seeds, band = min–max; grey = attacked oracle)",
            ylim=None,
            x_axes=curve_axes(data),
        )
    if similarity is not None:
        sf = similarity_frame(data, similarity)
        if not sf.empty and sf["mean"].notna().any():
            drawn["similarity"] = similarity_scatter(sf, out / "recovery_similarity")
        else:
            data.notes.append(
                "No recovery-vs-similarity figure: no attack task of the store is in the similarity file."
            )
    if not lf.empty and (lf.split == "forget").any():
        drawn["layers"] = layer_profiles(lf, out / "layer_profiles", chance_levels(data.aggregates))
    for paths in drawn.values():
        for p in paths:
            written[Path(p).name] = str(p)

    ft, best = form_table(data)
    mt = muse_table(data)
    ct = change_table(data)
    ht = headline_table(data)
    for stem, table, extra in (
        ("form_table", ft, {"best": best}),
        ("muse_table", mt, None),
        ("change_table", ct, None),
        ("headline_table", ht, None),
        ("distance_fluency_table", dt, None),
        ("failures_table", failures, None),
        ("leaked_items", it, None),
    ):
        put(f"{stem}.md", table.markdown())
        put(f"{stem}.html", table.html())
        put(f"{stem}.tex", table.latex())
        table.write_csv(out / f"{stem}.csv", extra)
        written[f"{stem}.csv"] = str(out / f"{stem}.csv")

    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>unlearnbench report</title><style>",
        "body{font-family:sans-serif;max-width:1100px;margin:2em auto;line-height:1.4}"
        ".tbl{border-collapse:collapse;margin:1em 0}.tbl td,.tbl th{border:1px solid #ccc;padding:3px 8px;"
        "text-align:right}.tbl td:first-child{text-align:left}caption{caption-side:bottom;font-size:90%}"
        ".note{background:#fff3cd;padding:.5em 1em;border-left:4px solid #e0a800}img{max-width:100%}",
        "</style></head><body>",
        f"<h1>unlearnbench report</h1><p>Store: <code>{html.escape(str(store_path))}</code>; "
        f"metric: <code>{html.escape(metric)}</code>.</p>",
        _EXPLAIN["fq"],
    ]
    if failures.rows:
        failed = sum(r[1] == "failed" for r in failures.rows)
        skipped = len(failures.rows) - failed
        data.notes.insert(
            0,
            f"{failed} cell(s) failed and {skipped} were skipped: they are in no figure or table; "
            "see 'Failed and skipped cells' below.",
        )
    parts += [f"<p class='note'>{html.escape(n)}</p>" for n in data.notes]
    for key, title in (
        ("heatmap", "Forget quality after attacks"),
        ("utility", "Utility after attacks"),
        ("scatter", "Forget quality against utility"),
        ("curves", "Robustness curves"),
        ("worst", "Worst case over the curve"),
        ("recovery", "Recovery against the attacked oracle"),
        ("similarity", "Recovery vs similarity"),
        ("layers", "What the hidden states still hold"),
    ):
        if key in ("worst", "recovery", "similarity", "utility", "scatter", "layers") and key not in drawn:
            continue
        parts.append(f"<h2>{title}</h2>")
        if key in drawn:
            png = next(p for p in drawn[key] if str(p).endswith(".png"))
            b64 = base64.b64encode(Path(png).read_bytes()).decode("ascii")
            parts += [_EXPLAIN[key], f"<img alt='{title}' src='data:image/png;base64,{b64}'>"]
        else:
            parts.append("<p class='note'>Not available (see the notes above).</p>")
    parts += [
        "<h2>Forget quality, its uncertainty and utility</h2>",
        ht.html(),
        "<h2>Recall per form after unlearning</h2>",
        _EXPLAIN["forms"],
        ft.html(),
        "<h2>MUSE-style summary</h2>",
        _EXPLAIN["muse"],
        mt.html(),
        "<h2>Change against the unlearned model</h2>",
        _EXPLAIN["change"],
        ct.html(),
        "<p>The items behind these numbers, with the text each model generated: "
        "<a href='#items'>items the models still answer</a>.</p>",
        "<h2>Distribution distance and fluency</h2>",
        dt.html(),
        "<h2 id='items'>Items the models still answer</h2>",
        it.html(),
        "<h2 id='failures'>Failed and skipped cells</h2>",
        failures.html() if failures.rows else "<p>No cell failed or was skipped.</p>",
        "</body></html>",
    ]
    put("report.html", "\n".join(parts))
    return written
