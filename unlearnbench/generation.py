"""Greedy text generation behind one small interface, with two backends.

Every backend implements ``generate(model, tokenizer, prompts, max_new_tokens, batch_size,
stop=None) -> list[str]``: the greedy continuation of each prompt (prompt excluded, special tokens
dropped), cut at the first occurrence of any ``stop`` string (the stop string itself is dropped).
``batch_size`` 0 means "auto": batches sized by their KV cache (:func:`auto_batch_size`).
Prompts are tokenised as everywhere else in the harness (``encode_example(prompt, '')``: the
tokenizer's own special tokens such as BOS are added).

Backends
--------
``hf`` (the reference, the default)
    transformers' ``model.generate`` with an explicit greedy :class:`~transformers.GenerationConfig`
    (:func:`greedy_config`): left padding with attention masks built from sequence lengths (never
    from ``ids != pad_id``: the pad token may be the EOS token; ``generate`` derives the position
    ids from the mask), prompts sorted by length into batches and the caller's order restored. A
    sequence stops at an EOS token (the tokenizer's and the generation config's) or once its
    generated text holds a stop string (:class:`StopInGenerated`: transformers' ``StopStringCriteria``
    on the generated tokens, confirmed by decoding them); the batch stops when every sequence has.
    It is pure argmax decoding: the logits processors a model's ``generation_config`` may name
    (repetition penalty, n-gram blocking, minimum length, suppressed tokens; sampling is off) are
    pinned to their neutral values, so they are not applied (:func:`greedy_config` names the few
    that cannot be), and nothing is warned.
``vllm`` (optional, ``pip install 'unlearnbench[vllm]'``, CUDA only)
    The in-memory model is saved (safetensors, :func:`unlearnbench.models.save_model`) to a temporary
    directory keyed by a cheap weight fingerprint, loaded by path with
    ``vllm.LLM(path, dtype=<model dtype>, enforce_eager=True, seed=0)`` and queried with
    ``SamplingParams(temperature=0, max_tokens=..., stop=...)`` on the same prompt token ids. The
    engine is reused while the weights are unchanged and rebuilt (old directory removed) when they
    change; directories are removed at exit. ``batch_size`` is ignored (vLLM schedules itself).

Selection: ``UNLEARNBENCH_BACKEND=hf|vllm|auto`` (``unlearnbench run --backend``); unset means
``hf``. ``auto`` picks ``vllm`` when it is importable and CUDA is available, else ``hf``.

Agreement (the tolerance)
-------------------------
Greedy decoding is an argmax at every step, so two numerically different computations of the same
model agree only up to near-ties: a logit difference in the last bits can flip one token, and the
continuation diverges from there. What to expect:

* ``hf`` equals a plain per-prompt ``model.generate(do_sample=False)`` call token for token in
  float32, and the batch size does not change its outputs in float32 (both tested on a tiny model).
  It replaced a hand-written KV-cached loop over the forward pass: on the micro world's 504
  generative probe prompts (float32, CPU) it gives the same text as that loop on every prompt
  (no stop, newline and MUSE stops, 12 and 32 tokens, batch 1, 64 and auto), at 1.0-1.4x its wall
  time at batch 64 (1.6x at batch 1: ``generate``'s per-step overhead on a tiny model).
  ``benchmarks/backend_agreement.py`` measures batch 1 vs batch 64 and the backend vs
  ``model.generate`` on each prompt alone (100 % identical in float32 and bf16 on CPU). In
  bf16/fp16 on other hardware, padding changes the shapes of the matrix products, so batch 1 and
  batch N may differ on near-ties there.
* ``vllm`` vs ``hf``: different kernels (paged attention, fused ops), so expect a fraction of
  generations to differ, more in bf16 than in float32. It has not been measured by us (no GPU where
  this was written); ``benchmarks/backend_agreement.py --backend vllm`` measures the fraction of
  identical generations and the mean exact-match/ROUGE differences on your machine. Results in the
  store are keyed by configuration, not by backend (the backend is recorded in the run's meta), so
  do not mix backends within a comparison unless that measured agreement is acceptable to you.
"""

from __future__ import annotations

import atexit
import copy
import gc
import hashlib
import importlib.util
import os
import shutil
import tempfile
from contextlib import contextmanager
from typing import Iterator, Protocol, Sequence

from .errors import UnlearnbenchError

ENV_VAR = "UNLEARNBENCH_BACKEND"
CHOICES = ("hf", "vllm", "auto")
DEFAULT = "hf"
# fraction of GPU memory the vLLM engine may take; the HF model under evaluation usually sits on
# the same GPU, so vLLM's default (0.9) would not fit beside it
VLLM_MEMORY_ENV = "UNLEARNBENCH_VLLM_GPU_MEMORY"
VLLM_MEMORY_DEFAULT = 0.5


class Backend(Protocol):
    name: str

    def generate(
        self,
        model,
        tokenizer,
        prompts: Sequence[str],
        max_new_tokens: int,
        batch_size: int,
        stop: Sequence[str] | None = None,
    ) -> list[str]: ...


# -- helpers shared by the backends ----------------------------------------------------------


def cut_at_stop(text: str, stop: Sequence[str] | None) -> str:
    """``text`` up to (not including) the earliest occurrence of any stop string."""
    cut = len(text)
    for s in stop or ():
        if s:
            i = text.find(s)
            if 0 <= i < cut:
                cut = i
    return text[:cut]


#: Batch size 0 ("auto") sizes generation batches by their KV cache: at most this many bytes ...
AUTO_KV_BYTES = 1 << 30
#: ... and at most this many sequences (prefill activations and per-step logits grow with it too).
AUTO_MAX_BATCH = 256


def kv_bytes_per_token(model) -> int | None:
    """Bytes of KV cache one token takes in ``model`` (keys and values of every layer), from its
    config; None where the config does not say (then callers keep a fixed batch size)."""
    cfg = getattr(model, "config", None)
    if cfg is not None and hasattr(cfg, "get_text_config"):
        cfg = cfg.get_text_config()
    layers = getattr(cfg, "num_hidden_layers", None) or getattr(cfg, "n_layer", None)
    hidden = getattr(cfg, "hidden_size", None) or getattr(cfg, "n_embd", None)
    heads = getattr(cfg, "num_attention_heads", None) or getattr(cfg, "n_head", None)
    if not (layers and hidden and heads):
        return None
    kv_heads = getattr(cfg, "num_key_value_heads", None) or heads
    head_dim = getattr(cfg, "head_dim", None) or hidden // heads
    itemsize = next(model.parameters()).element_size()
    return int(2 * layers * kv_heads * head_dim * itemsize)


def auto_batch_size(model, tokens_per_sequence: int, fallback: int = 64) -> int:
    """Sequences per generation batch for batch size 0: as many as keep the KV cache of sequences
    of ``tokens_per_sequence`` tokens under :data:`AUTO_KV_BYTES`, between 1 and
    :data:`AUTO_MAX_BATCH`; ``fallback`` where the model's config does not give the cache size.

    On CPU, decoding a small model costs mostly per-step overhead, so the number of batches (each
    ``max_new_tokens`` forward passes) sets the time: a 2-layer GPT-2's TOFU evaluation generated
    3.6x faster at 100 sequences per batch than at 32. Outputs do not depend on the batch size in
    float32 (tested; measured 100 % identical by ``benchmarks/backend_agreement.py``)."""
    per_token = kv_bytes_per_token(model)
    if not per_token:
        return fallback
    return max(1, min(AUTO_MAX_BATCH, AUTO_KV_BYTES // (per_token * max(1, tokens_per_sequence))))


def eos_ids(model, tokenizer) -> set[int]:
    """EOS ids: the tokenizer's plus the generation config's (chat models often list several)."""
    ids = set()
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    cfg_eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if cfg_eos is not None:
        ids.update(int(i) for i in (cfg_eos if isinstance(cfg_eos, (list, tuple)) else [cfg_eos]))
    return ids


def prompt_ids(tokenizer, prompts: Sequence[str]) -> list[list[int]]:
    """Token ids of each prompt with the tokenizer's special tokens (BOS), as ``encode_example(p, "")``."""
    if not prompts:
        return []
    return [list(ids) for ids in tokenizer(list(prompts), add_special_tokens=True)["input_ids"]]


def greedy_config(max_new_tokens: int, pad_id: int, eos: set[int]):
    """The :class:`~transformers.GenerationConfig` of pure greedy decoding.

    ``generate`` fills every field left unset (None) from the model's own ``generation_config``, so
    each knob that would add a logits processor is set to its neutral value here rather than left
    out: a model shipped with a repetition penalty, ``no_repeat_ngram_size``, a minimum length or
    suppressed tokens decodes by plain argmax all the same, and no warning about sampling flags is
    printed. (Forced BOS/EOS ids, bad words, sequence biases, ``min_new_tokens`` and ``min_p`` have
    no neutral value that transformers accepts silently and would still come from the model's
    config; decoder-only models rarely set them.)"""
    from transformers import GenerationConfig

    return GenerationConfig(
        max_new_tokens=int(max_new_tokens),
        do_sample=False,
        num_beams=1,
        num_return_sequences=1,
        # sampling is off; these are pinned only so that a model's own values (temperature 0.6 ...)
        # are not copied in, which transformers warns about
        temperature=1.0,
        top_p=1.0,
        top_k=50,
        typical_p=1.0,
        epsilon_cutoff=0.0,
        eta_cutoff=0.0,
        use_cache=True,
        pad_token_id=int(pad_id),
        eos_token_id=sorted(eos),
        repetition_penalty=1.0,
        encoder_repetition_penalty=1.0,
        no_repeat_ngram_size=0,
        encoder_no_repeat_ngram_size=0,
        min_length=0,
        suppress_tokens=[],
        begin_suppress_tokens=[],
        renormalize_logits=False,
        remove_invalid_values=False,
        output_scores=False,
        output_logits=False,
        return_dict_in_generate=False,
    )


class StopInGenerated:
    """A stopping criterion for ``model.generate``: a row is done once the text it generated (the
    tokens after column ``width``, the end of the left-padded prompts) contains a stop string.

    transformers' ``StopStringCriteria`` finds the rows whose generated tokens end with a stop string
    (vectorised, on the vocabulary's token strings; built once per call, its vocabulary tables
    cached by transformers); each such row is confirmed by decoding its generated tokens, so a stop
    string that only spans the prompt's end, or that token strings show but decoding does not, does
    not stop a row. A row may run past a stop string the token strings do not show (one split
    inside a UTF-8 character); its text is cut at the stop string all the same (:func:`cut_at_stop`).
    Set ``width`` for each batch.
    """

    def __init__(self, tokenizer, stop: Sequence[str], width: int = 0):
        from transformers import StopStringCriteria

        self.tokenizer, self.stop, self.width = tokenizer, tuple(stop), width
        self.candidates = StopStringCriteria(tokenizer, list(self.stop))

    def __call__(self, input_ids, scores, **kwargs):
        generated = input_ids[:, self.width :]
        done = self.candidates(generated, scores)
        for row in done.nonzero().flatten().tolist():
            text = self.tokenizer.decode(generated[row].tolist(), skip_special_tokens=True)
            if not any(s in text for s in self.stop):
                done[row] = False
        return done


# -- the reference backend -------------------------------------------------------------------


class HFBackend:
    """Batched greedy decoding with ``model.generate`` (see the module docstring)."""

    name = "hf"

    def generate(
        self,
        model,
        tokenizer,
        prompts: Sequence[str],
        max_new_tokens: int = 16,
        batch_size: int = 64,
        stop: Sequence[str] | None = None,
    ) -> list[str]:
        import torch
        from transformers import StoppingCriteriaList

        from .batching import Encoded, collate, length_batches, pad_id_of

        stop = tuple(s for s in (stop or ()) if s)
        enc = prompt_ids(tokenizer, prompts)
        out = [""] * len(enc)
        if not enc or max_new_tokens <= 0:
            return out
        eos = eos_ids(model, tokenizer)
        config = greedy_config(max_new_tokens, pad_id_of(tokenizer), eos)
        if batch_size <= 0:
            batch_size = auto_batch_size(model, max(len(e) for e in enc) + max_new_tokens)
        device = next(model.parameters()).device
        criterion = StopInGenerated(tokenizer, stop) if stop else None
        for idx in length_batches([len(e) for e in enc], max(1, batch_size), None):
            batch = collate([Encoded(enc[i], len(enc[i])) for i in idx], config.pad_token_id, left_pad=True)
            width = batch["input_ids"].shape[1]
            if criterion is not None:
                criterion.width = width
            with torch.inference_mode():
                gen = model.generate(
                    input_ids=batch["input_ids"].to(device),
                    attention_mask=batch["attention_mask"].to(device),
                    generation_config=config,
                    stopping_criteria=StoppingCriteriaList([criterion]) if criterion else None,
                )
            for i, row in zip(idx, gen[:, width:].tolist()):
                cut = next((k for k, t in enumerate(row) if t in eos), len(row))  # EOS, then padding
                out[i] = cut_at_stop(tokenizer.decode(row[:cut], skip_special_tokens=True), stop)
        return out


# -- the vLLM backend -------------------------------------------------------------------------


def weight_fingerprint(model, tokenizer=None) -> str:
    """A cheap content fingerprint of the weights: per tensor its name, shape, dtype, float64 sum,
    L2 norm and up to 64 strided values. Not a cryptographic identity of the weights (that is
    ``models.weights_sha256`` on saved files) but any training step changes it."""
    import torch

    h = hashlib.sha256()
    if tokenizer is not None:
        h.update(f"{getattr(tokenizer, 'name_or_path', '')}|{len(tokenizer)}".encode())
    with torch.no_grad():
        for name, t in model.state_dict().items():
            flat = t.detach().reshape(-1)
            h.update(f"{name}|{tuple(t.shape)}|{t.dtype}".encode())
            if flat.numel() == 0:
                continue
            if not flat.is_floating_point():
                flat = flat.double()
            stats = torch.stack([flat.sum(dtype=torch.float64), torch.linalg.vector_norm(flat, dtype=torch.float64)])
            sample = flat[:: max(1, flat.numel() // 64)][:64].double()
            h.update(torch.cat([stats, sample]).cpu().numpy().tobytes())
    return h.hexdigest()


def _plain_model(model):
    """A model ``save_pretrained`` writes in full: a peft model (LoRA attack) is merged on a copy."""
    if hasattr(model, "merge_and_unload"):
        return copy.deepcopy(model).merge_and_unload()
    return model


def _dtype_name(model) -> str:
    return str(next(model.parameters()).dtype).removeprefix("torch.")


def _import_vllm():
    try:
        import vllm
    except ImportError as e:
        raise UnlearnbenchError(
            f"generation backend 'vllm' needs the vllm package ({e}); install it with: pip install 'unlearnbench[vllm]'"
        ) from None
    return vllm


class VLLMBackend:
    """vLLM greedy decoding of an in-memory model, saved to a temporary directory (see the module docstring)."""

    name = "vllm"

    def __init__(self):
        self._llm = None
        self._fingerprint: str | None = None
        self._dir: str | None = None
        atexit.register(self.close)

    def generate(
        self,
        model,
        tokenizer,
        prompts: Sequence[str],
        max_new_tokens: int = 16,
        batch_size: int = 64,
        stop: Sequence[str] | None = None,
    ) -> list[str]:
        stop = [s for s in (stop or ()) if s]
        if not prompts or max_new_tokens <= 0:
            return [""] * len(prompts)
        vllm = _import_vllm()
        llm = self._engine(vllm, model, tokenizer)
        params = vllm.SamplingParams(temperature=0.0, max_tokens=int(max_new_tokens), stop=stop or None)
        requests = [{"prompt_token_ids": ids} for ids in prompt_ids(tokenizer, prompts)]
        outs = llm.generate(requests, params, use_tqdm=False)
        return [cut_at_stop(o.outputs[0].text, stop) for o in outs]

    def _engine(self, vllm, model, tokenizer):
        from .models import save_model

        fp = weight_fingerprint(model, tokenizer)
        if self._llm is not None and fp == self._fingerprint:
            return self._llm
        self.close()
        path = tempfile.mkdtemp(prefix=f"unlearnbench-vllm-{fp[:12]}-")
        self._dir = path
        save_model(_plain_model(model), tokenizer, path)
        memory = float(os.environ.get(VLLM_MEMORY_ENV) or VLLM_MEMORY_DEFAULT)
        self._llm = vllm.LLM(path, dtype=_dtype_name(model), enforce_eager=True, seed=0, gpu_memory_utilization=memory)
        self._fingerprint = fp
        return self._llm

    def close(self) -> None:
        """Drop the engine and remove its temporary directory (also run at exit)."""
        llm, self._llm, self._fingerprint = self._llm, None, None
        if llm is not None:
            core = getattr(getattr(llm, "llm_engine", None), "engine_core", None)
            if core is not None and hasattr(core, "shutdown"):
                try:
                    core.shutdown()
                except Exception:  # best effort: the engine may already be gone at exit
                    pass
            del llm
            gc.collect()
            try:
                import torch

                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
            except Exception:
                pass
        if self._dir:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None


# -- selection --------------------------------------------------------------------------------

_INSTANCES: dict[str, Backend] = {}
_CLASSES = {"hf": HFBackend, "vllm": VLLMBackend}


def vllm_installed() -> bool:
    """Whether vllm can be imported (found on the path; not imported)."""
    return importlib.util.find_spec("vllm") is not None


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def resolve(name: str | None = None) -> str:
    """The concrete backend ('hf' or 'vllm') for ``name`` (default: ``$UNLEARNBENCH_BACKEND``, else 'hf').

    Raises UnlearnbenchError (one line) for an unknown name, or 'vllm' without vllm or without CUDA.
    """
    chosen = (name or os.environ.get(ENV_VAR) or DEFAULT).strip().lower()
    if chosen not in CHOICES:
        raise UnlearnbenchError(
            f"unknown generation backend {chosen!r} (from {'--backend' if name else ENV_VAR}); "
            f"choose one of: {', '.join(CHOICES)}"
        )
    if chosen == "auto":
        return "vllm" if vllm_installed() and _cuda_available() else "hf"
    if chosen == "vllm":
        if not vllm_installed():
            raise UnlearnbenchError(
                "generation backend 'vllm' needs the vllm package; "
                "install it with: pip install 'unlearnbench[vllm]' (or use --backend hf)"
            )
        if not _cuda_available():
            raise UnlearnbenchError(
                "generation backend 'vllm' needs a CUDA GPU and none is available (use --backend hf)"
            )
    return chosen


def set_backend(name: str) -> str:
    """Select the backend for this process and its children (via ``$UNLEARNBENCH_BACKEND``);
    validated now, so a bad choice fails before any model is loaded. Returns the concrete backend."""
    concrete = resolve(name)
    os.environ[ENV_VAR] = name.strip().lower()
    return concrete


@contextmanager
def using_backend(name: str) -> Iterator[str]:
    """``with using_backend('hf'): ...`` selects a backend for the block, then restores the previous choice."""
    old = os.environ.get(ENV_VAR)
    try:
        yield set_backend(name)
    finally:
        if old is None:
            os.environ.pop(ENV_VAR, None)
        else:
            os.environ[ENV_VAR] = old


def get_backend(name: str | None = None) -> Backend:
    """The (process-wide, reused) backend object for ``name`` or the current selection."""
    concrete = resolve(name)
    if concrete not in _INSTANCES:
        _INSTANCES[concrete] = _CLASSES[concrete]()
    return _INSTANCES[concrete]


def generate(
    model,
    tokenizer,
    prompts: Sequence[str],
    max_new_tokens: int = 16,
    batch_size: int = 64,
    stop: Sequence[str] | None = None,
    backend: str | None = None,
) -> list[str]:
    """Greedy continuations of ``prompts`` with the selected backend (see the module docstring)."""
    return get_backend(backend).generate(model, tokenizer, list(prompts), max_new_tokens, batch_size, stop)
