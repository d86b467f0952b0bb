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
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch

from ..batching import pad_id_of
from ..errors import UnlearnbenchError
from ..progress import SILENT, Progress
from ..registry import register_method
from .base import UnlearnData

DEFAULT_TEMPLATES = ("{}", "Please answer the question about {}.", "Tell me about {}.", "{} is known for",
                     "Here is a fact about {}:")
#: Longest generic text (tokens; enters the cache key) and texts per forward pass for the second moment.
STATS_MAX_LENGTH = 256
STATS_BATCH = 16
CACHE_FORMAT = "1"


@dataclass(frozen=True)
class ROCRConfig:
    layers: tuple[int, ...] = field(default=(), metadata={"help": "down_proj layers to edit, ascending (empty: 3 from floor(n/8))"})
    mode: Literal["unrelated", "noise"] = field(default="unrelated", metadata={"help": "value z: the replacement subject's state, or a random vector of the target's norm"})
    replacement: str | None = field(default=None, metadata={"help": "replacement subject (default: the benchmark's)"})
    templates: tuple[str, ...] = field(default=DEFAULT_TEMPLATES, metadata={"help": "context templates, each with one {} for the subject"})
    l2: float = field(default=1e-2, metadata={"help": "ridge λ₂ of the solve (AlphaEdit uses 10 on Llama-3-8B)"})
    projector: Literal["nullspace", "none"] = field(default="nullspace", metadata={"help": "P: null space of generic inputs, or identity"})
    nullspace_threshold: float = field(default=2e-2, metadata={"help": "eigenvalues of E[kkᵀ] below this span the null space (absolute)"})
    stats_tokens: int = field(default=20000, metadata={"help": "generic-text tokens for the second moment"})
    batch: bool = field(default=False, metadata={"help": "edit all concepts in one solve instead of one after another"})
    seed: int = field(default=0, metadata={"help": "seed of the noise mode"})

    def __post_init__(self):
        if not self.templates or any(t.count("{}") != 1 for t in self.templates):
            raise ValueError("every template must contain exactly one {}")
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


# -- model access ---------------------------------------------------------------------------------

def _decoder(model):
    """The module holding ``layers`` (``model.model`` of a Llama-style causal LM)."""
    inner = getattr(model, "model", model)
    blocks = getattr(inner, "layers", None)
    if blocks is None or not all(isinstance(getattr(getattr(b, "mlp", None), "down_proj", None), torch.nn.Linear)
                                 for b in blocks):
        raise UnlearnbenchError(f"rocr edits model.layers[i].mlp.down_proj (Llama-style); {type(model).__name__} has none")
    return inner


class _Stop(Exception):
    """Raised by the deepest hook: later layers are not needed."""


@contextmanager
def _recording(model, key_layers, out_layer=None):
    """Record down_proj inputs of ``key_layers`` and the output of block ``out_layer`` on a forward."""
    blocks = _decoder(model).layers
    rec: dict = {"keys": {}, "out": None}
    last = max([*key_layers, -1 if out_layer is None else out_layer])
    handles = []

    def key_hook(layer):
        def hook(module, args):
            rec["keys"][layer] = args[0].detach()
            if layer == last and out_layer != last:
                raise _Stop
        return hook

    def out_hook(module, args, out):
        rec["out"] = (out[0] if isinstance(out, tuple) else out).detach()
        if out_layer == last:
            raise _Stop

    for layer in key_layers:
        handles.append(blocks[layer].mlp.down_proj.register_forward_pre_hook(key_hook(layer)))
    if out_layer is not None:
        handles.append(blocks[out_layer].register_forward_hook(out_hook))
    try:
        yield rec
    finally:
        for h in handles:
            h.remove()


def _forward(model, ids: list[list[int]], pad: int, key_layers, out_layer=None) -> dict:
    """One right-padded forward of the decoder (no LM head), stopped after the last needed layer."""
    device = next(model.parameters()).device
    width = max(map(len, ids))
    input_ids = torch.full((len(ids), width), pad, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for i, row in enumerate(ids):
        input_ids[i, :len(row)] = torch.tensor(row)
        mask[i, :len(row)] = 1
    with _recording(model, key_layers, out_layer) as rec:
        try:
            _decoder(model)(input_ids=input_ids.to(device), attention_mask=mask.to(device), use_cache=False)
        except _Stop:
            pass
    rec["mask"] = mask.to(device).bool()
    return rec


# -- keys and values ------------------------------------------------------------------------------

def subject_position(tokenizer, template: str, subject: str) -> tuple[list[int], int]:
    """Token ids of ``template`` filled with ``subject`` and the index of the subject's last token.

    The prefix up to and including the subject is tokenized alone; its length gives the position
    when it is a prefix of the full tokenization. When a merge crosses the subject's end (the two
    disagree), the character offsets of a fast tokenizer decide instead.
    """
    head = template[:template.index("{}")] + subject
    text = head + template[template.index("{}") + 2:]
    full = tokenizer(text)["input_ids"]
    prefix = tokenizer(head)["input_ids"]
    if full[:len(prefix)] == prefix:
        return full, len(prefix) - 1
    if getattr(tokenizer, "is_fast", False):
        offsets = tokenizer(text, return_offsets_mapping=True)["offset_mapping"]
        inside = [i for i, (a, b) in enumerate(offsets) if b > a and a < len(head)]
        if inside:
            return full, inside[-1]
    raise UnlearnbenchError(f"rocr: cannot locate the last token of {subject!r} in {text!r}")


@torch.no_grad()
def read_subject(model, tokenizer, subject: str, templates, key_layers, out_layer) -> tuple[dict, torch.Tensor]:
    """Per layer the mean key (d_ff) and the mean block output of ``out_layer`` (d_model) at the
    subject's last token, over ``templates`` (float32)."""
    rows = [subject_position(tokenizer, t, subject) for t in templates]
    rec = _forward(model, [ids for ids, _ in rows], pad_id_of(tokenizer), key_layers, out_layer)
    at = torch.arange(len(rows)), torch.tensor([p for _, p in rows])
    keys = {layer: rec["keys"][layer][at].float().mean(0) for layer in key_layers}
    out = rec["out"][at].float().mean(0) if out_layer is not None else None
    return keys, out


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


def _sha_tensor(t: torch.Tensor) -> str:
    flat = t.detach().contiguous().reshape(-1).cpu().view(torch.uint8).numpy()
    return hashlib.sha256(memoryview(flat)).hexdigest()


def feeding_weights_sha256(model, layers) -> dict[int, str]:
    """Per layer: sha256 over the model config and every parameter that feeds that layer's
    down_proj input (embeddings, earlier blocks, the layer's block except down_proj)."""
    inner = _decoder(model)
    conf = {k: v for k, v in model.config.to_dict().items() if not k.startswith("_") and k != "transformers_version"}
    conf_sha = hashlib.sha256(json.dumps(conf, sort_keys=True, default=str).encode()).hexdigest()
    named = list(inner.named_parameters())
    digests: dict[str, str] = {}
    out = {}
    for layer in layers:
        h = hashlib.sha256(conf_sha.encode())
        for name, p in named:
            parts = name.split(".")
            if parts[0] == "layers":
                j = int(parts[1])
                if j > layer or (j == layer and name.startswith(f"layers.{layer}.mlp.down_proj.")):
                    continue
            elif parts[0] == "norm":  # the final norm feeds nothing inside the stack
                continue
            if name not in digests:
                digests[name] = _sha_tensor(p)
            h.update(f"{name}|{tuple(p.shape)}|{p.dtype}|{digests[name]}\n".encode())
        out[layer] = h.hexdigest()
    return out


@torch.no_grad()
def compute_second_moments(model, token_ids: list[list[int]], pad: int, layers) -> dict[int, torch.Tensor]:
    """M_l = mean over real tokens of k kᵀ for the down_proj input k of every layer (on CPU, float32)."""
    device = next(model.parameters()).device
    acc_dtype = torch.float64 if device.type == "cpu" else torch.float32
    sums: dict[int, torch.Tensor] = {}
    count = 0
    for start in range(0, len(token_ids), STATS_BATCH):
        rec = _forward(model, token_ids[start:start + STATS_BATCH], pad, layers)
        for layer in layers:
            k = rec["keys"][layer][rec["mask"]].to(acc_dtype)
            sums[layer] = sums.get(layer, 0) + k.T @ k
        count += int(rec["mask"].sum())
    return {layer: (s / count).float().cpu() for layer, s in sums.items()}


def _moment_key(layer: int, weights_sha: str, corpus_sha: str, n_tokens: int) -> str:
    blob = json.dumps({"format": CACHE_FORMAT, "layer": layer, "weights": weights_sha, "corpus": corpus_sha,
                       "tokens": n_tokens, "max_length": STATS_MAX_LENGTH}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:24]


def _load_moment(path: Path, key: str, d_ff: int) -> torch.Tensor | None:
    from safetensors.torch import load_file

    sidecar = path.with_suffix(".json")
    if not (path.exists() and sidecar.exists()):
        return None
    try:
        if json.loads(sidecar.read_text()).get("key") != key:
            return None
        m = load_file(str(path))["second_moment"]
    except Exception:  # a damaged cache file is recomputed, never trusted
        return None
    return m if tuple(m.shape) == (d_ff, d_ff) else None


def _save_moment(path: Path, m: torch.Tensor, provenance: dict) -> None:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    for target, write in ((path, lambda f: save_file({"second_moment": m.contiguous()}, f, metadata={"key": provenance["key"]})),
                          (path.with_suffix(".json"), lambda f: Path(f).write_text(json.dumps(provenance, indent=1)))):
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        os.close(fd)
        try:
            write(tmp)
            os.replace(tmp, target)  # a killed run never leaves half a file under the real name
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)


def second_moments(model, tokenizer, texts: list[str], layers, max_tokens: int) -> tuple[dict[int, torch.Tensor], dict]:
    """Cached ``M_l`` for every layer, and a record of what was computed or reused."""
    from ..embedded import cache_dir

    token_ids = generic_token_ids(tokenizer, texts, max_tokens)
    n_tokens = sum(map(len, token_ids))
    if n_tokens == 0:
        raise UnlearnbenchError("rocr: projector=nullspace needs generic text (UnlearnData.generic_text is empty); "
                                "use projector=none")
    corpus = hashlib.sha256(json.dumps(token_ids).encode()).hexdigest()
    weights = feeding_weights_sha256(model, layers)
    d_ff = _decoder(model).layers[layers[0]].mlp.down_proj.in_features
    root = cache_dir() / "rocr"
    out, hits, missing = {}, [], []
    for layer in layers:
        key = _moment_key(layer, weights[layer], corpus, n_tokens)
        m = _load_moment(root / f"{key}.safetensors", key, d_ff)
        if m is None:
            missing.append(layer)
        else:
            out[layer] = m
            hits.append(layer)
    t0 = time.time()
    if missing:
        fresh = compute_second_moments(model, token_ids, pad_id_of(tokenizer), missing)
        for layer, m in fresh.items():
            key = _moment_key(layer, weights[layer], corpus, n_tokens)
            _save_moment(root / f"{key}.safetensors", m, {
                "key": key, "layer": layer, "module": f"model.layers.{layer}.mlp.down_proj (input)",
                "tokens": n_tokens, "texts": len(token_ids), "max_length": STATS_MAX_LENGTH,
                "corpus_token_ids_sha256": corpus, "feeding_weights_sha256": weights[layer],
                "statistic": "uncentred second moment E[k kᵀ], float32", "format": CACHE_FORMAT})
            out[layer] = m
    return out, {"cache_hits": hits, "cache_misses": missing, "stats_tokens": n_tokens,
                 "stats_seconds": round(time.time() - t0, 3)}


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

    def unlearn(self, model, data: UnlearnData, progress: Progress = SILENT) -> dict:
        cfg = self.config
        t_start = time.time()
        tok = data.tokenizer
        blocks = _decoder(model).layers
        layers = tuple(cfg.layers) or default_layers(len(blocks))
        if layers[-1] >= len(blocks):
            raise UnlearnbenchError(f"rocr: layer {layers[-1]} does not exist (the model has {len(blocks)} layers)")
        concepts = list(data.concepts)
        if not concepts:
            raise UnlearnbenchError("rocr needs the concepts to forget (UnlearnData.concepts is empty)")
        replacement = cfg.replacement or data.replacement
        if cfg.mode == "unrelated" and not replacement:
            raise UnlearnbenchError("rocr mode=unrelated needs a replacement subject (set replacement=...)")
        was_training = model.training
        model.eval()
        weight = blocks[layers[0]].mlp.down_proj.weight
        # float64 on CPU (exact enough to check rank and null-space claims); float32 on accelerators
        dt, dev = (torch.float64 if weight.device.type == "cpu" else torch.float32), weight.device
        d_ff = weight.shape[1]
        z_layer = layers[-1]
        stats: dict = {"layers": list(layers), "mode": cfg.mode, "projector": cfg.projector, "batch": cfg.batch,
                       "replacement": replacement if cfg.mode == "unrelated" else None, "l2": cfg.l2,
                       "cache_hits": [], "cache_misses": [], "stats_tokens": 0, "history": []}
        try:
            # 1. projectors, from the unedited model
            if cfg.projector == "nullspace":
                moments, info = second_moments(model, tok, list(data.generic_text), layers, cfg.stats_tokens)
                stats.update(info)
                projectors, ranks, smallest = {}, {}, {}
                for layer in layers:
                    p, rank, w0 = null_projector(moments[layer].to(dev), cfg.nullspace_threshold)
                    projectors[layer], ranks[str(layer)], smallest[str(layer)] = p.to(dt), rank, w0
                empty = {l: f"{smallest[l]:.3g}" for l, r in ranks.items() if r == 0}
                if empty:
                    raise UnlearnbenchError(
                        f"rocr: the null space of generic down_proj inputs is empty at layer(s) {', '.join(empty)} "
                        f"(smallest eigenvalue {', '.join(empty.values())} >= nullspace_threshold "
                        f"{cfg.nullspace_threshold}); the edit would change nothing there — use projector=none, "
                        f"a larger nullspace_threshold or earlier layers")
                stats["smallest_eigenvalue"] = smallest
            else:
                projectors = {layer: torch.eye(d_ff, dtype=dt, device=dev) for layer in layers}
                ranks = {str(layer): d_ff for layer in layers}
            stats["projector_rank"] = ranks

            # 2. values z, from the unedited model
            def read(subject):
                keys, out = read_subject(model, tok, subject, cfg.templates, layers, z_layer)
                return {l: k.to(dt) for l, k in keys.items()}, out.to(dt)

            if cfg.mode == "unrelated":
                z_rep = read(replacement)[1]
                targets = {c: z_rep for c in concepts}
            else:
                targets = {}
                for i, c in enumerate(concepts):
                    z_cur = read(c)[1]
                    g = torch.randn(z_cur.shape, generator=torch.Generator().manual_seed(cfg.seed + i), dtype=dt).to(dev)
                    targets[c] = g * (z_cur.norm() / g.norm())
                    stats.setdefault("noise_norms", {})[c] = {"z": float(targets[c].norm()), "z_cur": float(z_cur.norm())}

            initial = {c: float((targets[c] - read(c)[1]).norm()) for c in concepts}

            # 3. edits: one request group at a time (each concept, or all of them at once)
            groups = [concepts] if cfg.batch else [[c] for c in concepts]
            cov = {layer: torch.zeros(d_ff, d_ff, dtype=dt, device=dev) for layer in layers}
            update_norm = {str(layer): 0.0 for layer in layers}  # Σ over edits of ‖ΔW‖_F
            per_target = []
            with progress.task(f"unlearn ({self.name})", len(groups)) as bar:
                for group in groups:
                    t0 = time.time()
                    z = torch.stack([targets[c] for c in group], 1)
                    ranks_g, norms_g = {}, {}
                    for i, layer in enumerate(layers):
                        reads = [read(c) for c in group]  # keys and z_cur under the weights edited so far
                        k = torch.stack([r[0][layer] for r in reads], 1)
                        z_cur = torch.stack([r[1] for r in reads], 1)
                        before = z_cur if i == 0 else before
                        resid = (z - z_cur) / (len(layers) - i)
                        delta = rocr_update(k, resid, projectors[layer], cov[layer], cfg.l2)
                        with torch.no_grad():
                            blocks[layer].mlp.down_proj.weight.add_(delta.to(weight.dtype))
                        ranks_g[str(layer)] = int(torch.linalg.matrix_rank(delta))
                        norms_g[str(layer)] = float(delta.norm())
                        update_norm[str(layer)] += float(delta.norm())
                    after_reads = [read(c) for c in group]
                    for layer in layers:  # AlphaEdit: remember the edited keys under the edited weights
                        k = torch.stack([r[0][layer] for r in after_reads], 1)
                        cov[layer] += k @ k.T
                    after = torch.stack([r[1] for r in after_reads], 1)
                    per_target.append({
                        "concepts": group, "seconds": round(time.time() - t0, 3),
                        "delta_rank": ranks_g, "delta_norm": norms_g,
                        "residual_before": [float(x) for x in (z - before).norm(dim=0)],
                        "residual_after": [float(x) for x in (z - after).norm(dim=0)]})
                    bar.advance()
            # ‖z − z_cur‖ after all edits over the same before any edit: 0 = fully redirected
            final = {c: float((targets[c] - read(c)[1]).norm()) / max(initial[c], 1e-12) for c in concepts}
        finally:
            model.train(was_training)
        stats.update({"targets": per_target, "update_norm": update_norm,
                      "final_relative_residual": final,
                      "delta_rank": [t["delta_rank"] for t in per_target],
                      "seconds": round(time.time() - t_start, 3)})
        return stats
