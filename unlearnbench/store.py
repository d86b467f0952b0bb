"""The results store: one SQLite file (WAL mode) that holds every run, cell and score.

Why SQLite: a benchmark sweep runs for hours and may be killed at any moment (OOM killer, a
pre-empted job, ``kill -9``). The store must never hold a half-written result, and re-running
the same command must skip what is already done. SQLite gives us atomic transactions, crash
recovery and safe access from several processes with no server to run.

Concepts
--------
* A *run* is one CLI invocation (``runs`` table). It is bookkeeping only: results belong to cells.
* A *cell* is one unit of results, identified by :func:`cell_id` of its *key* (model and weights
  hash, method + config + version, attack + config + version, probe suite, seed, harness
  version, ...). Equal keys give equal ids, so a re-run finds the cell already finished.
* A cell holds many *checkpoints* ('base', 'unlearned', 'epoch=0', ...), each with a ``step``
  that orders them, and per-item *score rows* under each checkpoint.

Atomicity contract
------------------
:meth:`ResultStore.commit_cell` writes the cell row (status 'finished') and all of its score rows
in ONE ``BEGIN IMMEDIATE`` ... ``COMMIT`` transaction. A process killed at any point either
committed the whole cell or left no trace of it; cells committed before stay intact. A finished
cell is never overwritten. Callers check :meth:`ResultStore.is_finished` first; a run that commits
a cell it already finished itself is told so (an error: two of its cells share a key). Between
processes the first commit wins: when another run finished the same cell (same id and key) since
the caller checked, as two processes sharing a store do with the cells their runs have in common,
the later :meth:`~ResultStore.commit_cell` or :meth:`~ResultStore.record_failure` writes nothing
and returns False. A failed cell (:meth:`ResultStore.record_failure`) has a row with status
'failed' and no scores; a later successful commit replaces it.

Sharing a store
---------------
Each write is one transaction that takes the write lock up front (``BEGIN IMMEDIATE``); a writer
that finds it taken waits (SQLite's busy handler, ``busy_timeout`` seconds, 30 by default) and
readers never wait (WAL). A store still locked after that wait is one :class:`UnlearnbenchError`
naming what was not written; nothing stored before is touched.

Schema (``SCHEMA_VERSION = 1``)
-------------------------------
``meta(key TEXT PK, value TEXT)``
    ``schema_version`` -> '1'. A store written by a newer harness (higher version) is refused.
``runs(run_id TEXT PK, started_at, finished_at, status, argv, meta)``
    ``argv`` and ``meta`` are JSON; times are UTC ISO-8601; status 'running' until finished.
``cells(cell_id TEXT PK, run_id FK->runs, kind, status, key_json, model, method, method_config,
attack, attack_config, probe_suite, seed, meta_json, reason, created_at, finished_at)``
    ``kind`` is 'base' | 'oracle' | 'unlearn' | 'attack' or any string. ``status`` is 'finished'
    or 'failed' (``reason`` says why). The label columns are TEXT copies of human-readable fields
    for queries; ``*_config`` columns hold canonical JSON (strings are stored as given), ``seed``
    is stored as text. ``created_at`` is when this row was written, ``finished_at`` is set only
    for finished cells.
``scores(cell_id FK->cells, checkpoint, step, split, form, item_id, metric, value REAL)``
    Indexed on ``cell_id``; ``UNIQUE(cell_id, checkpoint, split, form, item_id, metric)`` so a
    duplicated score row aborts the commit instead of silently skewing a mean.
``generations(cell_id FK->cells, checkpoint, step, split, form, item_id, text)``
    The text a probe generated for an item (:class:`TextRow`; cut to the run's cap, see
    ``RunRequest.generations``), committed in the cell's transaction beside its scores;
    ``UNIQUE(cell_id, checkpoint, split, form, item_id)``. Added to stores of schema 1 when they
    are opened (older harnesses ignore the table).

Non-finite values
-----------------
A NaN score (e.g. a NaN loss after a diverged attack) is a real outcome, not a bug, so it is
stored: as SQL NULL, because SQLite cannot keep NaN in a REAL column. It reads back as NaN in
the frames and as ``null`` in JSON exports. +/-inf is stored as is; JSON has no spelling for it,
so JSON exports write it as ``null`` too (CSV keeps ``inf``).

Nothing here imports torch; pandas is imported only inside the functions that build frames.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sqlite3
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from unlearnbench.errors import UnlearnbenchError
from unlearnbench.spec import canonical_json

if TYPE_CHECKING:  # pragma: no cover - only for type checkers
    import pandas

__all__ = ["LABEL_COLUMNS", "ResultStore", "ScoreRow", "cell_id"]

#: Human-readable cell fields kept as separate columns so queries need not parse the key.
LABEL_COLUMNS = ("model", "method", "method_config", "attack", "attack_config", "probe_suite", "seed")
_CONFIG_COLUMNS = ("method_config", "attack_config")

_CELL_COLUMNS = (
    "cell_id",
    "run_id",
    "kind",
    "status",
    "key_json",
    *LABEL_COLUMNS,
    "meta_json",
    "reason",
    "created_at",
    "finished_at",
)
_SCORE_COLUMNS = ("checkpoint", "step", "split", "form", "item_id", "metric", "value")
# Columns of the long score frame: identity and label of the cell, then the score row.
_FRAME_COLUMNS = ("cell_id", "run_id", "kind", *LABEL_COLUMNS, *_SCORE_COLUMNS)
# Deterministic order so exports of the same store diff cleanly.
_SCORE_ORDER = "s.cell_id, s.step, s.checkpoint, s.split, s.form, s.item_id, s.metric"
# SQLite limits host parameters per statement (999 in old builds); stay well below it.
_MAX_PARAMS = 500

# The generations table (its own tuple: added to stores of schema 1 that were made without it).
_GENERATIONS = (
    """CREATE TABLE IF NOT EXISTS generations (
        cell_id    TEXT NOT NULL REFERENCES cells(cell_id),
        checkpoint TEXT NOT NULL,
        step       INTEGER NOT NULL,
        split      TEXT NOT NULL,
        form       TEXT NOT NULL,
        item_id    TEXT NOT NULL,
        text       TEXT NOT NULL,
        UNIQUE (cell_id, checkpoint, split, form, item_id)
    )""",
    "CREATE INDEX IF NOT EXISTS generations_cell ON generations(cell_id)",
)

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS runs (
        run_id      TEXT PRIMARY KEY,
        started_at  TEXT NOT NULL,
        finished_at TEXT,
        status      TEXT NOT NULL,
        argv        TEXT NOT NULL,
        meta        TEXT NOT NULL
    )""",
    """CREATE TABLE IF NOT EXISTS cells (
        cell_id       TEXT PRIMARY KEY,
        run_id        TEXT NOT NULL REFERENCES runs(run_id),
        kind          TEXT NOT NULL,
        status        TEXT NOT NULL,
        key_json      TEXT NOT NULL,
        model         TEXT,
        method        TEXT,
        method_config TEXT,
        attack        TEXT,
        attack_config TEXT,
        probe_suite   TEXT,
        seed          TEXT,
        meta_json     TEXT,
        reason        TEXT,
        created_at    TEXT NOT NULL,
        finished_at   TEXT
    )""",
    """CREATE TABLE IF NOT EXISTS scores (
        cell_id    TEXT NOT NULL REFERENCES cells(cell_id),
        checkpoint TEXT NOT NULL,
        step       INTEGER NOT NULL,
        split      TEXT NOT NULL,
        form       TEXT NOT NULL,
        item_id    TEXT NOT NULL,
        metric     TEXT NOT NULL,
        value      REAL,
        UNIQUE (cell_id, checkpoint, split, form, item_id, metric)
    )""",
    "CREATE INDEX IF NOT EXISTS scores_cell ON scores(cell_id)",
    "CREATE INDEX IF NOT EXISTS cells_status ON cells(status)",
    *_GENERATIONS,
)


class StoreLocked(UnlearnbenchError):
    """The store's write lock stayed taken by another process for the whole busy timeout."""


def cell_id(key: Mapping) -> str:
    """Stable id of a cell: first 20 hex chars of sha256 over the canonical JSON of ``key``.

    Dict order does not matter (keys are sorted); every value does, so changing any field of the
    key (a config value, a version, the seed) gives a new cell and forces a recompute.
    """
    return hashlib.sha256(canonical_json(key).encode("ascii")).hexdigest()[:20]


@dataclass
class ScoreRow:
    """One per-item score of one checkpoint of a cell."""

    checkpoint: str  # 'base', 'unlearned', 'epoch=2', ...
    step: int  # orders checkpoints inside the cell (epoch number, -1 for pre-attack, ...)
    split: str  # 'forget', 'retain', 'neighbour', or 'task:arith' ...
    form: str  # probe form ('bio', 'qa', 'cloze', 'mcq', 'tf', 'paraphrase') or task name
    item_id: str
    metric: str  # 'prob', 'em', 'rougeL_recall', 'correct', ...
    value: float  # NaN allowed: stored as NULL, read back as NaN


@dataclass
class TextRow:
    """The text a probe generated for one item at one checkpoint (stored beside its scores)."""

    checkpoint: str
    step: int
    split: str
    form: str
    item_id: str
    text: str


_TEXT_COLUMNS = ("checkpoint", "step", "split", "form", "item_id", "text")


def _utcnow() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _one_line(exc: BaseException) -> str:
    """Error text squeezed onto one line, since the CLI prints UnlearnbenchError as one line."""
    return " ".join(str(exc).split()) or type(exc).__name__


def _is_busy(exc: sqlite3.Error) -> bool:
    """True for SQLite's 'database is locked' / 'database table is locked' (SQLITE_BUSY/LOCKED)."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    return name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in str(exc)


def _label_values(label: Mapping) -> tuple:
    """Label dict -> values of the label columns; configs as canonical JSON, the rest as text."""
    unknown = sorted(set(label) - set(LABEL_COLUMNS))
    if unknown:
        raise ValueError(f"unknown cell label field(s) {unknown}; allowed: {list(LABEL_COLUMNS)}")
    values = []
    for column in LABEL_COLUMNS:
        value = label.get(column)
        if value is None or isinstance(value, str):
            values.append(value)
        elif column in _CONFIG_COLUMNS:
            values.append(canonical_json(value))
        else:
            values.append(str(value))
    return tuple(values)


def _score_tuple(cid: str, row: ScoreRow) -> tuple:
    """A ScoreRow as a parameter tuple for INSERT; NaN becomes NULL (SQLite has no NaN)."""
    try:
        value = float(row.value)
        step = int(row.step)
    except (TypeError, ValueError) as exc:
        raise UnlearnbenchError(
            f"cell {cid}: score row {row.checkpoint}/{row.split}/{row.form}/{row.item_id}/"
            f"{row.metric} has a non-numeric value or step: {_one_line(exc)}"
        ) from None
    return (
        cid,
        str(row.checkpoint),
        step,
        str(row.split),
        str(row.form),
        str(row.item_id),
        str(row.metric),
        None if math.isnan(value) else value,
    )


class ResultStore:
    """Read and write the results store at ``path`` (created if missing).

    One connection per object; several objects, in one process or many, may share a file (WAL
    lets readers run while a writer commits; writers queue for up to ``busy_timeout`` seconds).
    """

    SCHEMA_VERSION = 1

    def __init__(self, path: str | os.PathLike, busy_timeout: float = 30.0):
        self.path = Path(path)
        self.busy_timeout = float(busy_timeout)
        self._conn: sqlite3.Connection | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # isolation_level=None: no implicit transactions; we issue BEGIN IMMEDIATE ourselves
            # so the write lock is taken up front and a commit is all-or-nothing.
            conn = sqlite3.connect(str(self.path), isolation_level=None, timeout=self.busy_timeout)
        except (OSError, sqlite3.Error) as exc:
            raise self._not_a_store(exc) from None
        self._conn = conn
        # Opening races with other processes opening the same new file: switching it to WAL and
        # reading the schema while another connection converts it can answer SQLITE_BUSY at once,
        # without SQLite's busy handler waiting (seen with two `run`s started together). Those
        # are retried here until the same busy timeout has passed.
        deadline = time.monotonic() + self.busy_timeout
        pause = 0.02
        while True:
            try:
                conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
                conn.execute("PRAGMA journal_mode = WAL")  # first read of the file: fails on junk
                conn.execute("PRAGMA synchronous = NORMAL")  # safe with WAL: a crash loses no commit
                conn.execute("PRAGMA foreign_keys = ON")
                self._ensure_schema()
                return
            except UnlearnbenchError as exc:
                error, busy = exc, isinstance(exc, StoreLocked)
            except sqlite3.Error as exc:
                error, busy = exc, _is_busy(exc)
            if busy and time.monotonic() < deadline:
                self._rollback()
                time.sleep(pause)
                pause = min(pause * 2, 0.5)
                continue
            self.close()
            if isinstance(error, UnlearnbenchError):
                raise error
            # busy: another process is creating or converting the file, not junk
            raise (self._locked("opening it") if busy else self._not_a_store(error)) from None

    # -- lifecycle ---------------------------------------------------------------------------

    def close(self) -> None:
        """Close the connection (idempotent). An open transaction is rolled back by SQLite."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ResultStore({str(self.path)!r})"

    @property
    def conn(self) -> sqlite3.Connection:
        """The open connection (for ad-hoc read queries); raises once the store is closed."""
        if self._conn is None:
            raise UnlearnbenchError(f"results store '{self.path}' is closed")
        return self._conn

    def _locked(self, what: str) -> UnlearnbenchError:
        return StoreLocked(
            f"results store '{self.path}' stayed locked by another process for {self.busy_timeout:g} s; "
            f"gave up {what} (results stored before are kept; re-run to resume)"
        )

    @contextmanager
    def _writing(self, what: str) -> Iterator[sqlite3.Connection]:
        """One write transaction: ``BEGIN IMMEDIATE`` (the write lock, waited for up to the busy
        timeout) ... ``COMMIT``, rolled back on any error. A lock or an I/O failure of SQLite is one
        UnlearnbenchError saying ``what`` was not written, not a traceback."""
        conn = self.conn
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise (self._locked(what) if _is_busy(exc) else self._write_failed(what, exc)) from None
        try:
            yield conn
            conn.execute("COMMIT")
        except sqlite3.OperationalError as exc:
            self._rollback()
            raise (self._locked(what) if _is_busy(exc) else self._write_failed(what, exc)) from None
        except BaseException:
            self._rollback()
            raise

    def _write_failed(self, what: str, exc: BaseException) -> UnlearnbenchError:
        return UnlearnbenchError(f"results store '{self.path}': {what} failed, nothing of it written: {_one_line(exc)}")

    def _not_a_store(self, why: BaseException | str) -> UnlearnbenchError:
        text = why if isinstance(why, str) else _one_line(why)
        return UnlearnbenchError(f"results store '{self.path}' is not an unlearnbench store: {text}")

    def _ensure_schema(self) -> None:
        """Check the schema version, creating the tables in an empty file.

        The check is read-only first, so opening a store never waits for another process that is
        in the middle of a commit; the write lock is taken only when tables must be created.
        """
        if self._schema_version() is not None:
            if not self._has_table("generations"):  # a store written before generated text was kept
                with self._writing("adding its generations table") as conn:
                    for statement in _GENERATIONS:
                        conn.execute(statement)
            return
        with self._writing("creating its tables") as conn:
            if self._schema_version() is None:  # nobody created it while we waited for the lock
                for statement in _SCHEMA:
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO meta(key, value) VALUES ('schema_version', ?)",
                    (str(self.SCHEMA_VERSION),),
                )

    def _schema_version(self) -> int | None:
        """Schema version of the file, None for an empty file; refuses foreign or newer files."""
        tables = {
            name
            for (name,) in self.conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        }
        if not tables:
            return None
        if "meta" not in tables:
            raise self._not_a_store(f"it holds other tables ({', '.join(sorted(tables))})")
        row = self.conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        try:
            version = int(row[0])
        except (TypeError, ValueError):
            raise self._not_a_store("it has no valid schema_version") from None
        if version > self.SCHEMA_VERSION:
            raise self._not_a_store(
                f"schema version {version} is newer than this harness supports "
                f"({self.SCHEMA_VERSION}); upgrade unlearnbench"
            )
        return version

    def _rollback(self) -> None:
        if self._conn is not None and self._conn.in_transaction:
            self._conn.execute("ROLLBACK")

    # -- runs --------------------------------------------------------------------------------

    def start_run(self, argv: Sequence[str], meta: Mapping) -> str:
        """Record the start of a CLI invocation; returns its run_id (12 hex chars)."""
        run_id = uuid.uuid4().hex[:12]
        with self._writing("recording the run's start") as conn:
            conn.execute(
                "INSERT INTO runs(run_id, started_at, status, argv, meta) VALUES (?, ?, 'running', ?, ?)",
                (run_id, _utcnow(), json.dumps(list(argv)), json.dumps(dict(meta), sort_keys=True, default=str)),
            )
        return run_id

    def finish_run(self, run_id: str, status: str = "finished") -> None:
        """Mark a run as ended ('finished', 'failed', 'interrupted', ...) with its end time."""
        with self._writing("recording the run's end") as conn:
            cursor = conn.execute(
                "UPDATE runs SET status = ?, finished_at = ? WHERE run_id = ?", (status, _utcnow(), run_id)
            )
        if cursor.rowcount == 0:
            raise UnlearnbenchError(f"results store '{self.path}' has no run '{run_id}'")

    def runs(self) -> list[dict]:
        """Every run, in the order they started: ``run_id``, ``started_at``, ``finished_at``, ``status`` and its
        ``argv`` and ``meta`` decoded from JSON (the runner's ``meta["request"]`` names the run's
        method and attacks). Read-only."""
        rows = self.conn.execute(
            "SELECT run_id, started_at, finished_at, status, argv, meta FROM runs ORDER BY rowid"
        ).fetchall()
        names = ("run_id", "started_at", "finished_at", "status", "argv", "meta")
        out = [dict(zip(names, row)) for row in rows]
        for run in out:
            run["argv"], run["meta"] = json.loads(run["argv"]), json.loads(run["meta"])
        return out

    # -- cells -------------------------------------------------------------------------------

    def is_finished(self, cell_id: str) -> bool:
        """True when the cell and all its scores are committed; a failed cell is not finished."""
        row = self.conn.execute("SELECT status FROM cells WHERE cell_id = ?", (cell_id,)).fetchone()
        return row is not None and row[0] == "finished"

    def get_cell(self, cell_id: str) -> dict | None:
        """The cell's row as a dict (``key`` and ``meta`` decoded from JSON), or None if absent."""
        row = self.conn.execute(
            f"SELECT {', '.join(_CELL_COLUMNS)} FROM cells WHERE cell_id = ?", (cell_id,)
        ).fetchone()
        return None if row is None else self._cell_dict(row)

    def cells(self, status: str | None = None) -> list[dict]:
        """All cells (or those with ``status``), oldest first, shaped like :meth:`get_cell`."""
        sql = f"SELECT {', '.join(_CELL_COLUMNS)} FROM cells"
        params: tuple = ()
        if status is not None:
            sql += " WHERE status = ?"
            params = (status,)
        sql += " ORDER BY created_at, cell_id"
        return [self._cell_dict(row) for row in self.conn.execute(sql, params)]

    @staticmethod
    def _cell_dict(row: Sequence) -> dict:
        cell = dict(zip(_CELL_COLUMNS, row))
        cell["key"] = json.loads(cell.pop("key_json"))
        meta_json = cell.pop("meta_json")
        cell["meta"] = None if meta_json is None else json.loads(meta_json)
        return cell

    def _has_table(self, name: str) -> bool:
        row = self.conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)).fetchone()
        return row is not None

    def commit_cell(
        self,
        run_id: str,
        cell_id: str,
        key: Mapping,
        kind: str,
        label: Mapping,
        scores: Iterable[ScoreRow],
        meta: Mapping | None = None,
    ) -> bool:
        """Write a finished cell and all its score rows in ONE transaction; True when written.

        ``scores`` may also hold :class:`TextRow` items (generated text), written to the
        ``generations`` table in the same transaction. A previous failed row for the cell is replaced. If anything goes wrong midway (a
        duplicate score row, an exception from the ``scores`` iterator, the process dying) the
        transaction is rolled back and the store is as it was before the call. ``scores`` may be
        a lazy iterator; it is consumed inside the transaction, so keep it cheap.

        Results are never duplicated or overwritten. False (nothing written, ``scores`` not read)
        when another run finished this cell, under the same key, since the caller last checked
        :meth:`is_finished`: two processes sharing a store both computed it, the first commit
        stands. Raises UnlearnbenchError if this same run finished it already, or if the finished
        cell has another key: those are bugs of the caller, not a race.
        """
        labels = _label_values(label)
        key_json = canonical_json(dict(key))
        meta_json = None if meta is None else json.dumps(dict(meta), sort_keys=True, default=str)
        with self._writing(f"committing cell {cell_id}") as conn:
            if not self._claim(run_id, cell_id, key_json, action="commit"):
                return False
            now = _utcnow()
            conn.execute(
                f"INSERT INTO cells({', '.join(_CELL_COLUMNS)}) VALUES ({', '.join('?' * len(_CELL_COLUMNS))})",
                (cell_id, run_id, kind, "finished", key_json, *labels, meta_json, None, now, now),
            )
            texts: list[TextRow] = []
            try:
                conn.executemany(
                    f"INSERT INTO scores(cell_id, {', '.join(_SCORE_COLUMNS)}) "
                    f"VALUES ({', '.join('?' * (len(_SCORE_COLUMNS) + 1))})",
                    self._score_params(cell_id, scores, texts),
                )
                conn.executemany(
                    f"INSERT INTO generations(cell_id, {', '.join(_TEXT_COLUMNS)}) "
                    f"VALUES ({', '.join('?' * (len(_TEXT_COLUMNS) + 1))})",
                    ((cell_id, t.checkpoint, int(t.step), t.split, t.form, str(t.item_id), t.text) for t in texts),
                )
            except sqlite3.IntegrityError as exc:
                what = (
                    "score row (same checkpoint, split, form, item_id and metric)"
                    if "scores." in str(exc)
                    else "generation row (same checkpoint, split, form and item_id)"
                )
                raise UnlearnbenchError(
                    f"cell {cell_id}: duplicate {what}; nothing was written: {_one_line(exc)}"
                ) from None
        return True

    @staticmethod
    def _score_params(cid: str, scores: Iterable[ScoreRow | TextRow], texts: list[TextRow]) -> Iterator[tuple]:
        for row in scores:
            if isinstance(row, TextRow):
                texts.append(row)
            else:
                yield _score_tuple(cid, row)

    def record_failure(self, run_id: str, cell_id: str, key: Mapping, kind: str, label: Mapping, reason: str) -> bool:
        """Record that a cell failed (status 'failed', ``reason``, no scores); True when written.

        A failed cell is not finished, so a re-run retries it; an older failed row is replaced.
        A finished cell is never touched (its results stay authoritative): False when another run
        finished it meanwhile (see :meth:`commit_cell`), an error when this run did.
        """
        labels = _label_values(label)
        key_json = canonical_json(dict(key))
        with self._writing(f"recording the failure of cell {cell_id}") as conn:
            if not self._claim(run_id, cell_id, key_json, action="record a failure for"):
                return False
            conn.execute(
                f"INSERT INTO cells({', '.join(_CELL_COLUMNS)}) VALUES ({', '.join('?' * len(_CELL_COLUMNS))})",
                (cell_id, run_id, kind, "failed", key_json, *labels, None, str(reason), _utcnow(), None),
            )
        return True

    def _claim(self, run_id: str, cid: str, key_json: str, action: str) -> bool:
        """Inside a write transaction: may this run write cell ``cid``? Clears a failed row if so.

        False when another run finished the cell under the same key (a concurrent process got
        there first; its commit stands). Raises when the run does not exist, when this run
        finished the cell itself, or when the finished cell has another key. Runs under the write
        lock, so of two processes racing on one cell exactly one finishes it.
        """
        if self.conn.execute("SELECT 1 FROM runs WHERE run_id = ?", (run_id,)).fetchone() is None:
            raise UnlearnbenchError(f"results store '{self.path}' has no run '{run_id}'")
        row = self.conn.execute("SELECT status, run_id, key_json FROM cells WHERE cell_id = ?", (cid,)).fetchone()
        if row is not None and row[0] == "finished":
            if row[1] != run_id and row[2] == key_json:
                return False
            why = "by this run" if row[1] == run_id else "under another key"
            raise UnlearnbenchError(f"cannot {action} cell {cid}: it is already finished {why} in '{self.path}'")
        self.conn.execute("DELETE FROM scores WHERE cell_id = ?", (cid,))
        self.conn.execute("DELETE FROM generations WHERE cell_id = ?", (cid,))
        self.conn.execute("DELETE FROM cells WHERE cell_id = ?", (cid,))
        return True

    # -- frames and export -------------------------------------------------------------------

    def scores_frame(self, cell_ids: Sequence[str] | None = None) -> pandas.DataFrame:
        """Every score row (long format) joined with its cell's id, run, kind and label columns.

        ``value`` is float with NaN where NaN was stored. ``cell_ids`` restricts to those cells.
        """
        import pandas as pd

        select = (
            "SELECT s.cell_id, c.run_id, c.kind, "
            + ", ".join(f"c.{col}" for col in LABEL_COLUMNS)
            + ", "
            + ", ".join(f"s.{col}" for col in _SCORE_COLUMNS)
            + " FROM scores s JOIN cells c ON c.cell_id = s.cell_id"
        )
        rows: list[tuple] = []
        if cell_ids is None:
            rows = self.conn.execute(f"{select} ORDER BY {_SCORE_ORDER}").fetchall()
        else:
            ids = list(dict.fromkeys(cell_ids))
            for start in range(0, len(ids), _MAX_PARAMS):
                chunk = ids[start : start + _MAX_PARAMS]
                rows += self.conn.execute(
                    f"{select} WHERE s.cell_id IN ({', '.join('?' * len(chunk))}) ORDER BY {_SCORE_ORDER}",
                    chunk,
                ).fetchall()
        frame = pd.DataFrame(rows, columns=list(_FRAME_COLUMNS))
        frame["step"] = frame["step"].astype("int64")
        frame["value"] = frame["value"].astype("float64")  # NULL (None) -> NaN
        return frame

    def generations_frame(self, cell_ids: Sequence[str] | None = None) -> pandas.DataFrame:
        """Every stored generation: ``cell_id, checkpoint, step, split, form, item_id, text``."""
        import pandas as pd

        select = f"SELECT cell_id, {', '.join(_TEXT_COLUMNS)} FROM generations"
        order = " ORDER BY cell_id, step, checkpoint, split, form, item_id"
        if cell_ids is None:
            rows = self.conn.execute(select + order).fetchall()
        else:
            rows = []
            ids = list(dict.fromkeys(cell_ids))
            for start in range(0, len(ids), _MAX_PARAMS):
                chunk = ids[start : start + _MAX_PARAMS]
                rows += self.conn.execute(
                    f"{select} WHERE cell_id IN ({', '.join('?' * len(chunk))}){order}", chunk
                ).fetchall()
        frame = pd.DataFrame(rows, columns=["cell_id", *_TEXT_COLUMNS])
        frame["step"] = frame["step"].astype("int64")
        return frame

    def cells_frame(self) -> pandas.DataFrame:
        """One row per cell with the raw table columns (``key_json``/``meta_json`` left as text)."""
        import pandas as pd

        rows = self.conn.execute(
            f"SELECT {', '.join(_CELL_COLUMNS)} FROM cells ORDER BY created_at, cell_id"
        ).fetchall()
        return pd.DataFrame(rows, columns=list(_CELL_COLUMNS))

    def item_means_frame(self, forms: Sequence[str]) -> pandas.DataFrame:
        """Mean per-item ``value`` per (cell, step, split, form, metric) of the *finished* cells,
        for the probe forms in ``forms`` only. Read-only.

        Aggregate rows (``item_id`` '*') are left out; NaN (stored NULL) values are skipped by the
        mean, and a group of only NaN gives NaN. Checkpoints are told apart by ``step`` only.
        Columns: ``cell_id, step, split, form, metric, value`` (``value`` float); an empty frame
        with those columns when nothing matches. Rows come in no promised order.
        """
        import pandas as pd

        columns = ["cell_id", "step", "split", "form", "metric", "value"]
        forms = list(dict.fromkeys(forms))
        rows: list[tuple] = []
        if forms:
            rows = self.conn.execute(
                "SELECT s.cell_id, s.step, s.split, s.form, s.metric, AVG(s.value) FROM scores s "
                "JOIN cells c ON c.cell_id = s.cell_id WHERE c.status = 'finished' AND s.item_id != '*' "
                f"AND s.form IN ({', '.join('?' * len(forms))}) "
                "GROUP BY s.cell_id, s.step, s.split, s.form, s.metric",
                forms,
            ).fetchall()
        frame = pd.DataFrame(rows, columns=columns)
        frame["step"] = frame["step"].astype("int64")
        frame["value"] = frame["value"].astype("float64")  # an all-NULL group's AVG (None) -> NaN
        return frame

    def summary_frame(self) -> pandas.DataFrame:
        """Mean ``value`` per (cell, label columns, checkpoint, step, split, form, metric).

        NaN values are skipped by the mean (a group of only NaN gives NaN); ``n`` counts all
        score rows of the group, NaN included, so a thinned-out mean is visible.
        """
        frame = self.scores_frame()
        group = ["cell_id", "run_id", "kind", *LABEL_COLUMNS, "checkpoint", "step", "split", "form", "metric"]
        # dropna=False: label columns are NULL where they do not apply (no attack on a base
        # cell); pandas would otherwise silently drop those groups.
        summary = frame.groupby(group, dropna=False, sort=False)["value"].agg(value="mean", n="size").reset_index()
        return summary.sort_values(
            ["cell_id", "step", "checkpoint", "split", "form", "metric"], kind="stable", ignore_index=True
        )
