"""``verify --rerun K [--held-out FILE]``: re-run a sample of a bundle's attack cells here and compare
the numbers; run the held-out attack grid.

Hashes and recomputed aggregates show that a bundle is self-consistent; they cannot show that its
per-item scores came from the method it names. Re-running does: the method (same name and version,
installed in this environment: never code from the bundle) is run again with the bundle's method
spec on the matrix's benchmark, probes and controls, one run per seed that has a sampled cell (base,
oracle, the sampled attacks' controls, unlearn and the sampled attacks, in a temporary store), and
the unlearn, attack and control cells' aggregates must agree with the bundle's within the matrix's
``tolerance`` (per metric, absolute).

With a held-out grid (:mod:`.heldout`, already checked against the matrix's commitment) every seed
of the matrix is run, with the held-out attacks added to that seed's run; their numbers are not
compared with anything (the bundle has none) but reported: per held-out attack, the worst case over
the curve (lowest forget quality against the attacked oracle after step 0, mean ± std over seeds,
with the steps) and the last checkpoint, beside the bundle's own headline (the lowest worst case
over its public attacks).
"""

from __future__ import annotations

import math
import statistics
import tempfile
from pathlib import Path

from ..errors import UnlearnbenchError
from . import bundle as B
from .compare import compare_aggregates, max_difference, sample_cells
from .matrix import Matrix


def _stats(values) -> dict:
    vals = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    return {
        "mean": round(statistics.fmean(vals), B.DIGITS) if vals else None,
        "std": round(statistics.stdev(vals), B.DIGITS) if len(vals) > 1 else None,
        "n": len(vals),
    }


def _run_seed(manifest: dict, matrix: Matrix, seed: int, attacks: list[str], progress):
    """Run the bundle's method on one seed with ``attacks`` here; returns (entries, aggregates) or a
    failure reason."""
    from ..progress import SILENT
    from ..runner import RunRequest, run
    from ..store import ResultStore

    request = RunRequest(
        method=manifest["method"]["spec"],
        attacks=attacks,
        benchmark=matrix.benchmark,
        probes=list(matrix.probes) if matrix.probes else None,
        seed=seed,
        controls=list(matrix.controls),
    )
    with tempfile.TemporaryDirectory(prefix="unlearnbench-rerun-") as tmp:
        with ResultStore(Path(tmp) / "rerun.sqlite") as store:
            cells = run(request, store, progress or SILENT)
            failed = [c for c in cells if c.status == "failed"]
            if failed:
                c = failed[0]
                return f"the re-run failed ({c.kind} {c.label.get('attack') or ''}: {c.reason})".replace(" :", ":")
            frame = store.scores_frame([c.cell_id for c in cells])
    rows: dict[str, list[tuple]] = {}
    for r in frame[["cell_id", *B.SCORE_COLUMNS[1:]]].itertuples(index=False, name=None):
        rows.setdefault(r[0], []).append((r[1], int(r[2]), r[3], r[4], r[5], r[6], float(r[7])))
    entries = [
        {
            "cell_id": c.cell_id,
            "kind": c.kind,
            "seed": seed,
            "attack": c.label.get("attack"),
            "control": c.label.get("method") if c.kind == "control" else None,
        }
        for c in cells
    ]
    return entries, B.all_aggregates(entries, rows)


def _slot(e: dict) -> tuple:
    return (e["kind"], e.get("attack") if e["kind"] in ("attack", "control") else None, e.get("control"))


def _compare(what: str, claimed: dict, measured_id: str, measured: list[dict], matrix: Matrix):
    diffs = compare_aggregates(claimed["aggregates"], measured, matrix.tolerance)
    reasons = []
    if diffs:
        more = f" (+{len(diffs) - 1} more)" if len(diffs) > 1 else ""
        reasons.append(f"{what}: outside the matrix tolerance: {diffs[0]}{more}")
    same = "same cell id" if measured_id == claimed["cell_id"] else "different cell id (other weights or versions)"
    worst = max_difference(claimed["aggregates"], measured)
    note = f"{what}: re-run here, {same}, {'outside' if diffs else 'within'} tolerance (largest difference {worst:.4f})"
    return reasons, note


def bundle_headline(manifest: dict) -> dict:
    """The bundle's own headline: per public attack the worst case (mean ± std over seeds) and the
    lowest of those means (the robustness headline the site ranks by)."""
    per_attack = {}
    for a in manifest["matrix"]["attacks"]:
        heads = [
            B.attack_headline(c["aggregates"]) for c in manifest["cells"] if c["kind"] == "attack" and c["attack"] == a
        ]
        per_attack[a] = _stats([(h["worst"] or {}).get("value") for h in heads])
    means = [s["mean"] for s in per_attack.values() if s["mean"] is not None]
    return {"per_attack": per_attack, "worst": min(means) if means else None}


def rerun_sample(
    manifest: dict, matrix: Matrix, k: int, progress=None, held_out=None
) -> tuple[list[str], list[str], dict | None]:
    """(reasons, notes, held-out report) of re-running ``k`` sampled attack cells (with their
    unlearn and control cells) and, with ``held_out`` (a checked :class:`~.heldout.HeldOut`), the
    held-out attacks in every seed."""
    from ..registry import METHODS

    name, version = manifest["method"]["name"], manifest["method"]["version"]
    try:
        installed = METHODS.get(name)
    except UnlearnbenchError:
        return [], [f"rerun skipped: method {name!r} is not installed here"], None
    if str(getattr(installed, "version", "")) != version:
        return (
            [],
            [
                f"rerun skipped: method {name!r} is installed here as version "
                f"{getattr(installed, 'version', '?')}, the bundle's is {version}"
            ],
            None,
        )
    sampled = sample_cells(manifest, k) if k > 0 else []
    held = list(held_out.attacks) if held_out is not None else []
    seeds = sorted({c["seed"] for c in sampled} | (set(matrix.seeds) if held else set()))
    bundle_cells = {(c["seed"], *_slot(c)): c for c in manifest["cells"]}
    reasons, notes = [], []
    per_seed_held: dict[str, list[dict]] = {a: [] for a in held}
    for seed in seeds:
        mine = [c["attack"] for c in sampled if c["seed"] == seed]
        attacks = list(dict.fromkeys(mine + held))
        out = _run_seed(manifest, matrix, seed, attacks, progress)
        if isinstance(out, str):
            reasons.append(f"rerun seed {seed}: {out}")
            continue
        entries, measured = out
        by_slot = {_slot(e): e for e in entries}
        # the unlearn cell always; the sampled attack cells and their controls
        wanted = [("unlearn", None, None)]
        for a in mine:
            wanted += [("attack", a, None)] + [("control", a, ctrl) for ctrl in matrix.controls]
        for slot in wanted:
            claimed, e = bundle_cells.get((seed, *slot)), by_slot.get(slot)
            what = f"rerun seed {seed} " + " ".join(x for x in (slot[0], slot[2], slot[1]) if x) + " cell"
            if claimed is None or e is None:
                reasons.append(f"{what}: {'not in the bundle' if claimed is None else 'not produced by the re-run'}")
                continue
            r, n = _compare(what, claimed, e["cell_id"], measured[e["cell_id"]], matrix)
            reasons += r
            notes.append(n)
        for a in held:
            e = by_slot.get(("attack", a, None))
            if e is not None:
                per_seed_held[a].append({"seed": seed, **B.attack_headline(measured[e["cell_id"]])})
    report = None
    if held_out is not None:
        report = {"sha256": held_out.sha256, "attacks": {}, "bundle": bundle_headline(manifest)}
        for a in held:
            runs = per_seed_held[a]
            report["attacks"][a] = {
                "worst": _stats([(r["worst"] or {}).get("value") for r in runs]),
                "worst_steps": {str(r["seed"]): (r["worst"] or {}).get("step") for r in runs},
                "last": _stats([r["last"]["forget_quality_attacked_oracle"] for r in runs]),
                "last_step": max((r["last"]["step"] for r in runs if r["last"]["step"] is not None), default=None),
            }
        notes += held_out_lines(report)
    return reasons, notes, report


def _fmt(s: dict) -> str:
    if s["mean"] is None:
        return "n/a"
    return f"{s['mean']:.2f}" + (f" ± {s['std']:.2f}" if s["std"] is not None else "") + f" (n={s['n']})"


def held_out_lines(report: dict) -> list[str]:
    """The held-out report as notes: one line per held-out attack and one for the bundle's headline."""
    lines = []
    for a, r in report["attacks"].items():
        steps = ", ".join(f"seed {s}: step {v}" for s, v in r["worst_steps"].items())
        lines.append(
            f"HELD OUT {a}: worst forget quality vs attacked oracle {_fmt(r['worst'])} at {steps or 'no step'}; "
            f"last (step {r['last_step']}) {_fmt(r['last'])}"
        )
    b = report["bundle"]
    worst = "n/a" if b["worst"] is None else f"{b['worst']:.2f}"
    per = "; ".join(f"{a} {_fmt(s)}" for a, s in b["per_attack"].items())
    held_means = [r["worst"]["mean"] for r in report["attacks"].values() if r["worst"]["mean"] is not None]
    held_worst = "n/a" if not held_means else f"{min(held_means):.2f}"
    lines.append(
        f"HELD OUT vs bundle: lowest worst case over the held-out attacks {held_worst}; over the bundle's "
        f"public attacks {worst} ({per})"
    )
    return lines
