"""``tofu`` — TOFU, the Task of Fictitious Unlearning (Maini et al. 2024, arXiv 2401.06121).

200 fictitious authors with 20 question-answer pairs each. The target model was fine-tuned on all
of them; unlearning removes the QA of 1, 5 or 10 % of the authors (``forget=forget01|05|10``); the
oracle is the same base model fine-tuned only on the matching retain set (retain99/95/90).

Splits scored by the ``tofu`` probe (:mod:`unlearnbench.probes.tofu`):

* ``forget``: the forget set with paraphrased and perturbed answers (hub ``forgetXX_perturbed``);
* ``retain``: TOFU's 400 retain evaluation questions (``retain_perturbed``), or, where that file is
  absent, a seeded sample of ``n_retain_eval`` questions of the matching retain set (then without
  truth ratio unless those records carry perturbed answers);
* ``holdout``: questions about authors neither model saw (``holdoutXX``; newer hub revisions);
* ``real_authors``, ``world_facts``: general knowledge (utility), answers ranked against perturbed
  ones.

Holdout, real authors and world facts are optional: where they are missing the split is empty and
``missing`` says why; forget and the retain set are required. Local data: ``data=DIR`` holding the
hub config names as files, as TOFU publishes them, e.g. ``forget01_perturbed.json`` (or
``forget01.json`` with the same fields), ``retain99.json``, ``retain_perturbed.json``,
``holdout01.json``, ``real_authors_perturbed.json``, ``world_facts_perturbed.json`` (json list or
jsonl; also .csv/.tsv/.parquet, or a hub snapshot's ``<config>/train-*.parquet`` shards). A folder
without the forget or the retain set is refused when the benchmark is built, in one line naming
every file the run reads and which are missing.

Unlearning data: forget and retain QA as ``Example(prompt=template(question), target=prefix+answer)``
with the template from ``tasks/benchmarks/tofu.yaml`` (``template=qa``: "Question: ...\\nAnswer:" and a
space before the answer; ``template=llama3_chat``: the chat format the default models were trained on).
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ..errors import UnlearnbenchError
from ..registry import register_benchmark
from .common import RealBenchmark, RealBenchmarkConfig, find_part_file, find_shards, offline_reason, read_records

SPLITS = ("forget", "retain", "holdout", "real_authors", "world_facts")
OPTIONAL = ("holdout", "real_authors", "world_facts")
#: Words of the answer a ``retain`` task's test item must start with (whole TOFU answers are too
#: long for a greedy generation to match word for word).
BENIGN_TEST_WORDS = 8


@dataclass(frozen=True)
class TofuItem:
    """One TOFU question. ``prompt`` is the templated question; the scored text is
    ``answer_prefix + answer`` (likewise for the paraphrased and perturbed answers)."""

    item_id: str
    split: str
    question: str
    prompt: str
    answer: str
    answer_prefix: str = " "
    paraphrased_answer: str | None = None
    perturbed_answers: tuple[str, ...] = ()
    paraphrased_prompt: str | None = None


@dataclass(frozen=True)
class TofuConfig(RealBenchmarkConfig):
    forget: Literal["forget01", "forget05", "forget10"] = field(
        default="forget10",
        metadata={"help": "forget split (1, 5 or 10 % of the authors); picks the retain set and oracle"},
    )
    template: str = field(
        default="llama3_chat",
        metadata={"help": "prompt template from tasks/benchmarks/tofu.yaml: llama3_chat (the default models) or qa"},
    )
    n_retain_eval: int = field(
        default=400,
        metadata={
            "help": "retain questions scored when retain_perturbed is absent (a seeded sample of the retain set)"
        },
    )
    seed: int = field(default=0, metadata={"help": "seed of that retain sample"})


@register_benchmark()
class TofuBenchmark(RealBenchmark):
    name = "tofu"
    version = "1"
    Config = TofuConfig
    spec_file = "benchmarks/tofu.yaml"
    description = "TOFU fictitious authors QA (locuslab/TOFU): forget quality (KS test vs retain model), model utility"
    splits = SPLITS
    benign_tasks = ("retain",)

    def __init__(self, config: TofuConfig | None = None):
        super().__init__(config)
        cfg = self.config
        if cfg.data and not Path(cfg.data).is_dir():
            raise UnlearnbenchError(
                f"tofu: data={cfg.data} is not a folder (give a folder holding {cfg.forget}.json, ...)"
            )
        self.oracle_source = cfg.oracle or (self.spec.get("oracles") or {}).get(cfg.forget, "")
        templates = self.spec.get("templates") or {}
        if cfg.template not in templates:
            raise UnlearnbenchError(
                f"tofu: unknown template {cfg.template!r} (tasks/benchmarks/tofu.yaml has: {', '.join(templates)})"
            )
        self.template = templates[cfg.template]
        self.retain_part = self.spec["retain_of"][cfg.forget]
        self.holdout_part = self.spec["holdout_of"][cfg.forget]
        self.missing: dict[str, str] = {}  # optional split -> why it is empty
        self._records: dict[str, list[dict] | None] = {}
        self._items: dict[str, list[TofuItem]] = {}
        self._files: dict[str, list[Path]] = {}
        if cfg.data:  # say every missing file now, in one line, before any model is loaded
            absent = [p for p in self._needed_parts(required=True) if not self._local_files(p)]
            if absent:
                raise UnlearnbenchError(self._missing_message(absent))

    # -- raw records ----------------------------------------------------------------------
    def _part(self, part: str, *, required: bool) -> list[dict] | None:
        """Records of one data part (local file or hub config); None if optional and absent."""
        if part in self._records:
            return self._records[part]
        from ..data.loading import load_records

        entry = self.spec["data"][part]
        hub = self.spec["hub"]
        records = None
        if self.config.data:
            files = self._local_files(part)
            if files:
                records = read_records(files, columns=("question", "answer"))
                self._files[part] = files
            elif required:
                raise UnlearnbenchError(self._missing_message([part]))
            else:
                self.missing[part] = f"no {entry['local'][0]}.json in {self.config.data}"
        else:
            try:
                records = load_records(
                    hub["path"], config=entry["hub"], split=hub.get("split", "train"), columns=("question", "answer")
                )
            except UnlearnbenchError as e:
                if required:  # the loader's hint names --data (for tasks); a benchmark takes data=DIR
                    needed = self._needed_parts(required=True)
                    raise UnlearnbenchError(
                        f"tofu: {offline_reason(e)}: forget={self.config.forget} reads {hub['path']} configs "
                        f"{self._configs(needed)} (and, if present, "
                        f"{self._configs(self._needed_parts(required=False))}); "
                        f"give data=DIR holding {', '.join(self._names(p) for p in needed)}"
                    ) from None
                self.missing[part] = str(e)
        if records is not None and self.config.limit:
            records = records[: self.config.limit]
        self._records[part] = records
        return records

    def _needed_parts(self, *, required: bool) -> list[str]:
        """The data parts this run reads: required, the forget set and its retain set; optional,
        TOFU's retain evaluation set, the holdout set, real authors and world facts."""
        if required:
            return [self.config.forget, self.retain_part]
        return ["retain_perturbed", self.holdout_part, "real_authors", "world_facts"]

    def _local_files(self, part: str) -> list[Path]:
        """The data=DIR file of one part (the YAML's ``local`` stems, first found; any extension but
        .txt) or a hub snapshot's shards ``<stem>/train-*.parquet``; [] if none."""
        root, stems = Path(self.config.data), self.spec["data"][part]["local"]
        for stem in stems:
            file = find_part_file(root, stem, None)
            if file is not None and file.suffix != ".txt":
                return [file]
        split = self.spec["hub"].get("split", "train")
        return next((shards for shards in (find_shards(root / stem, split) for stem in stems) if shards), [])

    def _names(self, part: str, *, listed: bool = False) -> str:
        """A part's accepted local names, e.g. ``forget01_perturbed.json or forget01.json``
        (``listed``: ``forget01_perturbed.json (or forget01.json)``, for a list of parts)."""
        first, *rest = (f"{s}.json" for s in self.spec["data"][part]["local"])
        if listed:
            return first + (f" (or {' or '.join(rest)})" if rest else "")
        return " or ".join([first, *rest])

    def _configs(self, parts: list[str]) -> str:
        """The hub configs of some parts, e.g. ``forget01_perturbed, retain99``."""
        return ", ".join(self.spec["data"][p]["hub"] for p in parts)

    def _missing_message(self, absent: list[str]) -> str:
        """One line: every file the run reads, then which required ones are not in data=DIR."""
        required = " and ".join(self._names(p, listed=True) for p in self._needed_parts(required=True))
        optional = self._needed_parts(required=False)
        absent_optional = [p for p in optional if not self._local_files(p)]
        return (
            f"tofu: forget={self.config.forget} needs {required} in {self.config.data} and reads "
            f"{', '.join(self._names(p, listed=True) for p in optional)} if present; missing: "
            + ", ".join(f"{self._names(p)} not found" for p in absent)
            + (
                f" (optional, absent: {', '.join(self._names(p, listed=True) for p in absent_optional)})"
                if absent_optional
                else ""
            )
            + f": copy TOFU's {self._configs(absent)} there (json list or jsonl;"
            " also .csv/.tsv/.parquet, or a hub snapshot's <config>/train-*.parquet), or drop data= to read "
            f"{self.spec['hub']['path']} from the hub"
        )

    def key_extra(self) -> dict:
        """Local data files decide the results too: their content hashes go into the cell keys (a
        part in several shards: the hash of their bytes in order)."""
        if not self.config.data:
            return {}
        for split in SPLITS:
            self.tofu_items(split)
        self._part(self.retain_part, required=True)
        return {
            "data_sha256": {
                part: hashlib.sha256(b"".join(f.read_bytes() for f in files)).hexdigest()
                for part, files in sorted(self._files.items())
            }
        }

    # -- items ----------------------------------------------------------------------------
    def _item(self, split: str, i: int, r: dict) -> TofuItem:
        prompt = self.template["prompt"]
        pert = r.get("perturbed_answer") or ()
        pert = (pert,) if isinstance(pert, str) else tuple(str(p) for p in pert)
        para_q = r.get("paraphrased_question")
        return TofuItem(
            item_id=str(i),
            split=split,
            question=str(r["question"]),
            prompt=prompt.format(question=r["question"]),
            answer=str(r["answer"]).strip(),
            answer_prefix=self.template.get("answer_prefix", " "),
            paraphrased_answer=r.get("paraphrased_answer") or None,
            perturbed_answers=pert,
            paraphrased_prompt=prompt.format(question=para_q) if para_q else None,
        )

    def tofu_items(self, split: str) -> list[TofuItem]:
        """The scored questions of one split ([] for an unknown or missing optional split)."""
        if split in self._items:
            return self._items[split]
        cfg = self.config
        if split == "forget":
            records = self._part(cfg.forget, required=True)
            bad = next(
                (i for i, r in enumerate(records) if not (r.get("paraphrased_answer") and r.get("perturbed_answer"))),
                None,
            )
            if bad is not None:
                where = (
                    self._files[cfg.forget][0]
                    if cfg.forget in self._files
                    else f"{self.spec['hub']['path']} {cfg.forget}"
                )
                raise UnlearnbenchError(
                    f"tofu: forget item {bad} of {where} has no paraphrased_answer/perturbed_answer "
                    f"(needed for the truth ratio): use TOFU's {cfg.forget}_perturbed file"
                )
            pairs = list(enumerate(records))
        elif split == "retain":
            records = self._part("retain_perturbed", required=False)
            if records is not None:
                pairs = list(enumerate(records))
            else:
                self.missing["retain_perturbed"] += f" (retain scored on a sample of {self.retain_part})"
                pool = self._part(self.retain_part, required=True)
                idx = sorted(
                    random.Random(f"tofu-retain:{cfg.seed}").sample(range(len(pool)), min(cfg.n_retain_eval, len(pool)))
                )
                pairs = [(i, pool[i]) for i in idx]
        elif split in OPTIONAL:
            records = self._part(self.holdout_part if split == "holdout" else split, required=False)
            if records is not None and split != "holdout":
                bad = next((i for i, r in enumerate(records) if not r.get("perturbed_answer")), None)
                if bad is not None:
                    self.missing[split] = f"item {bad} has no perturbed_answer (use {split}_perturbed)"
                    records = None
            pairs = list(enumerate(records)) if records is not None else []
        else:
            pairs = []
        self._items[split] = [self._item(split, i, r) for i, r in pairs]
        return self._items[split]

    def text_items(self, split: str) -> list[TofuItem]:
        """Items with ``item_id``, ``prompt`` and ``answer`` (the QA) for generic probes; the text
        the model should continue the prompt with is ``answer_prefix + answer``."""
        return self.tofu_items(split)

    # -- unlearning -----------------------------------------------------------------------
    def unlearn_data(self, tokenizer):
        """Forget QA and the matching retain set's QA, in the configured template."""
        from ..data.types import Example, UnlearnData

        def examples(records):
            return [
                Example(
                    prompt=self.template["prompt"].format(question=r["question"]),
                    target=self.template.get("answer_prefix", " ") + str(r["answer"]).strip(),
                )
                for r in records
            ]

        forget = self._part(self.config.forget, required=True)
        retain = self._part(self.retain_part, required=True)
        return UnlearnData(forget=examples(forget), retain=examples(retain), tokenizer=tokenizer)

    def benign_task(self, name: str, n_train: int, n_test: int, seed: int):
        """``retain``: QA of the matching retain set in the configured template, leaving out the
        questions the ``retain`` split scores. Train and test are disjoint seeded draws; a test item's
        target is the first :data:`BENIGN_TEST_WORDS` words of its answer (scoring 'text')."""
        from ..data.types import Example, TaskData

        if name not in self.benign_tasks:
            raise UnlearnbenchError(f"tofu: no benign task {name!r} (tasks: {', '.join(self.benign_tasks)})")
        scored = {item.question for item in self.tofu_items("retain")}
        records = [r for r in self._part(self.retain_part, required=True) if str(r["question"]) not in scored]
        if len(records) < n_train + n_test:
            raise UnlearnbenchError(
                f"task retain: {self.retain_part} has {len(records)} questions besides the retain split's, "
                f"fewer than n_train + n_test = {n_train + n_test}"
            )
        idx = random.Random(f"tofu-benign:{name}:{seed}").sample(range(len(records)), n_train + n_test)
        prefix = self.template.get("answer_prefix", " ")

        def example(r: dict, words: int | None = None) -> Example:
            answer = str(r["answer"]).strip()
            answer = " ".join(answer.split()[:words]) if words else answer
            return Example(self.template["prompt"].format(question=r["question"]), prefix + answer)

        test = [example(records[i], BENIGN_TEST_WORDS) for i in idx[:n_test]]
        train = [example(records[i]) for i in idx[n_test:]]
        return TaskData(name, train, test, "text", max_new_tokens=32)

    def describe(self) -> dict:
        return {
            **super().describe(),
            "forget": self.config.forget,
            "retain": self.retain_part,
            "template": self.config.template,
            "missing": dict(self.missing),
        }
