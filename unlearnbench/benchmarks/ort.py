"""``ort`` — form-variant probes read from files, in the style of the ORT benchmark ("LLM
Unlearning Should Be Form-Independent"): one target concept asked in many forms (cloze, QA, MCQ,
true/false, adversarial prompts, in-context examples), on the forget targets, on *neighbour*
targets (over-forgetting) and on retain targets (utility).

``data=DIR`` holds (the schema is also written in ``tasks/benchmarks/ort.yaml``):

* ``probes.jsonl`` (or .json/.csv/.tsv/.parquet) with every probe item, and/or one file per form
  in ``probes/`` (``probes/cloze.jsonl``, ...; there the ``form`` field defaults to the file name).
  Fields per record:

  - ``target``: the concept or entity the item is about (forget targets are what ROCR edits);
  - ``split``: ``forget``, ``neighbour`` (or ``neighbor``) or ``retain``;
  - ``form``: a probe form (:data:`GENERATIVE_FORMS` or :data:`CHOICE_FORMS`);
  - ``prompt``: what the model sees; it is continued with a space and the answer;
  - ``answer``: the right answer (generative forms; for choice forms it may name the right choice);
  - ``choices`` (mcq, tf): the candidate answers (a list, or a JSON list in csv/tsv); tf defaults to
    ``["True", "False"]``; an mcq item without choices whose answer is a letter A-D is scored over
    the letters A-D (the prompt lists the options);
  - ``label`` (mcq, tf): index of the right choice (else found from ``answer``);
  - ``id`` (optional): the item id (default ``<split>/<form>/<row>``).
* ``forget.jsonl`` and ``retain.jsonl`` (or .txt, .json, ...): the unlearning data, records
  ``{"prompt", "target"}`` (the target is appended to the prompt, a space put between them when
  neither has one) or ``{"text"}`` (raw text, cut into ``max_length``-token windows with
  :func:`~unlearnbench.benchmarks.common.chunk_corpus`); a .txt file is one document per
  blank-line-separated block.

The concepts handed to editing methods (ROCR) are the distinct ``target`` values of the forget
probe items, in file order; the harmless replacement is ``replacement=`` (default in the YAML).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from ..data.types import ProbeItem
from ..errors import UnlearnbenchError
from ..registry import register_benchmark
from .common import _EXTS, RealBenchmark, RealBenchmarkConfig, chunk_corpus, find_part_file, read_text_file

#: Forms scored by generation and teacher-forced likelihood (the probe of the same name).
GENERATIVE_FORMS = ("qa", "cloze", "bio", "reverse", "paraphrase", "adversarial", "icl")
#: Forms scored by ranking choices.
CHOICE_FORMS = ("mcq", "tf")
FORMS = GENERATIVE_FORMS + CHOICE_FORMS
SPLITS = ("forget", "neighbour", "retain")
_SPLIT_ALIASES = {"neighbor": "neighbour"}
_SCHEMA = (
    "fields target, split (forget|neighbour|retain), form, prompt, answer, "
    "choices and label for mcq/tf (see tasks/benchmarks/ort.yaml)"
)


@dataclass(frozen=True)
class OrtConfig(RealBenchmarkConfig):
    replacement: str = field(
        default="",
        metadata={"help": "harmless concept editing methods redirect forget targets to (default: the YAML's)"},
    )
    max_length: int = field(default=256, metadata={"help": "tokens per unlearning window of {text} records"})


@register_benchmark()
class OrtBenchmark(RealBenchmark):
    name = "ort"
    version = "1"
    Config = OrtConfig
    spec_file = "benchmarks/ort.yaml"
    description = "form-variant probes (cloze, QA, MCQ, TF, adversarial, ICL) from files, forget/neighbour/retain"
    splits = SPLITS
    forms = FORMS

    def __init__(self, config: OrtConfig | None = None):
        super().__init__(config)
        if not self.config.data:
            raise UnlearnbenchError(
                "ort needs data=DIR holding probes.jsonl (" + _SCHEMA + "), forget.jsonl and retain.jsonl"
            )
        self.root = Path(self.config.data)
        if not self.root.is_dir():
            raise UnlearnbenchError(f"ort: data={self.root} is not a folder (give a folder holding probes.jsonl)")
        self._files: dict[str, Path] = {}
        self._items = self._read_probes()
        present = {it.form for it in self._items}
        self.default_probes = tuple(f for f in FORMS if f in present)

    # -- probe items ----------------------------------------------------------------------
    def _read_probes(self) -> list[ProbeItem]:
        from ..data.loading import load_records

        sources: list[tuple[Path, str | None]] = []
        single = find_part_file(self.root, "probes", None)
        if single is not None:
            sources.append((single, None))
        folder = self.root / "probes"
        if folder.is_dir():
            sources += [(f, f.stem) for f in sorted(folder.iterdir()) if f.is_file() and f.suffix in _EXTS]
        if not sources:
            raise UnlearnbenchError(
                f"ort: no probes.jsonl (or probes/<form>.jsonl) in {self.root}: one record per item with {_SCHEMA}"
            )
        items: list[ProbeItem] = []
        seen: set[str] = set()
        for file, form in sources:
            self._files[str(file.relative_to(self.root))] = file
            for row, r in enumerate(load_records(file)):
                it = _item(r, row, file, form)
                if it.item_id in seen:
                    raise UnlearnbenchError(f"ort: {file} record {row}: duplicate id {it.item_id!r}")
                seen.add(it.item_id)
                items.append(it)
        if not any(it.split == "forget" for it in items):
            raise UnlearnbenchError(f"ort: no forget items in {self.root} (every benchmark needs split=forget items)")
        return items

    def probe_items(self, form: str, split: str) -> list[ProbeItem]:
        out = [it for it in self._items if it.form == form and it.split == split]
        return out[: self.config.limit] if self.config.limit else out

    def text_items(self, split: str) -> list[ProbeItem]:
        """The split's ``qa`` items, or where it has none all its generative items (for the
        generic probes: fluency, distance to the oracle)."""
        qa = self.probe_items("qa", split)
        if qa:
            return qa
        out = [it for f in GENERATIVE_FORMS for it in self.probe_items(f, split)]
        return out

    # -- unlearning -----------------------------------------------------------------------
    def _examples(self, part: str):
        from ..data.types import Example

        file = find_part_file(self.root, part, None)
        if file is None or file.parent != self.root:
            raise UnlearnbenchError(
                f"ort: no {part}.jsonl (or .txt/.json/.csv/.tsv/.parquet) in {self.root}: records "
                '{"prompt", "target"} or {"text"}, or plain text'
            )
        self._files[file.name] = file
        if file.suffix == ".txt":
            records = read_text_file(file)
        else:
            from ..data.loading import load_records

            records = load_records(file)
        pairs, texts = [], []
        for row, r in enumerate(records):
            if r.get("text"):
                texts.append(str(r["text"]))
            elif r.get("prompt") is not None and r.get("target"):
                prompt, target = str(r["prompt"]), str(r["target"])
                if prompt and not prompt[-1].isspace() and not target[0].isspace():
                    target = " " + target
                pairs.append(Example(prompt, target))
            else:
                raise UnlearnbenchError(
                    f"ort: {file} record {row} has neither text nor prompt+target "
                    f"(found: {', '.join(map(str, r)) or 'nothing'})"
                )
        return pairs, texts

    def unlearn_data(self, tokenizer):
        from ..data.types import UnlearnData

        data = {}
        for part in ("forget", "retain"):
            pairs, texts = self._examples(part)
            data[part] = pairs + chunk_corpus(texts, tokenizer, self.config.max_length)
        if not data["forget"]:
            raise UnlearnbenchError(
                f"ort: the forget data in {self.root} is empty (after chunking to max_length={self.config.max_length})"
            )
        concepts = list(dict.fromkeys(it.subject for it in self._items if it.split == "forget"))
        return UnlearnData(
            forget=data["forget"],
            retain=data["retain"],
            tokenizer=tokenizer,
            concepts=concepts,
            replacement=self.config.replacement or self.spec.get("replacement") or None,
            generic_text=[ex.prompt + ex.target for ex in data["retain"]],
        )

    def key_extra(self) -> dict:
        """The data files decide the results: their content hashes go into the cell keys."""
        for part in ("forget", "retain"):
            file = find_part_file(self.root, part, None)
            if file is not None and file.parent == self.root:
                self._files[file.name] = file
        return {
            "data_sha256": {name: hashlib.sha256(f.read_bytes()).hexdigest() for name, f in sorted(self._files.items())}
        }

    def describe(self) -> dict:
        counts = {s: sum(it.split == s for it in self._items) for s in SPLITS}
        return {**super().describe(), "items": counts, "forms": list(self.default_probes)}


def _item(r: dict, row: int, file: Path, form_default: str | None) -> ProbeItem:
    """One validated record (a one-line error naming the file, the record and the schema)."""
    where = f"ort: {file} record {row}"
    form = str(r.get("form") or form_default or "").strip().lower()
    split = _SPLIT_ALIASES.get(str(r.get("split", "")).strip().lower(), str(r.get("split", "")).strip().lower())
    missing = [k for k in ("target", "prompt") if r.get(k) in (None, "")]
    if not form:
        missing.append("form")
    if not split:
        missing.append("split")
    if missing:
        raise UnlearnbenchError(f"{where}: missing {', '.join(missing)} (expected {_SCHEMA})")
    if split not in SPLITS:
        raise UnlearnbenchError(f"{where}: split {split!r} is not one of {', '.join(SPLITS)}")
    if form not in FORMS:
        raise UnlearnbenchError(f"{where}: unknown form {form!r} (forms: {', '.join(FORMS)})")
    answer = "" if r.get("answer") is None else str(r["answer"]).strip()
    item_id = str(r.get("id") or f"{split}/{form}/{file.stem}:{row}")
    base = dict(
        item_id=item_id,
        entity_id=-1,
        attribute="",
        subject=str(r["target"]),
        split=split,
        form=form,
        prompt=str(r["prompt"]),
    )
    if form in GENERATIVE_FORMS:
        if not answer:
            raise UnlearnbenchError(f"{where}: form {form} needs an answer")
        return ProbeItem(**base, answer=answer)
    choices = _choices(r.get("choices"), where)
    if not choices:
        if form == "tf":
            choices = ("True", "False")
        elif answer.upper() in ("A", "B", "C", "D") and len(answer) == 1:
            choices = ("A", "B", "C", "D")
        else:
            raise UnlearnbenchError(f"{where}: mcq needs choices (a list) or a letter answer A-D")
    label = r.get("label")
    if label in (None, "") or (isinstance(label, float) and label != label):
        lowered = [c.lower() for c in choices]
        if answer.lower() not in lowered:
            raise UnlearnbenchError(
                f"{where}: no label and answer {answer!r} is not one of the choices {list(choices)}"
            )
        label = lowered.index(answer.lower())
    try:
        label = int(label)
    except (TypeError, ValueError):
        raise UnlearnbenchError(f"{where}: label {label!r} is not an integer index") from None
    if not 0 <= label < len(choices):
        raise UnlearnbenchError(f"{where}: label {label} is out of range for {len(choices)} choices")
    return ProbeItem(**base, answer=choices[label], choices=choices, label=label)


def _choices(value, where: str) -> tuple[str, ...]:
    if value is None or (isinstance(value, float) and value != value) or value == "":
        return ()
    if hasattr(value, "tolist"):  # a numpy array from parquet
        value = value.tolist()
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            raise UnlearnbenchError(f"{where}: choices must be a list (in csv/tsv: a JSON list)") from None
    if not isinstance(value, (list, tuple)) or len(value) < 2:
        raise UnlearnbenchError(f"{where}: choices must be a list of at least two answers")
    return tuple(str(c) for c in value)
