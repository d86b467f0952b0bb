"""Real fine-tuning datasets as task plugins: GSM8K, AG News, SST-2, WinoGrande, MNLI and QQP.

Each YAML file in ``tasks/finetune/`` declares one dataset (where it lives on the hub, its columns
and the names local copies use for them, the prompt and target templates, the scoring and the label
words); this module turns every file into a registered task plugin, usable as ``finetune:sst2``,
``relearn:agnews`` or an ILU environment (``ilu,envs=gsm8k``). Adding a YAML file adds a task.

Data come from the hub split the YAML names, or from a local file given as the config's
``train``/``test`` (the CLI's ``--data sst2=path`` and ``--data sst2:test=path``). A local file's
sha256 goes into the result key (``key_extra``), so results are keyed by the data, not by its path
alone; so do the YAML fields that decide the examples.

A task used only for training (an ILU environment, ``relearn:<task>``) reads its train split alone
(``load_train``), so it needs no test file. Each split is read once per task object and kept: the
runner reads the data when it plans a run (a missing hub split or a malformed file is a one-line
error before any model is built), and the run uses what was read then.

Scoring (see unlearnbench.inference.task_item_scores): ``number`` compares the number after '####' of a greedy
generation with the target's; ``choice`` picks the label word with the highest log-likelihood.
"""

from __future__ import annotations

import csv
import hashlib
import json
import random
import re
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..data.loading import load_records
from ..data.types import Example, TaskData
from ..errors import HubUnavailable, UnlearnbenchError
from ..registry import register_task
from ..spec import tasks_dir

SPEC_FOLDER = "finetune"
_SCORINGS = ("number", "choice")
_NO_SUCH_FILE = "no such data file: '{}' (expected jsonl, json, csv, tsv or parquet)"


@dataclass(frozen=True)
class DatasetTaskConfig:
    train: str | None = field(
        default=None, metadata={"help": "local file replacing the hub's train split (jsonl, json, csv, tsv or parquet)"}
    )
    test: str | None = field(
        default=None, metadata={"help": "local file replacing the hub's test split (FA is measured on it)"}
    )
    n_train: int = field(default=1000, metadata={"help": "training examples drawn (-1: all)"})
    n_test: int = field(default=200, metadata={"help": "test examples drawn (-1: all)"})
    seed: int = field(default=0, metadata={"help": "seed of the draws"})

    def __post_init__(self):
        if self.n_train == 0 or self.n_train < -1 or self.n_test == 0 or self.n_test < -1:
            raise ValueError("n_train and n_test must be positive (or -1 for all examples)")


# ----------------------------------------------------------------------------------------------
# the YAML spec


@dataclass(frozen=True)
class DatasetSpec:
    name: str
    version: str
    description: str
    hub_id: str
    hub_config: str | None
    splits: dict[str, str]  # 'train'/'test' -> hub split
    columns: dict[str, tuple[str, ...]]  # field -> (hub column, other names in local files)
    names: tuple[str, ...] | None  # columns of a CSV/TSV file without a header row
    prompt: str
    target: str
    scoring: str
    label_field: str | None
    labels: dict[str, str]  # normalised data value -> label word
    label_values: tuple[str, ...]  # the values as the YAML writes them (for messages)
    choices: tuple[str, ...]
    one_line: tuple[str, ...]
    max_new_tokens: int
    path: str

    def key(self) -> dict:
        """What decides the examples (not the description): hashed into the result key."""
        return {
            "hub": [self.hub_id, self.hub_config, self.splits],
            "columns": self.columns,
            "names": self.names,
            "prompt": self.prompt,
            "target": self.target,
            "scoring": self.scoring,
            "label_field": self.label_field,
            "labels": self.labels,
            "one_line": self.one_line,
            "max_new_tokens": self.max_new_tokens,
        }

    def expected_columns(self) -> str:
        """'sentence (or text), label' for error messages."""
        return ", ".join(c[0] + (f" (or {', '.join(c[1:])})" if len(c) > 1 else "") for c in self.columns.values())


def _label_key(value: Any) -> str:
    """One spelling per label value: 1, 1.0 and '1 ' match; names match regardless of case."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value).strip().lower()


def _parse_spec(path: Path) -> DatasetSpec:
    import yaml

    def bad(msg: str) -> UnlearnbenchError:
        return UnlearnbenchError(f"{path}: {msg}")

    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise bad(f"not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise bad("must hold a mapping at top level")
    name = raw.get("name", path.stem)
    if name != path.stem:
        raise bad(f"name {name!r} differs from the file name {path.stem!r}")
    for key in ("hub", "columns", "prompt", "target", "scoring"):
        if key not in raw:
            raise bad(f"missing {key!r}")
    hub = raw["hub"]
    if not isinstance(hub, dict) or not all(isinstance(hub.get(k), str) for k in ("id", "train", "test")):
        raise bad("hub needs id, train and test (split names), and optionally config")
    if not isinstance(raw["columns"], dict) or not raw["columns"]:
        raise bad("columns must map each field to a list of column names")
    columns = {}
    for fld, names in raw["columns"].items():
        names = [names] if isinstance(names, str) else names
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise bad(f"columns.{fld} must be a column name or a list of them")
        columns[str(fld)] = tuple(names)
    local_names = raw.get("names")
    if local_names is not None and (not isinstance(local_names, list) or set(local_names) != set(columns)):
        raise bad(f"names must list the fields {', '.join(columns)} in file order")
    scoring = raw["scoring"]
    if scoring not in _SCORINGS:
        raise bad(f"scoring must be one of {', '.join(_SCORINGS)}, got {scoring!r}")
    for key in ("prompt", "target"):
        if not isinstance(raw[key], str):
            raise bad(f"{key} must be a string template")
        used = {f for _, f, _, _ in string.Formatter().parse(raw[key]) if f is not None}
        if used - set(columns):
            raise bad(f"{key} uses {', '.join(sorted(used - set(columns)))}, which columns does not declare")

    label_field, labels, label_values, choices = None, {}, (), ()
    if scoring == "choice":
        spec_labels = raw.get("labels")
        if (
            not isinstance(spec_labels, dict)
            or not isinstance(spec_labels.get("map"), dict)
            or spec_labels.get("field") not in columns
        ):
            raise bad("choice scoring needs labels: {field: <a column field>, map: {value: label word}}")
        label_field = spec_labels["field"]
        for value, word in spec_labels["map"].items():
            if not isinstance(word, str) or not word.strip() or word != word.strip():
                raise bad(f"label word for {value!r} must be a non-empty word without surrounding spaces")
            labels[_label_key(value)] = word
        label_values = tuple(str(v) for v in spec_labels["map"])
        choices = tuple(dict.fromkeys(labels.values()))
        if len(choices) < 2:
            raise bad("a choice task needs at least two label words")
    one_line = tuple(raw.get("one_line") or ())
    if set(one_line) - set(columns):
        raise bad(f"one_line names unknown fields: {', '.join(sorted(set(one_line) - set(columns)))}")
    max_new_tokens = raw.get("max_new_tokens", 32)
    if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise bad("max_new_tokens must be a positive integer")
    version = raw.get("version", "1")
    return DatasetSpec(
        name=name,
        version=str(version),
        description=str(raw.get("description", "")),
        hub_id=hub["id"],
        hub_config=hub.get("config"),
        splits={"train": hub["train"], "test": hub["test"]},
        columns=columns,
        names=tuple(local_names) if local_names else None,
        prompt=raw["prompt"],
        target=raw["target"],
        scoring=scoring,
        label_field=label_field,
        labels=labels,
        label_values=label_values,
        choices=choices,
        one_line=one_line,
        max_new_tokens=max_new_tokens,
        path=str(path),
    )


# ----------------------------------------------------------------------------------------------
# the task plugin


def _first_row(path: Path, sep: str) -> list[str]:
    with open(path, encoding="utf-8-sig", newline="") as handle:
        return next(csv.reader(handle, delimiter=sep), [])


def file_sha256(path: str | Path) -> str:
    """:func:`unlearnbench.models.file_sha256` of a data file; one error line if it cannot be read."""
    from ..models import file_sha256 as sha256_of

    try:
        return sha256_of(Path(path).expanduser())
    except OSError as e:
        raise UnlearnbenchError(f"cannot read data file '{path}': {e.strerror or e}") from None


class DatasetTask:
    """A real dataset, read through its YAML spec (``spec`` is set on each registered subclass)."""

    version = "1"
    Config = DatasetTaskConfig
    reads_files = True  # --data NAME=PATH configures its train/test files
    description = ""
    spec: DatasetSpec

    def __init__(self, config: DatasetTaskConfig | None = None):
        self.config = config or DatasetTaskConfig()
        self._read: dict[str, list[Example]] = {}  # role -> examples, each split read once
        for role in ("train", "test"):  # fail at plan time, before any model is touched
            path = getattr(self.config, role)
            if path is None:
                continue
            p = Path(path).expanduser()
            if p.is_dir():
                raise UnlearnbenchError(f"{self.name}: '{path}' is a directory; pass the {role} file itself")
            if not p.is_file():
                raise UnlearnbenchError(_NO_SUCH_FILE.format(path))

    # -- keys -----------------------------------------------------------------------------
    def key_extra(self) -> dict:
        """The YAML fields and any local file's content decide the examples, so they key results."""
        spec_hash = hashlib.sha256(json.dumps(self.spec.key(), sort_keys=True).encode()).hexdigest()
        out: dict = {"spec_sha256": spec_hash}
        files = {
            role: file_sha256(getattr(self.config, role))
            for role in ("train", "test")
            if getattr(self.config, role) is not None
        }
        if files:
            out["data_sha256"] = files
        return out

    # -- data -----------------------------------------------------------------------------
    def load(self) -> TaskData:
        s = self.spec
        train, test = self._split("train", with_test=True), self._split("test")
        return TaskData(self.name, train, test, s.scoring, s.choices, max_new_tokens=s.max_new_tokens)

    def load_train(self) -> list[Example]:
        """The training examples alone, for a task that is only trained on (an ILU environment,
        ``relearn:<task>``): its test split is never read, so it needs no test file."""
        return self._split("train", with_test=False)

    def _split(self, role: str, with_test: bool = False) -> list[Example]:
        """The drawn examples of ``role`` (read on first use, then kept); ``with_test``: the test
        split is needed too (the error for a missing train split then names both flags)."""
        if role not in self._read:
            path, n = getattr(self.config, role), getattr(self.config, f"n_{role}")
            self._read[role] = self._draw(role, path, n, with_test)
        return self._read[role]

    def _draw(self, role: str, path: str | None, n: int, with_test: bool) -> list[Example]:
        if path is not None:
            records, where = self._read_local(Path(path).expanduser()), f"'{path}'"
        else:
            records, where = self._read_hub(role, with_test)
        examples = self._examples(records, where)
        if n == -1 or n >= len(examples):
            return examples
        rng = random.Random(f"{self.name}:{role}:{self.config.seed}")
        return [examples[i] for i in sorted(rng.sample(range(len(examples)), n))]

    def _read_local(self, path: Path) -> list[dict]:
        """Local files: CSV/TSV with a header row naming the columns, or without one when the
        YAML gives ``names`` (AG News' TSV: text, label name); other formats as they are."""
        s = self.spec
        sep = {".tsv": "\t", ".csv": ","}.get(path.suffix.lower())
        if sep is None:
            return load_records(path)
        first = [cell.strip() for cell in _first_row(path, sep)]
        if not first:
            return load_records(path)  # the loader's "is empty" message
        known = {name for names in s.columns.values() for name in names}
        if known & set(first):
            return load_records(path, header=True)
        if s.names and len(first) == len(s.names):
            return load_records(path, header=False, names=s.names)
        without = f", or give exactly the {len(s.names)} columns {', '.join(s.names)} without one" if s.names else ""
        raise UnlearnbenchError(
            f"'{path}' has no header row naming {self.name}'s columns ({s.expected_columns()}); add one{without}"
        )

    def _read_hub(self, role: str, with_test: bool = True) -> tuple[list[dict], str]:
        s = self.spec
        split = s.splits[role]
        label = f"dataset '{s.hub_id}'" + (
            f" (config '{s.hub_config}', split '{split}')" if s.hub_config else f" (split '{split}')"
        )
        try:
            return load_records(s.hub_id, config=s.hub_config, split=split), label
        except UnlearnbenchError as e:
            if isinstance(e, HubUnavailable):
                flag = f"--data {self.name}:test=path/to/test.jsonl"
                if role == "train":
                    also = with_test and not self.config.test
                    flag = f"--data {self.name}=path/to/train.jsonl" + (f" (and {flag})" if also else "")
                raise UnlearnbenchError(
                    f"{self.name}: no local {role} file given and {label} is not in the local cache "
                    f"(the hub is unreachable); pass one with {flag}"
                ) from None
            raise UnlearnbenchError(f"{self.name}: {e}") from e

    def _examples(self, records: list[dict], where: str) -> list[Example]:
        from ..metrics import final_number

        s = self.spec
        chosen = self._columns(records[0], where)
        out = []
        for i, record in enumerate(records):
            values = {}
            for fld, column in chosen.items():
                if column not in record:
                    raise UnlearnbenchError(
                        f"{where} record {i + 1} lacks column '{column}'; {self.name} "
                        f"expects columns {s.expected_columns()}"
                    )
                value = record[column]
                if value is None or (isinstance(value, str) and not value.strip()):
                    raise UnlearnbenchError(f"{where} record {i + 1} has no value in column '{column}'")
                if fld == s.label_field:
                    word = s.labels.get(_label_key(value))
                    if word is None:
                        raise UnlearnbenchError(
                            f"{where} record {i + 1}: label {value!r} in column '{column}' is not one of "
                            f"{', '.join(s.label_values)}"
                        )
                    values[fld] = word
                    continue
                text = str(value).strip()
                if fld in s.one_line:
                    text = " ".join(line.strip() for line in text.splitlines() if line.strip())
                values[fld] = text
            ex = Example(s.prompt.format_map(values), s.target.format_map(values))
            if s.scoring == "number" and final_number(ex.target) is None:
                raise UnlearnbenchError(
                    f"{where} record {i + 1}: the answer has no final number "
                    f"(expected a worked answer ending in '#### 18')"
                )
            out.append(ex)
        return out

    def _columns(self, first: dict, where: str) -> dict[str, str]:
        """field -> the column this file uses for it (the hub's name or an alternative)."""
        chosen, missing = {}, []
        for fld, names in self.spec.columns.items():
            found = next((n for n in names if n in first), None)
            if found is None:
                missing.append(names[0])
            else:
                chosen[fld] = found
        if missing:
            raise UnlearnbenchError(
                f"{where} lacks column(s) {', '.join(repr(m) for m in missing)}; {self.name} expects columns "
                f"{self.spec.expected_columns()} (found: {', '.join(map(str, first))})"
            )
        return chosen


def _class_name(name: str) -> str:
    return "".join(p.capitalize() for p in re.split(r"[^A-Za-z0-9]+", name) if p) + "Task"


def _register_all() -> list[type]:
    """One task plugin per YAML file in tasks/finetune/ (none when the folder is absent)."""
    folder = tasks_dir() / SPEC_FOLDER
    made = []
    for path in sorted(folder.glob("*.yaml")) if folder.is_dir() else ():
        spec = _parse_spec(path)
        cls_name = _class_name(spec.name)
        cls = type(
            cls_name,
            (DatasetTask,),
            {
                "name": spec.name,
                "version": spec.version,
                "Config": DatasetTaskConfig,
                "description": spec.description,
                "spec": spec,
                "__module__": __name__,
                "__qualname__": cls_name,
                "__doc__": f"{spec.description} (spec: {path.name})",
            },
        )
        globals()[cls_name] = cls
        register_task()(cls)
        made.append(cls)
    return made


DATASET_TASKS: tuple[str, ...] = tuple(cls.name for cls in _register_all())
