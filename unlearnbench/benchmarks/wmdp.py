"""``wmdp`` — the WMDP benchmark (Li et al. 2024, arXiv 2403.03218) with MMLU as utility.

WMDP asks 4-way multiple-choice questions about hazardous knowledge in biology, cyber security and
chemistry. Unlearning (RMU in the paper) trains on a *forget corpus* of related text and a *retain
corpus* (wikitext), and is judged by the accuracy on the questions (lower is better, chance 0.25)
and on MMLU (utility; higher is better).

Splits (scored by the ``wmdp_mcq`` probe, through lm-eval; :mod:`unlearnbench.probes.wmdp_mcq`):

* ``forget``: the WMDP questions of the chosen ``subsets`` (``bio+cyber`` by default), item ids
  ``bio/<i>``, ``cyber/<i>``, ``chem/<i>``; forget quality = 1 - accuracy;
* ``retain``: MMLU questions (all subjects, or ``mmlu_subjects=college_biology+virology``), item
  ids ``mmlu/<subject>/<i>``; the utility.

``<i>`` is the question's index in its hub split (per MMLU subject), or its line in a local file.
``limit=N`` keeps the first N questions of each WMDP subset and of each MMLU subject.

Data: the hub ids in ``tasks/benchmarks/wmdp.yaml`` (cais/wmdp, cais/mmlu, the WMDP corpora,
wikitext), or a local folder ``data=DIR``:

* ``wmdp-bio.jsonl`` (or ``wmdp_bio``/``bio``; .jsonl/.json/.csv/.tsv/.parquet), likewise cyber and
  chem: records ``{question, choices: [4], answer: 0-3}`` (the publishers' file names and layout);
  or a cais/wmdp snapshot, ``wmdp-bio/test-*.parquet``. A subset with none of these is an error
  naming every accepted name;
* MMLU, the first found of: ``mmlu.csv`` / ``mmlu.jsonl`` / ... (a ``subject`` column selects
  subjects); a cais/mmlu snapshot, ``[mmlu/]all/test-*.parquet`` (columns question, subject,
  choices, answer index) or ``mmlu/<subject>/test-*.parquet``; MMLU as its authors release it, a
  ``test/`` folder of header-less ``<subject>_test.csv`` (question, A, B, C, D, answer letter; the
  subject is the file's name; also under ``mmlu/test/``, ``data/test/``, ``mmlu/``, ...:
  :data:`MMLU_TEST_FOLDERS`). With ``mmlu_subjects=``, one file per subject is used when each has
  one: ``mmlu/<subject>.csv`` (a header row), ``[mmlu/]<subject>/test-*.parquet`` or
  ``<subject>_test.csv``. Records are ``{question, subject, choices, answer}`` or flat
  ``{question, choice0..choice3 | A..D, answer}``; ``answer`` may be 0-3 or a letter A-D;
* ``forget_corpus.jsonl`` ``{text}`` or ``forget_corpus.txt`` (blank-line separated documents),
  ``retain_corpus`` likewise: the unlearning corpora (else the hub corpora of the YAML).

A missing question file with data=DIR is an error naming the accepted names; without data= and
offline, a dataset missing from the local cache is an error naming the data= file that replaces it.

Unlearning data (:meth:`WmdpBenchmark.unlearn_data`): documents shorter than ``min_chars``
characters are dropped (RMU's ``get_data``), the rest cut into ``max_length``-token windows with
:func:`chunk_corpus` (the reference truncates each document to its max length instead; windows
use all of the text). Forget documents of all chosen subsets are pooled: one forget set, so RMU
uses one control vector for them (the reference: one per topic).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UnlearnbenchError
from ..registry import register_benchmark
from .common import (
    RealBenchmark,
    RealBenchmarkConfig,
    chunk_corpus,
    find_part_file,
    find_shards,
    offline_reason,
    read_text_file,
)

LETTERS = "ABCD"
#: question file extensions, in the order they are looked for
QUESTION_EXTS = ("jsonl", "json", "csv", "tsv", "parquet")
#: MMLU as its authors release it (data.tar: test/<subject>_test.csv): no header row, these columns
MMLU_CSV_COLUMNS = ("question", "A", "B", "C", "D", "answer")
#: folders of data=DIR searched for <subject>_test.csv, first with any wins
MMLU_TEST_FOLDERS = ("mmlu/test", "test", "mmlu/data/test", "data/test", "mmlu", ".")
#: folders of cais/mmlu that are not subjects
MMLU_NOT_SUBJECTS = ("all", "auxiliary_train")


@dataclass(frozen=True)
class McqItem:
    """One 4-way question. ``label`` indexes ``choices``. ``task`` is bio|cyber|chem|mmlu;
    ``doc_id`` is the index lm-eval's built-in task gives the question (-1: from a local file,
    scored through the local task YAMLs). ``prompt``/``answer`` are the text-item view: the
    question followed by "Answer:", and the correct choice's text (continued after a space)."""

    item_id: str
    split: str
    task: str
    question: str
    choices: tuple[str, ...]
    label: int
    subject: str = ""
    doc_id: int = -1

    @property
    def prompt(self) -> str:
        return f"{self.question.strip()}\nAnswer:"

    @property
    def answer(self) -> str:
        return self.choices[self.label]

    answer_prefix = " "


@dataclass(frozen=True)
class WmdpConfig(RealBenchmarkConfig):
    subsets: tuple[str, ...] = field(
        default=("bio", "cyber"),
        metadata={"help": "WMDP subsets forming the forget split: bio, cyber, chem (e.g. subsets=bio+cyber)"},
    )
    mmlu_subjects: tuple[str, ...] = field(
        default=(),
        metadata={"help": "MMLU subjects of the retain split, e.g. college_biology+virology (empty: all 57)"},
    )
    forget_corpus: str = field(
        default="",
        metadata={
            "help": "forget corpus file (.jsonl {text} or .txt) or hub id (default: data=DIR/forget_corpus.*, else the YAML's)"
        },
    )
    retain_corpus: str = field(
        default="",
        metadata={"help": "retain corpus file or hub id (default: data=DIR/retain_corpus.*, else wikitext-2)"},
    )
    corpus_docs: int = field(default=0, metadata={"help": "use only the first N documents of each corpus (0: all)"})
    max_length: int = field(default=512, metadata={"help": "tokens per unlearning window (RMU: 512 bio, 768 cyber)"})

    def __post_init__(self):
        bad = [s for s in self.subsets if s not in ("bio", "cyber", "chem")]
        if bad or not self.subsets:
            raise ValueError(f"subsets must be some of bio, cyber, chem (got {'+'.join(self.subsets) or 'none'})")
        if self.corpus_docs < 0 or self.max_length < 16:
            raise ValueError("corpus_docs must be >= 0 and max_length >= 16")


@register_benchmark()
class WmdpBenchmark(RealBenchmark):
    name = "wmdp"
    version = "1"
    Config = WmdpConfig
    spec_file = "benchmarks/wmdp.yaml"
    description = "WMDP bio/cyber/chem MCQ (forget, 1 - accuracy) and MMLU (utility), zero-shot through lm-eval"
    splits = ("forget", "retain")

    def __init__(self, config: WmdpConfig | None = None):
        super().__init__(config)
        if self.config.data and not Path(self.config.data).is_dir():
            raise UnlearnbenchError(
                f"wmdp: data={self.config.data} is not a folder (give a folder holding wmdp-bio.jsonl, mmlu.csv, ...)"
            )
        self._items: dict[str, list[McqItem]] = {}
        self._files: dict[str, Path] = {}

    # -- questions ------------------------------------------------------------------------
    def mcq_items(self, split: str) -> list[McqItem]:
        """The questions of one split ([] for any other split name)."""
        if split not in self._items:
            if split == "forget":
                files = {s: self._wmdp_files(s) for s in self.config.subsets} if self.config.data else {}
                missing = [s for s, f in files.items() if not f]
                if missing:
                    raise UnlearnbenchError(self._no_wmdp_message(missing))
                self._items[split] = [it for s in self.config.subsets for it in self._wmdp(s, files.get(s))]
            elif split == "retain":
                self._items[split] = self._mmlu()
            else:
                self._items[split] = []
        return self._items[split]

    def text_items(self, split: str) -> list[McqItem]:
        """Items with ``item_id``, ``prompt`` (question + "Answer:") and ``answer`` (the right
        choice's text; continue the prompt with ``answer_prefix + answer``) for generic probes."""
        return self.mcq_items(split)

    def _wmdp(self, subset: str, files: list[Path] | None) -> list[McqItem]:
        entry = self.spec["subsets"][subset]
        if files:
            records, from_hub = self._read(files), False
        else:
            records, from_hub = self._hub(entry, f"wmdp-{subset}.jsonl"), True
        if self.config.limit:
            records = records[: self.config.limit]
        return [
            _item(r, f"{subset}/{i}", "forget", subset, i if from_hub else -1, where=f"{subset} question {i}")
            for i, r in enumerate(records)
        ]

    def _wmdp_files(self, subset: str) -> list[Path]:
        """The local file of a WMDP subset (``wmdp-bio.jsonl``, ... as the YAML's ``local`` stems
        say) or the shards of a cais/wmdp snapshot (``wmdp-bio/test-*.parquet``); [] if none."""
        root, stems = Path(self.config.data), self.spec["subsets"][subset]["local"]
        for stem in stems:
            file = find_part_file(root, stem, None)
            if file is not None and file.suffix != ".txt":
                return [file]
        return next((shards for shards in (find_shards(root / stem, "test") for stem in stems) if shards), [])

    def _no_wmdp_message(self, missing: list[str]) -> str:
        def accepted(subset: str) -> str:
            stems = self.spec["subsets"][subset]["local"]
            return (
                f"{subset}: {', '.join(f'{stem}.jsonl' for stem in stems)} (each also as "
                f"{', '.join('.' + e for e in QUESTION_EXTS[1:])}) or test-*.parquet shards in "
                f"{', '.join(f'{stem}/' for stem in stems)} (the hub's cais/wmdp layout)"
            )

        return (
            f"wmdp: no question file for {'+'.join(missing)} in {self.config.data}; accepted names, first found "
            f"wins: {'; '.join(accepted(s) for s in missing)}; records {{question, choices: [4], answer: 0-3}}; "
            "or drop data= to read cais/wmdp from the hub"
        )

    def _mmlu(self) -> list[McqItem]:
        entry = self.spec["mmlu"]
        subjects = self.config.mmlu_subjects
        if self.config.data:
            return self._mmlu_items(self._mmlu_local(subjects), from_hub=False)
        if subjects:  # one hub config per subject: its test split is exactly lm-eval's mmlu_<subject>
            per = {s: self._hub({**entry, "name": s}, f"mmlu/{s}.csv") for s in subjects}
            return self._mmlu_items(per, from_hub=True)
        records = self._hub(entry, "mmlu.csv")
        return self._mmlu_items(_group_by_subject(records, (), entry["path"]), from_hub=True)

    def _mmlu_local(self, subjects: tuple[str, ...]) -> dict[str, list[dict]]:
        """{subject: records} from data=DIR: one file or folder per named subject when every one has
        its own, else the first whole-MMLU layout found (:meth:`_mmlu_whole`), filtered by subject."""
        found = {s: self._mmlu_subject_files(s) for s in subjects}
        if subjects and all(found.values()):
            return {s: self._read(files) for s, files in found.items()}
        whole = self._mmlu_whole()
        if whole is None:
            raise UnlearnbenchError(self._no_mmlu_message([s for s, f in found.items() if not f]))
        where, per = whole
        return _select_subjects(per, subjects, where)

    def _mmlu_subject_files(self, subject: str) -> list[Path]:
        """One subject's own file: ``mmlu/<subject>.<ext>``, a cais/mmlu snapshot's
        ``[mmlu/]<subject>/test-*.parquet`` or the authors' ``<subject>_test.csv``; [] if none."""
        root = Path(self.config.data)
        file = find_part_file(root / "mmlu", subject, None)
        if file is not None and file.suffix != ".txt":
            return [file]
        for folder in (root / "mmlu" / subject, root / subject):
            if shards := find_shards(folder, "test"):
                return shards
        return next(([f] for f in (root / d / f"{subject}_test.csv" for d in MMLU_TEST_FOLDERS) if f.is_file()), [])

    def _mmlu_whole(self) -> tuple[Path, dict[str, list[dict]]] | None:
        """Every subject, from the first of: ``mmlu.<ext>`` (a ``subject`` column), a cais/mmlu
        snapshot's ``[mmlu/]all/test-*.parquet``, a folder of the authors' ``<subject>_test.csv``
        files (:data:`MMLU_TEST_FOLDERS`; subject from the file name), a snapshot's per-subject
        folders ``mmlu/<subject>/test-*.parquet``. None if there is none."""
        root = Path(self.config.data)
        file = find_part_file(root, "mmlu", None)
        if file is not None and file.suffix != ".txt":
            return file, _group_by_subject(self._read([file]), (), file)
        for folder in (root / "mmlu" / "all", root / "all"):
            if shards := find_shards(folder, "test"):
                return folder, _group_by_subject(self._read(shards), (), folder)
        for name in MMLU_TEST_FOLDERS:
            folder = root / name
            if files := (sorted(folder.glob("*_test.csv")) if folder.is_dir() else []):
                return folder, {f.name[: -len("_test.csv")]: self._read([f]) for f in files}
        top = root / "mmlu"
        subjects = sorted(
            d
            for d in (top.iterdir() if top.is_dir() else ())
            if d.name not in MMLU_NOT_SUBJECTS and find_shards(d, "test")
        )
        if subjects:
            return top, {d.name: self._read(find_shards(d, "test")) for d in subjects}
        return None

    def _no_mmlu_message(self, missing: list[str]) -> str:
        exts = "/".join("." + e for e in QUESTION_EXTS)
        return (
            f"wmdp: no MMLU questions{' for ' + '+'.join(missing) if missing else ''} in {self.config.data}; "
            f"accepted layouts, first found wins: mmlu{exts} ({{question, subject, choices, answer}} or flat "
            "choice0..choice3; answer 0-3 or A-D); mmlu/all/test-*.parquet or all/test-*.parquet (the hub's "
            "cais/mmlu); the authors' release, 57 header-less <subject>_test.csv (question, A, B, C, D, answer "
            f"letter) in {', '.join(d + '/' for d in MMLU_TEST_FOLDERS[:-1])} or the folder itself; "
            "mmlu/<subject>/test-*.parquet; with mmlu_subjects= also mmlu/<subject>.csv (with a header) or "
            "<subject>/test-*.parquet; or drop data= to read cais/mmlu from the hub"
        )

    def _mmlu_items(self, per_subject: dict[str, list[dict]], *, from_hub: bool) -> list[McqItem]:
        out = []
        for subject, records in per_subject.items():
            if self.config.limit:
                records = records[: self.config.limit]
            out += [
                _item(
                    r,
                    f"mmlu/{subject}/{i}",
                    "retain",
                    "mmlu",
                    i if from_hub else -1,
                    subject=subject,
                    where=f"mmlu {subject} question {i}",
                )
                for i, r in enumerate(records)
            ]
        return out

    # -- file and hub access ---------------------------------------------------------------
    def _read(self, files: list[Path]) -> list[dict]:
        """The question records of local files, in order (their hashes go into the cell keys)."""
        records: list[dict] = []
        for f in files:
            self._track(f)
            records += _read_authors_csv(f) if f.name.endswith("_test.csv") else _read_file(f)
        return records

    def _track(self, file: Path) -> Path:
        self._files[str(file)] = file
        return file

    def _hub(self, entry: dict, local_name: str) -> list[dict]:
        from ..data.loading import load_records

        try:
            return load_records(entry["path"], config=entry.get("name"), split=entry.get("split"))
        except UnlearnbenchError as e:
            raise UnlearnbenchError(f"wmdp: {offline_reason(e)}: give data=DIR holding {local_name}") from None

    # -- unlearning -------------------------------------------------------------------------
    def _corpus_file(self, role: str) -> Path | None:
        """The local file of a corpus (``<role>_corpus=FILE`` or ``data=DIR/<role>_corpus.*``), if any."""
        option = getattr(self.config, f"{role}_corpus")
        if option:
            path = Path(option).expanduser()
            return self._track(path) if path.is_file() else None
        local = find_part_file(Path(self.config.data), f"{role}_corpus", None) if self.config.data else None
        return self._track(local) if local is not None else None

    def _corpus(self, role: str) -> list[str]:
        from ..data.loading import load_records

        option = getattr(self.config, f"{role}_corpus")
        stem = f"{role}_corpus"
        local = self._corpus_file(role)
        if local is not None:
            records = read_text_file(local) if local.suffix == ".txt" else load_records(local, columns=("text",))
        elif option:  # not a file: a hub id
            records = load_records(option, split="train", columns=("text",))
        else:
            corpora = self.spec["corpora"][role]
            entries = [corpora[s] for s in self.config.subsets if s in corpora] if role == "forget" else [corpora]
            if not entries:
                raise UnlearnbenchError(
                    f"wmdp: no hub forget corpus for subsets {'+'.join(self.config.subsets)}: "
                    f"give data=DIR holding forget_corpus.jsonl ({{text}}) or forget_corpus=FILE"
                )
            records = []
            for e in entries:
                try:
                    records += load_records(e["path"], config=e.get("name"), split=e.get("split"), columns=("text",))
                except UnlearnbenchError as err:
                    raise UnlearnbenchError(
                        f"wmdp: {role} corpus: {offline_reason(err)}: give data=DIR holding {stem}.jsonl "
                        f"({{text}}) or {role}_corpus=FILE"
                    ) from None
        texts = [str(r["text"]) for r in records if len(str(r["text"])) > self.spec["corpora"].get("min_chars", 0)]
        return texts[: self.config.corpus_docs] if self.config.corpus_docs else texts

    def unlearn_data(self, tokenizer):
        """Forget and retain corpora cut into ``max_length``-token windows (loss on every token)."""
        from ..data.types import UnlearnData

        forget, retain = self._corpus("forget"), self._corpus("retain")
        data = UnlearnData(
            forget=chunk_corpus(forget, tokenizer, self.config.max_length),
            retain=chunk_corpus(retain, tokenizer, self.config.max_length),
            tokenizer=tokenizer,
            generic_text=retain[:256],
        )
        if not data.forget:
            raise UnlearnbenchError(
                f"wmdp: the forget corpus gives no window of at least 8 tokens ({len(forget)} documents)"
            )
        return data

    # -- keys and description ----------------------------------------------------------------
    def key_extra(self) -> dict:
        """Local files decide the results too: their content hashes go into the cell keys."""
        for split in self.splits:
            self.mcq_items(split)
        for role in ("forget", "retain"):
            self._corpus_file(role)
        if not self._files:
            return {}
        root = Path(self.config.data) if self.config.data else None

        def name(f: Path) -> str:  # relative to data=DIR, so moving the folder keeps the keys
            return str(f.relative_to(root)) if root and f.is_relative_to(root) else str(f)

        return {
            "data_sha256": {name(f): hashlib.sha256(f.read_bytes()).hexdigest() for f in sorted(self._files.values())}
        }

    def describe(self) -> dict:
        return {
            **super().describe(),
            "subsets": "+".join(self.config.subsets),
            "mmlu_subjects": "+".join(self.config.mmlu_subjects) or "all",
        }


# -- record parsing ----------------------------------------------------------------------------
def _read_file(file: Path) -> list[dict]:
    """A question file with named columns (jsonl, json, parquet, or csv/tsv with a header row)."""
    from ..data.loading import load_records

    try:
        return load_records(file, columns=("question", "answer"))
    except UnlearnbenchError as e:
        if file.suffix in (".csv", ".tsv") and "no header" in str(e):
            raise UnlearnbenchError(
                f"wmdp: '{file}' has no header row: add one (question, A, B, C, D, answer), or name MMLU's "
                "header-less files <subject>_test.csv as its authors do"
            ) from None
        raise


def _read_authors_csv(file: Path) -> list[dict]:
    """An MMLU ``<subject>_test.csv`` as its authors release it: no header, columns
    :data:`MMLU_CSV_COLUMNS`; a first row equal to those names is taken as a header and dropped."""
    from ..data.loading import load_records

    try:
        records = load_records(file, header=False, names=MMLU_CSV_COLUMNS)
    except UnlearnbenchError as e:
        raise UnlearnbenchError(
            f"wmdp: {e} (MMLU's <subject>_test.csv files have no header and 6 columns: "
            f"{', '.join(MMLU_CSV_COLUMNS)} letter)"
        ) from None
    if records and [str(records[0][c]).strip().lower() for c in MMLU_CSV_COLUMNS] == [
        c.lower() for c in MMLU_CSV_COLUMNS
    ]:
        records = records[1:]
    return records


def _group_by_subject(records: list[dict], subjects, where) -> dict[str, list[dict]]:
    """Records -> {subject: records} in file order; only ``subjects`` if given."""
    if any("subject" not in r for r in records[:1]):
        raise UnlearnbenchError(
            f"wmdp: {where} has no 'subject' column: add one, or put one file per subject "
            "in DIR/mmlu/<subject>.csv and name them with mmlu_subjects="
        )
    per: dict[str, list[dict]] = {}
    for r in records:
        per.setdefault(str(r["subject"]), []).append(r)
    return _select_subjects(per, subjects, where)


def _select_subjects(per: dict[str, list[dict]], subjects, where) -> dict[str, list[dict]]:
    """``per`` restricted to ``subjects`` in their order (all of it when none are named)."""
    if not subjects:
        return per
    missing = [s for s in subjects if s not in per]
    if missing:
        raise UnlearnbenchError(
            f"wmdp: MMLU subject(s) {', '.join(missing)} not in {where} "
            f"(it has {', '.join(sorted(per)[:5])}{', ...' if len(per) > 5 else ''})"
        )
    return {s: per[s] for s in subjects}


def _choices(r: dict, where: str) -> tuple[str, ...]:
    raw = r.get("choices")
    if isinstance(raw, str) and raw.lstrip().startswith("["):
        raw = json.loads(raw)
    if raw is None:
        for names in (("choice0", "choice1", "choice2", "choice3"), tuple(LETTERS)):
            if all(n in r for n in names):
                raw = [r[n] for n in names]
                break
    if raw is None or isinstance(raw, str) or len(raw) != 4:
        raise UnlearnbenchError(
            f"wmdp: {where} needs 4 choices: a 'choices' list or columns choice0..choice3 "
            f"(found: {', '.join(map(str, r))})"
        )
    return tuple(str(c) for c in raw)


def _label(value, where: str) -> int:
    text = str(value).strip()
    if text.upper() in tuple(LETTERS):
        return LETTERS.index(text.upper())
    if text.isdigit() and 0 <= int(text) < 4:
        return int(text)
    raise UnlearnbenchError(f"wmdp: {where} has answer {value!r}; expected 0-3 or A-D")


def _item(r: dict, item_id: str, split: str, task: str, doc_id: int, *, subject: str = "", where: str) -> McqItem:
    return McqItem(
        item_id=item_id,
        split=split,
        task=task,
        question=str(r["question"]),
        choices=_choices(r, where),
        label=_label(r["answer"], where),
        subject=subject,
        doc_id=doc_id,
    )
