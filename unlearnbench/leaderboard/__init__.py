"""The leaderboard: declared matrices, submission bundles, their verification and a static site.

* :mod:`.matrix` — a submission matrix per benchmark (``tasks/leaderboard/<name>.yaml``): benchmark,
  attacks, seeds, controls, probes, an optional held-out grid commitment, the harness/plugin
  versions whose numbers are comparable, the re-run tolerance;
* :mod:`.bundle` — what a bundle holds and how its numbers are derived: ``manifest.json`` (format 2,
  schema ``leaderboard/schema/submission-2.json``) and ``scores.csv.gz`` (every per-item score),
  per-cell score hashes, aggregates recomputable from the scores (forget quality against the
  attacked oracle and recovery included), the worst-case headline;
* :mod:`.submit` — run a method through the matrix (every seed, with the matrix's controls) and
  write a bundle;
* :mod:`.verify` — check a bundle (format, schema, files, completeness with control cells, hashes,
  aggregates, versions, provenance; optionally re-run a sample of cells and the held-out grid); it
  reads JSON and CSV only and never imports code from it;
* :mod:`.rerun` — ``verify --rerun K [--held-out FILE]``: re-run cells and the held-out attacks here;
* :mod:`.heldout` — the held-out grid's commit-and-reveal (file format, hash, check);
* :mod:`.site` — render verified bundles as a static HTML site (works from ``file://``);
* :mod:`.curve` — the site's per-cell curve: an attack cell's forget quality and retain recall per
  checkpoint, its oracle control beside it, as inline SVG.

Nothing here imports torch at module level; only :mod:`.submit` and ``verify --rerun`` run models.
"""
