"""``unlearnbench leaderboard build``: a static site from the verified submission bundles.

Writes ``index.html`` (one section per matrix: a heatmap as inline SVG, methods x (after unlearning,
each attack), with its colour legend; a sortable table; a sortable utility table) and one detail
page per submission, results first (the submission's headline row; per attack and seed the worst
case, the last checkpoint and the utility at the worst case; one curve per attack cell,
:mod:`.curve`; per-cell numbers), then the verification status and the provenance (harness version
and commit, sha256s, environment, whether control cells were present). No server, no CDN: plain
HTML, inline CSS and SVG and ~30 lines of vanilla JS, so the pages work from ``file://``. Every
string that comes from a bundle is HTML-escaped. The output is deterministic (no build time
stamp), so a rebuild of unchanged submissions gives identical files.

Numbers shown (all from the bundles' aggregates, which verification recomputed from per-item
scores), mean ± sample std over seeds: forget quality (1 = like the retrain oracle) after
unlearning; per attack the **worst case over the curve** — the lowest forget quality against the
attacked oracle over the checkpoints after step 0 (:func:`.bundle.attack_headline`), with the step
of each seed — and the last checkpoint's forget quality against the attacked oracle beside it; the
lowest worst case over the attacks (the robustness headline the rows are ordered by); retain recall
(mean over the matrix's headline forms) and FA (mean over the utility tasks) after unlearning and,
per attack, at the worst case's checkpoint of each seed (:func:`utility_at_worst`, with
:func:`.bundle.utility`, the same means as after unlearning). At an attack's checkpoints the
harness scores only the attack's own task, so FA under attack is over the utility tasks among
those (for ``finetune:arith``: arith) and is shown beside FA after unlearning on the same tasks;
attacks that score no utility task get no FA column.
"""

from __future__ import annotations

import html
import json
import math
import re
import statistics
from pathlib import Path

from ..metrics import MIN_GAP
from ..report.figures import cell_text
from . import bundle as B
from .curve import curve_svg
from .verify import Verdict, verify

AFTER_UNLEARNING = "after unlearning"
_VIRIDIS = (
    (0.0, (68, 1, 84)),
    (0.25, (59, 82, 139)),
    (0.5, (33, 145, 140)),
    (0.75, (94, 201, 98)),
    (1.0, (253, 231, 37)),
)

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1200px;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{margin-top:2em;border-bottom:1px solid #ccc}table{border-collapse:collapse;margin:1em 0}
th,td{border:1px solid #ccc;padding:4px 8px;text-align:right;font-variant-numeric:tabular-nums}
th{background:#f3f3f3;cursor:pointer;user-select:none}td.l,th.l{text-align:left}
th[aria-sort=ascending]::after{content:" \\25B2"}th[aria-sort=descending]::after{content:" \\25BC"}
code,.mono{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:.9em;word-break:break-all}
.ok{color:#1a7f37;font-weight:600}.bad{color:#b42318;font-weight:600}.note{color:#555;font-size:.9em}
"""

SORT_JS = """
document.querySelectorAll('table.sortable').forEach(function (table) {
  table.querySelectorAll('th').forEach(function (th, col) {
    th.addEventListener('click', function () {
      var asc = th.getAttribute('aria-sort') !== 'ascending';
      table.querySelectorAll('th').forEach(function (h) { h.removeAttribute('aria-sort'); });
      th.setAttribute('aria-sort', asc ? 'ascending' : 'descending');
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      function key(row) {
        var cell = row.cells[col];
        var v = cell.getAttribute('data-v');
        if (v === null) { v = cell.textContent.trim(); }
        var n = parseFloat(v);
        return isNaN(n) ? { n: null, s: v.toLowerCase() } : { n: n, s: '' };
      }
      rows.sort(function (a, b) {
        var x = key(a), y = key(b), r;
        if (x.n === null && y.n === null) { r = x.s < y.s ? -1 : x.s > y.s ? 1 : 0; }
        else if (x.n === null) { return 1; }
        else if (y.n === null) { return -1; }
        else { r = x.n - y.n; }
        return asc ? r : -r;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
});
"""


def esc(x) -> str:
    return html.escape("" if x is None else str(x), quote=True)


def _page(title: str, body: str) -> str:
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{esc(title)}</title>\n<style>{CSS}</style></head>\n<body>\n{body}\n"
        f"<script>{SORT_JS}</script>\n</body></html>\n"
    )


def _stats(values: list) -> tuple[float, float, int]:
    vals = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if not vals:
        return math.nan, math.nan, 0
    return statistics.fmean(vals), statistics.stdev(vals) if len(vals) > 1 else math.nan, len(vals)


def _td(mean: float, std: float, n: int) -> str:
    v = "" if math.isnan(mean) else f"{mean:.6f}"
    return f'<td data-v="{v}">{esc(cell_text(mean, std, n))}</td>'


def slug(rel: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", rel).strip("-") or "submission"


# -- numbers per submission ---------------------------------------------------------------------------


def short_names(attacks: list[str]) -> dict[str, str]:
    """Column names: ``name:arg`` of each attack spec where that is unique in the matrix, else the spec."""
    heads = {a: a.split(",", 1)[0] for a in attacks}
    counts = {h: list(heads.values()).count(h) for h in heads.values()}
    return {a: heads[a] if counts[heads[a]] == 1 else a for a in attacks}


def utility_at_worst(cell: dict, unlearned: dict | None, split: str, forms: list[str]) -> dict:
    """Utility of an attack cell at its worst case's checkpoint (:func:`.bundle.attack_headline`):
    ``recall`` (``split`` over ``forms``), ``fa`` over the utility tasks (those of ``unlearned``, the
    seed's unlearn cell's last aggregates) scored there, ``fa_tasks`` those tasks, and
    ``fa_unlearned`` FA after unlearning on the same tasks (None when there are none)."""
    tasks = list((unlearned or {}).get("task_accuracy") or {})
    at = B.utility(B.at_point(cell["aggregates"], B.attack_headline(cell["aggregates"])["worst"]), split, forms, tasks)
    same = B.utility(unlearned, split, forms, at["fa_tasks"])["fa"] if at["fa_tasks"] else None
    return {**at, "fa_unlearned": same}


def summarise(manifest: dict, headline: dict) -> dict:
    """FQ after unlearning; per attack the worst case over the curve and the last checkpoint (forget
    quality against the attacked oracle), stats over seeds with the worst case's steps; retain
    recall and FA after unlearning and, per attack, at the worst case's checkpoint of each seed
    (FA over the utility tasks scored there); the controls present."""
    cells = sorted(manifest["cells"], key=lambda c: c["seed"])
    split = headline.get("utility_split", "retain")
    forms = headline.get("utility_forms") or ["bio", "qa", "cloze"]
    unl = {c["seed"]: B.headline(c["aggregates"]) for c in cells if c["kind"] == "unlearn"}
    fq = {AFTER_UNLEARNING: _stats([h.get("forget_quality", {}).get("mean") for h in unl.values()])}
    after = [B.utility(h, split, forms) for h in unl.values()]
    worst, last, steps, retain_at, fa_at, fa_tasks, fa_same = {}, {}, {}, {}, {}, {}, {}
    for a in manifest["matrix"]["attacks"]:
        attacked = [c for c in cells if c["kind"] == "attack" and c["attack"] == a]
        heads = [B.attack_headline(c["aggregates"]) for c in attacked]
        worst[a] = _stats([(h["worst"] or {}).get("value") for h in heads])
        steps[a] = [(h["worst"] or {}).get("step") for h in heads]
        last[a] = _stats([h["last"]["forget_quality_attacked_oracle"] for h in heads])
        fq[a] = worst[a]
        at = [utility_at_worst(c, unl.get(c["seed"]), split, forms) for c in attacked]
        retain_at[a] = _stats([u["recall"] for u in at])
        fa_at[a] = _stats([u["fa"] for u in at])
        fa_tasks[a] = sorted({t for u in at for t in u["fa_tasks"]})
        fa_same[a] = _stats([u["fa_unlearned"] for u in at])
    attack_means = [worst[a][0] for a in manifest["matrix"]["attacks"] if not math.isnan(worst[a][0])]
    controls = sorted({c.get("control") for c in cells if c["kind"] == "control" and c.get("control")})
    return {
        "fq": fq,  # the heatmap's columns: after unlearning, then each attack's worst case
        "worst_case": worst,
        "worst_steps": steps,
        "last": last,
        "worst": min(attack_means) if attack_means else math.nan,
        "retain": _stats([u["recall"] for u in after]),
        "fa": _stats([u["fa"] for u in after]),
        "retain_at_worst": retain_at,  # per attack: at the worst case's checkpoint of each seed
        "fa_at_worst": fa_at,
        "fa_tasks": fa_tasks,  # per attack: the utility tasks its checkpoints score (often none)
        "fa_unlearned_same_tasks": fa_same,  # per attack: FA after unlearning on those tasks
        "split": split,
        "forms": forms,
        "controls": controls,
        "n_controls": sum(c["kind"] == "control" for c in cells),
    }


def steps_text(steps: list) -> str:
    """The worst case's step per seed, e.g. ``step 10/20`` (seed order); ``n/a`` when none."""
    shown = ["-" if s is None else str(s) for s in steps]
    return "step " + "/".join(shown) if any(s is not None for s in steps) else "n/a"


def _colour(v: float) -> str:
    if math.isnan(v):
        return "#dddddd"
    v = min(1.0, max(0.0, v))
    for (x0, c0), (x1, c1) in zip(_VIRIDIS, _VIRIDIS[1:]):
        if v <= x1:
            t = (v - x0) / (x1 - x0)
            return "#" + "".join(f"{round(a + (b - a) * t):02x}" for a, b in zip(c0, c1))
    return "#fde725"


def heatmap_svg(rows: list[tuple[str, dict]], columns: list[str], names: dict[str, str] | None = None) -> str:
    """Inline SVG: one row per submission, one column per (after unlearning, attack's worst case)."""
    names = names or {}
    cw, ch, left, top = 160, 30, 170, 46
    w, h = left + cw * len(columns) + 10, top + ch * len(rows) + 4
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="heatmap" width="{w}" height="{h}" '
        f'viewBox="0 0 {w} {h}" role="img" aria-label="forget quality heatmap" '
        f'font-family="sans-serif" font-size="12">'
    ]
    for j, col in enumerate(columns):
        x = left + cw * j + cw / 2
        out.append(
            f'<text x="{x}" y="{top - 10}" text-anchor="middle"><title>{esc(col)}</title>{esc(names.get(col, col))}</text>'
        )
    for i, (name, s) in enumerate(rows):
        y = top + ch * i
        out.append(f'<text x="{left - 8}" y="{y + ch / 2 + 4}" text-anchor="end">{esc(name)}</text>')
        for j, col in enumerate(columns):
            mean, std, n = s["fq"][col]
            x = left + cw * j
            fill = _colour(mean)
            ink = "#000" if (math.isnan(mean) or mean > 0.6) else "#fff"
            label = cell_text(mean, std, n)
            tip = f"{name} / {col}: {label}"
            if col in s["worst_steps"]:
                at = s["worst_steps"][col]
                label += " @" + "/".join("-" if v is None else str(v) for v in at) if at else ""
                lm, ls, ln = s["last"][col]
                tip = (
                    f"{name} / {col}: worst forget quality vs attacked oracle {cell_text(mean, std, n)} at "
                    f"{steps_text(at)} (per seed); last checkpoint {cell_text(lm, ls, ln)}"
                )
            out.append(
                f'<rect x="{x}" y="{y}" width="{cw - 2}" height="{ch - 2}" fill="{fill}">'
                f"<title>{esc(tip)}</title></rect>"
                f'<text x="{x + cw / 2 - 1}" y="{y + ch / 2 + 3}" text-anchor="middle" fill="{ink}">'
                f"{esc(label)}</text>"
            )
    out.append("</svg>")
    return "\n".join(out)


def legend_svg() -> str:
    """The heatmap's colour legend: the scale from 0 to 1 in the cells' own colours, ticks every
    0.25, what its ends mean, and the grey of a cell with no number."""
    n, bw, left, top, bh = 50, 6, 10, 22, 14
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="legend" width="{left + n * bw + 360}" height="{top + bh + 34}" '
        f'role="img" aria-label="colour legend of the heatmap" font-family="sans-serif" font-size="12">',
        f'<text x="{left}" y="{top - 8}">forget quality (heatmap colour)</text>',
    ]
    out += [
        f'<rect x="{left + i * bw}" y="{top}" width="{bw}" height="{bh}" fill="{_colour((i + 0.5) / n)}"/>'
        for i in range(n)
    ]
    for k in range(5):
        x = left + n * bw * k / 4
        out.append(f'<line x1="{x}" y1="{top + bh}" x2="{x}" y2="{top + bh + 4}" stroke="#333"/>')
        out.append(f'<text x="{x}" y="{top + bh + 16}" text-anchor="middle">{k / 4:g}</text>')
    out.append(
        f'<text x="{left}" y="{top + bh + 30}">0 = as far from the oracle as the model before unlearning; '
        "1 = like the (attacked) oracle</text>"
    )
    gx = left + n * bw + 24
    out.append(f'<rect x="{gx}" y="{top}" width="{bh}" height="{bh}" fill="{_colour(math.nan)}" stroke="#999"/>')
    out.append(f'<text x="{gx + bh + 6}" y="{top + bh - 2}">n/a: no number (no form enters the headline)</text>')
    out.append("</svg>")
    return "\n".join(out)


# -- pages -------------------------------------------------------------------------------------------


def matrix_section(name: str, entries: list[tuple[str, dict, dict]], description: str, headline: dict) -> str:
    """``entries``: (detail page file, manifest, summary) of the verified submissions of one matrix."""
    first = entries[0][1]["matrix"]
    attacks = list(first["attacks"])
    names = short_names(attacks)
    columns = [AFTER_UNLEARNING, *attacks]
    ordered = sorted(
        entries, key=lambda e: (-(e[2]["worst"] if not math.isnan(e[2]["worst"]) else -1), e[1]["method"]["spec"])
    )
    parts = [
        f'<h2 id="{esc(slug(name))}">{esc(name)}</h2>',
        f"<p>{esc(description)} Benchmark <code>{esc(first['benchmark'])}</code>; attacks "
        + ", ".join(f"<code>{esc(a)}</code>" for a in attacks)
        + f"; seeds {esc(', '.join(map(str, first['seeds'])))}; controls "
        + esc(", ".join(first.get("controls") or []) or "none")
        + ".</p>",
        heatmap_svg([(e[1]["method"]["spec"], e[2]) for e in ordered], columns, names),
        legend_svg(),
        '<p class="note">First column: forget quality after unlearning. Attack columns: the <b>worst case over '
        "the curve</b> — the lowest forget quality against the attacked oracle (the retrain oracle put through "
        "the same attack, same data, seed and budget) over the checkpoints after step 0 — mean ± std over seeds, "
        "@ the step of each seed. 1 = like the (attacked) oracle; 0 = as far from it as the model before "
        "unlearning.</p>",
    ]
    split, forms = entries[0][2]["split"], entries[0][2]["forms"]
    head = [
        '<th class="l">method</th>',
        '<th class="l">version</th>',
        f"<th>FQ {esc(AFTER_UNLEARNING)}</th>",
    ]
    for a in attacks:
        head.append(f'<th title="{esc(a)}">worst FQ-AO {esc(names[a])}</th>')
        head.append(f'<th title="{esc(a)}">last FQ-AO {esc(names[a])}</th>')
    head += [
        "<th>worst under attack</th>",
        f"<th>{esc(split)} recall ({esc('/'.join(forms))})</th>",
        "<th>FA (utility tasks)</th>",
        '<th class="l">controls</th>',
        '<th class="l">harness</th>',
        '<th class="l">verified</th>',
    ]
    body = []
    for page, m, s in ordered:
        worst = s["worst"]
        row = (
            "<tr>"
            + f'<td class="l"><a href="{esc(page)}">{esc(m["method"]["spec"])}</a></td>'
            + f'<td class="l">{esc(m["method"]["version"])}</td>'
            + _td(*s["fq"][AFTER_UNLEARNING])
        )
        for a in attacks:
            mean, std, n = s["worst_case"][a]
            v = "" if math.isnan(mean) else f"{mean:.6f}"
            row += f'<td data-v="{v}">{esc(cell_text(mean, std, n))} <span class="note">{esc(steps_text(s["worst_steps"][a]))}</span></td>'
            row += _td(*s["last"][a])
        row += (
            f'<td data-v="{"" if math.isnan(worst) else f"{worst:.6f}"}">'
            + f"{'n/a' if math.isnan(worst) else f'{worst:.2f}'}</td>"
            + _td(*s["retain"])
            + _td(*s["fa"])
            + f'<td class="l">{esc(", ".join(s["controls"]) or "none")}</td>'
            + f'<td class="l">{esc(m["harness"]["version"])}</td><td class="l ok">verified</td></tr>'
        )
        body.append(row)
    parts.append(
        f'<table class="sortable" id="table-{esc(slug(name))}"><thead><tr>{"".join(head)}</tr></thead>'
        f"<tbody>\n{chr(10).join(body)}\n</tbody></table>"
    )
    parts.append(
        '<p class="note">FQ-AO: forget quality against the attacked oracle. "worst": lowest over the '
        'checkpoints after step 0 (the step per seed beside it); "last": at the attack\'s last checkpoint. Click a '
        "column header to sort. Rows are ordered by the worst case under attack, the lowest worst FQ-AO over the "
        "attacks (higher is more robust). Methods are run with the options in their detail pages.</p>"
    )
    parts.append(utility_table(name, ordered, attacks, names))
    return "\n".join(parts)


def utility_table(name: str, ordered: list[tuple[str, dict, dict]], attacks: list[str], names: dict[str, str]) -> str:
    """Retain recall and FA after unlearning and under each attack, at the worst case's checkpoint
    (the FA columns only for attacks whose checkpoints score a utility task)."""
    split, forms = ordered[0][2]["split"], ordered[0][2]["forms"]
    with_fa = [a for a in attacks if any(e[2]["fa_tasks"][a] for e in ordered)]
    head = ['<th class="l">method</th>', f"<th>{esc(split)} recall {esc(AFTER_UNLEARNING)}</th>"]
    head += [f'<th title="{esc(a)}">{esc(split)} recall @worst {esc(names[a])}</th>' for a in attacks]
    head.append(f"<th>FA {esc(AFTER_UNLEARNING)}</th>")
    for a in with_fa:
        tasks = esc(", ".join(sorted({t for e in ordered for t in e[2]["fa_tasks"][a]})))
        head.append(f'<th title="{esc(a)}">FA {tasks} {esc(AFTER_UNLEARNING)}</th>')
        head.append(f'<th title="{esc(a)}">FA {tasks} @worst {esc(names[a])}</th>')
    body = []
    for page, m, s in ordered:
        row = f'<tr><td class="l"><a href="{esc(page)}">{esc(m["method"]["spec"])}</a></td>' + _td(*s["retain"])
        row += "".join(_td(*s["retain_at_worst"][a]) for a in attacks) + _td(*s["fa"])
        row += "".join(_td(*s["fa_unlearned_same_tasks"][a]) + _td(*s["fa_at_worst"][a]) for a in with_fa)
        body.append(row + "</tr>")
    without = [names[a] for a in attacks if a not in with_fa]
    return (
        f"<h3>Utility after unlearning and under attack</h3>"
        f'<table class="sortable" id="utility-{esc(slug(name))}"><thead><tr>{"".join(head)}</tr></thead>'
        f"<tbody>\n{chr(10).join(body)}\n</tbody></table>"
        f'<p class="note">{esc(split)} recall: mean over the {esc("/".join(forms))} forms; FA: mean accuracy on '
        "the utility tasks. Under an attack both are taken at the <b>worst case's checkpoint</b> of each seed (the "
        "step the worst FQ-AO column names), not at the last one, so they describe the model the headline does; "
        "mean ± std over seeds. At an attack's checkpoints the harness scores only the attack's own task, so FA "
        "under attack is over the utility tasks among those (named in the column, beside FA after unlearning on the "
        "same tasks: FA after unlearning is over all the utility tasks)"
        + (
            f"; {esc(', '.join(without))} score{'s' if len(without) == 1 else ''} no utility task after the "
            "attack (no FA column)."
            if without
            else "."
        )
        + "</p>"
    )


def _kv(rows: list[tuple[str, object]]) -> str:
    return (
        "<table>"
        + "".join(f'<tr><th class="l">{esc(k)}</th><td class="l mono">{esc(v)}</td></tr>' for k, v in rows)
        + "</table>"
    )


def _num(v) -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.2f}"


UNDEFINED_RECOVERY = (
    '<span class="note" title="recovery, (u_t - u_0) / (b - u_0), is undefined where the method removed less '
    f'than {MIN_GAP} of the forget recall (b - u_0) on every informative form, or a recall is missing">'
    "undefined</span>"
)


def _point(p: dict | None) -> str:
    return "n/a" if p is None else f'{_num(p["value"])} <span class="note">step {esc(p["step"])}</span>'


def _curve(aggregates: list[dict], metric: str) -> str:
    if not any(metric in a for a in aggregates):
        return ""
    return " → ".join(_num((a.get(metric) or {}).get("mean")) for a in aggregates)


def _fa_td(s: dict, attack: str) -> str:
    """FA at an attack's worst case, with the tasks it is over and FA after unlearning on them."""
    mean, std, n = s["fa_at_worst"][attack]
    if not s["fa_tasks"][attack]:
        return _td(mean, std, n)
    v = "" if math.isnan(mean) else f"{mean:.6f}"
    return (
        f'<td data-v="{v}">{esc(cell_text(mean, std, n))} <span class="note">on '
        f"{esc(', '.join(s['fa_tasks'][attack]))}; after unlearning "
        f"{esc(cell_text(*s['fa_unlearned_same_tasks'][attack]))}</span></td>"
    )


def _headline_table(m: dict, s: dict) -> str:
    """The submission's leaderboard row, one column per (after unlearning, attack): forget quality
    (the worst case over each attack's curve, its step per seed, the last checkpoint), retain recall
    and FA (under an attack: at the worst case's checkpoint)."""
    attacks = list(m["matrix"]["attacks"])
    dash = "<td>–</td>"
    rows = [
        (
            "FQ after unlearning / worst FQ-AO",
            [_td(*s["fq"][AFTER_UNLEARNING])] + [_td(*s["worst_case"][a]) for a in attacks],
        ),
        ("worst case at (per seed)", [dash] + [f"<td>{esc(steps_text(s['worst_steps'][a]))}</td>" for a in attacks]),
        ("last FQ-AO", [dash] + [_td(*s["last"][a]) for a in attacks]),
        (
            f"{s['split']} recall ({'/'.join(s['forms'])})",
            [_td(*s["retain"])] + [_td(*s["retain_at_worst"][a]) for a in attacks],
        ),
        ("FA (utility tasks; under attack: those scored)", [_td(*s["fa"])] + [_fa_td(s, a) for a in attacks]),
    ]
    head = f'<th class="l">measure</th><th>{esc(AFTER_UNLEARNING)}</th>' + "".join(
        f'<th title="{esc(a)}">{esc(n)}</th>' for a, n in short_names(attacks).items()
    )
    body = "".join(f'<tr><th class="l">{esc(k)}</th>{"".join(v)}</tr>' for k, v in rows)
    return (
        f'<table id="headline"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
        '<p class="note">Mean ± std over seeds. Under an attack, utility is at the worst case\'s checkpoint of '
        "each seed; at an attack's checkpoints only the attack's own task is scored, so FA there is n/a unless "
        "that task is a utility task.</p>"
    )


def detail_page(manifest: dict, verdict: Verdict, summary: dict) -> str:
    m = manifest
    title = f"{m['method']['spec']} on {m['matrix']['name']}"
    prov = [
        ("method spec", m["method"]["spec"]),
        ("method version", m["method"]["version"]),
        ("method config", json.dumps(m["method"]["config"], sort_keys=True)),
        ("benchmark", f"{m['benchmark']['spec']} (v{m['benchmark']['version']})"),
        ("benchmark config", json.dumps(m["benchmark"]["config"], sort_keys=True)),
        ("model", m["models"]["name"]),
        ("target weights sha256", m["models"]["target_sha256"]),
        ("oracle weights sha256", m["models"]["oracle_sha256"]),
        *((f"unlearned checkpoint sha256 (seed {k})", v) for k, v in sorted(m["models"]["unlearned_sha256"].items())),
        ("harness version", m["harness"]["version"]),
        ("harness git commit", m["harness"]["git_commit"] or "not a git checkout"),
        ("uncommitted harness changes", m["harness"]["git_dirty"]),
        (
            "control cells",
            f"present: {summary['n_controls']} ({', '.join(summary['controls'])}; every attack of every seed also "
            "run on that model with the same data, seed and budget)"
            if summary["n_controls"]
            else "none (forget quality under attack is against the unattacked oracle only)",
        ),
        ("scores file sha256", m["scores_file"]["sha256"]),
        ("per-item score rows", m["scores_file"]["rows"]),
        ("bundle written", m["created_at"]),
    ]
    env = sorted(m["environment"].items())
    status = (
        f'<p class="ok">Verified: {esc(", ".join(verdict.checks))}.</p>'
        if verdict.accepted
        else '<p class="bad">Refused:</p><ul>' + "".join(f"<li>{esc(r)}</li>" for r in verdict.reasons) + "</ul>"
    )
    status += "".join(f'<p class="note">{esc(n)}</p>' for n in verdict.notes)
    kinds = ["base", "oracle", "control", "unlearn", "attack"]
    rows = []
    for c in sorted(
        m["cells"],
        key=lambda c: (c["seed"], kinds.index(c["kind"]) if c["kind"] in kinds else 9, c["attack"] or ""),
    ):
        h = B.headline(c["aggregates"])
        fq = h.get("forget_quality", {}).get("mean")
        rows.append(
            f'<tr><td>{c["seed"]}</td><td class="l">{esc(c["kind"])}'
            f"{' ' + esc(c.get('control')) if c.get('control') else ''}</td>"
            f'<td class="l">{esc(c["attack"] or "")}</td>'
            f'<td class="l mono">{esc(c["cell_id"])}</td><td>{c["n_scores"]}</td>'
            f'<td class="l mono" title="{esc(c["scores_sha256"])}">{esc(c["scores_sha256"][:16])}…</td>'
            f'<td data-v="{"" if fq is None else fq}">{_num(fq)}</td>'
            f'<td class="l">{esc(_curve(c["aggregates"], "forget_quality"))}</td>'
            f'<td class="l">{esc(_curve(c["aggregates"], "forget_quality_attacked_oracle"))}</td>'
            f'<td class="l">{esc(_curve(c["aggregates"], "recovery"))}</td></tr>'
        )
    cells = (
        '<table class="sortable" id="cells"><thead><tr><th>seed</th><th class="l">kind</th>'
        '<th class="l">attack</th><th class="l">cell id</th><th>scores</th><th class="l">scores sha256</th>'
        '<th>FQ (last)</th><th class="l">FQ per checkpoint</th><th class="l">FQ-AO per checkpoint</th>'
        '<th class="l">recovery per checkpoint</th></tr></thead><tbody>' + "".join(rows) + "</tbody></table>"
    )
    split, forms = summary["split"], summary["forms"]
    unl = {c["seed"]: B.headline(c["aggregates"]) for c in m["cells"] if c["kind"] == "unlearn"}
    attacked = sorted((c for c in m["cells"] if c["kind"] == "attack"), key=lambda c: (c["attack"], c["seed"]))
    with_fa = any(summary["fa_tasks"].values())
    under = []
    for c in attacked:
        hd = B.attack_headline(c["aggregates"])
        last = hd["last"]
        at = utility_at_worst(c, unl.get(c["seed"]), split, forms)
        named = (
            f' <span class="note">on {esc(", ".join(at["fa_tasks"]))}; after unlearning {_num(at["fa_unlearned"])}</span>'
            if at["fa_tasks"]
            else ""
        )
        fa = f"<td>{_num(at['fa'])}{named}</td>"
        under.append(
            f'<tr><td class="l">{esc(c["attack"])}</td><td>{c["seed"]}</td>'
            f"<td>{_point(hd['worst'])}</td><td>{_num(last['forget_quality_attacked_oracle'])} "
            f'<span class="note">step {esc(last["step"])}</span></td>'
            f"<td>{_point(hd['worst_forget_quality'])}</td><td>{_num(last['forget_quality'])}</td>"
            f"<td>{_point(hd['max_recovery']) if hd['max_recovery'] else UNDEFINED_RECOVERY}</td>"
            f"<td>{UNDEFINED_RECOVERY if last['recovery'] is None else _num(last['recovery'])}</td>"
            f"<td>{_num(at['recall'])}</td>{fa if with_fa else ''}</tr>"
        )
    under_table = (
        '<table class="sortable" id="under-attack"><thead><tr><th class="l">attack</th><th>seed</th>'
        "<th>worst FQ-AO (step)</th><th>last FQ-AO</th><th>worst FQ (step)</th><th>last FQ</th>"
        f"<th>max recovery (step)</th><th>last recovery</th><th>{esc(split)} recall @worst</th>"
        + ("<th>FA @worst</th>" if with_fa else "")
        + "</tr></thead><tbody>"
        + "".join(under)
        + "</tbody></table>"
    )
    controls = {
        (c["seed"], c["attack"]): c for c in m["cells"] if c["kind"] == "control" and c.get("control") == "oracle"
    }
    curves = "".join(
        f'<figure class="curve" id="curve-{esc(c["cell_id"])}"><figcaption><code>{esc(c["attack"])}</code>, seed '
        f"{c['seed']}{'' if (c['seed'], c['attack']) in controls else ' (no oracle control cell)'}</figcaption>"
        f"{curve_svg(c, controls.get((c['seed'], c['attack'])), split, forms)}</figure>"
        for c in attacked
    )
    results = (
        f"<h2>Headline</h2>{_headline_table(m, summary)}"
        f'<h2>Under attack</h2><p class="note">Per attack and seed, over the checkpoints after step 0: the worst '
        f"case (lowest forget quality against the attacked oracle, FQ-AO; lowest forget quality against the "
        f"unattacked oracle, FQ; highest recovery) with its step, and the last checkpoint; {esc(split)} recall "
        f"({esc('/'.join(forms))})"
        + (" and FA (the utility tasks scored there)" if with_fa else "")
        + f" at the worst FQ-AO's checkpoint.</p>{under_table}"
        f'<h2>Curves</h2><p class="note">One per attack cell: forget quality and {esc(split)} recall at each of '
        f"the attack's checkpoints (step 0 is the unlearned model), the oracle control (the retrain oracle put "
        f"through the same attack, same data, seed and budget) beside it; the ring marks the worst case. Hover a "
        f"point for its value.</p>{curves}"
        f'<h2>Cells</h2><p class="note">FQ: forget quality (1 = like the retrain oracle), the headline: '
        f"forms with at least 10 items and a base-oracle gap of at least 3 items, weighted by items; FQ-AO: against the oracle control at the same step; recovery: share of the "
        f"forget recall the method removed that came back; per checkpoint of the cell (attack and control: "
        f"step 0, then every evaluation).</p>{cells}"
    )
    state = '<span class="ok">verified</span>' if verdict.accepted else '<span class="bad">refused</span>'
    body = (
        f'<p><a href="index.html">← leaderboard</a></p><h1>{esc(title)}</h1>'
        f"<p>{state}; "
        f"results first, then the verification, provenance and environment.</p>"
        f'<section id="results">{results}</section>'
        f'<section id="provenance"><h2>Verification</h2>{status}<h2>Provenance</h2>{_kv(prov)}'
        f"<h2>Environment</h2>{_kv(env)}</section>"
    )
    return _page(title, body)


def build(submissions: str | Path, out: str | Path) -> dict:
    """Verify every bundle under ``submissions`` (folders with a manifest.json) and write the site.

    Returns {"listed": [bundle paths], "refused": {bundle path: [reasons]}, "files": [written]}.
    """
    from .matrix import load_matrix

    submissions, out = Path(submissions), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    listed, refused, files = [], {}, []
    by_matrix: dict[str, list[tuple[str, dict, dict]]] = {}
    for manifest_path in sorted(submissions.rglob(B.MANIFEST)):
        folder = manifest_path.parent
        rel = folder.relative_to(submissions).as_posix()
        verdict = verify(folder)
        if not verdict.accepted:
            refused[str(folder)] = verdict.reasons
            continue
        m = verdict.manifest
        matrix = load_matrix(m["matrix"]["name"])
        summary = summarise(m, matrix.headline)
        name = m["matrix"]["name"]
        short = rel[len(name) + 1 :] if rel.startswith(name + "/") else rel  # toy-small/npo -> npo
        page = f"submission-{slug(name)}-{slug(short)}.html"
        if str(out / page) in files:  # two folders with one short name: keep the whole path
            page = f"submission-{slug(name)}-{slug(rel)}.html"
        (out / page).write_text(detail_page(m, verdict, summary), encoding="utf-8")
        files.append(str(out / page))
        by_matrix.setdefault(matrix.name, []).append((page, m, summary))
        listed.append(str(folder))
    sections = []
    for name in sorted(by_matrix):
        matrix = load_matrix(name)
        sections.append(matrix_section(name, by_matrix[name], matrix.description, matrix.headline))
    intro = (
        "<h1>unlearnbench leaderboard</h1><p>Does knowledge removed from a model stay removed? Each row is one "
        "unlearning method run through a declared matrix of attacks and seeds "
        "(<code>tasks/leaderboard/&lt;matrix&gt;.yaml</code>) with <code>unlearnbench submit</code>. Only "
        "submissions that pass <code>unlearnbench leaderboard verify</code> are listed: complete matrix, allowed "
        "harness and plugin versions, control cells (every attack also run on the retrain oracle) with their "
        "provenance, per-item score hashes, and every number recomputed from the per-item scores. The headline "
        "under attack is the worst case over each attack's curve, not its last checkpoint.</p>"
    )
    if not sections:
        sections.append("<p>No verified submissions yet.</p>")
    (out / "index.html").write_text(_page("unlearnbench leaderboard", intro + "\n".join(sections)), encoding="utf-8")
    files.append(str(out / "index.html"))
    for stale in sorted(out.glob("submission-*.html")):  # pages of submissions no longer listed
        if str(stale) not in files:
            stale.unlink()
    return {"listed": listed, "refused": refused, "files": files}
