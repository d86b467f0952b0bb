"""``muse-news`` and ``muse-books`` — MUSE (Shi et al. 2024, arXiv 2407.06460) on the harness.

MUSE asks whether a model fine-tuned on a corpus still holds a forget part of it after unlearning:

* **VerbMem on D_f** (probe ``verbmem``): continue a prefix of a forget text, ROUGE-L F1 against the
  true continuation;
* **KnowMem on D_f / D_r** (probe ``knowmem``): answer questions about the forget / retain texts
  after a few in-context examples, ROUGE-L F1 against the answer (D_r is the utility);
* **PrivLeak** (probe ``privleak``): Min-K% membership scores of forget vs holdout texts, their AUC
  relative to the retrained model's: ``(AUC - AUC_retrain) / AUC_retrain x 100``.

Splits: ``forget`` (verbmem, knowmem and privleak items), ``retain`` (knowmem on retain QA) and
``holdout`` (privleak texts never trained on). Unlearning data: the raw forget corpus and the raw
``retain1`` corpus (MUSE's unlearning retain set), chunked into ``max_length``-token windows.

Data come from the hub dataset the YAML names (configs raw/knowmem/verbmem/privleak) or from a
local folder ``data=DIR`` in any of these layouts (first match wins; .json/.jsonl/.parquet/.csv/
.tsv everywhere, and .txt for raw text, read as one document per file):

* flat, as the older MUSE files and the samples: ``knowmem_forget_qa.json``,
  ``knowmem_forget_qa_icl.json``, ``knowmem_retain2_qa.json`` (or ``knowmem_retain_qa``),
  ``verbmem_forget.json``, ``privleak_forget.json``, ``privleak_holdout.json``, ``raw_forget.txt``
  (or ``forget.txt``), ``raw_retain1.txt`` (or ``retain1.txt``);
* nested, as the MUSE repository's ``data/news``: ``knowmem/forget_qa.json``, ``raw/forget.txt``, ...;
* a hub snapshot: ``knowmem/forget_qa-00000-of-00001.parquet``, ``raw/forget-*.parquet``, ...

Columns: knowmem ``question``/``answer``; verbmem ``prompt``/``gt``; privleak and raw ``text`` (a
JSON list of strings is read as ``text`` records).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from ..errors import UnlearnbenchError
from ..registry import register_benchmark
from .common import RealBenchmark, RealBenchmarkConfig, chunk_corpus

#: part -> (local stems tried in order, columns every record must have)
PARTS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "raw_forget": (("raw_forget", "raw/forget", "forget", "main/forget"), ("text",)),
    "raw_retain": (("raw_retain1", "raw/retain1", "retain1", "main/retain1", "raw_retain", "raw/retain"), ("text",)),
    "verbmem_forget": (("verbmem_forget", "verbmem/forget"), ("prompt", "gt")),
    "knowmem_forget_qa": (("knowmem_forget_qa", "knowmem/forget_qa"), ("question", "answer")),
    "knowmem_forget_qa_icl": (("knowmem_forget_qa_icl", "knowmem/forget_qa_icl"), ("question", "answer")),
    "knowmem_retain_qa": (
        ("knowmem_retain_qa", "knowmem/retain_qa", "knowmem_retain2_qa", "knowmem/retain2_qa"),
        ("question", "answer"),
    ),
    "knowmem_retain_qa_icl": (
        ("knowmem_retain_qa_icl", "knowmem/retain_qa_icl", "knowmem_retain2_qa_icl", "knowmem/retain2_qa_icl"),
        ("question", "answer"),
    ),
    "privleak_forget": (("privleak_forget", "privleak/forget"), ("text",)),
    "privleak_holdout": (("privleak_holdout", "privleak/holdout"), ("text",)),
}
_EXTS = (".json", ".jsonl", ".parquet", ".csv", ".tsv", ".txt")
#: The ``retain`` task (:meth:`MuseBenchmark.benign_task`): words per window of the retain corpus,
#: and of a test window the words in the prompt and the words the greedy continuation must start with.
BENIGN_WINDOW_WORDS, BENIGN_PROMPT_WORDS, BENIGN_TEST_WORDS = 128, 32, 8


@dataclass(frozen=True)
class MuseItem:
    """One probe item. ``prompt`` is what the model sees (knowmem: with the in-context examples),
    ``answer`` what its output is scored against (privleak: the text itself, prompt empty);
    ``question`` is the bare knowmem question (empty for the other forms); ``prompt_tokens`` > 0
    keeps only the prompt's last that many tokens (verbmem_prefix_tokens)."""

    item_id: str
    prompt: str
    answer: str
    question: str = ""
    prompt_tokens: int = 0


@dataclass(frozen=True)
class MuseConfig(RealBenchmarkConfig):
    max_length: int = field(
        default=2048, metadata={"help": "tokens per unlearning example (raw text is chunked; MUSE: 2048)"}
    )
    icl_shots: int = field(
        default=10, metadata={"help": "in-context QA examples before each knowmem question (MUSE: 10)"}
    )
    knowmem_answer_space: bool = field(
        default=True,
        metadata={"help": "knowmem prompts end 'Answer: ' with MUSE's trailing space (false: 'Answer:', version 1)"},
    )
    verbmem_prefix_tokens: int = field(
        default=0,
        metadata={
            "help": "keep only the last N tokens of each verbmem prompt (0: as given; the probe also cuts to the model's context)"
        },
    )


def icl_prefix(pairs) -> str:
    """MUSE's few-shot prefix: ``Question: q\\nAnswer: a\\n\\n`` per example."""
    return "".join(f"Question: {q}\nAnswer: {a}\n\n" for q, a in pairs)


def qa_prompt(question: str, answer_space: bool = False) -> str:
    """``Question: q\\nAnswer:``; ``answer_space``: with MUSE's trailing space (its knowmem prompt)."""
    return f"Question: {question}\nAnswer:" + (" " if answer_space else "")


class MuseBenchmark(RealBenchmark):
    """Shared by ``muse-news`` and ``muse-books``; see the module docstring."""

    version: ClassVar[str] = "1"
    Config = MuseConfig
    splits = ("forget", "retain", "holdout")
    forms = ("verbmem", "knowmem", "privleak")
    eval_tasks = ()
    benign_tasks = ("retain",)

    def __init__(self, config: MuseConfig | None = None):
        super().__init__(config)
        # A user model is never paired with the YAML's retrain model (that one belongs to the
        # YAML's target): without oracle= such a run has no oracle.
        if self.config.model and not self.config.oracle:
            self.oracle_source = ""
        try:
            self.auc_retrain = float(self.spec["auc_retrain"])
        except (KeyError, TypeError, ValueError):
            raise UnlearnbenchError(f"tasks/{self.spec_file}: needs a numeric auc_retrain") from None
        if self.config.data and not Path(self.config.data).is_dir():
            raise UnlearnbenchError(
                f"{self.name}: data={self.config.data} is not a folder (expected the MUSE "
                "files, e.g. knowmem_forget_qa.json, raw_forget.txt; or drop data= for the hub)"
            )
        if self.config.icl_shots < 0 or self.config.verbmem_prefix_tokens < 0:
            raise UnlearnbenchError(f"{self.name}: icl_shots and verbmem_prefix_tokens must be >= 0")
        self._cache: dict[str, list[dict]] = {}
        if self.config.data:  # every run unlearns: say now (both corpora), not after evaluating the base model
            absent = [part for part in ("raw_forget", "raw_retain") if not self.part_files(part)]
            if absent:
                raise self._missing(*absent)

    # -- data -----------------------------------------------------------------------------
    def part_files(self, part: str) -> list[Path]:
        """The local file holding ``part`` in ``data=DIR``, or all shards of a hub snapshot's
        ``<stem>-*.parquet`` in order ([] when absent)."""
        root = Path(self.config.data)
        for stem in PARTS[part][0]:
            for ext in _EXTS:
                f = root / (stem + ext)
                if f.is_file():
                    return [f]
            shards = sorted(root.glob(stem + "-*.parquet"))  # a hub snapshot's shards
            if shards:
                return shards
        return []

    def part(self, part: str, *, required: bool = True) -> list[dict]:
        """Records of one part (cached); ``required=False`` gives [] where a local file is absent."""
        if part in self._cache:
            return self._cache[part]
        columns = PARTS[part][1]
        if self.config.data:
            files = self.part_files(part)
            if not files:
                if not required:
                    return []
                raise self._missing(part)
            records = [r for f in files for r in self._read_local(f, columns)]
        else:
            hub = (self.spec.get("data") or {}).get(part)
            if not hub:
                raise UnlearnbenchError(
                    f"{self.name}: tasks/{self.spec_file} names no hub data for '{part}'; give data=DIR"
                )
            from ..data.loading import load_records

            records = load_records(hub["path"], config=hub.get("name"), split=hub.get("split"), columns=columns)
        self._cache[part] = records
        return records

    def _missing(self, *parts: str) -> UnlearnbenchError:
        """One line naming, for each absent part, every local name accepted and its hub source."""

        def accepted(part: str) -> str:
            ext = ".txt" if part.startswith("raw_") else ".json"
            stems = PARTS[part][0]
            names = ", ".join(f"{s}{ext}" for s in stems[:-1]) + f" or {stems[-1]}{ext}"
            others = "/".join(e for e in _EXTS if e != ext)
            nested = next((s for s in stems if "/" in s), stems[0])
            hub = (self.spec.get("data") or {}).get(part, {})
            return (
                f"part '{part}' (expected {names}, also as {others}, or a hub snapshot's {nested}-*.parquet "
                f"shards; or drop data= to read the hub dataset {hub.get('path')} config {hub.get('name')} "
                f"split {hub.get('split')})"
            )

        return UnlearnbenchError(
            f"{self.name}: no file in {self.config.data} for " + " nor for ".join(accepted(p) for p in parts)
        )

    @staticmethod
    def _read_local(file: Path, columns) -> list[dict]:
        from ..data.loading import load_records

        if file.suffix == ".txt":  # a raw corpus: the whole file is one document (as MUSE reads it)
            text = file.read_text(encoding="utf-8").strip()
            if not text:
                raise UnlearnbenchError(f"'{file}' is empty")
            return [{"text": text}]
        return load_records(file, columns=columns)

    def _limited(self, records: list) -> list:
        return records[: self.config.limit] if self.config.limit else records

    def _knowmem_items(self, split: str) -> list[MuseItem]:
        qa = self._limited(self.part(f"knowmem_{split}_qa"))
        icl = self.part(f"knowmem_{split}_qa_icl", required=split == "forget")
        if not icl:  # the older local files have no retain ICL file: MUSE's forget ICL examples stand in
            icl = self.part("knowmem_forget_qa_icl")
        prefix = icl_prefix((r["question"], r["answer"]) for r in icl[: self.config.icl_shots])
        return [
            MuseItem(
                f"knowmem-{split}-{i}",
                prefix + qa_prompt(str(r["question"]), self.config.knowmem_answer_space),
                str(r["answer"]),
                str(r["question"]),
            )
            for i, r in enumerate(qa)
        ]

    def probe_items(self, form: str, split: str) -> list[MuseItem]:
        if form == "verbmem":
            if split != "forget":
                return []
            return [
                MuseItem(
                    f"verbmem-{i}", str(r["prompt"]), str(r["gt"]), prompt_tokens=self.config.verbmem_prefix_tokens
                )
                for i, r in enumerate(self._limited(self.part("verbmem_forget")))
            ]
        if form == "knowmem":
            return self._knowmem_items(split) if split in ("forget", "retain") else []
        if form == "privleak":
            if split not in ("forget", "holdout"):
                return []
            return [
                MuseItem(f"privleak-{split}-{i}", "", str(r["text"]))
                for i, r in enumerate(self._limited(self.part(f"privleak_{split}")))
            ]
        raise UnlearnbenchError(f"{self.name} has no probe form {form!r} (forms: {', '.join(self.forms)})")

    def text_items(self, split: str) -> list[MuseItem]:
        """The knowmem QA of ``split`` as plain question -> answer items (no in-context prefix), for
        generic probes (fluency, distances to the oracle); [] for the holdout split."""
        if split not in ("forget", "retain"):
            return []
        return [
            MuseItem(f"qa-{split}-{i}", qa_prompt(str(r["question"])), str(r["answer"]), str(r["question"]))
            for i, r in enumerate(self._limited(self.part(f"knowmem_{split}_qa")))
        ]

    def unlearn_data(self, tokenizer):
        """The raw forget corpus and the raw retain1 corpus, in ``max_length``-token windows."""
        from ..data.types import UnlearnData

        forget = chunk_corpus([r["text"] for r in self.part("raw_forget")], tokenizer, self.config.max_length)
        retain = chunk_corpus([r["text"] for r in self.part("raw_retain")], tokenizer, self.config.max_length)
        if not forget:
            raise UnlearnbenchError(
                f"{self.name}: the raw forget corpus is empty after chunking (max_length={self.config.max_length})"
            )
        return UnlearnData(forget=forget, retain=retain, tokenizer=tokenizer, generic_text=[ex.target for ex in retain])

    def benign_task(self, name: str, n_train: int, n_test: int, seed: int):
        """``retain``: the raw retain1 corpus (the unlearning retain set) cut into windows of
        :data:`BENIGN_WINDOW_WORDS` words (whitespace normalised). Train: whole windows as plain text;
        test: other windows, their first :data:`BENIGN_PROMPT_WORDS` words the prompt and the next
        :data:`BENIGN_TEST_WORDS` the target (scoring 'text'). Seeded, disjoint draws."""
        from ..data.types import Example, TaskData

        if name not in self.benign_tasks:
            raise UnlearnbenchError(f"{self.name}: no benign task {name!r} (tasks: {', '.join(self.benign_tasks)})")
        windows = []
        for r in self.part("raw_retain"):
            words = str(r["text"]).split()
            for start in range(0, len(words), BENIGN_WINDOW_WORDS):
                window = words[start : start + BENIGN_WINDOW_WORDS]
                if len(window) >= BENIGN_PROMPT_WORDS + BENIGN_TEST_WORDS:
                    windows.append(window)
        if len(windows) < n_train + n_test:
            raise UnlearnbenchError(
                f"task retain: the {self.name} retain corpus has {len(windows)} windows of "
                f"{BENIGN_WINDOW_WORDS} words, fewer than n_train + n_test = {n_train + n_test}"
            )
        idx = random.Random(f"{self.name}-benign:{name}:{seed}").sample(range(len(windows)), n_train + n_test)
        p, t = BENIGN_PROMPT_WORDS, BENIGN_TEST_WORDS
        test = [Example(" ".join(windows[i][:p]), " " + " ".join(windows[i][p : p + t])) for i in idx[:n_test]]
        train = [Example("", " ".join(windows[i])) for i in idx[n_test:]]
        return TaskData(name, train, test, "text", max_new_tokens=32)

    def describe(self) -> dict:
        return {**super().describe(), "auc_retrain": self.auc_retrain}


@register_benchmark()
class MuseNews(MuseBenchmark):
    name = "muse-news"
    spec_file = "benchmarks/muse-news.yaml"
    description = "MUSE-News (BBC articles): VerbMem, KnowMem, PrivLeak (hub muse-bench/MUSE-News or data=DIR)"


@register_benchmark()
class MuseBooks(MuseBenchmark):
    name = "muse-books"
    spec_file = "benchmarks/muse-books.yaml"
    description = "MUSE-Books (Harry Potter): VerbMem, KnowMem, PrivLeak (hub muse-bench/MUSE-Books or data=DIR)"
