"""``unlearnbench submit``: run one method through a leaderboard matrix and write a bundle.

Every seed of the matrix is one :func:`unlearnbench.runner.run` (base, oracle, the matrix's
controls — every attack on the oracle —, unlearn, every attack) into the results store, so finished
cells are reused (control cells are keyed without the method: one store serves every method's
submission) and an interrupted submission resumes. The bundle is then written from the store alone
(see :mod:`.bundle` for its contents). Only the matrix's public attacks are run: a held-out grid is
known to the verifier alone (:mod:`.heldout`).
"""

from __future__ import annotations

import datetime as _dt
import json
import platform
import sys
from importlib import metadata
from pathlib import Path

from ..errors import UnlearnbenchError
from ..progress import SILENT, Progress
from ..provenance import harness_provenance
from ..spec import canonical_spec
from . import bundle as B
from .matrix import Matrix

_LABEL_JSON = ("method_config", "attack_config")
ENV_PACKAGES = ("torch", "transformers", "tokenizers", "safetensors", "peft", "numpy")


def environment(device: str) -> dict:
    """Where the numbers were computed (package versions read from metadata: nothing imported)."""
    env = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "device": device,
    }
    for name in ENV_PACKAGES:
        try:
            env[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            env[name] = None
    return env


def matrix_requests(method: str, matrix: Matrix, device: str = "cpu") -> list:
    """One RunRequest per seed: the matrix's public attacks and controls (never a held-out attack)."""
    from ..runner import RunRequest

    return [
        RunRequest(
            method=method,
            attacks=list(matrix.attacks),
            benchmark=matrix.benchmark,
            probes=list(matrix.probes) if matrix.probes else None,
            seed=seed,
            device=device,
            controls=list(matrix.controls),
        )
        for seed in matrix.seeds
    ]


def run_matrix(
    method: str, matrix: Matrix, store, progress: Progress = SILENT, device: str = "cpu", argv: tuple[str, ...] = ()
) -> list:
    """Run every seed of the matrix for ``method``; returns all CellResults (seed order)."""
    from ..runner import plan, run

    requests = matrix_requests(method, matrix, device)
    for r in requests:
        plan(r)  # every spec is checked before the first model is touched
    cells = []
    for r in requests:
        cells += run(r, store, progress, argv=argv)
    failed = [c for c in cells if c.status == "failed"]
    if failed:
        c = failed[0]
        what = c.kind + (f" {c.label.get('attack')}" if c.label.get("attack") else "")
        raise UnlearnbenchError(
            f"{len(failed)} cell(s) failed, no bundle written; first: seed {c.label.get('seed')} {what}: {c.reason}"
        )
    want = len(matrix.seeds) * len(matrix.attacks) * len(matrix.controls)
    got = len({c.cell_id for c in cells if c.kind == "control"})
    if got != want:
        raise UnlearnbenchError(
            f"matrix {matrix.name!r} asks for {want} control cells ({', '.join(matrix.controls)} x attacks x seeds), "
            f"the runs made {got} (does the benchmark have a retrain oracle?); no bundle written"
        )
    return cells


def _label(cell: dict) -> dict:
    out = {}
    for k in ("model", "method", "method_config", "attack", "attack_config", "probe_suite", "seed"):
        v = cell.get(k)
        out[k] = json.loads(v) if k in _LABEL_JSON and isinstance(v, str) else v
    return out


def _meta(kind: str, meta: dict | None) -> dict:
    """The small, scalar part of a cell's run statistics (loss histories stay in the store)."""
    meta = meta or {}
    out = {k: meta[k] for k in ("checkpoint_sha256", "effective_batch_size", "seconds", "model_source") if k in meta}
    stats = meta.get("stats") or {}
    out["stats"] = {k: v for k, v in stats.items() if isinstance(v, (int, float, str, bool)) or v is None}
    return out


def write_bundle(out: str | Path, store, cells, matrix: Matrix, method_spec: str, device: str = "cpu") -> dict:
    """Write ``manifest.json`` and ``scores.csv.gz`` for ``cells`` (the runner's results)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stray = sorted(p.name for p in out.iterdir() if p.name not in (B.MANIFEST, B.SCORES, B.README))
    if stray:
        raise UnlearnbenchError(f"--out {out} holds other files ({', '.join(stray[:3])}); give an empty or new folder")
    ids = list(dict.fromkeys(c.cell_id for c in cells if c.cell_id))
    frame = store.scores_frame(ids)
    rows_by_cell: dict[str, list[tuple]] = {cid: [] for cid in ids}
    for r in frame[["cell_id", *B.SCORE_COLUMNS[1:]]].itertuples(index=False, name=None):
        rows_by_cell[r[0]].append((r[1], int(r[2]), r[3], r[4], r[5], r[6], float(r[7])))
    flat = [(cid, *row) for cid in ids for row in sorted(rows_by_cell[cid], key=lambda t: t[:6])]
    scores_sha = B.write_scores(out / B.SCORES, flat)

    entries = []
    for cid in ids:
        stored = store.get_cell(cid)
        label = _label(stored)
        entries.append(
            {
                "cell_id": cid,
                "kind": stored["kind"],
                "seed": int(stored["key"]["seed"]),
                "attack": label.get("attack"),
                "control": stored["key"].get("control") if stored["kind"] == "control" else None,
                "status": stored["status"],
                "key": stored["key"],
                "label": label,
                "meta": _meta(stored["kind"], stored["meta"]),
                "n_scores": len(rows_by_cell[cid]),
                "scores_sha256": B.scores_sha256(rows_by_cell[cid]),
            }
        )
    aggregates = B.all_aggregates(entries, rows_by_cell)
    for e in entries:
        e["aggregates"] = aggregates[e["cell_id"]]

    by_kind = {k: [e for e in entries if e["kind"] == k] for k in ("base", "oracle", "unlearn")}
    first_unlearn = by_kind["unlearn"][0]["key"]
    bench_key = first_unlearn["benchmark"]
    manifest = {
        "schema": B.SCHEMA_ID,
        "created_at": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "matrix": matrix.as_manifest([p["name"] for p in first_unlearn["probes"]]),
        "method": {
            "spec": canonical_spec(method_spec),
            "name": first_unlearn["method"]["name"],
            "version": first_unlearn["method"]["version"],
            "config": {k: v for k, v in first_unlearn["method"]["config"].items() if k != "seed"},
        },
        "benchmark": {
            "spec": matrix.benchmark,
            "name": bench_key["name"],
            "version": bench_key["version"],
            "config": bench_key["config"],
        },
        "models": {
            "name": first_unlearn["model"]["name"],
            "target_sha256": by_kind["base"][0]["key"]["model"]["sha256"],
            "oracle_sha256": by_kind["oracle"][0]["key"]["model"]["sha256"] if by_kind["oracle"] else None,
            "unlearned_sha256": {str(e["seed"]): e["meta"].get("checkpoint_sha256") for e in by_kind["unlearn"]},
        },
        "harness": harness_provenance(),
        "environment": environment(device),
        "seeds": list(matrix.seeds),
        "scores_file": {"path": B.SCORES, "sha256": scores_sha, "rows": len(flat)},
        "cells": entries,
    }
    text = json.dumps(manifest, indent=1, sort_keys=True, allow_nan=False)
    (out / B.MANIFEST).write_text(text + "\n")
    return manifest


def submit(
    method: str, matrix: Matrix, store, out: str | Path, progress: Progress = SILENT, device: str = "cpu"
) -> dict:
    cells = run_matrix(method, matrix, store, progress, device, argv=tuple(sys.argv))
    return write_bundle(out, store, cells, matrix, method, device)
