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


def heatmap(frame, stem: Path) -> list[str]:
    """Methods x attacks forget-quality heatmap from :func:`unlearnbench.report.frames.heatmap_frame`."""
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
    ax.set_xlabel("attack (last epoch)")
    ax.set_title("Forget quality (1 = like the oracle), mean ± std over seeds")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="forget quality")
    return _save(fig, stem)


def curves(frame, stem: Path) -> list[str]:
    """Forget quality vs attack epoch from :func:`unlearnbench.report.frames.curves_frame`; one panel per
    attack, one line per method, min-max band."""
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
        for m in dict.fromkeys(sub.method):
            s = sub[sub.method == m].sort_values("epoch")
            ax.plot(s.epoch, s["mean"], marker="o", ms=3, color=colours[m], label=m)
            if (s.n > 1).any():
                ax.fill_between(s.epoch, s["min"], s["max"], color=colours[m], alpha=0.2, lw=0)
        ax.set_title(attack, fontsize=9)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("attack epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if k % ncol == 0:
            ax.set_ylabel("forget quality")
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
    fig.suptitle("Forget quality under attack (mean over seeds, band = min–max)", fontsize=10)
    fig.tight_layout()
    return _save(fig, stem)
