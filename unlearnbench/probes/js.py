"""``js`` — Jensen-Shannon divergence between the evaluated model and the retrain oracle.

For each item of ``benchmark.text_items(split)`` the answer (``answer_prefix`` or a space, then
``answer``) is teacher-forced after the prompt through both models; at every answer position the
two next-token distributions P (evaluated model) and Q (oracle) are compared:

    JS(P, Q) = 1/2 KL(P || M) + 1/2 KL(Q || M),   M = (P + Q) / 2,

with the natural logarithm, so JS is in [0, ln 2 ≈ 0.693] (0: the same distribution). The item's
``js`` is the mean over its answer positions. An unlearned model that behaves like the oracle on
the forget split has a small ``js`` there; the base model's ``js`` on the forget split is what
unlearning should remove, and ``js`` on the retain split measures collateral change. Computed in
float32 from the logits (whatever the models' dtype); values are clamped to [0, ln 2] against
float rounding.

Exact or approximate: with a vocabulary of at most ``full_vocab_max`` tokens the full
distributions are compared. With a larger vocabulary the oracle's distribution at each position is
kept as its ``top_k`` most likely tokens plus one tail bucket holding the rest of its mass, and the
evaluated model's distribution is coarsened onto the same ``top_k + 1`` buckets. JS of the
coarsened distributions is a lower bound of the exact JS (JS is an f-divergence, and merging
outcomes never increases one: the data-processing inequality); the gap is small when both models
put little mass in the oracle's tail.

The oracle's distributions are computed once per item list and cached (keyed by the oracle's
weights hash and the items' text), so each checkpoint of a run costs one forward pass of the
evaluated model only. Both models must share the tokenizer: different vocabularies are refused.
Without an oracle (a benchmark run without ``oracle=``) the probe stores no rows and logs why.
"""

from __future__ import annotations

import hashlib
import logging
import math
from dataclasses import dataclass, field

from ..errors import UnlearnbenchError
from ..registry import register_probe
from .fluency import text_items_of

log = logging.getLogger(__name__)
LN2 = math.log(2.0)


@dataclass(frozen=True)
class JSConfig:
    batch_size: int = field(default=16, metadata={"help": "items per forward pass"})
    full_vocab_max: int = field(
        default=8192,
        metadata={"help": "vocabularies up to this size are compared exactly; larger ones through top_k + tail"},
    )
    top_k: int = field(default=256, metadata={"help": "oracle tokens kept per position above full_vocab_max"})
    max_length: int = field(default=512, metadata={"help": "tokens per prompt+answer (longer are cut)"})

    def __post_init__(self):
        if self.batch_size < 1 or self.top_k < 1 or self.max_length < 2:
            raise ValueError("batch_size and top_k must be positive, max_length at least 2")


def js_from_logprobs(logp, logq):
    """JS divergence (nats) between distributions given as log-probs over the last dimension."""
    import torch

    logm = torch.logaddexp(logp, logq) - LN2
    zero = torch.zeros((), dtype=logp.dtype, device=logp.device)
    kl_p = torch.where(logp > -math.inf, logp.exp() * (logp - logm), zero).sum(-1)
    kl_q = torch.where(logq > -math.inf, logq.exp() * (logq - logm), zero).sum(-1)
    return (0.5 * (kl_p + kl_q)).clamp(0.0, LN2)


def coarsen(logp, top_idx):
    """Log-probs of ``top_idx`` tokens plus a last bucket with the log of the remaining mass."""
    import torch

    top = logp.gather(-1, top_idx)
    rest = logp.scatter(-1, top_idx, -math.inf)
    return torch.cat([top, torch.logsumexp(rest, -1, keepdim=True)], -1)


def check_same_vocab(tokenizer, model, ref_tokenizer, ref_model) -> None:
    """Refuse models whose tokens do not mean the same thing (one-line error)."""
    n, m = model.config.vocab_size, ref_model.config.vocab_size
    if n != m:
        raise UnlearnbenchError(
            f"js: the evaluated model and the oracle have different vocabularies ({n} vs {m} "
            "logits); the Jensen-Shannon distance needs one shared tokenizer"
        )
    if tokenizer is not ref_tokenizer and tokenizer.get_vocab() != ref_tokenizer.get_vocab():
        raise UnlearnbenchError(
            "js: the evaluated model's tokenizer and the oracle's differ (same size, other "
            "tokens); the Jensen-Shannon distance needs one shared tokenizer"
        )


def answer_logprobs(model, tokenizer, items, batch_size: int, max_length: int):
    """Per item, float32 log-probs [answer tokens, vocab] of the next token at each answer position
    (on the model's device), yielded in item order as (index, tensor)."""
    import torch

    from ..batching import collate, encode_example, length_batches, pad_id_of

    enc = [
        encode_example(tokenizer, it.prompt, getattr(it, "answer_prefix", " ") + it.answer, max_length=max_length)
        for it in items
    ]
    device = next(model.parameters()).device
    pad = pad_id_of(tokenizer)
    with torch.inference_mode():
        for idx in length_batches([len(e.ids) for e in enc], batch_size, None):
            batch = {k: v.to(device) for k, v in collate([enc[i] for i in idx], pad).items()}
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
            mask = batch["labels"][:, 1:] != -100
            for row, i in enumerate(idx):
                yield i, torch.log_softmax(logits[row][mask[row]].float(), -1)


@register_probe()
class JSDistanceProbe:
    """Mean per-token Jensen-Shannon divergence to the retrain oracle over answer tokens."""

    name = "js"
    version = "1"
    Config = JSConfig
    needs_reference = True
    description = "Jensen-Shannon divergence (nats, 0..ln 2) of next-token distributions to the retrain oracle"

    def __init__(self, config: JSConfig | None = None):
        self.config = config or JSConfig()
        self._cache: dict[str, list] = {}
        self._warned = False

    def items(self, benchmark, split: str):
        return text_items_of(benchmark, split, self.name)

    def _key(self, reference, items) -> str:
        h = hashlib.sha256(str(getattr(reference, "weights_sha256", id(reference.model))).encode())
        for it in items:
            h.update(f"\0{it.item_id}\0{it.prompt}\0{getattr(it, 'answer_prefix', ' ')}{it.answer}".encode())
        return h.hexdigest()

    def _reference(self, reference, items, exact: bool) -> list:
        """The oracle's answer-position distributions, once per item list: full log-probs (exact)
        or (top-k indices, coarsened log-probs), on the CPU."""
        key = self._key(reference, items)
        if key not in self._cache:
            cfg = self.config
            out: list = [None] * len(items)
            for i, lq in answer_logprobs(reference.model, reference.tokenizer, items, cfg.batch_size, cfg.max_length):
                if exact:
                    out[i] = lq.cpu()
                else:
                    top = lq.topk(min(cfg.top_k, lq.shape[-1]), -1).indices
                    out[i] = (top.cpu(), coarsen(lq, top).cpu())
            self._cache[key] = out
        return self._cache[key]

    def score(self, model, tokenizer, items, reference=None) -> list[dict[str, float]]:
        if reference is None:
            if not self._warned:
                log.warning("js: no retrain oracle for this benchmark (give oracle=PATH); no JS rows are stored")
                self._warned = True
            return []
        check_same_vocab(tokenizer, model, reference.tokenizer, reference.model)
        cfg = self.config
        exact = model.config.vocab_size <= cfg.full_vocab_max
        ref = self._reference(reference, items, exact)
        rows: list[dict[str, float] | None] = [None] * len(items)
        for i, lp in answer_logprobs(model, tokenizer, items, cfg.batch_size, cfg.max_length):
            r = ref[i]
            if (r if exact else r[1]).shape[0] != lp.shape[0]:
                raise UnlearnbenchError(
                    f"js: item {items[i].item_id} has {lp.shape[0]} answer tokens for the evaluated "
                    f"model but {(r if exact else r[1]).shape[0]} for the oracle (tokenizers differ)"
                )
            if exact:
                js = js_from_logprobs(lp, r.to(lp.device))
            else:
                top, lq = r
                js = js_from_logprobs(coarsen(lp, top.to(lp.device)), lq.to(lp.device))
            if js.numel() == 0:
                raise UnlearnbenchError(f"js: item {items[i].item_id} has no answer tokens")
            rows[i] = {"js": float(js.mean())}
        return rows  # type: ignore[return-value]
