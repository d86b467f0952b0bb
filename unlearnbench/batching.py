"""Turning (prompt, target) pairs into padded tensors, the same way everywhere.

Two rules that public unlearning code gets wrong, kept here in one place:

- The target's tokens are found by encoding ``prompt`` and ``prompt + target`` and taking the tail
  (lm-eval's approach), so the split is right for any tokenizer, not only byte-level BPE.
- Attention masks come from sequence lengths, never from ``ids != pad_id``: many tokenizers pad
  with EOS, and that test would mask the real EOS tokens too.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch


@dataclass
class Encoded:
    ids: list[int]
    n_prompt: int  # tokens before the target (BOS included); the loss ignores them


def encode_example(
    tokenizer, prompt: str, target: str, *, add_eos: bool = False, max_length: int | None = None
) -> Encoded:
    """Token ids of prompt+target with the number of prompt tokens.

    A leading space of the target stays with the target (scores are of " answer", as in ORT).
    """
    full = tokenizer(prompt + target, add_special_tokens=True)["input_ids"]
    if prompt:
        ctx = tokenizer(prompt, add_special_tokens=True)["input_ids"]
        # drop special tokens a tokenizer may append (e.g. an EOS post-processor)
        while ctx and full[: len(ctx)] != ctx and len(ctx) > 1:
            ctx = ctx[:-1]
        n_prompt = len(ctx) if full[: len(ctx)] == ctx else _common_prefix(ctx, full)
    else:
        n_prompt = 1 if full and full[0] == tokenizer.bos_token_id else 0
    if add_eos and tokenizer.eos_token_id is not None and (not full or full[-1] != tokenizer.eos_token_id):
        full = full + [tokenizer.eos_token_id]
    if max_length is not None and len(full) > max_length:
        if n_prompt < max_length:  # the prompt fits: cut the target's tail
            full = full[:max_length]
        else:  # the prompt alone is too long: keep its end (after a BOS) and the target's start
            keep_bos = 1 if full and full[0] == tokenizer.bos_token_id else 0
            target = full[n_prompt:][: max(1, (max_length - keep_bos) // 2)]
            room = max_length - keep_bos - len(target)
            full = full[:keep_bos] + full[n_prompt - room : n_prompt] + target
            n_prompt = keep_bos + room
    return Encoded(full, n_prompt)


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n


def collate(encoded: Sequence[Encoded], pad_id: int, *, left_pad: bool = False) -> dict[str, torch.Tensor]:
    """Pad a batch. ``labels`` are -100 on prompt tokens and padding."""
    width = max(len(e.ids) for e in encoded)
    n = len(encoded)
    input_ids = torch.full((n, width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((n, width), dtype=torch.long)
    labels = torch.full((n, width), -100, dtype=torch.long)
    for row, e in enumerate(encoded):
        length = len(e.ids)
        start = width - length if left_pad else 0
        ids = torch.tensor(e.ids, dtype=torch.long)
        input_ids[row, start : start + length] = ids
        attention_mask[row, start : start + length] = 1
        labels[row, start + e.n_prompt : start + length] = ids[e.n_prompt :]
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def length_batches(lengths: Sequence[int], batch_size: int, rng: random.Random | None) -> Iterator[list[int]]:
    """Indices grouped by similar length (less padding); batch order shuffled when ``rng`` given."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], rng.random() if rng else i))
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    if rng is not None:
        rng.shuffle(batches)
    yield from batches


def shuffled_batches(n: int, batch_size: int, rng: random.Random) -> Iterator[list[int]]:
    """Plain shuffled mini-batches (the order methods and attacks see their data in)."""
    order = list(range(n))
    rng.shuffle(order)
    for i in range(0, n, batch_size):
        yield order[i : i + batch_size]


def pad_id_of(tokenizer) -> int:
    if tokenizer.pad_token_id is not None:
        return tokenizer.pad_token_id
    if tokenizer.eos_token_id is not None:
        return tokenizer.eos_token_id
    return 0
