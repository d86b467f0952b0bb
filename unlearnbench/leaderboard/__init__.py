"""The leaderboard: declared matrices, submission bundles, their verification and a static site.

* :mod:`.matrix` — a submission matrix per benchmark (``tasks/leaderboard/<name>.yaml``): benchmark,
  attacks, seeds, probes, the harness/plugin versions whose numbers are comparable, the re-run
  tolerance;
* :mod:`.bundle` — what a bundle holds and how its numbers are derived: ``manifest.json`` (schema
  ``leaderboard/schema/submission-1.json``) and ``scores.csv.gz`` (every per-item score), per-cell
  score hashes, aggregates recomputable from the scores;
* :mod:`.submit` — run a method through the matrix (every seed) and write a bundle;
* :mod:`.verify` — check a bundle (schema, files, completeness, hashes, aggregates, versions,
  optionally re-run a sample of cells); it reads JSON and CSV only and never imports code from it;
* :mod:`.site` — render verified bundles as a static HTML site (works from ``file://``).

Nothing here imports torch at module level; only :mod:`.submit` and ``verify --rerun`` run models.
"""
