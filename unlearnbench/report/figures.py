"""The report's matplotlib figures (Agg backend; PNG + SVG of each figure), drawn from the frames of
:mod:`unlearnbench.report.frames`; and :func:`cell_text`, the 'mean ± std' text of a cell (also the
leaderboard site's)."""

from __future__ import annotations

import math
from pathlib import Path


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, stem: Path) -> list[str]:
    paths = []
    for ext in ("png", "svg"):
        path = Path(f"{stem}.{ext}")
        fig.savefig(path, dpi=150 if ext == "png" else None, bbox_inches="tight")
        paths.append(str(path))
    _plt().close(fig)
    return paths


def cell_text(mean: float, std: float, n: int) -> str:
    """'0.83 ± 0.04' (sample std over seeds), or '0.83' with one seed, or 'n/a'."""
    if mean is None or math.isnan(mean):
        return "n/a"
    if n and n > 1 and std is not None and not math.isnan(std):
        return f"{mean:.2f} ± {std:.2f}"
    return f"{mean:.2f}"


def heatmap(
    frame,
    stem: Path,
    title: str = "Forget quality (1 = like the oracle), mean ± std over seeds",
    xlabel: str = "attack (last checkpoint)",
    label: str = "forget quality",
) -> list[str]:
    """Methods x attacks heatmap (0..1 colour scale) from :func:`unlearnbench.report.frames.heatmap_frame`."""
    import numpy as np

    plt = _plt()
    methods = list(dict.fromkeys(frame.method))
    attacks = list(dict.fromkeys(frame.attack))
    if "no attack" in attacks:  # after unlearning first
        attacks.remove("no attack")
        attacks.insert(0, "no attack")
    grid = np.full((len(methods), len(attacks)), np.nan)
    text = [["" for _ in attacks] for _ in methods]
    for r in frame.itertuples():
        i, j = methods.index(r.method), attacks.index(r.attack)
        grid[i, j] = r.mean
        text[i][j] = cell_text(r.mean, r.std, r.n)
    fig, ax = plt.subplots(figsize=(1.2 + 1.9 * len(attacks), 1.0 + 0.6 * len(methods)))
    cmap = plt.get_cmap("viridis").with_extremes(bad="#dddddd")
    im = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=0.0, vmax=1.0, aspect="auto")
    for i in range(len(methods)):
        for j in range(len(attacks)):
            v = grid[i, j]
            colour = "black" if (not math.isnan(v) and v > 0.6) else "white" if not math.isnan(v) else "black"
            ax.text(j, i, text[i][j] or "–", ha="center", va="center", color=colour, fontsize=9)
    ax.set_xticks(range(len(attacks)), [a.replace(" [", "\n[") for a in attacks], rotation=0, fontsize=8)
    ax.set_yticks(range(len(methods)), methods, fontsize=9)
    ax.set_xlabel(xlabel)
    ax.set_title(title, fontsize=10)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label=label)
    return _save(fig, stem)


def curves(
    frame,
    stem: Path,
    ylabel: str = "forget quality",
    title: str = "Forget quality under attack (mean over seeds, band = min–max)",
    ylim: tuple[float, float] | None = (-0.02, 1.02),
    x_axes: dict | None = None,
) -> list[str]:
    """A measure vs attack step from :func:`unlearnbench.report.frames.curves_frame`; one panel per
    attack, one line per method, min-max band over seeds; with ``ctrl_*`` columns (recovery) the
    attacked oracle's min-max over methods and seeds as a grey band, its mean as a dashed line.
    ``x_axes``: {attack: (x-axis label, {step: tick label} or None)}, from
    :func:`unlearnbench.report.frames.curve_axes` (an attack it lacks: 'attack step')."""
    from matplotlib.ticker import MaxNLocator

    plt = _plt()
    attacks = list(dict.fromkeys(frame.attack))
    methods = list(dict.fromkeys(frame.method))
    colours = {m: plt.get_cmap("tab10")(k % 10) for k, m in enumerate(methods)}
    ncol = min(3, len(attacks))
    nrow = math.ceil(len(attacks) / ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, 3.2 * nrow), squeeze=False, sharey=True)
    for k, attack in enumerate(attacks):
        ax = axes[k // ncol][k % ncol]
        sub = frame[frame.attack == attack]
        if "ctrl_mean" in sub and sub["ctrl_mean"].notna().any():
            band = sub.groupby("epoch").agg(lo=("ctrl_min", "min"), hi=("ctrl_max", "max"), mid=("ctrl_mean", "mean"))
            band = band.dropna().sort_index()
            ax.fill_between(band.index, band.lo, band.hi, color="#999999", alpha=0.3, lw=0, label="attacked oracle")
            ax.plot(band.index, band.mid, color="#666666", ls="--", lw=1)
        for m in dict.fromkeys(sub.method):
            s = sub[sub.method == m].sort_values("epoch")
            ax.plot(s.epoch, s["mean"], marker="o", ms=3, color=colours[m], label=m)
            if (s.n > 1).any():
                ax.fill_between(s.epoch, s["min"], s["max"], color=colours[m], alpha=0.2, lw=0)
        ax.set_title(attack, fontsize=9)
        if ylim:
            ax.set_ylim(*ylim)
        xlabel, ticks = (x_axes or {}).get(attack, ("attack step", None))
        ax.set_xlabel(xlabel)
        if ticks:
            ax.set_xticks(list(ticks), list(ticks.values()))
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if k % ncol == 0:
            ax.set_ylabel(ylabel)
    for k in range(len(attacks), nrow * ncol):
        axes[k // ncol][k % ncol].axis("off")
    handles, labels = axes[0][0].get_legend_handles_labels()
    seen = dict(zip(labels, handles))
    for row in axes:
        for ax in row:
            for handle, label in zip(*ax.get_legend_handles_labels()):
                seen.setdefault(label, handle)
    fig.legend(
        seen.values(),
        seen.keys(),
        loc="lower center",
        ncol=min(4, len(seen)),
        fontsize=8,
        bbox_to_anchor=(0.5, -0.02 - 0.03 * math.ceil(len(seen) / 4)),
    )
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, stem)


def similarity_scatter(frame, stem: Path) -> list[str]:
    """Worst-case recovery against the attack task's similarity to the forget set, from
    :func:`unlearnbench.report.frames.similarity_frame`: one panel per similarity measure, one colour
    per method, one point per (method, attack) with the min-max over seeds as an error bar."""
    plt = _plt()
    measures = [("template_overlap", "template 3-gram overlap"), ("hidden_cosine", "hidden-state cosine")]
    methods = list(dict.fromkeys(frame.method))
    colours = {m: plt.get_cmap("tab10")(k % 10) for k, m in enumerate(methods)}
    fig, axes = plt.subplots(1, len(measures), figsize=(4.6 * len(measures), 3.6), squeeze=False, sharey=True)
    for ax, (col, name) in zip(axes[0], measures):
        for m in methods:
            s = frame[(frame.method == m) & frame[col].notna()]
            if s.empty:
                continue
            yerr = [s["mean"] - s["min"], s["max"] - s["mean"]]
            ax.errorbar(s[col], s["mean"], yerr=yerr, fmt="o", ms=4, capsize=2, color=colours[m], label=m)
            for r in s.itertuples():
                ax.annotate(r.task, (getattr(r, col), r.mean), fontsize=6, xytext=(3, 3), textcoords="offset points")
        ax.axhline(0, color="#999999", lw=0.8)
        ax.set_xlabel(f"similarity to the forget set: {name}")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("highest recovery over the curve")
    handles, labels = axes[0][0].get_legend_handles_labels()
    if handles:
        fig.legend(
            handles, labels, loc="lower center", ncol=min(4, len(labels)), fontsize=8, bbox_to_anchor=(0.5, -0.12)
        )
    fig.suptitle(
        "Recovery vs similarity of the attack's data to the forget set (mean over seeds, bar = min–max)", fontsize=10
    )
    fig.tight_layout()
    return _save(fig, stem)


def fq_utility(frame, stem: Path, base_retain: float | None = None, oracle_retain: float | None = None) -> list[str]:
    """Forget quality (y) against retain recall (x) from :func:`unlearnbench.report.frames.utility_frame`:
    one marker per method after unlearning, an arrow from it to each attack's last checkpoint (mean
    over seeds); the base model (forget quality 0) and the oracle (1) as references. Up and right is
    better; an arrow going down is an attack bringing knowledge back, one going left costs utility."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 5))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for i, method in enumerate(dict.fromkeys(frame.method)):
        rows = frame[frame.method == method]
        start = rows[rows.attack == "no attack"]
        color = colors[i % len(colors)]
        if start.empty:
            continue
        x0, y0 = float(start.retain.iloc[0]), float(start.fq.iloc[0])
        ax.scatter([x0], [y0], color=color, zorder=3, label=method)
        for r in rows[rows.attack != "no attack"].itertuples():
            if any(map(math.isnan, (x0, y0, r.retain, r.fq))):
                continue
            ax.annotate("", xy=(r.retain, r.fq), xytext=(x0, y0), arrowprops={"arrowstyle": "->", "color": color})
            ax.annotate(
                str(r.attack), (r.retain, r.fq), fontsize=7, color=color, xytext=(3, -3), textcoords="offset points"
            )
    for value, name, y in ((base_retain, "base", 0.0), (oracle_retain, "oracle", 1.0)):
        if value is not None and not math.isnan(value):
            ax.scatter([value], [y], marker="s", color="grey", zorder=2)
            ax.annotate(name, (value, y), fontsize=8, color="grey", xytext=(4, 4), textcoords="offset points")
    ax.set_xlabel("retain recall (utility)")
    ax.set_ylabel("forget quality (headline)")
    ax.set_ylim(-0.05, 1.05)
    ax.set_title("Forget quality vs utility: after unlearning (dot) and after each attack (arrow head)")
    ax.legend(fontsize=8, loc="best")
    return _save(fig, stem)


def layer_profiles(frame, stem: Path, chance: dict[str, float] | None = None, split: str = "forget") -> list[str]:
    """What each layer's hidden state still holds about the ``split`` people, from
    :func:`unlearnbench.report.layers.layer_frame`: one panel per white-box probe (logit lens,
    linear probe), x = decoder block, one line per column (base, oracle, each method after
    unlearning; mean over seeds, band = min–max); the linear probe's chance floor dashed."""
    from matplotlib.ticker import MaxNLocator

    from .layers import LAYER_METRICS

    plt = _plt()
    frame = frame[frame.split == split]
    probes = [p for p in LAYER_METRICS if p in set(frame.probe)]
    columns = list(dict.fromkeys(frame.column))
    styles = {"base": ("black", "-"), "oracle": ("#888888", "--")}
    others = [c for c in columns if c not in styles]
    colours = {c: plt.get_cmap("tab10")(k % 10) for k, c in enumerate(others)}
    fig, axes = plt.subplots(1, len(probes), figsize=(4.6 * len(probes), 3.6), squeeze=False, sharey=True)
    for ax, probe in zip(axes[0], probes):
        sub = frame[frame.probe == probe]
        for c in columns:
            s = sub[sub.column == c].sort_values("layer")
            if s.empty:
                continue
            colour, ls = styles.get(c, (colours.get(c), "-"))
            ref = c in styles  # base and oracle on top, thicker: methods often sit on them
            ax.plot(
                s.layer,
                s["mean"],
                marker="o",
                ms=3,
                ls=ls,
                color=colour,
                label=c,
                lw=2.2 if ref else 1.3,
                zorder=3 if ref else 2,
            )
            if (s.n > 1).any():
                ax.fill_between(s.layer, s["min"], s["max"], color=colour, alpha=0.15, lw=0)
        if probe == "linear" and chance and split in chance:
            ax.axhline(chance[split], color="#cc7700", ls=":", lw=1, label="chance (majority value)")
        ax.set_title(LAYER_METRICS[probe][1], fontsize=9)
        ax.set_xlabel("decoder block (output)")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylim(-0.02, 1.02)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(f"fraction of {split} items")
    seen: dict = {}
    for ax in axes[0]:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(label, handle)
    fig.legend(
        seen.values(),
        seen.keys(),
        loc="lower center",
        ncol=min(4, len(seen)),
        fontsize=8,
        bbox_to_anchor=(0.5, -0.02 - 0.05 * math.ceil(len(seen) / 4)),
    )
    fig.suptitle(f"What the hidden states hold about the {split} people, per layer (after unlearning)", fontsize=10)
    fig.tight_layout()
    return _save(fig, stem)
