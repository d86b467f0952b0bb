"""``verify --rerun K``: re-run a sample of a bundle's attack cells here and compare the numbers.

Hashes and recomputed aggregates show that a bundle is self-consistent; they cannot show that its
per-item scores came from the method it names. Re-running does: for each sampled attack cell the
method (same name and version, installed in this environment: never code from the bundle) is run
again with the bundle's method spec on the matrix's benchmark and seed — base, oracle, unlearn and
that one attack, in a temporary store — and the unlearn and attack cells' aggregates must agree
with the bundle's within the matrix's ``tolerance`` (per metric, absolute).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from ..errors import UnlearnbenchError
from . import bundle as B
from .compare import compare_aggregates, max_difference, sample_cells
from .matrix import Matrix


def _rerun_one(manifest: dict, matrix: Matrix, cell: dict, progress) -> tuple[list[str], list[str]]:
    from ..progress import SILENT
    from ..runner import RunRequest, run
    from ..store import ResultStore

    request = RunRequest(
        method=manifest["method"]["spec"],
        attacks=[cell["attack"]],
        benchmark=matrix.benchmark,
        probes=list(matrix.probes) if matrix.probes else None,
        seed=cell["seed"],
        controls=["none"],  # as submit: bundle format 1 has no control cells
    )
    what = f"rerun seed {cell['seed']} {cell['attack']}"
    with tempfile.TemporaryDirectory(prefix="unlearnbench-rerun-") as tmp:
        with ResultStore(Path(tmp) / "rerun.sqlite") as store:
            cells = run(request, store, progress or SILENT)
            failed = [c for c in cells if c.status == "failed"]
            if failed:
                return [f"{what}: the re-run failed ({failed[0].kind}: {failed[0].reason})"], []
            frame = store.scores_frame([c.cell_id for c in cells])
    rows: dict[str, list[tuple]] = {}
    for r in frame[["cell_id", *B.SCORE_COLUMNS[1:]]].itertuples(index=False, name=None):
        rows.setdefault(r[0], []).append((r[1], int(r[2]), r[3], r[4], r[5], r[6], float(r[7])))
    entries = [{"cell_id": c.cell_id, "kind": c.kind, "seed": cell["seed"]} for c in cells]
    measured = B.all_aggregates(entries, rows)
    by_kind = {c.kind: c.cell_id for c in cells}
    bundle_unlearn = next(c for c in manifest["cells"] if c["kind"] == "unlearn" and c["seed"] == cell["seed"])
    reasons, notes = [], []
    for kind, claimed in (("unlearn", bundle_unlearn), ("attack", cell)):
        diffs = compare_aggregates(claimed["aggregates"], measured[by_kind[kind]], matrix.tolerance)
        if diffs:
            more = f" (+{len(diffs) - 1} more)" if len(diffs) > 1 else ""
            reasons.append(f"{what}: {kind} cell outside the matrix tolerance: {diffs[0]}{more}")
        same = (
            "same cell id" if by_kind[kind] == claimed["cell_id"] else "different cell id (other weights or versions)"
        )
        worst = max_difference(claimed["aggregates"], measured[by_kind[kind]])
        notes.append(
            f"{what}: {kind} cell re-run here, {same}, {'outside' if diffs else 'within'} tolerance "
            f"(largest difference {worst:.4f})"
        )
    return reasons, notes


def rerun_sample(manifest: dict, matrix: Matrix, k: int, progress=None) -> tuple[list[str], list[str]]:
    """(reasons, notes) of re-running ``k`` sampled attack cells."""
    from ..registry import METHODS

    name, version = manifest["method"]["name"], manifest["method"]["version"]
    try:
        installed = METHODS.get(name)
    except UnlearnbenchError:
        return [], [f"rerun skipped: method {name!r} is not installed here"]
    if str(getattr(installed, "version", "")) != version:
        return [], [
            f"rerun skipped: method {name!r} is installed here as version "
            f"{getattr(installed, 'version', '?')}, the bundle's is {version}"
        ]
    reasons, notes = [], []
    for cell in sample_cells(manifest, k):
        r, n = _rerun_one(manifest, matrix, cell, progress)
        reasons += r
        notes += n
    return reasons, notes
