"""``knowmem`` — MUSE's knowledge memorisation (Shi et al. 2024, "KnowMem on D_f / D_r").

Each question follows ``icl_shots`` in-context examples (``Question: q\\nAnswer: a\\n\\n``, built by
the benchmark) and ends ``Question: q\\nAnswer: `` (with MUSE's trailing space); the model answers
greedily for up to ``max_new_tokens`` tokens (MUSE: 32), cut where MUSE's ``knowmem.eval`` cuts: before
the first "\\n\\n", "\\nQuestion" or "Question:" (``stops=muse``; ``stops=v1`` is this probe's
version 1: "\\n\\n" or "Question", which also cut answers that merely contain the word). Per item: ``rougeL_f1`` (the headline ``correct``; MUSE's metric) and
``rougeL_recall`` against the reference answer, 0..1 (MUSE reports the mean x 100). On the forget
split it measures what is left of D_f; on the retain split it is the utility (KnowMem on D_r).

A prompt longer than the model's context (minus the generated tokens) keeps its last tokens, so
the first in-context examples are dropped before the question is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ..registry import register_probe
from .base import require_positive
from .verbmem import context_room, keep_last_tokens

#: MUSE's cut (metrics/knowmem.py: ``get_prefix_before_words_occur``), and version 1's.
STOPS = {"muse": ("\n\n", "\nQuestion", "Question:"), "v1": ("\n\n", "Question")}


@dataclass(frozen=True)
class KnowMemConfig:
    max_new_tokens: int = field(default=32, metadata={"help": "greedy tokens per answer (MUSE: 32)"})
    batch_size: int = field(default=16, metadata={"help": "questions per generation batch"})
    stops: Literal["muse", "v1"] = field(
        default="muse", metadata={"help": "where answers are cut: MUSE's strings, or version 1's"}
    )

    def __post_init__(self):
        require_positive(self, "max_new_tokens", "batch_size")


@register_probe()
class KnowMemProbe:
    name = "knowmem"
    version = "2"  # 2: MUSE's stop strings and the prompt's trailing space; 1: "\n\n"/"Question", no space
    Config = KnowMemConfig
    description = "MUSE KnowMem: 10-shot QA on forget/retain facts, ROUGE-L F1 of the greedy answer"

    def __init__(self, config: KnowMemConfig | None = None):
        self.config = config or KnowMemConfig()

    def items(self, benchmark, split: str):
        return benchmark.probe_items("knowmem", split)

    def score(self, model, tokenizer, items) -> list[dict[str, float]]:
        from .. import inference, metrics

        cfg = self.config
        room = context_room(model, cfg.max_new_tokens)
        prompts = [keep_last_tokens(tokenizer, it.prompt, room) for it in items]
        gens = inference.greedy_generate(
            model, tokenizer, prompts, cfg.max_new_tokens, cfg.batch_size, stop=STOPS[cfg.stops]
        )
        rows = []
        for it, g in zip(items, gens):
            recall, f1 = metrics.rouge_l(g.strip(), it.answer)
            rows.append({"rougeL_f1": f1, "rougeL_recall": recall, "correct": f1, "generation": g})
        return rows
