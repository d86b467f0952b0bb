"""Turning (prompt, target) pairs into padded tensors, the same way everywhere.

Two rules that public unlearning code gets wrong, kept here in one place:

- The target's tokens are found by encoding ``prompt`` and ``prompt + target`` and taking the tail
  (lm-eval's approach), so the split is right for any tokenizer, not only byte-level BPE.
- Attention masks come from sequence lengths, never from ``ids != pad_id``: many tokenizers pad
  with EOS, and that test would mask the real EOS tokens too.

Inputs longer than ``max_length`` are cut here, by one rule (:func:`fit_to_length`, also used for
lm-eval's requests by the ``wmdp_mcq`` probe): a prompt loses its start (after a BOS), a target its
end. The tokenizer is called with ``verbose=False`` so transformers does not warn about a length the
harness cuts itself; :class:`Encoded` says whether an example was cut, and :func:`encode_all` logs
how many of a call's examples were, in one line.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch

log = logging.getLogger(__name__)


@dataclass
class Encoded:
    ids: list[int]
    n_prompt: int  # tokens before the target (BOS included); the loss ignores them
    truncated: bool = False  # cut to max_length by fit_to_length


def fit_to_length(ids: Sequence[int], n_prompt: int, max_length: int, bos_id: int | None) -> tuple[list[int], int]:
    """``ids`` (prompt tokens then target tokens) cut to at most ``max_length`` tokens, and the new
    number of prompt tokens; unchanged when they fit.

    When the prompt fits, the target's tail is cut (a target keeps its start). When the prompt alone
    is too long, it keeps its end after a leading BOS (the end holds the question being asked), and
    the target its start, at most half of the room (at least one token).
    """
    ids = list(ids)
    if len(ids) <= max_length:
        return ids, n_prompt
    if n_prompt < max_length:
        return ids[:max_length], n_prompt
    keep_bos = 1 if ids and bos_id is not None and ids[0] == bos_id else 0
    target = ids[n_prompt:][: max(1, (max_length - keep_bos) // 2)]
    room = max_length - keep_bos - len(target)
    return ids[:keep_bos] + ids[n_prompt - room : n_prompt] + target, keep_bos + room


def encode_example(
    tokenizer, prompt: str, target: str, *, add_eos: bool = False, max_length: int | None = None
) -> Encoded:
    """Token ids of prompt+target with the number of prompt tokens.

    A leading space of the target stays with the target (scores are of " answer", as in ORT).
    Longer than ``max_length``: cut by :func:`fit_to_length` (``truncated`` is then True).
    """
    full = tokenizer(prompt + target, add_special_tokens=True, verbose=False)["input_ids"]
    if prompt:
        ctx = tokenizer(prompt, add_special_tokens=True, verbose=False)["input_ids"]
        # drop special tokens a tokenizer may append (e.g. an EOS post-processor)
        while ctx and full[: len(ctx)] != ctx and len(ctx) > 1:
            ctx = ctx[:-1]
        n_prompt = len(ctx) if full[: len(ctx)] == ctx else _common_prefix(ctx, full)
    else:
        n_prompt = 1 if full and full[0] == tokenizer.bos_token_id else 0
    if add_eos and tokenizer.eos_token_id is not None and (not full or full[-1] != tokenizer.eos_token_id):
        full = full + [tokenizer.eos_token_id]
    if max_length is not None and len(full) > max_length:
        full, n_prompt = fit_to_length(full, n_prompt, max_length, tokenizer.bos_token_id)
        return Encoded(full, n_prompt, truncated=True)
    return Encoded(full, n_prompt)


def encode_all(
    tokenizer,
    pairs: Sequence[tuple[str, str]],
    *,
    what: str,
    max_length: int | None = None,
    add_eos: bool = False,
) -> list[Encoded]:
    """:func:`encode_example` on every (prompt, target) pair; when some were cut, one log line says
    how many (``what`` names the caller in it, e.g. the probe)."""
    enc = [encode_example(tokenizer, p, t, add_eos=add_eos, max_length=max_length) for p, t in pairs]
    n_cut = sum(e.truncated for e in enc)
    if n_cut:
        log.warning(
            f"{what}: {n_cut} of {len(enc)} examples longer than {max_length} tokens were cut "
            "(prompts from the left, targets keep their start)"
        )
    return enc


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
