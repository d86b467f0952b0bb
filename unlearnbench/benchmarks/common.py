"""What the benchmarks on real data (MUSE, TOFU, WMDP, ORT files) share: a user-chosen model,
an optional retrained model, data from a hub id *or* local files, and text corpora chunked for
unlearning.

A real benchmark subclasses :class:`RealBenchmark`, declares its YAML spec (``spec_file``, under
``tasks/benchmarks/``) and a ``Config`` dataclass that includes the fields of
:class:`RealBenchmarkConfig` (model, oracle, data, ...). The runner then treats it like the
embedded world:

* ``load("target" | "oracle")`` loads ``config.model`` / ``config.oracle`` through
  :func:`unlearnbench.models.load_model` (safetensors or GGUF only; no remote code unless asked);
* ``has_oracle`` is true only when ``oracle=`` was given (or the YAML names a default one);
* ``records(part, split)`` reads one part of the data from ``data=DIR`` (``DIR/<part>.<ext>`` or
  ``DIR/<part>/<split>.<ext>``) or else from the hub id the YAML declares for that part; a missing
  part is a one-line error naming what is missing and both ways to provide it.

Nothing here imports torch at module level.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Sequence

from ..errors import HubUnavailable, UnlearnbenchError
from ..progress import SILENT, Progress
from ..spec import load_yaml

_EXTS = (".jsonl", ".json", ".csv", ".tsv", ".parquet", ".txt")


@dataclass(frozen=True)
class RealBenchmarkConfig:
    """Fields every real benchmark's Config carries (subclass it and add your own)."""

    model: str = field(default="", metadata={"help": "target model: local dir, .gguf file or hub id"})
    oracle: str = field(default="", metadata={"help": "retrained (gold-standard) model, same forms as model"})
    data: str = field(default="", metadata={"help": "local data folder (default: the hub ids in the YAML spec)"})
    gguf_file: str = field(default="", metadata={"help": "GGUF file name inside a model directory"})
    dtype: str = field(
        default="auto", metadata={"help": "weights dtype: auto (float32 on CPU), float32, bfloat16, float16"}
    )
    revision: str = field(default="", metadata={"help": "hub revision (branch, tag or commit) of model and oracle"})
    trust_remote_code: bool = field(default=False, metadata={"help": "let transformers run the model's code"})
    limit: int = field(default=0, metadata={"help": "use only the first N items of each split (0: all)"})


class RealBenchmark:
    """Base class; see the module docstring."""

    name: ClassVar[str]
    version: ClassVar[str] = "1"
    spec_file: ClassVar[str]
    splits: ClassVar[tuple[str, ...]] = ("forget", "retain")
    eval_tasks: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config=None):
        self.config = config or self.Config()
        self.spec = load_yaml(self.spec_file)
        self._defaults = self.spec.get("defaults", {}) or {}
        self.default_probes = tuple(self.spec.get("probes", ()))
        if not self.config.model and not self.spec.get("model"):
            raise UnlearnbenchError(f"benchmark {self.name} needs a model: {self.name},model=PATH_OR_HUB_ID")
        self.model_source = self.config.model or self.spec["model"]
        self.oracle_source = self.config.oracle or self.spec.get("oracle") or ""
        self.model_name = _short_name(self.model_source)
        if self.config.limit < 0:
            raise UnlearnbenchError(f"benchmark {self.name}: limit must be >= 0 (0: every item)")
        from ..models import check_source, resolve_dtype

        resolve_dtype(self.config.dtype, "cpu")  # an unknown dtype: one line now

        # a typo in a model path is one line now, before the run opens the store or loads anything
        gguf = self.config.gguf_file or None
        for what, source in (("model", self.model_source), ("oracle", self.oracle_source)):
            if source:
                try:
                    check_source(source, gguf_file=gguf if what == "model" else None)
                except UnlearnbenchError as e:
                    raise UnlearnbenchError(f"benchmark {self.name}, {what}={source}: {e}") from None

    # -- models ---------------------------------------------------------------------------
    @property
    def has_oracle(self) -> bool:
        return bool(self.oracle_source)

    def load(self, role: str, device: str = "cpu", progress: Progress = SILENT):
        from ..models import load_model

        source = self.model_source if role == "target" else self.oracle_source
        if not source:
            raise UnlearnbenchError(
                f"benchmark {self.name} has no {role} model (give {role if role != 'target' else 'model'}=PATH)"
            )
        return load_model(
            source,
            device=device,
            dtype=self.config.dtype,
            trust_remote_code=self.config.trust_remote_code,
            gguf_file=self.config.gguf_file or None,
            revision=self.config.revision or None,
        )

    def n_layers(self) -> int | None:
        """The target model's decoder blocks, from its config.json (None: not known before loading)."""
        from ..models import count_layers

        return count_layers(self.model_source, gguf_file=self.config.gguf_file or None)

    def defaults(self, kind: str, name: str) -> dict:
        return dict(self._defaults.get(kind, {}).get(name, {}) or {})

    # -- data -----------------------------------------------------------------------------
    def records(self, part: str, split: str | None = None, columns: Sequence[str] | None = None) -> list[dict]:
        """Records of one part of the benchmark's data (local ``data=`` folder first, else the hub)."""
        from ..data.loading import load_records

        hub = (self.spec.get("data", {}) or {}).get(part)
        if self.config.data:
            file = find_part_file(Path(self.config.data), part, split)
            if file is None:
                raise UnlearnbenchError(
                    f"{self.name}: no file for '{part}'{f' (split {split})' if split else ''} in {self.config.data}: "
                    f"expected {part}.jsonl (or .json/.csv/.tsv/.parquet/.txt)"
                    + (f" or {part}/{split}.jsonl" if split else "")
                    + (f"; or drop data= to read the hub dataset {hub['path']}" if hub else "")
                )
            records = read_text_file(file) if file.suffix == ".txt" else load_records(file, columns=columns)
        elif hub:
            try:
                records = load_records(
                    hub["path"], config=hub.get("name"), split=hub.get("split", split), columns=columns
                )
            except UnlearnbenchError as e:
                raise UnlearnbenchError(
                    f"{self.name}: {offline_reason(e)}: give data=DIR holding {part}.jsonl"
                ) from None
        else:
            raise UnlearnbenchError(f"{self.name}: no data for '{part}': give data=DIR holding {part}.jsonl")
        return records[: self.config.limit] if self.config.limit else records

    def describe(self) -> dict:
        return {
            "benchmark": self.name,
            "model": self.model_source,
            "oracle": self.oracle_source or None,
            "data": self.config.data or "hub",
        }


def offline_reason(e: BaseException) -> str:
    """The loader's message without its hint for tasks (``--data NAME=PATH``): benchmarks take ``data=DIR``."""
    return e.reason if isinstance(e, HubUnavailable) else str(e)


def find_part_file(root: Path, part: str, split: str | None) -> Path | None:
    """``root/<part>.<ext>``, ``root/<part>/<split>.<ext>`` or ``root/<split>.<ext>`` (first found)."""
    if root.is_file():
        return root
    candidates = [root / part]
    if split:
        candidates += [root / part / split, root / split]
    for stem in candidates:
        for ext in _EXTS:
            f = stem.with_name(stem.name + ext)
            if f.is_file():
                return f
    return None


def find_shards(folder: Path, split: str) -> list[Path]:
    """A hub snapshot's parquet shards of one split, in order: ``folder/<split>-*.parquet``
    (``test-00000-of-00001.parquet``, as ``huggingface-cli download`` leaves them)."""
    return sorted(folder.glob(f"{split}-*.parquet")) if folder.is_dir() else []


def read_records(files: Sequence[Path], columns: Sequence[str] | None = None) -> list[dict]:
    """The records of one or several files (a snapshot's shards), in order."""
    from ..data.loading import load_records

    return [r for f in files for r in load_records(f, columns=columns)]


def read_text_file(path: Path) -> list[dict]:
    """A plain text corpus: one record {"text": ...} per blank-line-separated document."""
    docs = [d.strip() for d in path.read_text(encoding="utf-8").split("\n\n")]
    return [{"text": d} for d in docs if d]


def chunk_corpus(texts: Sequence[str], tokenizer, max_length: int, *, min_tokens: int = 8):
    """Raw documents -> unlearning examples of at most ``max_length`` tokens each.

    Each document is tokenised once (no special tokens) and cut into consecutive windows; a window's
    text is decoded back, so every token of the document is in exactly one example. Tail windows
    shorter than ``min_tokens`` are dropped (they carry too little to unlearn). Examples have an
    empty prompt: the loss covers every token (the MUSE/WMDP corpus setting).
    """
    from ..data.types import Example

    if max_length < min_tokens:
        raise UnlearnbenchError(f"max_length {max_length} is shorter than min_tokens {min_tokens}")
    room = max_length - 1  # a BOS token may be prepended
    out = []
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        for start in range(0, len(ids), room):
            window = ids[start : start + room]
            if len(window) < min_tokens:
                continue
            out.append(Example(prompt="", target=tokenizer.decode(window)))
    return out


def _short_name(source: str) -> str:
    text = os.fspath(source).rstrip("/")
    return Path(text).name if ("/" in text and Path(text).exists()) else text
