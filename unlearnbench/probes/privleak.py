"""``privleak`` — MUSE's privacy leakage (Shi et al. 2024, "PrivLeak").

Per text: the Min-K% membership score (K = 40 %: minus the mean of the lowest 40 % token
log-probs; :func:`unlearnbench.metrics.min_k_percent`) as ``mink``, and ``mean_nll``. Texts of the
forget split are D_f, those of the holdout split were never trained on. As in MUSE, a text too short
to have a lowest 40 % (under 3 scored tokens) scores NaN and is left out of the AUC.

``aggregate`` gives, on split ``forget`` (item ``*`` in the store):

* ``auc``: the AUC of forget (label 0) vs holdout (label 1) texts ranked by minus the score
  (:func:`unlearnbench.metrics.mia_auc`): near 0 when the forget texts are still familiar;
* ``auc_retrain``: the benchmark's constant AUC of the retrained model (MUSE's table: News
  0.4772, Books 0.5393);
* ``privleak``: ``(auc - auc_retrain) / auc_retrain x 100`` with that constant. Reports recompute it
  with the run's own oracle AUC when the run has an oracle (and say which reference they used).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..registry import register_probe
from .base import require_positive


@dataclass(frozen=True)
class PrivLeakConfig:
    k: float = field(default=0.4, metadata={"help": "fraction of lowest-probability tokens in Min-K% (MUSE: 0.4)"})
    max_length: int = field(
        default=2048, metadata={"help": "tokens per text (longer texts are cut; also capped by the model's context)"}
    )
    batch_size: int = field(default=4, metadata={"help": "texts per forward pass"})

    def __post_init__(self):
        if not 0 < self.k <= 1:
            raise ValueError("k must be in (0, 1]")
        require_positive(self, "max_length", "batch_size")


@register_probe()
class PrivLeakProbe:
    name = "privleak"
    version = "2"  # 2: texts under 3 scored tokens score NaN, as MUSE (1: their lowest token)
    Config = PrivLeakConfig
    description = "MUSE PrivLeak: Min-40% scores of forget vs holdout texts; AUC and PrivLeak as aggregates"

    def __init__(self, config: PrivLeakConfig | None = None):
        self.config = config or PrivLeakConfig()
        self.auc_retrain: float | None = None

    def items(self, benchmark, split: str):
        self.auc_retrain = getattr(benchmark, "auc_retrain", None)
        return benchmark.probe_items("privleak", split)

    def score(self, model, tokenizer, items) -> list[dict[str, float]]:
        from .. import metrics

        cfg = self.config
        n_pos = getattr(getattr(model, "config", None), "max_position_embeddings", None)
        max_len = min(cfg.max_length, int(n_pos)) if n_pos else cfg.max_length
        logps = token_logprobs(model, tokenizer, [it.answer for it in items], cfg.batch_size, max_len)
        return [
            {"mink": metrics.min_k_percent(lp, cfg.k), "mean_nll": -sum(lp) / len(lp) if lp else float("nan")}
            for lp in logps
        ]

    def aggregate(self, scores_by_split: dict[str, list[dict]]) -> list[tuple[str, str, float]]:
        from .. import metrics

        if "forget" not in scores_by_split or "holdout" not in scores_by_split:
            return []
        auc = metrics.mia_auc(
            [s["mink"] for s in scores_by_split["forget"]], [s["mink"] for s in scores_by_split["holdout"]]
        )
        rows = [("forget", "auc", auc)]
        if self.auc_retrain:
            rows += [
                ("forget", "auc_retrain", self.auc_retrain),
                ("forget", "privleak", metrics.privleak(auc, self.auc_retrain)),
            ]
        return rows


def token_logprobs(model, tokenizer, texts, batch_size: int = 4, max_length: int = 2048) -> list[list[float]]:
    """Log-probability of every token of each text given the tokens before it (the first token
    given the BOS where the tokenizer adds one; texts longer than ``max_length`` tokens are cut).
    Batched by length like :mod:`unlearnbench.inference`; float32 log-softmax."""
    import torch
    import torch.nn.functional as F

    from ..batching import collate, encode_example, length_batches, pad_id_of

    enc = [encode_example(tokenizer, "", t, max_length=max_length) for t in texts]
    out: list[list[float]] = [[] for _ in enc]
    device = next(model.parameters()).device
    pad = pad_id_of(tokenizer)
    with torch.inference_mode():
        for idx in length_batches([len(e.ids) for e in enc], batch_size, None):
            batch = {k: v.to(device) for k, v in collate([enc[i] for i in idx], pad).items()}
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            labels = batch["labels"][:, 1:]
            logp = -F.cross_entropy(logits[:, :-1].float().transpose(1, 2), labels.clamp_min(0), reduction="none")
            for row, i in enumerate(idx):
                out[i] = logp[row][labels[row] != -100].tolist()
    return out
