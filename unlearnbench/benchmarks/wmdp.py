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

* ``wmdp-bio.jsonl`` (or ``wmdp_bio``/``bio``; .jsonl/.json/.csv/.parquet), likewise cyber and chem:
  records ``{question, choices: [4], answer: 0-3}`` (the hub layout);
* ``mmlu.csv`` / ``mmlu.jsonl`` (a ``subject`` column selects subjects) or ``mmlu/<subject>.csv``:
  the hub layout ``{question, subject, choices, answer}`` or flat ``{question, choice0..choice3,
  answer}``; ``answer`` may be 0-3 or a letter A-D;
* ``forget_corpus.jsonl`` ``{text}`` or ``forget_corpus.txt`` (blank-line separated documents),
  ``retain_corpus`` likewise: the unlearning corpora (else the hub corpora of the YAML).

A missing question file with data=DIR is an error naming the file; without data= and offline,
a dataset missing from the local cache is an error naming the data= file that replaces it.

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
from .common import RealBenchmark, RealBenchmarkConfig, chunk_corpus, find_part_file, offline_reason, read_text_file

LETTERS = "ABCD"


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
                self._items[split] = [it for s in self.config.subsets for it in self._wmdp(s)]
            elif split == "retain":
                self._items[split] = self._mmlu()
            else:
                self._items[split] = []
        return self._items[split]

    def text_items(self, split: str) -> list[McqItem]:
        """Items with ``item_id``, ``prompt`` (question + "Answer:") and ``answer`` (the right
        choice's text; continue the prompt with ``answer_prefix + answer``) for generic probes."""
        return self.mcq_items(split)

    def _wmdp(self, subset: str) -> list[McqItem]:
        entry = self.spec["subsets"][subset]
        if self.config.data:
            file = self._local(entry["local"], f"wmdp-{subset}.jsonl ({{question, choices, answer}})", "questions")
            records, from_hub = _read(file), False
        else:
            records, from_hub = self._hub(entry, f"wmdp-{subset}.jsonl"), True
        if self.config.limit:
            records = records[: self.config.limit]
        return [
            _item(r, f"{subset}/{i}", "forget", subset, i if from_hub else -1, where=f"{subset} question {i}")
            for i, r in enumerate(records)
        ]

    def _mmlu(self) -> list[McqItem]:
        entry = self.spec["mmlu"]
        subjects = self.config.mmlu_subjects
        if self.config.data:
            root = Path(self.config.data)
            if subjects and all(
                find_part_file(root / "mmlu", s, None) or find_part_file(root, f"{s}_test", None) for s in subjects
            ):
                per = {
                    s: _read(
                        self._track(find_part_file(root / "mmlu", s, None) or find_part_file(root, f"{s}_test", None))
                    )
                    for s in subjects
                }
                return self._mmlu_items(per, from_hub=False)
            file = self._local(
                entry["local"], "mmlu.csv or mmlu.jsonl ({question, subject, choices, answer})", "utility"
            )
            return self._mmlu_items(_group_by_subject(_read(file), subjects, file), from_hub=False)
        if subjects:  # one hub config per subject: its test split is exactly lm-eval's mmlu_<subject>
            per = {s: self._hub({**entry, "name": s}, f"mmlu/{s}.csv") for s in subjects}
            return self._mmlu_items(per, from_hub=True)
        records = self._hub(entry, "mmlu.csv")
        return self._mmlu_items(_group_by_subject(records, (), entry["path"]), from_hub=True)

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
    def _local(self, stems, expected: str, what: str) -> Path:
        root = Path(self.config.data)
        file = next((f for f in (find_part_file(root, s, None) for s in stems) if f and f.suffix != ".txt"), None)
        if file is None:
            raise UnlearnbenchError(
                f"wmdp: no {what} file in {root}: expected {expected}; or drop data= to read the hub dataset"
            )
        return self._track(file)

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
def _read(file: Path) -> list[dict]:
    from ..data.loading import load_records

    return load_records(file, columns=("question", "answer"))


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
    if subjects:
        missing = [s for s in subjects if s not in per]
        if missing:
            raise UnlearnbenchError(
                f"wmdp: MMLU subject(s) {', '.join(missing)} not in {where} "
                f"(it has {', '.join(sorted(per)[:5])}{', ...' if len(per) > 5 else ''})"
            )
        return {s: per[s] for s in subjects}
    return per


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
