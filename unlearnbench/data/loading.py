"""Reading records (one dict per example) from local files or hub datasets.

Why a single ``load_records``: benchmark data arrives in whatever format its authors used
(GSM8K as JSON Lines, GLUE as TSV with a header, AG News as TSV without one, TOFU and MUSE as JSON
lists) and users on offline machines substitute local copies for hub datasets. Every loader in
the harness goes through this one function so that all of them accept the same formats, keep the
same value types and fail with the same one-line messages.

Value types: JSON, JSON Lines and Parquet keep their types; CSV and TSV values are always strings
(read with ``dtype=str`` and no NA conversion, so a label "NA" or "null" stays text and "007"
keeps its zeros). Converting is the caller's job, because only the caller knows a column's meaning.

pandas, pyarrow and datasets are imported inside the functions to keep module import cheap.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path

from unlearnbench.errors import HubUnavailable, UnlearnbenchError, exception_chain

__all__ = ["load_records"]

_FORMATS = ("jsonl", "json", "csv", "tsv", "parquet")
_EXPECTED = "expected jsonl, json, csv, tsv or parquet"
# 'name' or 'org/name', as the hub spells dataset ids.
_HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?")
# A header cell: a short name such as 'sentence', 'label', 'choice0', 'label name'.
_HEADER_CELL = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-/() ]{0,39}")
_NUMBER = re.compile(r"[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?")


def load_records(
    source: str | os.PathLike,
    *,
    columns: Sequence[str] | None = None,
    split: str | None = None,
    config: str | None = None,
    header: bool | None = None,
    names: Sequence[str] | None = None,
) -> list[dict]:
    """Load records from a local file, a local directory (``<split>.<ext>`` inside) or a hub dataset.

    * Local files are read by extension: .jsonl, .json, .csv, .tsv, .parquet.
    * For CSV/TSV, ``header`` says whether the first row names the columns (None: detect it) and
      ``names`` gives column names for a file without a header. With ``header=None`` and
      ``names`` given, a first row equal to ``names`` is taken as the header.
    * ``columns`` lists columns every record must have; a missing one is a one-line error naming
      what was expected and what was found. Records are returned whole, not narrowed to them.
    * Anything that is not a local path is a hub dataset id, loaded with
      ``datasets.load_dataset(id, config, split=split)`` (from the local cache when offline).
    """
    text = os.fspath(source)
    path = Path(text).expanduser()
    if path.is_dir():
        file = _file_for_split(path, split)
    elif path.is_file():
        file = path
    elif _looks_like_path(text) or not (_HUB_ID.fullmatch(text) and ".." not in text):
        raise UnlearnbenchError(f"no such data file: '{text}' ({_EXPECTED})")
    else:
        records = _load_hub(text, config, split)
        _check_columns(records, columns, _hub_label(text, config, split))
        return records

    records = _read_file(file, header=header, names=names)
    if not records:
        raise UnlearnbenchError(f"'{file}' holds no records")
    _check_columns(records, columns, f"'{file}'")
    return records


# --------------------------------------------------------------------------------------------
# local files


def _looks_like_path(text: str) -> bool:
    """True when a missing ``source`` was clearly meant as a file, so the user hears 'no such data
    file' instead of a confusing hub error for a typo'd path like 'data/train.jsonl'."""
    lowered = text.lower()
    return (
        text.startswith(("/", ".", "~"))
        or "\\" in text
        or text.count("/") >= 2
        or any(lowered.endswith("." + ext) for ext in _FORMATS)
    )


def _file_for_split(directory: Path, split: str | None) -> Path:
    """Find ``<split>.<ext>`` in a directory; refuse to guess between several formats."""
    present = sorted(f.name for f in directory.iterdir() if f.is_file() and f.suffix.lstrip(".").lower() in _FORMATS)
    if split is None:
        raise UnlearnbenchError(
            f"'{directory}' is a directory; pass a split to pick a file in it (found: {', '.join(present) or 'no data files'})"
        )
    candidates = [directory / f"{split}.{ext}" for ext in _FORMATS if (directory / f"{split}.{ext}").is_file()]
    if not candidates:
        raise UnlearnbenchError(
            f"no data file for split '{split}' in '{directory}' (looked for {split}.{{{','.join(_FORMATS)}}}; "
            f"found: {', '.join(present) or 'no data files'})"
        )
    if len(candidates) > 1:
        raise UnlearnbenchError(
            f"several files for split '{split}' in '{directory}' ({', '.join(c.name for c in candidates)}); pass the file itself"
        )
    return candidates[0]


def _read_file(file: Path, *, header: bool | None, names: Sequence[str] | None) -> list[dict]:
    suffix = file.suffix.lower().lstrip(".")
    if suffix not in _FORMATS:
        raise UnlearnbenchError(f"unsupported data file '{file}': {_EXPECTED}")
    if file.stat().st_size == 0:
        raise UnlearnbenchError(f"'{file}' is empty")
    if suffix == "jsonl":
        return _read_jsonl(file)
    if suffix == "json":
        return _read_json(file)
    if suffix == "parquet":
        return _read_parquet(file)
    return _read_delimited(file, "\t" if suffix == "tsv" else ",", header=header, names=names)


def _read_jsonl(file: Path) -> list[dict]:
    """One JSON object per line; blank lines are skipped; errors name the line number."""
    records = []
    # utf-8-sig: files written on Windows often start with a byte-order mark.
    with open(file, encoding="utf-8-sig") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UnlearnbenchError(
                    f"'{file}' line {number} is not valid JSON: {exc.msg} (column {exc.colno})"
                ) from exc
            if not isinstance(value, dict):
                raise UnlearnbenchError(f"'{file}' line {number}: expected a JSON object, got {type(value).__name__}")
            records.append(value)
    return records


def _read_json(file: Path) -> list[dict]:
    """A list of objects, a dict wrapping one list (``{"data": [...]}``) or a dict of column lists.

    A list of strings (MUSE's privleak files) becomes records ``{"text": ...}``: the harness
    works on dicts everywhere, and 'text' is the name the hub versions of such data use.
    """
    try:
        with open(file, encoding="utf-8-sig") as handle:
            value = json.load(handle)
    except json.JSONDecodeError as exc:
        hint = "; it looks like JSON Lines, name it .jsonl" if exc.msg == "Extra data" else ""
        raise UnlearnbenchError(
            f"'{file}' is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno}){hint}"
        ) from exc

    if isinstance(value, dict):
        list_keys = [key for key, item in value.items() if isinstance(item, list)]
        if len(list_keys) == 1 and all(isinstance(item, dict) for item in value[list_keys[0]]):
            value = value[list_keys[0]]
        elif value and len(list_keys) == len(value) and len({len(value[key]) for key in list_keys}) == 1:
            return [dict(zip(value, row)) for row in zip(*value.values())]
        elif len(list_keys) == 1:
            value = value[list_keys[0]]
        else:
            raise UnlearnbenchError(
                f"'{file}': expected a list of objects, a dict holding one list, or a dict of equal-length column lists"
            )
    if not isinstance(value, list):
        raise UnlearnbenchError(f"'{file}': expected a list of objects, got {type(value).__name__}")
    if all(isinstance(item, dict) for item in value):
        return value
    if all(isinstance(item, str) for item in value):
        return [{"text": item} for item in value]
    bad = next(i for i, item in enumerate(value) if not isinstance(item, dict))
    raise UnlearnbenchError(f"'{file}': item {bad} is a {type(value[bad]).__name__}, expected a JSON object")


def _read_parquet(file: Path) -> list[dict]:
    """pyarrow's ``to_pylist`` gives plain Python values (no numpy scalars or arrays)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(file)
    except (pa.ArrowInvalid, OSError) as exc:
        raise UnlearnbenchError(f"'{file}' is not a readable parquet file: {_one_line(exc)}") from exc
    return table.to_pylist()


def _read_delimited(file: Path, sep: str, *, header: bool | None, names: Sequence[str] | None) -> list[dict]:
    """CSV/TSV as strings; decide about the header row ourselves rather than letting pandas guess.

    The whole file is read header-less first, then the first row is judged. Both quoting styles
    seen in real TSVs work: plain (SST-2) and CSV-style ``"..."`` with doubled quotes (AG News).
    """
    import pandas as pd

    try:
        frame = pd.read_csv(
            file, sep=sep, header=None, dtype=str, keep_default_na=False, encoding="utf-8-sig", skip_blank_lines=True
        )
    except pd.errors.EmptyDataError as exc:
        raise UnlearnbenchError(f"'{file}' is empty") from exc
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise UnlearnbenchError(f"'{file}' could not be parsed: {_one_line(exc)}") from exc
    rows = frame.values.tolist()
    if not rows:
        raise UnlearnbenchError(f"'{file}' is empty")
    first = [cell.strip() for cell in rows[0]]
    width = len(first)
    if names is not None:
        names = [str(name) for name in names]
        if len(names) != width:
            raise UnlearnbenchError(f"'{file}' has {width} columns but names gives {len(names)}: {', '.join(names)}")

    if header is None:
        if names is not None:
            header = first == names
            if not header and _looks_like_header(first, rows[1:]):
                raise UnlearnbenchError(
                    f"the first row of '{file}' looks like a header ({', '.join(first)}) that differs from names "
                    f"({', '.join(names)}); pass header=True to replace it or header=False to keep it as data"
                )
        elif _looks_like_header(first, rows[1:]):
            header = True
        else:
            raise UnlearnbenchError(
                f"'{file}' seems to have no header row; pass names= with its {width} column names (or header=True)"
            )
    if header:
        columns, data = (names if names is not None else first), rows[1:]
    else:
        if names is None:
            raise UnlearnbenchError(f"'{file}' has no header row; pass names= with its {width} column names")
        columns, data = names, rows
    if len(set(columns)) != len(columns):
        raise UnlearnbenchError(f"'{file}' has repeated column names: {', '.join(columns)}")
    return [dict(zip(columns, row)) for row in data]


def _looks_like_header(first: list[str], rest: list[list[str]]) -> bool:
    """Conservative header guess: short, distinct, non-numeric names that never recur as data.

    Data rows (a sentence, a number, a label that appears again further down) fail at least one
    of these tests; when in doubt the answer is 'no header' and the user is asked for names.
    """
    if len(set(first)) != len(first):
        return False
    for cell in first:
        if not cell or _NUMBER.fullmatch(cell) or not _HEADER_CELL.fullmatch(cell) or len(cell.split()) > 3:
            return False
    for index, cell in enumerate(first):
        if any(row[index].strip() == cell for row in rest):
            return False
    return True


# --------------------------------------------------------------------------------------------
# hub datasets


def _hub_label(dataset: str, config: str | None, split: str | None) -> str:
    details = [f"config '{config}'"] if config else []
    if split:
        details.append(f"split '{split}'")
    return f"dataset '{dataset}'" + (f" ({', '.join(details)})" if details else "")


def _load_hub(dataset: str, config: str | None, split: str | None) -> list[dict]:
    """``datasets.load_dataset`` with its offline and not-found failures turned into one line."""
    import datasets

    label = _hub_label(dataset, config, split)
    try:
        loaded = datasets.load_dataset(dataset, config, split=split)
    except (OSError, ValueError) as exc:
        message = _hub_error_message(exc, dataset, split, label)
        if message is None:
            raise
        raise (message if isinstance(message, HubUnavailable) else UnlearnbenchError(message)) from exc
    if isinstance(loaded, datasets.DatasetDict):
        if len(loaded) != 1:
            raise UnlearnbenchError(f"{label} has splits {', '.join(loaded)}; pass split= to pick one")
        loaded = next(iter(loaded.values()))
    return loaded.to_list()


def _hub_error_message(exc: BaseException, dataset: str, split: str | None, label: str) -> str | HubUnavailable | None:
    """Recognise hub failures by exception type anywhere in the cause chain; None if unrelated
    (offline: a :class:`HubUnavailable`, whose hint callers other than tasks replace).

    ``datasets`` reports 'offline and not cached' as the builtin ConnectionError wrapping a
    FileNotFoundError; huggingface_hub's own classes appear when the cause is a file lookup.
    """
    from datasets.exceptions import DatasetNotFoundError
    from huggingface_hub.errors import GatedRepoError, LocalEntryNotFoundError, OfflineModeIsEnabled

    chain = list(exception_chain(exc))

    if any(isinstance(e, (ConnectionError, LocalEntryNotFoundError, OfflineModeIsEnabled)) for e in chain):
        short = dataset.rsplit("/", 1)[-1]
        return HubUnavailable(
            f"{label} is not in the local cache and the hub is unreachable",
            f"pass a local file, e.g. --data {short}=path/to/{split or 'train'}.jsonl",
        )
    if any(isinstance(e, GatedRepoError) for e in chain):
        return f"{label} is gated on the hub — accept its terms and run huggingface-cli login"
    if any(isinstance(e, DatasetNotFoundError) for e in chain):
        return f"dataset '{dataset}' was not found on the hub (a private one needs huggingface-cli login)"
    if isinstance(exc, ValueError) and re.search(r"\b(split|config|BuilderConfig)\b", str(exc)):
        return f"{label}: {_one_line(exc)}"
    return None


# --------------------------------------------------------------------------------------------
# shared


def _one_line(exc: BaseException) -> str:
    """Library messages can span lines; UnlearnbenchError messages must not."""
    return " ".join(str(exc).split())


def _check_columns(records: list[dict], columns: Sequence[str] | None, label: str) -> None:
    """Every record must have every required column; name the first record that does not."""
    if not columns:
        return
    expected = ", ".join(columns)
    for index, record in enumerate(records):
        missing = [column for column in columns if column not in record]
        if missing:
            where = label if index == 0 else f"{label} record {index + 1}"
            lacking = ", ".join(f"'{column}'" for column in missing)
            raise UnlearnbenchError(
                f"{where} lacks column(s) {lacking}; expected columns: {expected} (found: {', '.join(map(str, record))})"
            )
