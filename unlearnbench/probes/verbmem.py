"""``verbmem`` — MUSE's verbatim memorisation on D_f (Shi et al. 2024, "VerbMem").

The model continues a prefix of a forget text greedily for ``max_new_tokens`` tokens (MUSE: 128);
the score is ROUGE-L F1 between the continuation and the true continuation cut to the same number
of tokens *as MUSE counts them*: ``tokenizer(gt).input_ids[:, :128]`` with the tokenizer's special
tokens, so with a BOS-adding tokenizer (Llama) the truth holds 127 content tokens
(``truth_counts_bos=true``, the default; ``false`` is this probe's version 1: 128 content tokens). Per item: ``rougeL_f1`` (also the headline ``correct``) and ``rougeL_recall``, on a 0..1
scale; MUSE reports the mean x 100 (the MUSE-style report table does that).

A prompt longer than the benchmark's ``verbmem_prefix_tokens`` (or than the model's context minus
``max_new_tokens``) keeps its last tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..registry import register_probe
from .base import require_positive


@dataclass(frozen=True)
class VerbMemConfig:
    max_new_tokens: int = field(default=128, metadata={"help": "greedy tokens generated per prefix (MUSE: 128)"})
    batch_size: int = field(default=8, metadata={"help": "prefixes per generation batch"})
    truth_counts_bos: bool = field(
        default=True,
        metadata={
            "help": "cut the true continuation as MUSE: its first max_new_tokens ids with the BOS (false: content tokens)"
        },
    )

    def __post_init__(self):
        require_positive(self, "max_new_tokens", "batch_size")


def context_room(model, reserve: int) -> int | None:
    """Prompt tokens that fit in the model's context with ``reserve`` tokens (plus a small margin
    for a BOS and re-tokenisation) to spare (None: unknown)."""
    n = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    return max(8, int(n) - reserve - 4) if n else None


def keep_last_tokens(tokenizer, text: str, n: int | None) -> str:
    """The last ``n`` tokens of ``text`` (no special tokens), decoded; ``text`` itself if it fits."""
    if not n:
        return text
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return text if len(ids) <= n else tokenizer.decode(ids[-n:])


def truncate_tokens(tokenizer, text: str, n: int, *, with_special: bool = False) -> str:
    """The first ``n`` tokens of ``text``, decoded without special tokens. ``with_special``: the
    ``n`` count the tokenizer's own special tokens (a BOS), as MUSE's ``input_ids[:, :n]``."""
    ids = tokenizer(text, add_special_tokens=with_special)["input_ids"]
    return text if len(ids) <= n else tokenizer.decode(ids[:n], skip_special_tokens=True)


@register_probe()
class VerbMemProbe:
    name = "verbmem"
    version = "2"  # 2: the truth cut counts the BOS as MUSE (truth_counts_bos); 1: 128 content tokens
    Config = VerbMemConfig
    description = "MUSE VerbMem: continue a forget-text prefix (greedy), ROUGE-L F1 vs the true continuation"

    def __init__(self, config: VerbMemConfig | None = None):
        self.config = config or VerbMemConfig()

    def items(self, benchmark, split: str):
        return benchmark.probe_items("verbmem", split)

    def score(self, model, tokenizer, items) -> list[dict[str, float]]:
        from .. import inference, metrics

        cfg = self.config
        room = context_room(model, cfg.max_new_tokens)
        out: list[dict[str, float]] = [{}] * len(items)
        # items may ask for different prefix lengths: generate per length
        for limit in sorted({it.prompt_tokens for it in items}):
            idx = [i for i, it in enumerate(items) if it.prompt_tokens == limit]
            caps = [c for c in (limit, room) if c]
            cap = min(caps) if caps else None
            prompts = [keep_last_tokens(tokenizer, items[i].prompt, cap) for i in idx]
            gens = inference.greedy_generate(model, tokenizer, prompts, cfg.max_new_tokens, cfg.batch_size, stop=())
            for i, g in zip(idx, gens):
                truth = truncate_tokens(
                    tokenizer, items[i].answer, cfg.max_new_tokens, with_special=cfg.truth_counts_bos
                )
                recall, f1 = metrics.rouge_l(g, truth)
                out[i] = {"rougeL_f1": f1, "rougeL_recall": recall, "correct": f1, "generation": g}
        return out
