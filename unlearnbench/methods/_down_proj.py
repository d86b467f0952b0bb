"""Reading the inputs of the MLP ``down_proj`` of a Llama-style decoder (a helper of ROCR, no plugin).

- :func:`decoder`: the module holding ``layers``, checked to have ``layers[i].mlp.down_proj``.
- :func:`record_forward`: one right-padded forward that records the down_proj inputs of some
  layers and the output of one block, stopped after the last layer it needs (no LM head).
- :func:`compute_second_moments`: the uncentred second moment ``E[k kᵀ]`` of those inputs.
- :func:`feeding_weights_sha256`: a hash of every weight that feeds a layer's down_proj input
  (what a cached second moment depends on).
"""

from __future__ import annotations

import hashlib
import json
from contextlib import contextmanager

import torch

from ..errors import UnlearnbenchError

#: Texts per forward pass for the second moment.
STATS_BATCH = 16


def decoder(model):
    """The module holding ``layers`` (``model.model`` of a Llama-style causal LM)."""
    inner = getattr(model, "model", model)
    blocks = getattr(inner, "layers", None)
    if blocks is None or not all(
        isinstance(getattr(getattr(b, "mlp", None), "down_proj", None), torch.nn.Linear) for b in blocks
    ):
        raise UnlearnbenchError(
            f"rocr edits model.layers[i].mlp.down_proj (Llama-style); {type(model).__name__} has none"
        )
    return inner


# -- one recorded forward -------------------------------------------------------------------------


class _Stop(Exception):
    """Raised by the deepest hook: later layers are not needed."""


@contextmanager
def _recording(model, key_layers, out_layer=None):
    """Record down_proj inputs of ``key_layers`` and the output of block ``out_layer`` on a forward."""
    blocks = decoder(model).layers
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


def record_forward(model, ids: list[list[int]], pad: int, key_layers, out_layer=None) -> dict:
    """One right-padded forward of the decoder (no LM head), stopped after the last needed layer.

    Returns ``{"keys": {layer: down_proj input (batch × seq × d_ff)}, "out": block ``out_layer``'s
    output or None, "mask": real tokens (batch × seq, bool)}``.
    """
    device = next(model.parameters()).device
    width = max(map(len, ids))
    input_ids = torch.full((len(ids), width), pad, dtype=torch.long)
    mask = torch.zeros((len(ids), width), dtype=torch.long)
    for i, row in enumerate(ids):
        input_ids[i, : len(row)] = torch.tensor(row)
        mask[i, : len(row)] = 1
    with _recording(model, key_layers, out_layer) as rec:
        try:
            decoder(model)(input_ids=input_ids.to(device), attention_mask=mask.to(device), use_cache=False)
        except _Stop:
            pass
    rec["mask"] = mask.to(device).bool()
    return rec


# -- statistics -----------------------------------------------------------------------------------


@torch.no_grad()
def compute_second_moments(
    model, token_ids: list[list[int]], pad: int, layers, batch: int = STATS_BATCH
) -> dict[int, torch.Tensor]:
    """M_l = mean over real tokens of k kᵀ for the down_proj input k of every layer (on CPU, float32)."""
    device = next(model.parameters()).device
    acc_dtype = torch.float64 if device.type == "cpu" else torch.float32
    sums: dict[int, torch.Tensor] = {}
    count = 0
    for start in range(0, len(token_ids), batch):
        rec = record_forward(model, token_ids[start : start + batch], pad, layers)
        for layer in layers:
            k = rec["keys"][layer][rec["mask"]].to(acc_dtype)
            sums[layer] = sums.get(layer, 0) + k.T @ k
        count += int(rec["mask"].sum())
    return {layer: (s / count).float().cpu() for layer, s in sums.items()}


def _sha_tensor(t: torch.Tensor) -> str:
    flat = t.detach().contiguous().reshape(-1).cpu().view(torch.uint8).numpy()
    return hashlib.sha256(memoryview(flat)).hexdigest()


def feeding_weights_sha256(model, layers) -> dict[int, str]:
    """Per layer: sha256 over the model config and every parameter that feeds that layer's
    down_proj input (embeddings, earlier blocks, the layer's block except down_proj)."""
    inner = decoder(model)
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
