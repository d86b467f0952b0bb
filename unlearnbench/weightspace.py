"""Weight-space diagnostics of unlearning: how far the weights moved, whether the unlearned model
sits in the original's basin, and whether either predicts how easily relearning undoes it.

The question is the one of "From Dormant to Deleted" (Siddiqui et al., arXiv 2505.22310): do
weight-space figures of an unlearned model tell how much of the forgotten knowledge a relearning
attack brings back? (Its abstract: resistance to relearning "can be predicted by" the L2 distance
and the linear mode connectivity between the original and the unlearned model.) With
θ_o the original (pre-unlearning) target model, θ_u an unlearned checkpoint of a stored unlearning
cell and θ_r the retrain oracle (where the benchmark has one):

* distance: ``l2`` = ‖θ_u − θ_o‖ and ``relative`` = ‖θ_u − θ_o‖ / ‖θ_o‖ over all parameters, and
  per group of tensors (``embed``, ``layer.N`` for decoder block N — ``model.layers.N.`` in Llama
  layouts, ``transformer.h.N.`` in GPT-2 ones —, ``head``, ``other``: final norms and the rest);
  ``oracle_l2`` = ‖θ_u − θ_r‖ and ``oracle_ratio`` = ‖θ_u − θ_r‖ / ‖θ_o − θ_r‖ (below 1: the
  unlearned model is nearer the oracle than the original was, i.e. it moved *towards* it, not
  merely anywhere). Streamed tensor by tensor from the safetensors files, squares accumulated in
  float64; a tensor saved once (tied embeddings) counts once.
* linear mode connectivity: along θ(α) = θ_o + α (θ_u − θ_o), α on a grid (default 0, 0.1, …, 1.2:
  a little past θ_u, where unlearning "goes on"), the mean NLL per target token of the benchmark's
  forget and retain unlearning examples, and forget / retain recall (mean ``correct`` of the ``qa``
  probe on the forget and retain splits). ``torch.lerp`` writes θ(α) into one working copy of the
  model; it is exact at both ends (θ(0) = θ_o, θ(1) = θ_u bit for bit). The loss barrier of a
  loss L, as Entezari et al. (arXiv 2110.06296) define it, is
  ``B = max over grid α in [0, 1] of L(α) − ((1 − α) L(0) + α L(1))``, the largest excess of the
  path over the straight line between its ends (0: the two models are linearly connected; it is
  never negative since the grid holds both ends; Frankle et al., arXiv 1912.05671, subtract the
  mean of the ends instead). Reported for the forget and the retain loss.
* correlation: per unlearning cell, the worst-case recovery of its relearning attack cells (the
  highest ``recovery`` over the curve after step 0, as the report's
  :func:`~unlearnbench.report.frames.worst_points` finds it; the highest over several relearning
  cells of one unlearning cell), and Spearman and Pearson correlations (scipy.stats) across cells
  between it and each weight-space figure, with n and the p-value (exact, by permutation, for up
  to 8 cells); fewer than 3 cells: no number.

Deviations: 2505.22310 studies example-level unlearning in vision classifiers, with its own
attacks; here the models are the benchmark's language models and the figures its own (its forget /
retain examples, the ``qa`` probe, the report's recovery). The barrier is on the α grid, not a
continuous maximum, and nothing is fitted. Memory: θ_o, θ_u and the working copy are held at once
(three models). Nothing is written to the results store; a θ_o or θ_r that is not a local
safetensors folder (a hub id, a GGUF file) is saved once under the cache folder.
"""

from __future__ import annotations

import copy
import json
import math
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from .errors import UnlearnbenchError
from .progress import SILENT, Progress
from .taskvec import same_tensors

#: The default α grid of the interpolation path.
ALPHAS = tuple(round(0.1 * i, 1) for i in range(13))
#: The per-cell figures correlated with the worst-case recovery.
FIGURES = ("l2", "relative", "oracle_l2", "oracle_ratio", "barrier_forget", "barrier_retain")
#: Fewer cells than this give no correlation.
MIN_CELLS = 3
#: Up to this many cells the p-values are exact (permutations), above it asymptotic.
EXACT_UP_TO = 8
SCHEMA = "unlearnbench.weightspace/1"

_BLOCK = re.compile(r"(?:^|\.)(?:layers|h|blocks)\.(\d+)\.")
_EMBED = re.compile(r"(?:^|\.)(?:embed_tokens|embed_positions|embed_in|wte|wpe|embeddings?)(?:\.|$)")
_HEAD = re.compile(r"(?:^|\.)(?:lm_head|embed_out)(?:\.|$)")


def group_of(name: str) -> str:
    """The group a tensor is counted in: ``layer.N`` (decoder block N), ``embed``, ``head`` or ``other``."""
    m = _BLOCK.search(name)
    if m:
        return f"layer.{int(m.group(1))}"
    if _EMBED.search(name):
        return "embed"
    if _HEAD.search(name):
        return "head"
    return "other"


def _group_order(group: str) -> tuple:
    if group.startswith("layer."):
        return (1, int(group.split(".")[1]))
    return ({"embed": 0, "head": 2, "other": 3}[group], 0)


@dataclass
class Distances:
    """Total and per-group distances (see the module docstring); oracle figures None without θ_r."""

    l2: float
    relative: float
    norm_base: float
    n_params: int
    oracle_l2: float | None = None
    base_oracle_l2: float | None = None
    oracle_ratio: float | None = None
    per_group: list[dict] = field(default_factory=list)  # group, n_params, l2, relative, oracle_l2


def distances(base: Path, unlearned: Path, oracle: Path | None = None) -> Distances:
    """Stream the checkpoints (folders of safetensors, or one file) tensor by tensor."""
    import torch
    from safetensors import safe_open

    paths = {"o": Path(base), "u": Path(unlearned)}
    if oracle is not None:
        paths["r"] = Path(oracle)
    index, names = same_tensors(paths, "the original model", "weight distances")
    handles: dict[Path, object] = {}

    def get(which: str, name: str):
        f = index[which][name]
        if f not in handles:
            handles[f] = safe_open(str(f), framework="pt")
        return handles[f].get_tensor(name).to(torch.float64).flatten()

    keys = ("uo", "o", "ur", "or")
    groups: dict[str, dict[str, float]] = {}
    for name in names:
        o, u = get("o", name), get("u", name)
        if o.shape != u.shape:
            raise UnlearnbenchError(f"tensor '{name}' has another shape in '{paths['u']}' than in the original")
        g = groups.setdefault(group_of(name), dict.fromkeys(keys, 0.0) | {"n": 0})
        d = u - o
        g["uo"] += float(d @ d)
        g["o"] += float(o @ o)
        g["n"] += o.numel()
        if "r" in index:
            r = get("r", name)
            d_ur, d_or = u - r, o - r
            g["ur"] += float(d_ur @ d_ur)
            g["or"] += float(d_or @ d_or)
    total = {k: sum(g[k] for g in groups.values()) for k in (*keys, "n")}
    has_r = "r" in index
    per_group = [
        {
            "group": name,
            "n_params": int(g["n"]),
            "l2": math.sqrt(g["uo"]),
            "relative": _ratio(g["uo"], g["o"]),
            "oracle_l2": math.sqrt(g["ur"]) if has_r else None,
        }
        for name, g in sorted(groups.items(), key=lambda kv: _group_order(kv[0]))
    ]
    return Distances(
        l2=math.sqrt(total["uo"]),
        relative=_ratio(total["uo"], total["o"]),
        norm_base=math.sqrt(total["o"]),
        n_params=int(total["n"]),
        oracle_l2=math.sqrt(total["ur"]) if has_r else None,
        base_oracle_l2=math.sqrt(total["or"]) if has_r else None,
        oracle_ratio=_ratio(total["ur"], total["or"]) if has_r else None,
        per_group=per_group,
    )


def _ratio(a2: float, b2: float) -> float:
    return math.sqrt(a2 / b2) if b2 > 0 else float("nan")


# -- linear mode connectivity ---------------------------------------------------------------------


def _named(model) -> dict:
    return dict(model.named_parameters())  # shared (tied) parameters appear once


def interpolation_curve(
    original,
    unlearned,
    tokenizer,
    examples: dict[str, list],
    probe,
    items: dict[str, list],
    alphas=ALPHAS,
    batch_size: int = 64,
    progress: Progress = SILENT,
) -> list[dict]:
    """Loss and recall along θ_o + α (θ_u − θ_o), one row per α (see the module docstring).

    ``examples``: split -> :class:`~unlearnbench.data.types.Example` list (forget, retain), scored
    as mean NLL per target token (``<split>_loss``); ``items``: split -> the probe's items, scored
    by ``probe.score`` as mean ``correct`` (``<split>_recall``). Neither model is modified.
    """
    import torch

    from .inference import score_targets

    p_o, p_u = _named(original), _named(unlearned)
    if set(p_o) != set(p_u) or any(p_o[k].shape != p_u[k].shape for k in p_o):
        raise UnlearnbenchError("the unlearned model has other parameters than the original: no interpolation path")
    work = copy.deepcopy(original).eval()
    p_w = _named(work)
    rows = []
    with progress.task("interpolate θ_o → θ_u", len(alphas)) as bar:
        for a in alphas:
            with torch.no_grad():
                for k, w in p_w.items():
                    torch.lerp(p_o[k].to(w.dtype), p_u[k].to(w.device, w.dtype), float(a), out=w.data)
            row = {"alpha": float(a)}
            for split, exs in examples.items():
                scores = score_targets(work, tokenizer, [(e.prompt, e.target) for e in exs], batch_size)
                n = sum(s.n_tokens for s in scores)
                row[f"{split}_loss"] = sum(s.sum_nll for s in scores) / n if n else float("nan")
            for split, its in items.items():
                scored = probe.score(work, tokenizer, its) if its else []
                row[f"{split}_recall"] = sum(s["correct"] for s in scored) / len(scored) if scored else float("nan")
            rows.append(row)
            bar.advance()
    del work
    return rows


def barrier(curve: list[dict], column: str) -> float:
    """max over α in [0, 1] of L(α) − ((1 − α) L(0) + α L(1)) on the curve's grid (NaN without both ends)."""
    at = {round(r["alpha"], 9): r[column] for r in curve}
    if 0.0 not in at or 1.0 not in at:
        return float("nan")
    l0, l1 = at[0.0], at[1.0]
    return max(v - ((1 - a) * l0 + a * l1) for a, v in at.items() if 0.0 <= a <= 1.0)


def parse_alphas(text: str) -> tuple[float, ...]:
    """'0,0.5,1' -> (0.0, 0.5, 1.0); the grid must hold 0 and 1 (the barrier's ends)."""
    try:
        alphas = tuple(sorted({round(float(t), 9) for t in text.split(",") if t.strip()}))
    except ValueError:
        raise UnlearnbenchError(f"--alphas {text!r}: comma-separated numbers, e.g. 0,0.5,1,1.2") from None
    if not all(math.isfinite(a) for a in alphas) or 0.0 not in alphas or 1.0 not in alphas:
        raise UnlearnbenchError(f"--alphas {text!r}: finite numbers including 0 and 1 (the ends of the barrier)")
    return alphas


# -- correlation ----------------------------------------------------------------------------------


def correlations(rows: list[dict], target: str = "worst_recovery", figures=FIGURES) -> list[dict]:
    """Spearman and Pearson of each figure with ``target`` across rows where both are finite.

    p-values are two-sided; for n <= :data:`EXACT_UP_TO` they are exact (all n! pairings, scipy's
    permutation test: the t approximation is far off for a handful of cells, e.g. it gives p = 0
    for a perfect rank order of 3 cells, whose exact p is 1/3), above it scipy's asymptotic ones.
    """
    import numpy as np
    from scipy import stats

    def rho(x, y):
        return stats.spearmanr(x, y).statistic

    out = []
    for fig in figures:
        pairs = [(r[fig], r[target]) for r in rows if _finite(r.get(fig)) and _finite(r.get(target))]
        row = {"figure": fig, "target": target, "n": len(pairs)}
        row |= dict.fromkeys(("spearman", "spearman_p", "pearson", "pearson_p", "p_method"))
        xs, ys = [p[0] for p in pairs], [p[1] for p in pairs]
        if len(pairs) < MIN_CELLS:
            row["note"] = "too few cells"
        elif len(set(xs)) < 2 or len(set(ys)) < 2:
            row["note"] = "constant"
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # scipy's small-sample warnings: n and p_method say it
                if len(pairs) <= EXACT_UP_TO:
                    s = stats.permutation_test((xs, ys), rho, permutation_type="pairings", n_resamples=np.inf)
                    p = stats.pearsonr(xs, ys, method=stats.PermutationMethod(n_resamples=np.inf))
                    method = "exact permutation"
                else:
                    s, p = stats.spearmanr(xs, ys), stats.pearsonr(xs, ys)
                    method = "asymptotic"
            row |= {
                "spearman": float(s.statistic),
                "spearman_p": float(s.pvalue),
                "pearson": float(p.statistic),
                "pearson_p": float(p.pvalue),
                "p_method": method,
                "note": "",
            }
        out.append(row)
    return out


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def worst_recovery(store, attack: str = "relearn") -> dict[str, dict]:
    """Unlearning cell id -> {'worst_recovery', 'min_fq_attacked', 'attacks'} over its finished
    ``attack`` cells, from the report's frames (:func:`~unlearnbench.report.frames.collect`)."""
    from .report.frames import collect, worst_points

    parent = {
        c["cell_id"]: c["key"].get("unlearn_cell")
        for c in store.cells(status="finished")
        if c["kind"] == "attack" and (c["key"].get("attack") or {}).get("name") == attack
    }
    if not parent:
        return {}
    fq = collect(store).fq
    out: dict[str, dict] = {}
    for measure, col, better in (("recovery", "worst_recovery", max), ("fq_ao", "min_fq_attacked", min)):
        for r in worst_points(fq, measure).itertuples():
            if r.cell_id in parent:
                d = out.setdefault(parent[r.cell_id], {"worst_recovery": None, "min_fq_attacked": None, "attacks": []})
                v = float(getattr(r, measure))
                d[col] = v if d[col] is None else better(d[col], v)
                if r.attack not in d["attacks"]:
                    d["attacks"].append(r.attack)
    return out


# -- from a results store ------------------------------------------------------------------------


def _weights_dir(loaded, name: str) -> Path:
    """A local safetensors folder of ``loaded``: its own source, else saved once under the cache."""
    from .cache import cache_dir
    from .models import save_model_atomically

    src = Path(loaded.source)
    if src.is_dir() and list(src.glob("*.safetensors")):
        return src
    out = cache_dir() / "weightspace" / name
    if not (out / "config.json").exists():
        save_model_atomically(loaded.model, loaded.tokenizer, out.parent, lambda _sha: name)
    return out


def _benchmark(store, benchmark: str | None, unlearn_cells: list[dict]):
    """The benchmark plugin: from ``benchmark`` (a spec), else rebuilt from the one benchmark key
    the store's unlearning cells share."""
    from .registry import BENCHMARKS
    from .runner import resolve

    if benchmark:
        return resolve(BENCHMARKS, benchmark)
    keys = {json.dumps(c["key"].get("benchmark"), sort_keys=True) for c in unlearn_cells}
    if len(keys) > 1:
        raise UnlearnbenchError("the store holds unlearning cells of several benchmarks: choose one with --benchmark")
    key = json.loads(keys.pop())
    return resolve(BENCHMARKS, key["name"] + (f":{key['arg']}" if key.get("arg") else ""), key.get("config") or {})


def _label(key: dict) -> str:
    """'toy,seed=0,size=micro': a benchmark key as a spec (options that are set)."""
    opts = [f"{k}={v}" for k, v in sorted((key.get("config") or {}).items()) if v not in (None, "", False)]
    return ",".join([key["name"] + (f":{key['arg']}" if key.get("arg") else ""), *opts])


def analyze_store(
    store,
    benchmark: str | None = None,
    method: str | None = None,
    cell: str | None = None,
    alphas=ALPHAS,
    attack: str = "relearn",
    probe: str = "qa",
    progress: Progress = SILENT,
    device: str = "cpu",
) -> dict:
    """Weight-space figures of every finished unlearning cell of the benchmark in ``store`` (or the
    one ``cell``, an id or its prefix; or those of ``method``) and their correlation with the
    worst-case recovery of the cells' ``attack`` cells. Reads the store, never writes it."""
    import time

    from transformers.utils import logging as hf_logging

    from .data.types import declared
    from .registry import PROBES
    from .runner import load_unlearned, resolve, unlearned_path

    t0 = time.time()
    hf_logging.disable_progress_bar()
    all_unlearn = [c for c in store.cells(status="finished") if c["kind"] == "unlearn"]
    if not all_unlearn:
        raise UnlearnbenchError("no finished unlearning cell in the store: run or sweep first")
    if cell:
        all_unlearn = [c for c in all_unlearn if c["cell_id"].startswith(cell)]
        if not all_unlearn:
            raise UnlearnbenchError(f"no finished unlearning cell '{cell}' in the store")
        if len(all_unlearn) > 1:
            raise UnlearnbenchError(f"cell '{cell}' is ambiguous: {len(all_unlearn)} unlearning cells start with it")
    bench = _benchmark(store, benchmark, all_unlearn)
    chosen = []
    for c in all_unlearn:
        if c["key"].get("benchmark") != bench.key():
            continue
        label = c.get("method") or ""
        if method and label != method and label.split(",")[0] != method:
            continue
        chosen.append(c)
    if not chosen:
        raise UnlearnbenchError(
            f"no finished unlearning cell for benchmark '{_label(bench.key())}'"
            + (f" and method '{method}'" if method else "")
            + " in the store: run or sweep first"
        )
    b = bench.obj
    target = b.load("target", device, progress)
    for c in chosen:
        sha = (c["key"].get("model") or {}).get("sha256")
        if sha and target.weights_sha256 and sha != target.weights_sha256:
            raise UnlearnbenchError(
                f"cell {c['cell_id'][:12]} was unlearned from other weights than the benchmark's target model now"
            )
    oracle = b.load("oracle", device, progress) if declared(b, "has_oracle") else None
    base_dir = _weights_dir(target, f"base-{target.weights_sha256[:16]}")
    oracle_dir = _weights_dir(oracle, f"oracle-{oracle.weights_sha256[:16]}") if oracle is not None else None
    del oracle
    data = b.unlearn_data(target.tokenizer)
    examples = {"forget": list(data.forget), "retain": list(data.retain)}
    recovery = worst_recovery(store, attack)
    rows = []
    for c in chosen:
        stored = {p["name"]: p.get("config") or {} for p in c["key"].get("probes") or []}
        pr = resolve(PROBES, probe, stored.get(probe))
        items = {s: pr.obj.items(b, s) for s in ("forget", "retain") if s in b.splits}
        dist = distances(base_dir, unlearned_path(c["cell_id"], store), oracle_dir)
        unlearned = load_unlearned(c["cell_id"], store, device)
        curve = interpolation_curve(
            target.model, unlearned, target.tokenizer, examples, pr.obj, items, alphas, progress=progress
        )
        del unlearned
        rec = recovery.get(c["cell_id"], {})
        rows.append(
            {
                "method": c.get("method"),
                "seed": c["key"].get("seed", 0),
                "cell_id": c["cell_id"],
                "l2": dist.l2,
                "relative": dist.relative,
                "norm_base": dist.norm_base,
                "n_params": dist.n_params,
                "oracle_l2": dist.oracle_l2,
                "base_oracle_l2": dist.base_oracle_l2,
                "oracle_ratio": dist.oracle_ratio,
                "barrier_forget": barrier(curve, "forget_loss"),
                "barrier_retain": barrier(curve, "retain_loss"),
                "worst_recovery": rec.get("worst_recovery"),
                "min_fq_attacked": rec.get("min_fq_attacked"),
                "recovery_attacks": rec.get("attacks", []),
                "per_layer": dist.per_group,
                "lmc": curve,
            }
        )
    return {
        "schema": SCHEMA,
        "benchmark": _label(bench.key()),
        "probe": probe,
        "attack": attack,
        "alphas": [float(a) for a in alphas],
        "rows": rows,
        "correlations": correlations(rows),
        "seconds": round(time.time() - t0, 1),
    }
