"""What a submission bundle holds, and how its numbers are derived from the per-item scores.

A bundle is a folder with exactly these files:

``manifest.json``   the submission (schema ``leaderboard/schema/submission-1.json``): method,
                    benchmark, matrix, model and checkpoint sha256s, harness version and git commit,
                    environment, and one entry per cell (id, key, labels, score hash, aggregates);
``scores.csv.gz``   every per-item score of every cell, one CSV row each
                    (``cell_id,checkpoint,step,split,form,item_id,metric,value``; an empty value is a
                    NaN), gzip with a zero timestamp so equal scores give equal bytes;
``README.md``       optional free text from the submitter (never interpreted).

Per cell, ``scores_sha256`` is the sha256 of the cell's *canonical listing*: its rows sorted by
(checkpoint, step, split, form, item_id, metric), each written as the compact JSON array
``[checkpoint, step, split, form, item_id, metric, value]`` (value: the float's shortest round-trip
decimal, ``null`` for NaN), joined by newlines. A reader can recompute it from the CSV alone.

Aggregates per checkpoint of a cell (what the leaderboard shows):

* ``recall["split/form"]``: mean of the ``correct`` metric over the items (NaN items skipped), as
  in :func:`unlearnbench.report.run_summary`;
* ``task_accuracy[task]``: mean ``correct`` on the task split (FA);
* ``forget_quality``: :func:`unlearnbench.metrics.forget_quality` per form on the forget split,
  against the base and oracle cells of the same seed, and its mean over the informative forms.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import math
from collections import defaultdict
from pathlib import Path

from ..metrics import forget_quality

SCHEMA_ID = "unlearnbench.submission/1"
MANIFEST = "manifest.json"
SCORES = "scores.csv.gz"
README = "README.md"
SCORE_COLUMNS = ("cell_id", "checkpoint", "step", "split", "form", "item_id", "metric", "value")
HEADLINE = "correct"
DIGITS = 6  # aggregates are rounded to this many decimals; verification compares within 1e-6


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _value_json(value: float) -> str:
    return "null" if value is None or math.isnan(value) else json.dumps(float(value))


def scores_sha256(rows) -> str:
    """sha256 of the canonical listing of one cell's rows (tuples without the cell id)."""
    lines = sorted(rows, key=lambda r: (r[0], r[1], r[2], r[3], r[4], r[5]))
    text = "\n".join(
        "["
        + ",".join(
            [
                json.dumps(str(c)),
                str(int(s)),
                json.dumps(str(sp)),
                json.dumps(str(f)),
                json.dumps(str(i)),
                json.dumps(str(m)),
                _value_json(v),
            ]
        )
        + "]"
        for c, s, sp, f, i, m, v in lines
    )
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def write_scores(path: Path, rows) -> str:
    """Write ``(cell_id, checkpoint, step, split, form, item_id, metric, value)`` rows; returns the
    file's sha256."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(SCORE_COLUMNS)
    for cid, c, s, sp, f, i, m, v in rows:
        w.writerow([cid, c, int(s), sp, f, i, m, "" if v is None or math.isnan(v) else repr(float(v))])
    with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
        gz.write(buf.getvalue().encode("utf-8"))
    return sha256_file(path)


def read_scores(path: Path) -> dict[str, list[tuple]]:
    """cell_id -> rows ``(checkpoint, step, split, form, item_id, metric, value)``.

    Raises ValueError with one line when the file is not the expected gzip CSV.
    """
    try:
        with gzip.open(path, "rt", encoding="utf-8", newline="") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if tuple(header or ()) != SCORE_COLUMNS:
                raise ValueError(f"header is {header}, expected {list(SCORE_COLUMNS)}")
            out: dict[str, list[tuple]] = defaultdict(list)
            for n, row in enumerate(reader, start=2):
                if len(row) != len(SCORE_COLUMNS):
                    raise ValueError(f"line {n} has {len(row)} fields, expected {len(SCORE_COLUMNS)}")
                cid, c, s, sp, f_, i, m, v = row
                out[cid].append((c, int(s), sp, f_, i, m, float(v) if v != "" else float("nan")))
    except (OSError, EOFError, UnicodeDecodeError, csv.Error, gzip.BadGzipFile) as e:
        raise ValueError(f"{type(e).__name__}: {e}") from None
    except ValueError as e:
        raise ValueError(str(e).splitlines()[0] if str(e) else "bad number") from None
    return dict(out)


# -- aggregates ----------------------------------------------------------------------------------


def _mean(values: list[float]) -> float | None:
    vals = [v for v in values if not math.isnan(v)]
    return sum(vals) / len(vals) if vals else None


def _round(x: float | None) -> float | None:
    return None if x is None or math.isnan(x) else round(float(x), DIGITS)


def checkpoint_means(rows) -> list[dict]:
    """Per checkpoint (ordered by step): recall per split/form and FA per task, unrounded."""
    groups: dict[tuple, dict[tuple, list[float]]] = defaultdict(lambda: defaultdict(list))
    for c, s, sp, f, _i, m, v in rows:
        if m == HEADLINE:
            groups[(int(s), c)][(sp, f)].append(v)
    out = []
    for (step, checkpoint), by in sorted(groups.items()):
        recall, fa = {}, {}
        for (split, form), values in sorted(by.items()):
            (fa if split == "task" else recall)[form if split == "task" else f"{split}/{form}"] = _mean(values)
        out.append({"checkpoint": checkpoint, "step": step, "recall": recall, "task_accuracy": fa})
    return out


def cell_aggregates(rows, reference: dict | None) -> list[dict]:
    """Aggregates of one cell; ``reference`` = {"base": {form: recall}, "oracle": {...}} on the
    forget split of the same seed (None: no forget quality)."""
    out = []
    for cp in checkpoint_means(rows):
        fq = {"mean": None, "per_form": {}}
        if reference and reference.get("base") and reference.get("oracle"):
            base, oracle = reference["base"], reference["oracle"]
            per_form = {}
            for key, u in cp["recall"].items():
                split, form = key.split("/", 1)
                if split != "forget" or u is None or base.get(form) is None or oracle.get(form) is None:
                    continue
                per_form[form] = forget_quality(u, base[form], oracle[form])
            vals = [v for v in per_form.values() if not math.isnan(v)]
            fq = {
                "mean": _round(sum(vals) / len(vals)) if vals else None,
                "per_form": {k: _round(v) for k, v in per_form.items()},
            }
        out.append(
            {
                "checkpoint": cp["checkpoint"],
                "step": cp["step"],
                "recall": {k: _round(v) for k, v in cp["recall"].items()},
                "task_accuracy": {k: _round(v) for k, v in cp["task_accuracy"].items()},
                "forget_quality": fq,
            }
        )
    return out


def forget_recall(rows) -> dict[str, float]:
    """Recall per form on the forget split of a base/oracle cell (its only checkpoint)."""
    cps = checkpoint_means(rows)
    if not cps:
        return {}
    return {k.split("/", 1)[1]: v for k, v in cps[0]["recall"].items() if k.startswith("forget/") and v is not None}


def all_aggregates(cells: list[dict], scores: dict[str, list[tuple]]) -> dict[str, list[dict]]:
    """cell_id -> aggregates for every cell of a bundle (``cells``: manifest entries with
    ``cell_id``, ``kind``, ``seed``)."""
    refs: dict[int, dict] = defaultdict(dict)
    for c in cells:
        if c["kind"] in ("base", "oracle"):
            refs[c["seed"]][c["kind"]] = forget_recall(scores.get(c["cell_id"], []))
    return {c["cell_id"]: cell_aggregates(scores.get(c["cell_id"], []), refs.get(c["seed"])) for c in cells}


def headline(aggregates: list[dict]) -> dict:
    """The last checkpoint's numbers (after unlearning, or after the attack's last epoch/step)."""
    return aggregates[-1] if aggregates else {}


def find_trust_remote_code(obj, path: str = "") -> list[str]:
    """Paths inside a JSON document where ``trust_remote_code`` (any spelling of the key) is set to
    anything but false/null."""
    hits = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            where = f"{path}.{k}" if path else str(k)
            if str(k).lower().replace("-", "_") == "trust_remote_code" and v not in (False, None, "false", "False", 0):
                hits.append(where)
            hits += find_trust_remote_code(v, where)
    elif isinstance(obj, list):
        for n, v in enumerate(obj):
            hits += find_trust_remote_code(v, f"{path}[{n}]")
    elif isinstance(obj, str) and "trust_remote_code=true" in obj.replace(" ", "").lower():
        hits.append(path)
    return hits
