"""``ablate`` — difference-of-means direction ablation by weight orthogonalisation.

Łucki et al. 2024 ("An Adversarial Perspective on Machine Unlearning for AI Safety", arXiv
2409.18025) found that unlearned models route the forget set through a few directions of the
residual stream: project the difference of mean activations between forget and retain text out
of the weights and much of the "forgotten" knowledge comes back. The edit is Arditi et al.'s
directional ablation (arXiv 2406.11717), done on the weights, so the ablated model is a plain
model of the same layout that every probe and backend can run.

Direction at block ``l`` (the block's output, the residual stream after ``l + 1`` blocks), read
from the unlearned model itself::

    d_l = mean_{forget tokens} h_l(x) - mean_{retain tokens} h_l(x),     r_l = d_l / ||d_l||

over every token of the benchmark's forget and retain examples (the unlearning form), padding
and a leading BOS left out (:func:`unlearnbench.hidden.token_states`). Every weight that writes
into the residual stream is orthogonalised on its output side, ``W <- (I - Q Q^T) W``, with ``Q``
an orthonormal basis of the directions that apply to it: the token (and GPT-2's position)
embeddings, each block's attention output projection and MLP down projection (Llama
``self_attn.o_proj``/``mlp.down_proj``; GPT-2 ``attn.c_proj``/``mlp.c_proj``, Conv1D, transposed),
their biases too.

Which directions apply to which weight (``scope``):

- ``upto`` (default): ``r_l`` is projected out of the embeddings and of blocks ``0..l``, the
  writes whose sum *is* block ``l``'s output. The ablated model's residual stream then has no
  component along ``r_l`` at block ``l``, for every chosen ``l`` at once (one direction per layer,
  as RMU-style unlearning perturbs a specific layer and everything after it); blocks after ``l``
  may write along ``r_l`` again.
- ``all``: every direction out of every write (Arditi et al.'s form). With a single layer,
  ``layers=L,scope=all`` is their one-direction ablation, the direction chosen by layer.

``layers``: ``all`` (default) or block indices joined by ``+`` with ``a-b`` ranges (``0+3-5``).
``people=k``: the directions come from the forget examples of k seeded-random forget people only,
so the others' per-item scores measure whether the direction generalises (the stats name
``estimated_people`` and ``held_out_people``).

Deviations: Łucki et al. read the activations at the prompt positions of WMDP-style questions and
pick the layer by a validation score; here the benchmark's unlearning texts are used (every
token) and the layer set is an option, with no selection on the evaluation items. A tied
input/output embedding is untied on the copy first (only the input side writes to the residual
stream; projecting the tied matrix would also blind the unembedding to ``r``). A layer whose two
means coincide (relative difference below 1e-6) has no direction and is left out (named in the
stats). Models of other layouts (post-block norms as in Gemma 2, mixture-of-experts MLPs, parallel
blocks) are refused in one line. The model handed in is never modified: the attack edits a copy.
"""

from __future__ import annotations

import copy
import random
import re
import time
from dataclasses import dataclass, field
from typing import Callable, Literal

import torch
from torch import nn

from ..data.types import PlanContext, call_hook
from ..errors import UnlearnbenchError
from ..hidden import blocks, token_states
from ..progress import SILENT, Progress
from ..registry import register_attack
from .relearn import owners_of

LAYERS_RE = re.compile(r"^(all|\d+(-\d+)?(\+\d+(-\d+)?)*)$")
#: a layer's direction exists when ||mean_f - mean_r|| exceeds this fraction of the larger mean's norm
MIN_RELATIVE_DIFFERENCE = 1e-6


@dataclass(frozen=True)
class AblateConfig:
    layers: str = field(
        default="all", metadata={"help": "blocks whose output direction is ablated: all, or e.g. 0+2 or 1-3"}
    )
    scope: Literal["upto", "all"] = field(
        default="upto",
        metadata={
            "help": "upto: each layer's direction out of the embeddings and the blocks up to it; "
            "all: every direction out of every write (Arditi et al.)"
        },
    )
    people: int = field(
        default=-1,
        metadata={"help": "estimate the directions from this many seeded-random forget people only (-1: all)"},
    )
    batch_size: int = field(default=32, metadata={"help": "texts per forward pass while reading activations"})
    max_length: int = field(default=256, metadata={"help": "tokens per text"})
    seed: int = field(default=0, metadata={"help": "which forget people are drawn (people=k)"})

    def __post_init__(self):
        if not LAYERS_RE.fullmatch(str(self.layers).replace(" ", "")):
            raise ValueError(
                f"layers must be 'all' or indices joined by '+' with a-b ranges, e.g. 0+2-3 (got {self.layers!r})"
            )
        if any(a > b for a, b in _ranges(self.layers)):
            raise ValueError(f"layers: a range a-b needs a <= b (got {self.layers!r})")
        if self.people == 0 or self.people < -1:
            raise ValueError("people must be positive (or -1 for all forget people)")
        if self.batch_size < 1 or self.max_length < 2:
            raise ValueError("batch_size must be positive and max_length at least 2")


Evaluate = Callable[[str, int, object], None]


def _ranges(text: str) -> list[tuple[int, int]]:
    text = str(text).replace(" ", "")
    if text == "all":
        return []
    out = []
    for part in text.split("+"):
        a, _, b = part.partition("-")
        out.append((int(a), int(b or a)))
    return out


def parse_layers(text: str, n_blocks: int) -> list[int]:
    """The block indices ``text`` names (sorted, distinct); a one-line error past the model's depth."""
    if str(text).replace(" ", "") == "all":
        return list(range(n_blocks))
    chosen = sorted({i for a, b in _ranges(text) for i in range(a, b + 1)})
    if chosen and chosen[-1] >= n_blocks:
        raise UnlearnbenchError(f"ablate: layer {chosen[-1]} does not exist (the model has {n_blocks} blocks)")
    return chosen


def _conv1d_class():
    try:
        from transformers.pytorch_utils import Conv1D
    except ImportError:  # pragma: no cover - transformers is a dependency
        return None
    return Conv1D


@dataclass
class Write:
    """One weight writing into the residual stream: ``block`` -1 for the embeddings; ``kind``
    'linear' (out = d rows), 'conv1d' (GPT-2, out = d columns) or 'embedding' (d columns)."""

    name: str
    module: nn.Module
    kind: str
    block: int


def residual_writes(model) -> list[Write]:
    """Every module that writes into the residual stream, or a one-line refusal of the layout."""
    conv1d = _conv1d_class()
    bl = blocks(model)
    kind = type(model).__name__
    inner = getattr(model, "model", None)
    if inner is not None and hasattr(inner, "layers"):
        emb = getattr(inner, "embed_tokens", None)
        writes = [Write("model.embed_tokens", emb, "embedding", -1)] if isinstance(emb, nn.Embedding) else []
        for j, b in enumerate(bl):
            o = getattr(getattr(b, "self_attn", None), "o_proj", None)
            down = getattr(getattr(b, "mlp", None), "down_proj", None)
            if not (isinstance(o, nn.Linear) and isinstance(down, nn.Linear)) or hasattr(
                b, "post_feedforward_layernorm"
            ):
                raise UnlearnbenchError(
                    f"ablate: block {j} of {kind} is not a Llama-style pre-norm block with self_attn.o_proj and "
                    "mlp.down_proj writing straight into the residual stream (post-block norms, MoE and parallel "
                    "blocks are not handled)"
                )
            writes += [Write(f"model.layers.{j}.self_attn.o_proj", o, "linear", j)]
            writes += [Write(f"model.layers.{j}.mlp.down_proj", down, "linear", j)]
    else:
        tr = model.transformer
        writes = [Write(f"transformer.{n}", getattr(tr, n), "embedding", -1) for n in ("wte", "wpe") if hasattr(tr, n)]
        for j, b in enumerate(bl):
            a = getattr(getattr(b, "attn", None), "c_proj", None)
            m = getattr(getattr(b, "mlp", None), "c_proj", None)
            if conv1d is None or not (isinstance(a, conv1d) and isinstance(m, conv1d)):
                raise UnlearnbenchError(
                    f"ablate: block {j} of {kind} is not a GPT-2 block with attn.c_proj and mlp.c_proj (Conv1D)"
                )
            writes += [Write(f"transformer.h.{j}.attn.c_proj", a, "conv1d", j)]
            writes += [Write(f"transformer.h.{j}.mlp.c_proj", m, "conv1d", j)]
    if not any(w.kind == "embedding" for w in writes):
        raise UnlearnbenchError(f"ablate: cannot find the token embeddings of {kind}")
    return writes


def untie_output_embeddings(model) -> bool:
    """Give the output layer its own copy of a weight it shares with the input embeddings, and say
    so in the config (a saved copy must not be tied again on loading). True if it was tied."""
    out, inp = model.get_output_embeddings(), model.get_input_embeddings()
    if out is None or inp is None or out.weight is not inp.weight:
        return False
    out.weight = nn.Parameter(out.weight.detach().clone(), requires_grad=out.weight.requires_grad)
    model.config.tie_word_embeddings = False
    text = model.config.get_text_config() if hasattr(model.config, "get_text_config") else None
    if text is not None and text is not model.config and hasattr(text, "tie_word_embeddings"):
        text.tie_word_embeddings = False
    return True


def basis(directions: list[torch.Tensor]) -> torch.Tensor | None:
    """An orthonormal basis (d, m) of the span of unit ``directions`` (float64), None for none."""
    if not directions:
        return None
    u, s, _ = torch.linalg.svd(torch.stack(directions, dim=1).double(), full_matrices=False)
    return u[:, s > 1e-8 * s.max()]


@torch.no_grad()
def orthogonalise_(write: Write, q: torch.Tensor) -> None:
    """Remove span(q) from what ``write`` adds to the residual stream, in place."""
    w = write.module.weight
    x = w.data.double()
    qd = q.to(x.device)
    if write.kind == "linear":  # (d, in): rows are the output side
        x = x - qd @ (qd.T @ x)
    else:  # embedding (n, d) and Conv1D (in, d): columns are the output side
        x = x - (x @ qd) @ qd.T
    w.data.copy_(x.to(w.dtype))
    b = getattr(write.module, "bias", None)
    if isinstance(b, torch.Tensor):
        bd = b.data.double()
        b.data.copy_((bd - qd @ (qd.T @ bd)).to(b.dtype))


def mean_states(model, tokenizer, pairs, layers, batch_size, max_length) -> tuple[torch.Tensor, int]:
    """Per-layer mean block output over every token of ``pairs`` (float64, (layers, d)), and the token count."""
    total, n = None, 0
    for _idx, states in token_states(model, tokenizer, pairs, batch_size, layers, max_length):
        s = states.double().sum(1)
        total = s if total is None else total + s
        n += states.shape[1]
    if total is None or n == 0:
        raise UnlearnbenchError("ablate: the texts have no tokens to read activations from")
    return total / n, n


def norm_fraction(model, tokenizer, pairs, layers, dirs: dict[int, torch.Tensor], batch_size, max_length) -> dict:
    """Per layer with a direction: mean over tokens of |<h, r>| / ||h|| (the share of a token's
    activation norm that lies along r)."""
    sums = {layer: 0.0 for layer in dirs}
    n = 0
    for _idx, states in token_states(model, tokenizer, pairs, batch_size, layers, max_length):
        for k, layer in enumerate(layers):
            if layer in dirs:
                h = states[k].double()
                r = dirs[layer].to(h.device)
                sums[layer] += float(((h @ r).abs() / h.norm(dim=-1).clamp_min(1e-12)).sum())
        n += states.shape[1]
    return {str(layer): round(v / max(n, 1), 6) for layer, v in sums.items()}


@register_attack()
class AblateAttack:
    name = "ablate"
    version = "1"
    Config = AblateConfig
    description = "project the forget-minus-retain mean activation direction out of every residual write"

    def __init__(self, config: AblateConfig | None = None):
        self.config = config or AblateConfig()

    def bind(self, ctx: PlanContext) -> list[str]:
        """Refuse layers the model does not have at plan time, where the benchmark says its depth."""
        n = call_hook(ctx.benchmark, "n_layers") if ctx.benchmark is not None else None
        if n:
            parse_layers(self.config.layers, n)
        return []

    def _texts(self, tokenizer, benchmark) -> tuple[list, list, dict]:
        cfg = self.config
        if benchmark is None:
            raise UnlearnbenchError("ablate needs a benchmark with forget and retain examples")
        data = benchmark.unlearn_data(tokenizer)
        pool, retain = list(data.forget), list(data.retain)
        if not pool or not retain:
            raise UnlearnbenchError("ablate: the benchmark needs both forget and retain examples")
        stats: dict = {"n_forget_examples": len(pool), "n_retain_examples": len(retain)}
        if cfg.people == -1:
            return pool, retain, stats
        owner, people = owners_of(pool, data)
        if not people:
            raise UnlearnbenchError("ablate,people=...: the benchmark does not say whose the forget examples are")
        rng = random.Random(f"ablate-people:{cfg.seed}")
        chosen = set(rng.sample(sorted(people), min(cfg.people, len(people))))
        idx = [i for i in range(len(pool)) if owner.get(i) in chosen]
        held_out = sorted(set(people) - chosen)
        stats.update(
            {
                "n_estimation_examples": len(idx),
                "estimated_people": [people[k][0] for k in sorted(chosen)],
                "held_out_people": [people[k][0] for k in held_out],
            }
        )
        if any(people[k][1] is not None for k in people):
            stats["estimated_ids"] = [people[k][1] for k in sorted(chosen)]
            stats["held_out_ids"] = [people[k][1] for k in held_out]
        return [pool[i] for i in idx], retain, stats

    def run(self, model, tokenizer, task, evaluate: Evaluate, progress: Progress = SILENT, benchmark=None) -> dict:
        """Evaluate a copy of ``model`` ('before', step 0), ablate the directions, evaluate again
        ('ablated', step 1). ``task`` is unused."""
        cfg = self.config
        t0 = time.time()
        forget, retain, stats = self._texts(tokenizer, benchmark)
        work = copy.deepcopy(model)
        work.eval()
        writes = residual_writes(work)  # refuse an unknown layout before any forward pass
        layers = parse_layers(cfg.layers, len(blocks(work)))
        if not layers:
            raise UnlearnbenchError("ablate: no layers chosen")
        f_pairs = [(ex.prompt, ex.target) for ex in forget]
        r_pairs = [(ex.prompt, ex.target) for ex in retain]
        with progress.task("attack ablate: reading activations", 2) as bar:
            mean_f, n_f = mean_states(work, tokenizer, f_pairs, layers, cfg.batch_size, cfg.max_length)
            bar.advance()
            mean_r, n_r = mean_states(work, tokenizer, r_pairs, layers, cfg.batch_size, cfg.max_length)
            bar.advance()
        dirs, norms, missing = {}, {}, []
        for k, layer in enumerate(layers):
            d = mean_f[k] - mean_r[k]
            norms[str(layer)] = round(float(d.norm()), 6)
            scale = max(float(mean_f[k].norm()), float(mean_r[k].norm()), 1e-30)
            if float(d.norm()) <= MIN_RELATIVE_DIFFERENCE * scale:
                missing.append(layer)
            else:
                dirs[layer] = d / d.norm()
        frac = {
            "forget_norm_fraction": norm_fraction(
                work, tokenizer, f_pairs, layers, dirs, cfg.batch_size, cfg.max_length
            ),
            "retain_norm_fraction": norm_fraction(
                work, tokenizer, r_pairs, layers, dirs, cfg.batch_size, cfg.max_length
            ),
        }
        estimation_seconds = round(time.time() - t0, 3)

        evaluate("before", 0, work)
        untied = untie_output_embeddings(work) if dirs else False
        edited = []
        for w in writes:
            use = [dirs[i] for i in sorted(dirs) if cfg.scope == "all" or w.block <= i]
            q = basis(use)
            if q is not None:
                orthogonalise_(w, q)
                edited.append(w.name)
        after = {
            "forget_norm_fraction_after": norm_fraction(
                work, tokenizer, f_pairs, layers, dirs, cfg.batch_size, cfg.max_length
            ),
            "retain_norm_fraction_after": norm_fraction(
                work, tokenizer, r_pairs, layers, dirs, cfg.batch_size, cfg.max_length
            ),
        }
        evaluate("ablated", 1, work)
        return {
            **stats,
            "layers": layers,
            "scope": cfg.scope,
            "layers_with_direction": sorted(dirs),
            "layers_without_direction": missing,
            "direction_norms": norms,
            "forget_tokens": n_f,
            "retain_tokens": n_r,
            **frac,
            **after,
            "tensors_orthogonalised": edited,
            "untied_output_embeddings": untied,
            "estimation_seconds": estimation_seconds,
            "seconds": round(time.time() - t0, 3),
        }
