"""Re-derive a bundle's aggregates from its own per-item scores, for maintainers: when the definition
of an aggregate changes (issue 13: the headline forget quality, :mod:`unlearnbench.headline`), the
committed bundles' claimed numbers no longer match what ``verify`` recomputes, although their scores
are untouched.

:func:`reaggregate` reads ``scores.csv.gz`` (checking its sha256 against the manifest first, and each
cell's canonical-listing hash), recomputes every cell's ``aggregates`` with
:func:`~unlearnbench.leaderboard.bundle.all_aggregates` and rewrites ``manifest.json`` as ``submit``
writes it. Nothing else in the manifest changes: provenance still names the harness commit that
*ran* the cells; say in the commit that re-aggregates which commit's code derived the numbers.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import UnlearnbenchError
from . import bundle as B


def reaggregate(folder: str | Path) -> int:
    """Rewrite the aggregates of the bundle in ``folder``; returns how many cells' aggregates changed."""
    folder = Path(folder)
    manifest_path = folder / B.MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise UnlearnbenchError(f"{folder}: no readable {B.MANIFEST} ({e})") from None
    scores_path = folder / B.SCORES
    if B.sha256_file(scores_path) != manifest["scores_file"]["sha256"]:
        raise UnlearnbenchError(f"{folder}: {B.SCORES} does not match the manifest's sha256; not re-aggregated")
    scores = B.read_scores(scores_path, max_rows=manifest["scores_file"]["rows"])
    for c in manifest["cells"]:
        if B.scores_sha256(scores.get(c["cell_id"], [])) != c["scores_sha256"]:
            raise UnlearnbenchError(f"{folder}: cell {c['cell_id']}: scores do not match its scores_sha256")
    fresh = B.all_aggregates(manifest["cells"], scores)
    changed = 0
    for c in manifest["cells"]:
        if c["aggregates"] != fresh[c["cell_id"]]:
            c["aggregates"] = fresh[c["cell_id"]]
            changed += 1
    text = json.dumps(manifest, indent=1, sort_keys=True, allow_nan=False)
    manifest_path.write_text(text + "\n")
    return changed
