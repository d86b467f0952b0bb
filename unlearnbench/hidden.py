"""Reading a decoder's residual stream, one batch at a time (a helper of the white-box probes and
attacks; no plugin).

- :func:`blocks`: the decoder blocks of a Llama-style (``model.model.layers``) or GPT-2-style
  (``model.transformer.h``) causal LM, in order.
- :func:`final_norm`: the norm applied before the unembedding (``model.model.norm`` /
  ``model.transformer.ln_f``).
- :func:`last_prompt_states`: for each (prompt, continuation) pair, the output of every block at
  the last prompt token — the position whose next-token prediction is the answer's first token.
  Forward hooks keep only that position's vector per block, so a batch's full activations are
  never held beyond the forward that makes them, and the caller gets one batch at a time.

Block ``i``'s output is the residual stream after ``i + 1`` blocks (HF's ``hidden_states[i + 1]``,
but before the final norm for the last block, which ``output_hidden_states`` returns normed in
Llama and GPT-2). Why hooks, not ``output_hidden_states=True``: that keeps every position of every
layer of the batch, and its last entry is normed while the others are not.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import torch

from .batching import collate, encode_example, length_batches, pad_id_of
from .errors import UnlearnbenchError


def unwrap(model) -> tuple[torch.nn.Module, int]:
    """(the causal LM, the number of positions prepended before the input's tokens): a wrapper that
    prepends embeddings (the ``softprompt`` attack's ``SoftPromptLM``) says so with ``lm`` and
    ``prefix_length``, and its blocks see ``prefix_length`` more positions than the input has;
    ``(model, 0)`` for a plain model."""
    k, inner = getattr(model, "prefix_length", None), getattr(model, "lm", None)
    if isinstance(k, int) and isinstance(inner, torch.nn.Module):
        return inner, k
    return model, 0


def blocks(model) -> list[torch.nn.Module]:
    """The decoder blocks, first to last; a one-line error for a model of another layout."""
    model = unwrap(model)[0]
    inner = getattr(model, "model", None)
    if inner is not None and hasattr(inner, "layers"):
        return list(inner.layers)
    tr = getattr(model, "transformer", None)
    if tr is not None and hasattr(tr, "h"):
        return list(tr.h)
    raise UnlearnbenchError(
        f"cannot find the decoder blocks of {type(model).__name__} (expected model.model.layers or model.transformer.h)"
    )


def final_norm(model) -> torch.nn.Module:
    """The norm between the last block and the unembedding."""
    model = unwrap(model)[0]
    inner = getattr(model, "model", None)
    if inner is not None and hasattr(inner, "norm"):
        return inner.norm
    tr = getattr(model, "transformer", None)
    if tr is not None and hasattr(tr, "ln_f"):
        return tr.ln_f
    raise UnlearnbenchError(f"cannot find the final norm of {type(model).__name__} (model.norm or transformer.ln_f)")


def n_blocks(model) -> int:
    return len(blocks(model))


def _block_outputs(model, tokenizer, pairs, batch_size, layers, max_length, where):
    """The one hooked reader behind :func:`last_prompt_states` and :func:`token_states`: per
    length-sorted batch of ``pairs``, yield ``(indices, states)`` with ``states`` the stacked
    outputs of blocks ``layers`` (float32) indexed by ``where(batch, indices, encoded, offset)``
    (the positions to keep, on the model's device; ``offset``: the positions a wrapper prepends).
    Forward hooks keep only those positions; the hooks are removed whatever happens."""
    bl = blocks(model)
    want = list(range(len(bl))) if layers is None else list(layers)
    if any(not 0 <= i < len(bl) for i in want):
        raise UnlearnbenchError(f"layers {want} out of range: the model has {len(bl)} blocks")
    enc = [encode_example(tokenizer, p, t, max_length=max_length) for p, t in pairs]
    offset = unwrap(model)[1]  # positions a wrapper prepends (its blocks see them first)
    device = next(model.parameters()).device
    pad = pad_id_of(tokenizer)
    rec: dict[int, torch.Tensor] = {}
    keep: dict[str, object] = {}

    def hook(layer):
        def fn(_module, _args, out):
            h = out[0] if isinstance(out, tuple) else out
            rec[layer] = h[keep["at"]].detach().float()

        return fn

    handles = [bl[i].register_forward_hook(hook(i)) for i in sorted(set(want))]
    try:
        with torch.inference_mode():
            for idx in length_batches([len(e.ids) for e in enc], batch_size, None):
                batch = collate([enc[i] for i in idx], pad)
                keep["at"] = where(batch, idx, enc, offset, device)
                rec.clear()
                model(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device))
                yield list(idx), torch.stack([rec[i] for i in want])
    finally:
        for h in handles:
            h.remove()
        rec.clear()


def last_prompt_states(
    model,
    tokenizer,
    pairs: Sequence[tuple[str, str]],
    batch_size: int = 64,
    layers: Sequence[int] | None = None,
    max_length: int = 512,
) -> Iterator[tuple[list[int], torch.Tensor]]:
    """Yield ``(indices, states)`` per batch: ``states[l, r]`` is block ``layers[l]``'s output
    (float32, on the model's device) at the last prompt token of pair ``indices[r]``.

    ``pairs`` are (prompt, continuation); the continuation only fixes where the prompt ends, as in
    :func:`unlearnbench.inference.score_targets` (the same tokens are scored there). A pair whose
    prompt is empty uses the first token (BOS where the tokenizer adds one). ``layers``: the block
    indices (default all)."""

    def last_prompt_token(_batch, idx, enc, offset, device):
        rows = torch.arange(len(idx), device=device)
        return rows, torch.tensor([offset + max(enc[i].n_prompt - 1, 0) for i in idx], device=device)

    return _block_outputs(model, tokenizer, pairs, batch_size, layers, max_length, last_prompt_token)


def token_states(
    model,
    tokenizer,
    pairs: Sequence[tuple[str, str]],
    batch_size: int = 32,
    layers: Sequence[int] | None = None,
    max_length: int = 512,
) -> Iterator[tuple[list[int], torch.Tensor]]:
    """Yield ``(indices, states)`` per batch: ``states[l]`` holds block ``layers[l]``'s output
    (float32) at every token of the batch's pairs, ``[layers, n_tokens, d]``, rows in the order of
    ``indices`` and positions in order within a row — the token positions that means over a text
    set are taken of (difference-of-means directions).

    Every position of prompt + continuation counts except padding and a leading BOS (a BOS's
    residual stream is the same large vector in every text, an attention sink, and would weigh
    on a mean by how short the texts are). As in :func:`last_prompt_states`, forward hooks keep
    only those positions and the caller gets one batch at a time."""
    bos = tokenizer.bos_token_id

    def text_tokens(batch, _idx, _enc, offset, device):
        mask = batch["attention_mask"].bool()
        if bos is not None:
            mask[:, 0] &= batch["input_ids"][:, 0] != bos
        if offset:  # the prepended positions are no token of the text
            mask = torch.cat([mask.new_zeros((mask.shape[0], offset)), mask], dim=1)
        return mask.to(device)

    return _block_outputs(model, tokenizer, pairs, batch_size, layers, max_length, text_tokens)
