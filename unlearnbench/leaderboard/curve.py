"""The per-cell curve of a submission's detail page: one attack cell's forget quality and retain
recall against the attack's checkpoints, its oracle control cell's curve beside it, as inline SVG.

Two panels share the x axis, the attack's checkpoints: forget quality (against the attacked oracle,
FQ-AO, the leaderboard's headline, and against the unattacked oracle, FQ; the oracle control's own
FQ) and retain recall (the attacked model's and the oracle control's). Every number is one the
bundle's aggregates hold (verification recomputed them from the per-item scores); the worst case
over the curve (:func:`unlearnbench.leaderboard.bundle.attack_headline`) is ringed. The x axis's unit
is read from the checkpoint names the attack gave its evaluations: ``epoch=N`` (fine-tuning by
epochs), ``step=N`` (optimiser steps: relearning, and fine-tuning given ``steps``/``eval_every``),
and for ``quantize`` before/after. No script, no external file: the page works from ``file://``.
"""

from __future__ import annotations

import html
import re

from ..errors import UnlearnbenchError
from ..spec import parse_spec
from . import bundle as B

METHOD, CONTROL = "#1f77b4", "#d95f02"  # the attacked model, the oracle control
PANEL_W, PANEL_H, LEFT, TOP, GAP = 300, 170, 52, 28, 40
_NUMBERED = {"epoch": re.compile(r"epoch=(\d+)"), "optimiser step": re.compile(r"step=(\d+)")}


def _esc(x) -> str:
    return html.escape(str(x), quote=True)


def x_axis(attack: str, aggregates: list[dict]) -> tuple[str, list[tuple[float, str]]]:
    """The x axis of an attack cell's curve: (its label, one (position, tick label) per checkpoint).

    ``epoch=N`` / ``step=N`` checkpoints are placed at N ("epoch" / "optimiser step"); a
    ``quantize`` attack's two checkpoints are "before" and "after" (quantization); any other
    attack's checkpoints are spaced evenly under their names."""
    names = [a["checkpoint"] for a in aggregates]
    for unit, pattern in _NUMBERED.items():
        if names and all(pattern.fullmatch(n) for n in names):
            return unit, [(float(pattern.fullmatch(n).group(1)), pattern.fullmatch(n).group(1)) for n in names]
    try:
        kind = parse_spec(attack).name
    except UnlearnbenchError:
        kind = None
    if kind == "quantize":
        return "quantization", [(float(i), "before" if a["step"] == 0 else "after") for i, a in enumerate(aggregates)]
    return "checkpoint", [(float(i), n) for i, n in enumerate(names)]


def _panel(x0: float, title: str, ylabel: str, xlabel: str, ticks, lines, rings) -> list[str]:
    """One panel at x offset ``x0``: 0..1 y axis, the ticks' x axis, ``lines`` = (label, colour, dash,
    values per tick), ``rings`` = (tick index, value, tip) of points to mark."""
    out = [
        f'<rect x="{x0}" y="{TOP}" width="{PANEL_W}" height="{PANEL_H}" fill="none" stroke="#999"/>',
        f'<text x="{x0 + PANEL_W / 2}" y="{TOP - 10}" text-anchor="middle" font-weight="600">{_esc(title)}</text>',
    ]
    for k in range(5):
        v = k / 4
        y = TOP + PANEL_H * (1 - v)
        out.append(f'<line x1="{x0}" y1="{y}" x2="{x0 + PANEL_W}" y2="{y}" stroke="#eee"/>')
        out.append(f'<text x="{x0 - 5}" y="{y + 4}" text-anchor="end">{v:.2f}</text>')
    out.append(
        f'<text transform="translate({x0 - 38},{TOP + PANEL_H / 2}) rotate(-90)" text-anchor="middle">'
        f"{_esc(ylabel)}</text>"
    )
    positions = [p for p, _ in ticks]
    lo, hi = (min(positions), max(positions)) if positions else (0.0, 1.0)

    def px(p: float) -> float:
        return x0 + PANEL_W / 2 if hi == lo else x0 + 12 + (PANEL_W - 24) * (p - lo) / (hi - lo)

    def py(v: float) -> float:
        return TOP + PANEL_H * (1 - min(1.0, max(0.0, v)))

    for p, label in ticks:
        out.append(f'<line x1="{px(p)}" y1="{TOP + PANEL_H}" x2="{px(p)}" y2="{TOP + PANEL_H + 4}" stroke="#999"/>')
        out.append(f'<text x="{px(p)}" y="{TOP + PANEL_H + 16}" text-anchor="middle">{_esc(label)}</text>')
    out.append(
        f'<text class="xlabel" x="{x0 + PANEL_W / 2}" y="{TOP + PANEL_H + 32}" text-anchor="middle">'
        f"{_esc(xlabel)}</text>"
    )
    for label, colour, dash, values in lines:
        runs, run = [], []
        for (p, tick), v in zip(ticks, values):
            if v is None:  # a missing value breaks the line
                if run:
                    runs.append(run)
                run = []
            else:
                run.append((px(p), py(v), f"{label} at {xlabel} {tick}: {v:.2f}"))
        runs += [run] if run else []
        dashed = f' stroke-dasharray="{dash}"' if dash else ""
        for r in runs:
            pts = " ".join(f"{x:.1f},{y:.1f}" for x, y, _ in r)
            out.append(f'<polyline points="{pts}" fill="none" stroke="{colour}" stroke-width="2"{dashed}/>')
            out += [
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}"><title>{_esc(tip)}</title></circle>'
                for x, y, tip in r
            ]
    for i, v, tip in rings:
        out.append(
            f'<circle cx="{px(ticks[i][0]):.1f}" cy="{py(v):.1f}" r="7" fill="none" stroke="#000" '
            f'stroke-width="1.5"><title>{_esc(tip)}</title></circle>'
        )
    return out


def curve_svg(cell: dict, control: dict | None, split: str, forms: list[str]) -> str:
    """The curve of one attack cell (a manifest entry) and of its oracle control cell (None when the
    bundle has none): forget quality and ``split`` recall over ``forms`` per checkpoint."""
    aggs = cell["aggregates"]
    xlabel, ticks = x_axis(cell["attack"] or "", aggs)
    steps = [a["step"] for a in aggs]
    by_step = {a["step"]: a for a in (control or {}).get("aggregates", [])}
    ctrl = [by_step.get(s) for s in steps]  # the control at the attacked model's checkpoints

    def fq(metric):
        return lambda a: None if a is None else (a.get(metric) or {}).get("mean")

    def recall(a):
        return None if a is None else B.utility(a, split, forms)["recall"]

    fq_lines = [
        (
            "attacked model, FQ-AO (vs attacked oracle)",
            METHOD,
            "",
            [fq("forget_quality_attacked_oracle")(a) for a in aggs],
        ),
        ("attacked model, FQ (vs oracle)", METHOD, "5,3", [fq("forget_quality")(a) for a in aggs]),
    ]
    rec_lines = [(f"attacked model, {split} recall", METHOD, "", [recall(a) for a in aggs])]
    if control is not None:
        fq_lines.append(("oracle control, FQ (vs oracle)", CONTROL, "5,3", [fq("forget_quality")(a) for a in ctrl]))
        rec_lines.append((f"oracle control, {split} recall", CONTROL, "", [recall(a) for a in ctrl]))
    worst = B.attack_headline(aggs)["worst"]
    rings = []
    if worst is not None:
        i = next(n for n, a in enumerate(aggs) if (a["step"], a["checkpoint"]) == (worst["step"], worst["checkpoint"]))
        rings.append((i, worst["value"], f"worst case over the curve: FQ-AO {worst['value']:.2f} at {ticks[i][1]}"))
    w = LEFT + PANEL_W + GAP + LEFT + PANEL_W + 10
    legend_y = TOP + PANEL_H + 52
    h = legend_y + 18 * max(len(fq_lines) + len(rings), len(rec_lines)) + 4
    title = f"{cell['attack']} seed {cell['seed']}"
    right = LEFT * 2 + PANEL_W + GAP
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="curve" width="{w}" height="{h}" viewBox="0 0 {w} {h}" '
        f'role="img" aria-label="curve: {_esc(title)}" font-family="sans-serif" font-size="11">',
        f"<title>{_esc(title)}: forget quality and {_esc(split)} recall per checkpoint</title>",
    ]
    out += _panel(LEFT, "forget quality", "forget quality (1 = like the oracle)", xlabel, ticks, fq_lines, rings)
    out += _panel(right, f"{split} recall", f"{split} recall ({'/'.join(forms)})", xlabel, ticks, rec_lines, [])
    for x, lines in ((LEFT, fq_lines), (right, rec_lines)):  # each panel's legend under it
        for n, (label, colour, dash, _values) in enumerate(lines):
            y = legend_y + 18 * n
            dashed = f' stroke-dasharray="{dash}"' if dash else ""
            out.append(f'<line x1="{x}" y1="{y}" x2="{x + 24}" y2="{y}" stroke="{colour}" stroke-width="2"{dashed}/>')
            out.append(f'<text x="{x + 30}" y="{y + 4}">{_esc(label)}</text>')
    if rings:
        y = legend_y + 18 * len(fq_lines)
        out.append(f'<circle cx="{LEFT + 12}" cy="{y}" r="6" fill="none" stroke="#000" stroke-width="1.5"/>')
        out.append(f'<text x="{LEFT + 30}" y="{y + 4}">worst case over the curve (lowest FQ-AO after step 0)</text>')
    out.append("</svg>")
    return "\n".join(out)
