"""``lens`` — logit lens: is the answer readable from an intermediate layer's residual stream?

For each item (a prompt and its answer) and each decoder block ``L = 0 .. n-1``, the block's
output ``h_L`` at the last prompt token (the position whose next-token prediction is the answer's
first token ``a``; :func:`unlearnbench.hidden.last_prompt_states`) is read through the model's own
final norm and unembedding,

    z_L = W_U · norm(h_L),    p_L = softmax(z_L),

and the item gets, per layer: ``rank@L`` = #{tokens t : z_L[t] > z_L[a]} (0-based; ties count in
the answer's favour), ``prob@L`` = p_L[a], ``top1@L`` = 1 if ``rank@L`` = 0 else 0, and
``best_rank`` = min over L of ``rank@L``. Block n-1's output through the final norm and the
unembedding is the model's own next-token prediction, so ``top1@(n-1)`` is 1 exactly when the
model's greedy first token is the answer's. Aggregates per split (item ``*``): ``best_layer`` =
argmax over L of mean ``top1@L`` (ties: the earliest layer) and ``best_top1`` = that mean. An
unlearned model whose output forgets but whose middle layers still rank the answer first has
hidden the fact rather than removed it; the retrain oracle's figures on the forget split are the
floor that "gone" means.

Paper: the logit lens (nostalgebraist, 2020, "interpreting GPT: the logit lens", LessWrong; no
arXiv id); its use as an extraction attack on deleted facts: Patil, Hase & Bansal 2023, "Can
Sensitive Information Be Deleted From LLMs? Objectives for Defending Against Extraction Attacks"
(arXiv 2309.17410), whose Head Projection attack reads the answer's rank at intermediate layers.

Deviations: Patil et al. count an attack as a success when the answer is among the top-B tokens of
any layer; here the rank itself is stored (``best_rank`` < B is their criterion for any B). Only
the answer's first token is read (as in Patil et al.). Models with extra logit transforms after the
unembedding (e.g. Gemma 2's soft-capping) are read without them: ranks are unchanged, ``prob@L``
is not theirs.

Items: ``benchmark.probe_items(form, split)`` (default form ``qa``); for the default form on a
benchmark without it, ``benchmark.text_items(split)``; generative items only (choice forms are refused: their
answer is a letter or a word among given choices). The continuation is ``answer_prefix`` (a space
where the item has none) + ``answer``, tokenised as in :func:`unlearnbench.inference.score_targets`.
Memory: one batch's answer-position vectors per layer, and one layer's logits at a time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import UnlearnbenchError
from ..registry import register_probe
from .fluency import text_items_of

CHOICE_FORMS = ("mcq", "tf")
DEFAULT_FORM = "qa"


def check_form(form: str) -> None:
    """Refuse (ValueError, a one-line config error) a form the hidden-state probes cannot read."""
    if not form:
        raise ValueError("form must name a probe form (e.g. qa)")
    if form in CHOICE_FORMS:
        raise ValueError(f"form {form!r} is a choice form; the hidden-state probes need generative items (e.g. qa)")


def items_of(benchmark, split: str, form: str, probe: str) -> list:
    """Generative items of ``split``: the benchmark's ``form`` items; for the default form (``qa``)
    on a benchmark that lists its forms without it (MUSE, TOFU, WMDP), its text items instead. A
    form named explicitly is the benchmark's to refuse (a typo must not silently read qa items)."""
    forms = getattr(benchmark, "forms", None)
    if hasattr(benchmark, "probe_items") and (forms is None or form in forms or form != DEFAULT_FORM):
        try:
            items = benchmark.probe_items(form, split)
        except ValueError as e:  # the embedded world's "unknown form"
            raise UnlearnbenchError(f"probe {probe}: {e}") from None
    else:
        items = text_items_of(benchmark, split, probe)
    return [it for it in items if not getattr(it, "choices", ())]


def continuation(item) -> str:
    return getattr(item, "answer_prefix", " ") + item.answer


def answer_first_tokens(tokenizer, items, max_length: int, probe: str) -> list[int]:
    """The first answer token of each item (the token after the prompt in ``encode_example``)."""
    from ..batching import encode_example

    out = []
    for it in items:
        e = encode_example(tokenizer, it.prompt, continuation(it), max_length=max_length)
        if e.n_prompt >= len(e.ids):
            raise UnlearnbenchError(f"{probe}: item {it.item_id} has no answer tokens")
        out.append(e.ids[e.n_prompt])
    return out


def unembed(model, states):
    """Logits (float32) of the final norm + unembedding applied to residual-stream ``states`` [.., d]."""
    from ..hidden import final_norm, unwrap

    head = unwrap(model)[0].get_output_embeddings()
    return head(final_norm(model)(states.to(head.weight.dtype))).float()


@dataclass(frozen=True)
class LensConfig:
    form: str = field(
        default=DEFAULT_FORM, metadata={"help": "probe form whose items are read (generative forms only)"}
    )
    batch_size: int = field(default=32, metadata={"help": "items per forward pass"})
    max_length: int = field(default=512, metadata={"help": "tokens per prompt+answer (longer are cut)"})

    def __post_init__(self):
        check_form(self.form)
        if self.batch_size < 1 or self.max_length < 2:
            raise ValueError("batch_size must be positive, max_length at least 2")


@register_probe()
class LogitLensProbe:
    """Rank and probability of the answer's first token read from every layer (logit lens)."""

    name = "lens"
    version = "1"
    Config = LensConfig
    description = "logit lens: rank/probability of the answer's first token at every layer's residual stream"

    def __init__(self, config: LensConfig | None = None):
        self.config = config or LensConfig()

    def items(self, benchmark, split: str):
        return items_of(benchmark, split, self.config.form, self.name)

    def score(self, model, tokenizer, items) -> list[dict[str, float]]:
        import torch

        from ..hidden import last_prompt_states, n_blocks

        cfg = self.config
        first = torch.tensor(answer_first_tokens(tokenizer, items, cfg.max_length, self.name))
        n = n_blocks(model)
        rank = torch.zeros(n, len(items), dtype=torch.long)
        prob = torch.zeros(n, len(items))
        pairs = [(it.prompt, continuation(it)) for it in items]
        with torch.inference_mode():
            for idx, states in last_prompt_states(model, tokenizer, pairs, cfg.batch_size, max_length=cfg.max_length):
                tgt = first[idx].to(states.device)[:, None]
                for layer in range(n):
                    z = unembed(model, states[layer])
                    za = z.gather(1, tgt)
                    rank[layer, idx] = (z > za).sum(1).cpu()
                    prob[layer, idx] = (za[:, 0] - torch.logsumexp(z, 1)).exp().cpu()
        rows = []
        for i in range(len(items)):
            row: dict[str, float] = {}
            for layer in range(n):
                r = int(rank[layer, i])
                row[f"rank@{layer}"] = float(r)
                row[f"prob@{layer}"] = float(prob[layer, i])
                row[f"top1@{layer}"] = float(r == 0)
            row["best_rank"] = float(rank[:, i].min())
            rows.append(row)
        return rows

    def aggregate(self, scores_by_split: dict[str, list[dict]]) -> list[tuple[str, str, float]]:
        return best_layer_rows(scores_by_split, "top1", "best_top1")


def best_layer_rows(scores_by_split: dict[str, list[dict]], prefix: str, best_name: str):
    """Per split: ``best_layer`` = argmax over L of the mean of ``{prefix}@L`` (ties: the earliest)
    and ``best_name`` = that mean. Splits without scored items give no rows."""
    rows = []
    for split, scores in scores_by_split.items():
        scores = [s for s in scores if s]
        if not scores:
            continue
        layers = sorted(int(k.split("@", 1)[1]) for k in scores[0] if k.startswith(prefix + "@"))
        if not layers:
            continue
        means = [sum(s[f"{prefix}@{layer}"] for s in scores) / len(scores) for layer in layers]
        best = max(range(len(layers)), key=lambda j: (means[j], -j))
        rows += [(split, "best_layer", float(layers[best])), (split, best_name, means[best])]
    return rows
