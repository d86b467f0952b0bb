"""ROCR — Rank-One Concept Redirection ("LLM Unlearning Should Be Form-Independent").

A training-free edit: the MLP ``down_proj`` of a few consecutive layers is changed so that a
concept's subject (its last token) produces, at the last edited layer, the hidden state of a
harmless other subject. Every form of asking about the concept then reads the other subject.
The update is the AlphaEdit closed form (Fang et al., ICLR 2025, arXiv 2410.02355; reference
code jianghoucheng/AlphaEdit, which builds on MEMIT, Meng et al., ICLR 2023):

    for the i-th of the n edited layers l (in order):
        K   = down_proj input at the subject's last token, mean over context templates  (d_ff × r)
        R   = (z − z_cur) / (n − i)        z_cur: output of the last edited layer now     (d_model × r)
        ΔWᵀ = solve( P·(K Kᵀ + C) + λ₂·I,  P·K·Rᵀ )                                     (d_ff × d_model)
        W  += ΔW                                            (torch weight W: d_model × d_ff)

``r`` is the number of requests in one solve (1 when targets are edited one after another:
ΔW is then rank one). ``C`` is Σ K Kᵀ of the edits already made on that layer in this call
(sequential editing keeps earlier edits in place; it starts at 0 in every ``unlearn`` call); as
in AlphaEdit its keys are re-read after each edit. ``P = U₀U₀ᵀ`` projects onto the null space of the uncentred second moment
``M = E_t[k kᵀ]`` of down_proj inputs over generic text (eigenvectors with eigenvalue below
``nullspace_threshold``, absolute). Because ``λ₂ > 0`` every column of ΔWᵀ lies in range(P),
so ΔW maps the preserved subspace (large-eigenvalue directions of M) to zero: generic inputs
are left (almost) unchanged.

Value modes: ``unrelated`` (the paper's main mode): z = the last edited layer's output at the
replacement subject's last token, mean over the same templates (``UnlearnData.replacement``,
e.g. "John Smith", or the ``replacement`` option). ``noise``: a seeded Gaussian vector rescaled to
the norm of the target's own z_cur (one vector per target). ``reject`` (z optimised by gradient
steps so that the model emits a refusal token) is NOT implemented.

Defaults and deviations:

- ``layers`` empty: three consecutive layers starting at floor(n/8) of an n-layer model, shifted
  down to fit (32 layers → 4,5,6 as in the paper; 4 → 0,1,2; 2 → 0,1; 1 → 0). Early layers on
  purpose: the last layers of a small model use every input direction (toy-small's layer 3 has no
  eigenvalue below 2e-2), so a null space exists only early on.
- ``l2`` (λ₂) defaults to 1e-2, not AlphaEdit's 10 for Llama-3-8B: one layer's edit reaches
  ``‖Pk‖²/(‖Pk‖² + λ₂)`` of its residual for one key, and the null-space part of a key is small by
  construction (toy-small: ‖Pk‖² ≈ 1-2 against ‖k‖² ≈ 200-9000). Measured there, the mean
  remaining ‖z − z_cur‖ is 9 % of the initial one at λ₂ = 1e-2 and 69 % at λ₂ = 10. Raise it for
  large models whose null-space keys are large.
- The second moment uses up to ``stats_tokens`` tokens of ``UnlearnData.generic_text`` (AlphaEdit:
  100k Wikipedia samples). It is computed once per model and layer, on the unedited weights, and
  cached as ``cache_dir()/rocr/<key>.safetensors`` with a ``.json`` provenance sidecar; the key
  hashes the layer, the token ids used and the weights that feed the layer's down_proj input.
- An empty null space (every direction of M is used by generic text, common in small models)
  would make P = 0 and the edit a no-op; that is an error naming the smallest eigenvalue, never a
  silent no-op. ``projector=none`` (P = I: a ridge least-squares edit that protects only the
  earlier edits in C) is the escape.
- z_cur and K are the mean over the same templates (AlphaEdit reads z_cur on the request's own
  prompt; a concept here has no single prompt).

The authors' protocol (Acruxos/ORT, ``rocr_main.py``, ``compute_z.py``, ``workflow.py`` and
``rocr_hparams/llama3-8b-instruct.json``) differs from this harness's defaults in four ways; each is
an option, and ``rocr,l2=1,template_set=ort,contexts=chat,value_context=first,targets=independent``
is the paper's protocol as far as a single unlearned model allows:

- ``l2``: the paper's λ₂ is 1 (``"L2": 1``); the default here is 1e-2 (reason above).
- ``template_set=ort`` + ``contexts=chat``: the paper's six contexts — the user turns "{}.",
  "Please answer the question about {}.", "Choose the best answer about {}.", "Write the answer
  about {}.", "Tell me about {}.", "Write something about {}." (``get_context_templates``) — each
  wrapped in the tokenizer's chat template with the generation prompt and followed by "Answer:".
  ``contexts=chat`` needs a tokenizer with a chat template (one-line error otherwise). The
  default (``harness``, ``plain``) is the five plain templates above.
- ``value_context=first``: z is the last edited layer's output at the replacement subject's last
  token in the *first* context only (``compute_z_unrelated``: ``cur_out[0][0, lookup_idxs[0]]``);
  the default ``mean`` averages it over the contexts like K. z_cur is read in the same context(s)
  as z, so the residual compares like with like. (Deviation: the authors' code reads z_cur on the
  bare request prompt "{subject}." outside the chat template.)
- ``targets=independent``: the authors edit one target per freshly loaded model (``workflow.py``
  runs one ``data_args.target``, C starting at 0). Here every target's ΔW is computed from the
  unedited weights with C = 0, and their sum is applied to the one model a cell evaluates — the
  same as the paper for one target, an approximation (no interference between edits is accounted
  for) for several. The default ``sequential`` edits the targets one after another, each edit
  seeing the earlier ones (AlphaEdit's sequential editing, C accumulating).

``noise`` mode scale: the authors scale the Gaussian to ``clamp_norm_factor`` (1) × the norm of the
target's *optimised* reject value (``compute_z`` toward "Unfortunately"); the reject optimisation is
not implemented here, so the reference norm is the target's current value z_cur (in the value
contexts) and ``noise_scale`` plays ``clamp_norm_factor``.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import Literal

import torch

from .. import cache
from ..batching import pad_id_of
from ..data.types import PlanContext, UnlearnData, call_hook
from ..errors import UnlearnbenchError
from ..progress import SILENT, Progress
from ..registry import register_method
from ._down_proj import (
    compute_second_moments,
    decoder,
    feeding_weights_sha256,
    record_forward,
)

DEFAULT_TEMPLATES = (
    "{}",
    "Please answer the question about {}.",
    "Tell me about {}.",
    "{} is known for",
    "Here is a fact about {}:",
)
#: The authors' six user turns (ORT ``get_context_templates``: prompt + " {}", filled with "{}.").
ORT_TEMPLATES = (
    "{}.",
    "Please answer the question about {}.",
    "Choose the best answer about {}.",
    "Write the answer about {}.",
    "Tell me about {}.",
    "Write something about {}.",
)
TEMPLATE_SETS = {"harness": DEFAULT_TEMPLATES, "ort": ORT_TEMPLATES}
#: What the authors append after the chat template's generation prompt.
ORT_ANSWER_CUE = "Answer:"
#: Longest generic text (tokens; enters the cache key) for the second moment.
STATS_MAX_LENGTH = 256
CACHE_FORMAT = "1"
#: The cache's kind (folder) and tensor name for the second moments.
CACHE_KIND = "rocr"
CACHE_TENSOR = "second_moment"


@dataclass(frozen=True)
class ROCRConfig:
    layers: tuple[int, ...] = field(
        default=(), metadata={"help": "down_proj layers to edit, ascending (empty: 3 from floor(n/8))"}
    )
    mode: Literal["unrelated", "noise"] = field(
        default="unrelated",
        metadata={"help": "value z: the replacement subject's state, or a random vector of the target's norm"},
    )
    replacement: str | None = field(default=None, metadata={"help": "replacement subject (default: the benchmark's)"})
    templates: tuple[str, ...] = field(
        default=(), metadata={"help": "context templates, each with one {} (empty: those of template_set)"}
    )
    template_set: Literal["harness", "ort"] = field(
        default="harness", metadata={"help": "templates when none are given: this harness's five, or the paper's six"}
    )
    contexts: Literal["plain", "chat"] = field(
        default="plain",
        metadata={"help": "templates as plain text, or each as a chat user turn + 'Answer:' (the paper's)"},
    )
    value_context: Literal["mean", "first"] = field(
        default="mean", metadata={"help": "z and z_cur: mean over the contexts, or the first context (the paper's)"}
    )
    targets: Literal["sequential", "independent"] = field(
        default="sequential",
        metadata={"help": "edit targets one after another, or each from the unedited model, summed (the paper's)"},
    )
    noise_scale: float = field(default=1.0, metadata={"help": "noise mode: norm of z over that of z_cur"})
    l2: float = field(default=1e-2, metadata={"help": "ridge λ₂ of the solve (AlphaEdit uses 10 on Llama-3-8B)"})
    projector: Literal["nullspace", "none"] = field(
        default="nullspace", metadata={"help": "P: null space of generic inputs, or identity"}
    )
    nullspace_threshold: float = field(
        default=2e-2, metadata={"help": "eigenvalues of E[kkᵀ] below this span the null space (absolute)"}
    )
    stats_tokens: int = field(default=20000, metadata={"help": "generic-text tokens for the second moment"})
    batch: bool = field(default=False, metadata={"help": "edit all concepts in one solve instead of one after another"})
    seed: int = field(default=0, metadata={"help": "seed of the noise mode"})

    def __post_init__(self):
        if any(t.count("{}") != 1 for t in self.templates):
            raise ValueError("every template must contain exactly one {}")
        if self.noise_scale <= 0:
            raise ValueError("noise_scale must be positive")
        if self.l2 <= 0:
            raise ValueError("l2 must be positive (it also keeps the update inside the null space)")
        if self.nullspace_threshold <= 0 or self.stats_tokens < 1:
            raise ValueError("nullspace_threshold and stats_tokens must be positive")
        if any(a >= b for a, b in zip(self.layers, self.layers[1:])) or any(x < 0 for x in self.layers):
            raise ValueError("layers must be non-negative and strictly ascending")


def default_layers(n_layers: int) -> tuple[int, ...]:
    """Three consecutive layers from floor(n/8), shifted down to fit (32 → 4,5,6; 4 → 0,1,2)."""
    count = min(3, n_layers)
    start = min(n_layers // 8, n_layers - count)
    return tuple(range(start, start + count))


# -- keys and values ------------------------------------------------------------------------------


def subject_position(tokenizer, template: str, subject: str) -> tuple[list[int], int]:
    """Token ids of ``template`` filled with ``subject`` and the index of the subject's last token.

    The prefix up to and including the subject is tokenized alone; its length gives the position
    when it is a prefix of the full tokenization. When a merge crosses the subject's end (the two
    disagree), the character offsets of a fast tokenizer decide instead.
    """
    head = template[: template.index("{}")] + subject
    text = head + template[template.index("{}") + 2 :]
    full = tokenizer(text)["input_ids"]
    prefix = tokenizer(head)["input_ids"]
    if full[: len(prefix)] == prefix:
        return full, len(prefix) - 1
    if getattr(tokenizer, "is_fast", False):
        offsets = tokenizer(text, return_offsets_mapping=True)["offset_mapping"]
        inside = [i for i, (a, b) in enumerate(offsets) if b > a and a < len(head)]
        if inside:
            return full, inside[-1]
    raise UnlearnbenchError(f"rocr: cannot locate the last token of {subject!r} in {text!r}")


@torch.no_grad()
def read_subject(model, tokenizer, subject: str, templates, key_layers, out_layer) -> tuple[dict, torch.Tensor]:
    """Per layer the mean key (d_ff) over ``templates``, and the block output of ``out_layer`` at
    the subject's last token in each template (templates × d_model), float32."""
    rows = [subject_position(tokenizer, t, subject) for t in templates]
    rec = record_forward(model, [ids for ids, _ in rows], pad_id_of(tokenizer), key_layers, out_layer)
    at = torch.arange(len(rows)), torch.tensor([p for _, p in rows])
    keys = {layer: rec["keys"][layer][at].float().mean(0) for layer in key_layers}
    out = rec["out"][at].float() if out_layer is not None else None
    return keys, out


def resolve_templates(cfg: "ROCRConfig", tokenizer) -> tuple[str, ...]:
    """The context templates of ``cfg`` as the model reads them (chat-wrapped for ``contexts=chat``)."""
    templates = tuple(cfg.templates) or TEMPLATE_SETS[cfg.template_set]
    if cfg.contexts == "plain":
        return templates
    if not getattr(tokenizer, "chat_template", None):
        raise UnlearnbenchError("rocr: contexts=chat needs a tokenizer with a chat template (this one has none)")
    wrapped = []
    for t in templates:
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": t}], tokenize=False, add_generation_prompt=True
        )
        if text.count("{}") != 1:
            raise UnlearnbenchError(f"rocr: the chat template does not keep the subject slot of {t!r} exactly once")
        wrapped.append(text + ORT_ANSWER_CUE)
    return tuple(wrapped)


# -- second moment, cached ------------------------------------------------------------------------


def generic_token_ids(tokenizer, texts: list[str], max_tokens: int) -> list[list[int]]:
    """The generic corpus as the model sees it, cut at ``max_tokens`` tokens in all."""
    out, total = [], 0
    for text in texts:
        ids = tokenizer(text, truncation=True, max_length=STATS_MAX_LENGTH)["input_ids"][: max_tokens - total]
        if ids:
            out.append(ids)
            total += len(ids)
        if total >= max_tokens:
            break
    return out


def _moment_key(layer: int, weights_sha: str, corpus_sha: str, n_tokens: int) -> str:
    blob = json.dumps(
        {
            "format": CACHE_FORMAT,
            "layer": layer,
            "weights": weights_sha,
            "corpus": corpus_sha,
            "tokens": n_tokens,
            "max_length": STATS_MAX_LENGTH,
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def second_moments(model, tokenizer, texts: list[str], layers, max_tokens: int) -> tuple[dict[int, torch.Tensor], dict]:
    """Cached ``M_l`` for every layer, and a record of what was computed or reused."""
    token_ids = generic_token_ids(tokenizer, texts, max_tokens)
    n_tokens = sum(map(len, token_ids))
    if n_tokens == 0:
        raise UnlearnbenchError(
            "rocr: projector=nullspace needs generic text (UnlearnData.generic_text is empty); use projector=none"
        )
    corpus = hashlib.sha256(json.dumps(token_ids).encode()).hexdigest()
    weights = feeding_weights_sha256(model, layers)
    d_ff = decoder(model).layers[layers[0]].mlp.down_proj.in_features
    keys = {layer: _moment_key(layer, weights[layer], corpus, n_tokens) for layer in layers}
    out, hits, missing = {}, [], []
    for layer in layers:
        m = cache.load_tensor(CACHE_KIND, keys[layer], CACHE_TENSOR, (d_ff, d_ff))
        if m is None:
            missing.append(layer)
        else:
            out[layer] = m
            hits.append(layer)
    t0 = time.time()
    if missing:
        fresh = compute_second_moments(model, token_ids, pad_id_of(tokenizer), missing)
        for layer, m in fresh.items():
            cache.save_tensor(
                CACHE_KIND,
                keys[layer],
                CACHE_TENSOR,
                m,
                {
                    "key": keys[layer],  # first in the sidecar, as in the files written so far
                    "layer": layer,
                    "module": f"model.layers.{layer}.mlp.down_proj (input)",
                    "tokens": n_tokens,
                    "texts": len(token_ids),
                    "max_length": STATS_MAX_LENGTH,
                    "corpus_token_ids_sha256": corpus,
                    "feeding_weights_sha256": weights[layer],
                    "statistic": "uncentred second moment E[k kᵀ], float32",
                    "format": CACHE_FORMAT,
                },
            )
            out[layer] = m
    return out, {
        "cache_hits": hits,
        "cache_misses": missing,
        "stats_tokens": n_tokens,
        "stats_seconds": round(time.time() - t0, 3),
    }


# -- the edit's linear algebra --------------------------------------------------------------------


def null_projector(m: torch.Tensor, threshold: float) -> tuple[torch.Tensor, int, float]:
    """P = U₀U₀ᵀ over eigenvectors of the PSD ``m`` with eigenvalue < threshold; rank; smallest eigenvalue."""
    w, v = torch.linalg.eigh(m.double() if m.device.type == "cpu" else m)
    null = v[:, w < threshold]
    return null @ null.T, int(null.shape[1]), float(w[0])


def rocr_update(k: torch.Tensor, r: torch.Tensor, p: torch.Tensor, c: torch.Tensor, l2: float) -> torch.Tensor:
    """ΔW (d_model × d_ff) from ΔWᵀ = solve(P(KKᵀ + C) + λ₂I, P K Rᵀ); K: d_ff × r, R: d_model × r.

    Solved as solve(·, P K) · Rᵀ, the same matrix: the product of a d_ff × r and an r × d_model
    factor has rank ≤ r exactly, where solving against P K Rᵀ leaves rounding noise in the
    other singular values (and costs d_model right-hand sides instead of r).
    """
    eye = torch.eye(k.shape[0], dtype=k.dtype, device=k.device)
    return (torch.linalg.solve(p @ (k @ k.T + c) + l2 * eye, p @ k) @ r.T).T


# -- one unlearn call -----------------------------------------------------------------------------


class _Edit:
    """The state of one ``unlearn`` call: the edited layers, the solve's precision, P and C per layer.

    The solve runs in float64 on CPU (exact enough to check rank and null-space claims) and in
    float32 on accelerators; ``C`` (``cov``) starts at 0.
    """

    def __init__(self, model, tokenizer, cfg: ROCRConfig, layers: tuple[int, ...], templates: tuple[str, ...]):
        self.model, self.tok, self.cfg, self.layers, self.templates = model, tokenizer, cfg, layers, templates
        self.blocks = decoder(model).layers
        weight = self.blocks[layers[0]].mlp.down_proj.weight
        self.dt = torch.float64 if weight.device.type == "cpu" else torch.float32
        self.dev, self.weight_dtype, self.d_ff = weight.device, weight.dtype, weight.shape[1]
        self.projectors: dict[int, torch.Tensor] = {}
        self.cov = {layer: torch.zeros(self.d_ff, self.d_ff, dtype=self.dt, device=self.dev) for layer in layers}
        self.update_norm = {str(layer): 0.0 for layer in layers}  # Σ over edits of ‖ΔW‖_F

    def reset_cov(self) -> None:
        """C = 0 on every layer (the start of a fresh edit)."""
        for c in self.cov.values():
            c.zero_()

    # reading the model as edited so far

    def read(self, subject: str) -> tuple[dict, torch.Tensor]:
        """``subject``'s key per layer (mean over the contexts) and its value at the last edited layer
        (mean over the contexts, or the first one's: ``value_context``), in the solve's dtype."""
        keys, out = read_subject(self.model, self.tok, subject, self.templates, self.layers, self.layers[-1])
        value = out[0] if self.cfg.value_context == "first" else out.mean(0)
        return {layer: k.to(self.dt) for layer, k in keys.items()}, value.to(self.dt)

    def read_group(self, group: list[str]) -> tuple[dict, torch.Tensor]:
        """K per layer (d_ff × r) and z_cur (d_model × r) of the ``r`` concepts of ``group``."""
        reads = [self.read(c) for c in group]
        keys = {layer: torch.stack([r[0][layer] for r in reads], 1) for layer in self.layers}
        return keys, torch.stack([r[1] for r in reads], 1)

    def residual(self, z: torch.Tensor, subject: str) -> float:
        """‖z − z_cur‖ of ``subject``."""
        return float((z - self.read(subject)[1]).norm())

    # before any edit

    def build_projectors(self, generic_text) -> dict:
        """Set P per layer (null space of generic inputs, or identity); returns their stats."""
        if self.cfg.projector == "nullspace":
            return self._nullspace_projectors(list(generic_text))
        self.projectors = {layer: torch.eye(self.d_ff, dtype=self.dt, device=self.dev) for layer in self.layers}
        return {"projector_rank": {str(layer): self.d_ff for layer in self.layers}}

    def _nullspace_projectors(self, generic_text: list[str]) -> dict:
        cfg = self.cfg
        moments, info = second_moments(self.model, self.tok, generic_text, self.layers, cfg.stats_tokens)
        ranks, smallest = {}, {}
        for layer in self.layers:
            p, rank, w0 = null_projector(moments[layer].to(self.dev), cfg.nullspace_threshold)
            self.projectors[layer], ranks[str(layer)], smallest[str(layer)] = p.to(self.dt), rank, w0
        empty = {layer: f"{smallest[layer]:.3g}" for layer, r in ranks.items() if r == 0}
        if empty:
            raise UnlearnbenchError(
                f"rocr: the null space of generic down_proj inputs is empty at layer(s) {', '.join(empty)} "
                f"(smallest eigenvalue {', '.join(empty.values())} >= nullspace_threshold "
                f"{cfg.nullspace_threshold}); the edit would change nothing there — use projector=none, "
                f"a larger nullspace_threshold or earlier layers"
            )
        return {**info, "smallest_eigenvalue": smallest, "projector_rank": ranks}

    def values(self, concepts: list[str], replacement: str | None) -> tuple[dict, dict]:
        """The value z of every concept, and the stats of the noise mode."""
        cfg = self.cfg
        if cfg.mode == "unrelated":
            z_rep = self.read(replacement)[1]
            return {c: z_rep for c in concepts}, {}
        targets, norms = {}, {}
        for i, c in enumerate(concepts):
            z_cur = self.read(c)[1]
            g = torch.randn(z_cur.shape, generator=torch.Generator().manual_seed(cfg.seed + i), dtype=self.dt).to(
                self.dev
            )
            targets[c] = g * (cfg.noise_scale * z_cur.norm() / g.norm())
            norms[c] = {"z": float(targets[c].norm()), "z_cur": float(z_cur.norm())}
        return targets, {"noise_norms": norms}

    # the edits

    def apply(self, group: list[str], targets: dict) -> dict:
        """Edit every layer in order towards the targets of ``group``, then add its keys to C."""
        layers = self.layers
        t0 = time.time()
        z = torch.stack([targets[c] for c in group], 1)
        ranks, norms = {}, {}
        for i, layer in enumerate(layers):
            keys, z_cur = self.read_group(group)  # under the weights edited so far
            if i == 0:
                before = z_cur
            resid = (z - z_cur) / (len(layers) - i)
            delta = rocr_update(keys[layer], resid, self.projectors[layer], self.cov[layer], self.cfg.l2)
            with torch.no_grad():
                self.blocks[layer].mlp.down_proj.weight.add_(delta.to(self.weight_dtype))
            ranks[str(layer)] = int(torch.linalg.matrix_rank(delta))
            norms[str(layer)] = float(delta.norm())
            self.update_norm[str(layer)] += float(delta.norm())
        keys, after = self.read_group(group)
        for layer in layers:  # AlphaEdit: remember the edited keys under the edited weights
            self.cov[layer] += keys[layer] @ keys[layer].T
        return {
            "concepts": group,
            "seconds": round(time.time() - t0, 3),
            "delta_rank": ranks,
            "delta_norm": norms,
            "residual_before": [float(x) for x in (z - before).norm(dim=0)],
            "residual_after": [float(x) for x in (z - after).norm(dim=0)],
        }


# -- the method -----------------------------------------------------------------------------------


@register_method()
class ROCR:
    name = "rocr"
    version = "1"
    Config = ROCRConfig
    uses_retain = False
    description = "rank-one concept redirection: training-free null-space edit of MLP down_proj (AlphaEdit form)"

    def __init__(self, config: ROCRConfig | None = None):
        self.config = config or ROCRConfig()

    def bind(self, ctx: PlanContext) -> list[str]:
        """At plan time, where the benchmark knows its model's depth: refuse ``layers`` the model
        does not have now, not after its base and oracle cells."""
        n_blocks = call_hook(ctx.benchmark, "n_layers")
        if n_blocks and self.config.layers and self.config.layers[-1] >= n_blocks:
            raise UnlearnbenchError(
                f"rocr: layer {self.config.layers[-1]} does not exist (the model has {n_blocks} layers)"
            )
        return []

    def unlearn(self, model, data: UnlearnData, progress: Progress = SILENT) -> dict:
        cfg = self.config
        t_start = time.time()
        layers, concepts, replacement = self._resolve(model, data)
        was_training = model.training
        model.eval()
        templates = resolve_templates(cfg, data.tokenizer)
        edit = _Edit(model, data.tokenizer, cfg, layers, templates)
        stats: dict = {
            "layers": list(layers),
            "mode": cfg.mode,
            "projector": cfg.projector,
            "batch": cfg.batch,
            "targets_mode": cfg.targets,
            "contexts": cfg.contexts,
            "value_context": cfg.value_context,
            "templates": list(templates),
            "replacement": replacement if cfg.mode == "unrelated" else None,
            "l2": cfg.l2,
            "cache_hits": [],
            "cache_misses": [],
            "stats_tokens": 0,
            "history": [],
        }
        try:
            # 1. projectors and 2. values z, from the unedited model
            stats.update(edit.build_projectors(data.generic_text))
            targets, value_stats = edit.values(concepts, replacement)
            stats.update(value_stats)
            initial = {c: edit.residual(targets[c], c) for c in concepts}
            # 3. edits: one request group at a time (each concept, or all of them at once)
            per_target = self._edit_groups(edit, concepts, targets, progress)
            # ‖z − z_cur‖ after all edits over the same before any edit: 0 = fully redirected
            final = {c: edit.residual(targets[c], c) / max(initial[c], 1e-12) for c in concepts}
        finally:
            model.train(was_training)
        stats.update(
            {
                "targets": per_target,
                "update_norm": edit.update_norm,
                "final_relative_residual": final,
                "delta_rank": [t["delta_rank"] for t in per_target],
                "seconds": round(time.time() - t_start, 3),
            }
        )
        return stats

    def _resolve(self, model, data: UnlearnData) -> tuple[tuple[int, ...], list[str], str | None]:
        """The layers to edit, the concepts and the replacement subject; errors before any change."""
        cfg = self.config
        n_blocks = len(decoder(model).layers)
        layers = tuple(cfg.layers) or default_layers(n_blocks)
        if layers[-1] >= n_blocks:
            raise UnlearnbenchError(f"rocr: layer {layers[-1]} does not exist (the model has {n_blocks} layers)")
        concepts = list(data.concepts)
        if not concepts:
            raise UnlearnbenchError("rocr needs the concepts to forget (UnlearnData.concepts is empty)")
        replacement = cfg.replacement or data.replacement
        if cfg.mode == "unrelated" and not replacement:
            raise UnlearnbenchError("rocr mode=unrelated needs a replacement subject (set replacement=...)")
        return layers, concepts, replacement

    def _edit_groups(self, edit: _Edit, concepts: list[str], targets: dict, progress: Progress) -> list[dict]:
        groups = [concepts] if self.config.batch else [[c] for c in concepts]
        independent = self.config.targets == "independent" and len(groups) > 1
        weights = {layer: edit.blocks[layer].mlp.down_proj.weight for layer in edit.layers}
        start = {layer: w.detach().clone() for layer, w in weights.items()} if independent else {}
        summed = {layer: torch.zeros_like(w) for layer, w in start.items()}
        per_target = []
        with progress.task(f"unlearn ({self.name})", len(groups)) as bar:
            for group in groups:
                if independent:  # each group from the unedited weights, C = 0, as a freshly loaded model
                    with torch.no_grad():
                        for layer, w in weights.items():
                            w.copy_(start[layer])
                    edit.reset_cov()
                per_target.append(edit.apply(group, targets))
                if independent:
                    for layer, w in weights.items():
                        summed[layer] += w.detach() - start[layer]
                bar.advance()
        if independent:  # the one model a cell evaluates: every target's edit, summed
            with torch.no_grad():
                for layer, w in weights.items():
                    w.copy_(start[layer] + summed[layer])
        return per_target
