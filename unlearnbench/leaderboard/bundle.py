"""What a submission bundle holds, and how its numbers are derived from the per-item scores.

A bundle (format 2) is a folder with exactly these files:

``manifest.json``   the submission (schema ``leaderboard/schema/submission-2.json``): method,
                    benchmark, matrix (with its controls), model and checkpoint sha256s, harness
                    version and git commit, environment, and one entry per cell (id, key, labels,
                    score hash, aggregates): base, oracle, unlearn, one attack cell per (attack,
                    seed) and one ``control`` cell per (attack, seed, control): the attack run on
                    the retrain oracle (or the base model) with the same data, seed and budget;
``scores.csv.gz``   every per-item score of every cell, one CSV row each
                    (``cell_id,checkpoint,step,split,form,item_id,metric,value``; an empty value is a
                    NaN), gzip with a zero timestamp so equal scores give equal bytes;
``README.md``       optional free text from the submitter (never interpreted).

Format 1 (``unlearnbench.submission/1``: no control cells, headline at the last checkpoint) is
refused by ``verify`` with one line naming the format.

Per cell, ``scores_sha256`` is the sha256 of the cell's *canonical listing*: its rows sorted by
(checkpoint, step, split, form, item_id, metric), each written as the compact JSON array
``[checkpoint, step, split, form, item_id, metric, value]`` (value: the float's shortest round-trip
decimal, ``null`` for NaN), joined by newlines. A reader can recompute it from the CSV alone.

Aggregates per checkpoint of a cell (what the leaderboard shows):

* ``recall["split/form"]``: mean of the ``correct`` metric over the items (NaN items skipped), as
  in :func:`unlearnbench.report.run_summary`;
* ``task_accuracy[task]``: mean ``correct`` on the task split (FA);
* ``forget_quality``: :func:`unlearnbench.metrics.forget_quality` per form on the forget split,
  against the base and oracle cells of the same seed; ``mean`` is the headline
  (:func:`unlearnbench.headline.headline`, from the per-item scores: the forms that enter by item
  count and gap, weighted by items) with its ``ci``, ``n`` and ``forms``, as in ``run --json``;
  ``mean_of_forms`` is the plain mean over the informative forms (the ``mean`` of bundles made
  before the headline; ``leaderboard reaggregate`` re-derives a bundle's aggregates);
* attack cells only, at each checkpoint t (definitions and NaN rules in :mod:`unlearnbench.metrics`,
  the same numbers as ``run --json``'s ``robustness``):
  ``forget_quality_attacked_oracle`` (:func:`~unlearnbench.metrics.forget_quality_attacked`, against
  the same seed's oracle control cell at the same step) and ``recovery``
  (:func:`~unlearnbench.metrics.recovery`, against the same seed's unlearn cell), each with the
  headline's forms and weights as ``mean`` and the plain mean over the informative forms as
  ``mean_of_forms``.

The headline of an attack cell (:func:`attack_headline`) is derived from these: the lowest
``forget_quality_attacked_oracle`` mean over the checkpoints after step 0 (the earliest step on a
tie), with its step, and the last checkpoint's numbers beside it; :func:`utility` is the retain
recall and FA of one checkpoint (the site shows them after unlearning and at that worst step).

Reading a bundle that may be hostile (:class:`Limits`): every file's size is checked before it is
opened, the manifest's JSON nesting depth before it is parsed (:func:`load_json`), and the scores
are streamed (:func:`read_scores`): decompressed a line at a time, and reading stops with a
one-line refusal at the first line longer than ``Limits.row_bytes``, the first byte past
``Limits.scores_bytes``, or the first row past the row bound. The row bound is the manifest's own
count: ``scores_file.rows`` in all (at most ``Limits.rows``) and each cell's ``n_scores`` (no row
for a cell the manifest does not list). It is sound: a bundle that verifies has exactly
``scores_file.rows`` rows, the sum of its cells' ``n_scores`` (one cell per cell of the matrix, each
with its checkpoints x its probe items x their metrics rows), so stopping at the first row past
either count refuses only bundles that would be refused anyway, and what is held in memory is at
most ``scores_file.rows`` rows of at most ``row_bytes`` each. The number of probe items is not known
to the verifier without building the benchmark (datasets, for real benchmarks), so the declared
count is capped by ``Limits.rows`` instead (a toy-micro bundle has 59,280 rows, 4.7 MB
decompressed).
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import math
import os
import re
import statistics
import zlib
from collections import defaultdict
from dataclasses import dataclass, fields
from itertools import accumulate, count
from pathlib import Path

from .. import headline as headline_rule
from ..errors import UnlearnbenchError
from ..metrics import MIN_GAP, forget_quality, forget_quality_attacked, recovery

FORMAT = 2
SCHEMA_ID = "unlearnbench.submission/2"
OLD_SCHEMAS = {"unlearnbench.submission/1": 1}  # formats verify names when it refuses them
MANIFEST = "manifest.json"
SCORES = "scores.csv.gz"
README = "README.md"
SCORE_COLUMNS = ("cell_id", "checkpoint", "step", "split", "form", "item_id", "metric", "value")
HEADLINE = "correct"
DIGITS = 6  # aggregates are rounded to this many decimals; verification compares within 1e-6
MIB = 1 << 20


@dataclass(frozen=True)
class Limits:
    """How much of a bundle a reader accepts before refusing it (one line) without reading further.

    Each field can be set with the environment variable ``UNLEARNBENCH_BUNDLE_MAX_<FIELD>`` (e.g.
    ``UNLEARNBENCH_BUNDLE_MAX_SCORES_BYTES=1000000``); :meth:`from_env` reads them. The defaults are
    far above what a toy-micro bundle needs (manifest 52 KB, scores 356 KB compressed / 4.7 MB
    decompressed, 59,280 rows, longest line 112 bytes, JSON depth 7) and keep ``verify``'s peak
    memory bounded on any bundle.
    """

    manifest_bytes: int = 8 * MIB  # manifest.json on disk
    readme_bytes: int = 1 * MIB  # README.md on disk (never interpreted)
    scores_gz_bytes: int = 64 * MIB  # scores.csv.gz on disk
    scores_bytes: int = 128 * MIB  # scores.csv.gz decompressed
    rows: int = 1_000_000  # score rows a manifest may declare (scores_file.rows)
    row_bytes: int = 4096  # one line of the decompressed CSV
    json_depth: int = 64  # nesting of arrays/objects in manifest.json

    @classmethod
    def from_env(cls, environ=None) -> Limits:
        """The defaults, with each ``UNLEARNBENCH_BUNDLE_MAX_<FIELD>`` that is set (a positive integer)."""
        environ = os.environ if environ is None else environ
        values = {}
        for f in fields(cls):
            name = cls.env_name(f.name)
            raw = environ.get(name)
            if raw is None or raw == "":
                continue
            try:
                values[f.name] = int(raw)
            except ValueError:
                values[f.name] = 0
            if values[f.name] <= 0:
                raise UnlearnbenchError(f"{name}={raw!r} must be a positive integer")
        return cls(**values)

    @staticmethod
    def env_name(field_name: str) -> str:
        return f"UNLEARNBENCH_BUNDLE_MAX_{field_name.upper()}"

    def for_file(self, name: str) -> tuple[int, str] | None:
        """(on-disk size limit, its field name) of a bundle file; None for names a bundle may not hold."""
        field_name = FILE_LIMITS.get(name)
        return None if field_name is None else (getattr(self, field_name), field_name)


FILE_LIMITS = {MANIFEST: "manifest_bytes", SCORES: "scores_gz_bytes", README: "readme_bytes"}


class TooLarge(ValueError):
    """A bundle file went past one of the :class:`Limits` (the message is the one-line refusal)."""


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
    h = hashlib.sha256()  # fed line by line: the listing itself is never held in memory
    for n, (c, s, sp, f, i, m, v) in enumerate(lines):
        line = (
            ("\n[" if n else "[")
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
        )
        h.update(line.encode("utf-8"))
    return h.hexdigest()


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


def _lines(gz, limits: Limits):
    """The decompressed file's lines as text, refusing past ``limits.scores_bytes`` in all or
    ``limits.row_bytes`` in one line (``readline`` with a size never decompresses much more)."""
    total = 0
    for n in count(1):
        line = gz.readline(limits.row_bytes + 1)
        if not line:
            return
        total += len(line)
        if total > limits.scores_bytes:
            raise TooLarge(
                f"decompresses to more than {limits.scores_bytes:,} bytes (the limit, "
                f"{Limits.env_name('scores_bytes')}); stopped reading at line {n}"
            )
        if len(line) > limits.row_bytes:
            raise TooLarge(
                f"line {n} is longer than {limits.row_bytes:,} bytes (the limit, {Limits.env_name('row_bytes')})"
            )
        yield line.decode("utf-8")


def read_scores(
    path: Path, max_rows: int | None = None, limits: Limits | None = None, cell_rows: dict[str, int] | None = None
) -> dict[str, list[tuple]]:
    """cell_id -> rows ``(checkpoint, step, split, form, item_id, metric, value)``, streamed.

    ``max_rows``: the row bound (verify passes the manifest's ``scores_file.rows``; default
    ``limits.rows``); ``cell_rows``: cell id -> the most rows that cell may have (verify passes each
    cell's ``n_scores``; a cell not in it may have none). Reading stops at the first row past a
    bound. Repeated strings are shared (verify on a committed toy-micro bundle peaks at 35 MB RSS, the
    interpreter included). Raises :class:`TooLarge` past a bound and ValueError with one line when
    the file is not the expected gzip CSV.
    """
    limits = limits or Limits()
    bound = limits.rows if max_rows is None else min(max_rows, limits.rows)
    pool: dict[str, str] = {}
    share = pool.setdefault
    try:
        with gzip.open(path, "rb") as gz:
            reader = csv.reader(_lines(gz, limits))
            header = next(reader, None)
            if tuple(header or ()) != SCORE_COLUMNS:
                raise ValueError(f"header is {str(header)[:200]}, expected {list(SCORE_COLUMNS)}")
            out: dict[str, list[tuple]] = defaultdict(list)
            for n, row in enumerate(reader, start=1):
                if n > bound:
                    what = "scores_file.rows" if max_rows is not None and max_rows <= limits.rows else "the limit"
                    raise TooLarge(f"holds more than {bound:,} rows ({what}); stopped reading at row {n}")
                if len(row) != len(SCORE_COLUMNS):
                    raise ValueError(f"row {n} has {len(row)} fields, expected {len(SCORE_COLUMNS)}")
                cid, c, s, sp, f_, i, m, v = row
                cell = out[share(cid, cid)]
                if cell_rows is not None and len(cell) >= cell_rows.get(cid, 0):
                    if cid not in cell_rows:
                        raise TooLarge(
                            f"has rows for cell {cid[:40]!r}, which the manifest does not list; stopped reading at row {n}"
                        )
                    raise TooLarge(
                        f"has more than {cell_rows[cid]:,} rows (its n_scores) for cell {cid}; "
                        f"stopped reading at row {n}"
                    )
                cell.append(
                    (
                        share(c, c),
                        int(s),
                        share(sp, sp),
                        share(f_, f_),
                        share(i, i),
                        share(m, m),
                        float(v) if v != "" else float("nan"),
                    )
                )
    except TooLarge:
        raise
    except (OSError, EOFError, UnicodeDecodeError, csv.Error, gzip.BadGzipFile, zlib.error) as e:
        raise ValueError(f"{type(e).__name__}: {str(e)[:200]}") from None
    except ValueError as e:
        raise ValueError(str(e).splitlines()[0][:300] if str(e) else "bad number") from None
    return dict(out)


_JSON_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def json_depth_exceeds(text: str, limit: int) -> bool:
    """Whether arrays/objects in a JSON text nest deeper than ``limit``, checked without parsing
    (brackets inside strings are ignored): json.loads and every recursive walk over the result
    would otherwise raise RecursionError on a deep enough document."""
    brackets = _NOT_BRACKET.sub("", _JSON_STRING.sub("", text))
    return any(d > limit for d in accumulate(map(_STEP.__getitem__, brackets)))


def load_json(path: Path, max_bytes: int, max_depth: int):
    """A bundle's JSON file, refused (ValueError, one line) past ``max_bytes`` on disk or
    ``max_depth`` levels of nesting, before it is parsed."""
    with open(path, "rb") as f:
        raw = f.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise TooLarge(f"is larger than {max_bytes:,} bytes (the limit, {Limits.env_name('manifest_bytes')})")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"is not UTF-8 ({e.reason} at byte {e.start})") from None
    if json_depth_exceeds(text, max_depth):
        raise TooLarge(
            f"nests arrays/objects deeper than {max_depth} levels (the limit, {Limits.env_name('json_depth')})"
        )
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as e:
        raise ValueError(f"is not valid JSON: {str(e).splitlines()[0][:200]}") from None


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


def checkpoint_items(rows) -> dict[int, dict[str, dict[str, float]]]:
    """Per checkpoint step: form -> item -> ``correct`` on the forget split (NaN items dropped): what
    the headline (:mod:`unlearnbench.headline`) is computed from."""
    return headline_rule.group_items(
        (int(s), f, i, v) for _c, s, sp, f, i, m, v in rows if m == HEADLINE and sp == "forget"
    )


def _fq(u_recall: dict, base: dict, oracle: dict, items: dict | None = None) -> dict:
    """Forget quality per form and the headline (``mean``, with ``ci`` and ``n``; ``items``: the
    model's, base's and oracle's forget items), and ``mean_of_forms``, the plain mean over every
    informative form (these bundles' ``mean`` before the headline rule, format 2 up to harness
    0.1; ``run --json`` has the same fields)."""
    per_form = {}
    for key, u in u_recall.items():
        split, form = key.split("/", 1)
        if split != "forget" or u is None or base.get(form) is None or oracle.get(form) is None:
            continue
        per_form[form] = forget_quality(u, base[form], oracle[form])
    vals = [v for v in per_form.values() if not math.isnan(v)]
    h = headline_rule.headline(items["model"], items["base"], items["oracle"]) if items else None
    return {
        "mean": _round(h["value"]) if h else None,
        "ci": [_round(x) for x in h["ci"]] if h and h["ci"] else None,
        "n": h["n"] if h else 0,
        "forms": h["forms"] if h else {},
        "mean_of_forms": _round(sum(vals) / len(vals)) if vals else None,
        "per_form": {k: _round(v) for k, v in per_form.items()},
    }


def under_attack(
    u: dict,
    base: dict,
    oracle: dict,
    unlearned: dict | None,
    attacked_oracle: dict | None,
    weights: dict | None = None,
    items: dict | None = None,
) -> dict:
    """Forget quality against the attacked oracle and recovery at one checkpoint, per form and as the
    headline, from forget-split recall per form: ``u`` the attacked model, ``base``/``oracle`` (o_0),
    ``unlearned`` (u_0, the unlearn cell) and ``attacked_oracle`` (o_t, the control at the same
    step). ``mean``: the headline's forms and weights (``weights``; the attacked-oracle one from the
    items, ``items`` holding ``model``, ``base``, ``oracle`` and ``control``), as
    :func:`unlearnbench.report.summary._robustness`; ``mean_of_forms``: the plain mean over the forms
    where base and oracle differ by at least ``MIN_GAP`` (recovery: those where it is defined)."""
    informative = [f for f in u if f in base and f in oracle and abs(base[f] - oracle[f]) >= MIN_GAP]
    fq_ao, rec = {}, {}
    for f, ut in u.items():
        if f in base and unlearned and f in unlearned:
            rec[f] = recovery(ut, unlearned[f], base[f])
        if attacked_oracle and f in attacked_oracle and f in base and f in oracle:
            fq_ao[f] = forget_quality_attacked(ut, base[f], attacked_oracle[f], oracle[f])

    def plain(d):
        vals = [d[f] for f in informative if f in d and not math.isnan(d[f])]
        return _round(sum(vals) / len(vals)) if vals else None

    h_ao = None
    if items and items.get("control"):
        h_ao = headline_rule.headline(items["model"], items["base"], items["oracle"], items["control"], n_boot=0)
    return {
        "forget_quality_attacked_oracle": {
            "mean": _round(h_ao["value"]) if h_ao else None,
            "mean_of_forms": plain(fq_ao),
            "per_form": {k: _round(v) for k, v in fq_ao.items()},
        },
        "recovery": {
            "mean": _round(headline_rule.weighted_mean(rec, weights or {})),
            "mean_of_forms": plain(rec),
            "per_form": {k: _round(v) for k, v in rec.items()},
        },
    }


def _forget(recall: dict) -> dict[str, float]:
    return {k.split("/", 1)[1]: v for k, v in recall.items() if k.startswith("forget/") and v is not None}


def cell_aggregates(
    rows,
    reference: dict | None,
    control_steps: dict[int, dict] | None = None,
    reference_items: dict | None = None,
    control_items: dict[int, dict] | None = None,
) -> list[dict]:
    """Aggregates of one cell; ``reference`` = {"base": {form: recall}, "oracle": {...}, "unlearned":
    {...}} on the forget split of the same seed (no base or oracle: no forget quality), and
    ``reference_items`` their forget items ({"base": {form: {item: correct}}, "oracle": ...}: the
    headline). ``control_steps`` / ``control_items``: for an attack cell, step -> forget recall per
    form / forget items of its oracle control cell (given, even empty, only for attack cells: they
    get the under-attack numbers)."""
    out = []
    base, oracle = (reference or {}).get("base"), (reference or {}).get("oracle")
    by_step = checkpoint_items(rows)
    for cp in checkpoint_means(rows):
        items = None
        if reference_items and reference_items.get("base") and reference_items.get("oracle"):
            items = {
                "model": by_step.get(cp["step"], {}),
                "base": reference_items["base"],
                "oracle": reference_items["oracle"],
            }
        fq = _fq(cp["recall"], base, oracle, items) if base and oracle else {"mean": None, "per_form": {}}
        agg = {
            "checkpoint": cp["checkpoint"],
            "step": cp["step"],
            "recall": {k: _round(v) for k, v in cp["recall"].items()},
            "task_accuracy": {k: _round(v) for k, v in cp["task_accuracy"].items()},
            "forget_quality": fq,
        }
        if control_steps is not None:
            control = (control_items or {}).get(cp["step"])
            agg.update(
                under_attack(
                    _forget(cp["recall"]),
                    base or {},
                    oracle or {},
                    (reference or {}).get("unlearned"),
                    control_steps.get(cp["step"]),
                    weights=fq.get("forms"),
                    items={**items, "control": control} if items and control else None,
                )
            )
        out.append(agg)
    return out


def forget_recall(rows) -> dict[str, float]:
    """Recall per form on the forget split of a base/oracle/unlearn cell (its only checkpoint)."""
    cps = checkpoint_means(rows)
    return _forget(cps[0]["recall"]) if cps else {}


def all_aggregates(cells: list[dict], scores: dict[str, list[tuple]]) -> dict[str, list[dict]]:
    """cell_id -> aggregates for every cell of a bundle (``cells``: manifest entries with
    ``cell_id``, ``kind``, ``seed``, ``attack`` and, for control cells, ``control``). An attack
    cell's under-attack numbers use the oracle control cell of its seed and attack."""
    refs: dict[int, dict] = defaultdict(dict)
    ref_items: dict[int, dict] = defaultdict(dict)
    controls: dict[tuple, dict[int, dict]] = {}
    control_items: dict[tuple, dict[int, dict]] = {}
    for c in cells:
        rows = scores.get(c["cell_id"], [])
        if c["kind"] in ("base", "oracle"):
            refs[c["seed"]][c["kind"]] = forget_recall(rows)
            ref_items[c["seed"]][c["kind"]] = next(iter(checkpoint_items(rows).values()), {})
        elif c["kind"] == "unlearn":
            refs[c["seed"]]["unlearned"] = forget_recall(rows)
        elif c["kind"] == "control" and c.get("control") == "oracle":
            controls[(c["seed"], c.get("attack"))] = {
                cp["step"]: _forget(cp["recall"]) for cp in checkpoint_means(rows)
            }
            control_items[(c["seed"], c.get("attack"))] = checkpoint_items(rows)
    out = {}
    for c in cells:
        attack = c["kind"] == "attack"
        key = (c["seed"], c.get("attack"))
        out[c["cell_id"]] = cell_aggregates(
            scores.get(c["cell_id"], []),
            refs.get(c["seed"]),
            controls.get(key, {}) if attack else None,
            ref_items.get(c["seed"]),
            control_items.get(key, {}) if attack else None,
        )
    return out


def headline(aggregates: list[dict]) -> dict:
    """The last checkpoint's numbers (after unlearning, or after the attack's last epoch/step)."""
    return aggregates[-1] if aggregates else {}


def _mean_of(agg: dict, metric: str) -> float | None:
    return (agg.get(metric) or {}).get("mean")


def curve_extreme(aggregates: list[dict], metric: str, lowest: bool = True) -> dict | None:
    """The checkpoint after step 0 where ``metric``'s mean is lowest (or highest): {"value", "step",
    "checkpoint"}; the earliest step on a tie; None when no checkpoint after step 0 has a value."""
    pts = [(v, a) for a in aggregates if a["step"] > 0 and (v := _mean_of(a, metric)) is not None]
    if not pts:
        return None
    v, a = min(pts, key=lambda t: ((t[0] if lowest else -t[0]), t[1]["step"]))
    return {"value": v, "step": a["step"], "checkpoint": a["checkpoint"]}


def at_point(aggregates: list[dict], point: dict | None) -> dict | None:
    """The checkpoint's aggregates that a curve point (:func:`curve_extreme`'s ``step`` and
    ``checkpoint``) names; None for no point."""
    if point is None:
        return None
    return next((a for a in aggregates if (a["step"], a["checkpoint"]) == (point["step"], point["checkpoint"])), None)


def utility(agg: dict | None, split: str, forms: list[str], tasks: list[str] | None = None) -> dict:
    """Utility at one checkpoint's aggregates, as the leaderboard shows it: ``recall``, the mean of
    ``recall["<split>/<form>"]`` over ``forms``, and ``fa``, the mean of ``task_accuracy`` over
    ``tasks`` (every task of the checkpoint when None), each over the ones measured there (None
    when none is); ``fa_tasks``: the tasks that mean is over."""
    recall = (agg or {}).get("recall") or {}
    acc = (agg or {}).get("task_accuracy") or {}
    rec = [v for f in forms if (v := recall.get(f"{split}/{f}")) is not None]
    fa_tasks = [t for t, v in acc.items() if v is not None and (tasks is None or t in tasks)]
    return {
        "recall": statistics.fmean(rec) if rec else None,
        "fa": statistics.fmean(acc[t] for t in fa_tasks) if fa_tasks else None,
        "fa_tasks": fa_tasks,
    }


def attack_headline(aggregates: list[dict]) -> dict:
    """An attack cell's headline: ``worst`` (lowest forget quality against the attacked oracle over
    the checkpoints after step 0, with its step), ``last`` (the last checkpoint: its step, forget
    quality against the attacked and the unattacked oracle, recovery), and, for the detail page,
    ``worst_forget_quality`` (against the unattacked oracle) and ``max_recovery``."""
    last = aggregates[-1] if aggregates else {}
    return {
        "worst": curve_extreme(aggregates, "forget_quality_attacked_oracle"),
        "last": {
            "step": last.get("step"),
            "checkpoint": last.get("checkpoint"),
            "forget_quality_attacked_oracle": _mean_of(last, "forget_quality_attacked_oracle"),
            "forget_quality": _mean_of(last, "forget_quality"),
            "recovery": _mean_of(last, "recovery"),
        },
        "worst_forget_quality": curve_extreme(aggregates, "forget_quality"),
        "max_recovery": curve_extreme(aggregates, "recovery", lowest=False),
    }


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
