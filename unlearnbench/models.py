"""Loading and saving models: the one door every model comes in through.

Why one function: an unlearning benchmark compares a model before and after an edit, so every
run has to load weights the same way (same dtype rules, same device rules, same tokenizer padding
rules) and record which bytes it loaded (``weights_sha256``). Scattering ``from_pretrained`` calls
around the harness would make results depend on whichever call site happened to run.

Safety rules kept here:

* safetensors only. A pickled checkpoint (``pytorch_model.bin``, ``*.pt``, ...) runs arbitrary code
  when unpickled, and benchmark users load models they downloaded from strangers; we refuse them
  and never call ``torch.load`` or ``pickle`` on a user-supplied file.
* ``trust_remote_code=False`` unless the caller asks for it, for the same reason.
* GGUF files are plain tensors plus metadata (no pickle); transformers dequantises them.

torch and transformers are imported inside the functions so that ``import unlearnbench.models``
stays cheap (the CLI imports it just to build its help text).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from unlearnbench.errors import UnlearnbenchError, exception_chain

if TYPE_CHECKING:  # pragma: no cover - typing only, keeps torch out of module import
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = [
    "LoadedModel",
    "load_model",
    "save_model",
    "weights_sha256",
    "resolve_device",
    "resolve_dtype",
    "check_source",
    "count_layers",
]

# Files whose loading means unpickling: we refuse directories that hold only these.
_PICKLED_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
# Suffixes that make a string mean "a file on disk", never a hub id.
_MODEL_FILE_SUFFIXES = (".gguf", ".safetensors", ".json") + _PICKLED_SUFFIXES
# 'name' or 'org/name', as the hub spells repository ids.
_HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?")
_DTYPES = {
    "float32": "float32", "fp32": "float32", "float": "float32",
    "bfloat16": "bfloat16", "bf16": "bfloat16",
    "float16": "float16", "fp16": "float16", "half": "float16",
}  # fmt: skip
_HASH_CHUNK = 1 << 20


@dataclass(frozen=True)
class LoadedModel:
    """What the rest of the harness passes around: the model, its tokenizer and where they came from.

    ``weights_sha256`` identifies the exact weights a result was computed on, so a report can tell
    two runs on "the same model" apart when the files differ. It is '' when the files could not be
    located (e.g. a hub model whose cache layout we cannot resolve).

    Tokenizer note: when the tokenizer had no pad token, ``load_model`` sets it to the EOS token.
    Callers must therefore build attention masks from sequence lengths (or take the mask the
    tokenizer returns), never from ``input_ids != pad_token_id``: that would also mask every real
    EOS token in the text.
    """

    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    source: str
    weights_sha256: str


def resolve_device(device: str) -> torch.device:
    """Turn 'cpu', 'cuda', 'cuda:N', 'mps' or 'auto' into a torch.device, failing early if it is not there.

    Checked up front (the runner calls it when it plans a run, before any model is built or trained)
    so that a typo or a missing GPU gives one clear line, with a "did you mean" for a typo, instead of
    a CUDA error deep inside the first forward pass. 'auto' is CUDA when there is a GPU, else the CPU.
    """
    import torch

    name = str(device).strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise UnlearnbenchError(f"device {device!r} requested but MPS (Apple GPU) is not available on this machine")
        return torch.device("mps")
    match = re.fullmatch(r"cuda(?::(\d+))?", name)
    if match is None:
        raise UnlearnbenchError(f"unknown device {device!r}{_device_hint(name)} (devices: {DEVICES})")
    if not torch.cuda.is_available():
        raise UnlearnbenchError(f"device {device!r} requested but CUDA is not available on this machine")
    if match.group(1) is not None:
        index = int(match.group(1))
        if index >= torch.cuda.device_count():
            raise UnlearnbenchError(
                f"device {device!r} requested but only {torch.cuda.device_count()} CUDA device(s) are visible"
            )
        return torch.device("cuda", index)
    return torch.device("cuda")


#: The device names :func:`resolve_device` accepts, in words (for its messages).
DEVICES = "cpu, cuda, cuda:N, mps or auto"


def _device_hint(name: str) -> str:
    """'; did you mean 'cpu'?' for a typo of a device name ('cpuu', 'cuda0', 'gpu:1'), else ''."""
    import difflib

    indexed = re.fullmatch(r"([a-z]+)\W*(\d+)", name)
    if indexed and (indexed.group(1) == "gpu" or difflib.get_close_matches(indexed.group(1), ["cuda"], n=1)):
        return f"; did you mean 'cuda:{indexed.group(2)}'?"
    if name in ("gpu", "cuda:"):
        return "; did you mean 'cuda'?"
    close = difflib.get_close_matches(name, ["cpu", "cuda", "mps", "auto"], n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def resolve_dtype(dtype: str, device) -> torch.dtype:
    """Pick the weight dtype: 'auto' is float32 on CPU and the fastest safe half type on CUDA.

    float32 on CPU because CPU half-precision matmuls are slow and lossy; bfloat16 on GPUs that
    support it (same range as float32, so no overflow in logits), float16 otherwise.
    """
    import torch

    name = str(dtype).strip().lower()
    if name == "auto":
        if torch.device(device).type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.float32
    if name not in _DTYPES:
        raise UnlearnbenchError(f"unknown dtype {dtype!r}; expected auto, float32, bfloat16 or float16")
    return getattr(torch, _DTYPES[name])


def weights_sha256(path: str | os.PathLike) -> str:
    """sha256 (hex) over the weight bytes: a directory's *.safetensors sorted by name, or one file.

    Hashing bytes rather than tensors is cheap, needs no torch, and matches what a user can check
    with ``cat *.safetensors | sha256sum`` (files taken in name order).
    """
    p = Path(path).expanduser()
    if p.is_dir():
        files = sorted(p.glob("*.safetensors"), key=lambda f: f.name)
        if not files:
            raise UnlearnbenchError(f"no *.safetensors files in '{p}' to hash")
        return _sha256_files(files)
    if p.is_file():
        return _sha256_files([p])
    raise UnlearnbenchError(f"no such file or directory: '{p}'")


def save_model(model, tokenizer, path: str | os.PathLike) -> str:
    """Save model and tokenizer to ``path`` as safetensors; return the weights' sha256.

    Returning the hash lets the caller record exactly which weights an unlearned checkpoint holds.
    ``safe_serialization=True`` is explicit for older transformers (4.x), where it was a choice;
    transformers 5 always writes safetensors. Tokenizers have no weights, so theirs is a plain save.
    """
    out = Path(path).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    pickled = [f.name for f in out.iterdir() if f.suffix in _PICKLED_SUFFIXES]
    if pickled:  # would only happen with a transformers that ignored safe_serialization
        raise UnlearnbenchError(f"saving to '{out}' wrote pickled weights ({', '.join(sorted(pickled))})")
    return weights_sha256(out)


def save_model_atomically(model, tokenizer, parent: str | os.PathLike, name: Callable[[str], str]) -> tuple[Path, str]:
    """Save into a fresh folder under ``parent``, then move it to ``parent / name(sha256)``.

    A killed save never leaves a half-written model at the final path, and two processes saving
    the same weights do not collide (the second finds the folder there and drops its copy).
    Returns the final path and the weights' sha256.
    """
    import shutil
    import tempfile

    root = Path(parent)
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".saving-", dir=root))
    try:
        sha = save_model(model, tokenizer, tmp)
        final = root / name(sha)
        if final.exists():  # the same weights are already there
            shutil.rmtree(tmp)
        else:
            tmp.replace(final)
        return final, sha
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def load_model(
    source: str | os.PathLike,
    *,
    device: str = "cpu",
    dtype: str = "auto",
    trust_remote_code: bool = False,
    gguf_file: str | None = None,
    revision: str | None = None,
    attn_implementation: str | None = "eager",
) -> LoadedModel:
    """Load a causal LM and its tokenizer from a local directory, a .gguf file or a hub id.

    ``source`` may be:

    * a local directory with ``config.json`` and ``*.safetensors`` (pickled-only directories are
      refused), or a directory plus ``gguf_file=`` naming a GGUF file inside it;
    * a path to a ``.gguf`` file (weights are dequantised by transformers; needs ``gguf``);
    * a hub id ``org/name``, loaded from the local cache or the hub, safetensors only
      (``revision`` applies to hub ids only; a local directory is what it is).

    ``attn_implementation`` defaults to 'eager' because probes read attention weights and need
    results that do not depend on which fused kernel happens to be installed.

    The model is returned in eval mode on the resolved device. See :class:`LoadedModel` for the
    pad-token rule callers must respect.
    """
    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    text = os.fspath(source)
    location, gguf_name, weight_files, label = _locate(text, gguf_file)

    is_hub = weight_files is None
    common: dict = {"trust_remote_code": trust_remote_code}
    if is_hub and revision is not None:
        common["revision"] = revision
    if gguf_name is not None:
        _require_gguf_support()
        # An absolute path for local files: transformers first tries gguf_file relative to the
        # current directory, and a stray file of the same name there must not win.
        common["gguf_file"] = gguf_name if is_hub else str(Path(location) / gguf_name)
        model_kwargs = dict(common)
    else:
        model_kwargs = dict(common, use_safetensors=True)
    model_kwargs["dtype"] = torch_dtype
    if attn_implementation is not None:
        model_kwargs["attn_implementation"] = attn_implementation

    from transformers import AutoModelForCausalLM, AutoTokenizer

    with _hub_errors(text, revision, is_hub):
        # ignore_mismatched_sizes: transformers then reports the misfits (instead of raising a bare
        # error) and _refuse_partial_load names them in one line
        with _gguf_errors(label, gguf_name is not None):
            model, info = AutoModelForCausalLM.from_pretrained(
                location, output_loading_info=True, ignore_mismatched_sizes=True, **model_kwargs
            )
        tokenizer = AutoTokenizer.from_pretrained(location, **common)
    _refuse_partial_load(label, info)

    _ensure_pad_token(model, tokenizer)
    model.eval()
    model.to(torch_device)

    if gguf_name is not None:
        _drop_gguf_quantizer(model)
    if is_hub:
        sha = _hub_weights_sha256(text, revision, gguf_name)
    else:
        sha = _sha256_files(weight_files)
    return LoadedModel(model=model, tokenizer=tokenizer, source=label, weights_sha256=sha)


class _gguf_errors:
    """A GGUF file of an architecture transformers cannot map to a model: one line naming the ones it can."""

    def __init__(self, label: str, active: bool):
        self.label, self.active = label, active

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc is None or not self.active or not isinstance(exc, ValueError):
            return False
        found = re.search(r"architecture (\S+) is not supported", str(exc))
        if found is None:
            return False
        from transformers.modeling_gguf_pytorch_utils import GGUF_SUPPORTED_ARCHITECTURES

        known = ", ".join(a for a in GGUF_SUPPORTED_ARCHITECTURES if a not in ("general", "tokenizer"))
        raise UnlearnbenchError(
            f"'{self.label}': GGUF architecture '{found.group(1)}' is not one transformers can load ({known})"
        ) from exc


def _refuse_partial_load(label: str, info: dict) -> None:
    """A model some of whose weights were not in the files, or did not fit their shapes, is refused.

    transformers fills such tensors with fresh random values and only logs a warning (its "LOAD
    REPORT"); a benchmark would then score a partly random model as if it were the user's.
    Unexpected extra tensors (old buffers such as rotary ``inv_freq``) are harmless and allowed.
    """
    mismatched = list(info.get("mismatched_keys") or [])
    missing = sorted(info.get("missing_keys") or [])
    if not (mismatched or missing):
        return
    parts = []
    if mismatched:
        first = mismatched[0]
        if isinstance(first, (tuple, list)) and len(first) == 3:
            name, theirs, ours = first
            first = f"{name}: {tuple(theirs)} in the files, {tuple(ours)} in its config"
        parts.append(f"{len(mismatched)} tensor(s) do not fit the config's shapes (e.g. {first})")
    if missing:
        parts.append(f"{len(missing)} tensor(s) are missing from the files (e.g. {missing[0]})")
    raise UnlearnbenchError(
        f"refusing to load '{label}': " + "; ".join(parts) + " (transformers would fill them with random values)"
    )


def check_source(source: str | os.PathLike, *, gguf_file: str | None = None) -> None:
    """The checks :func:`load_model` makes on ``source`` before it reads any weights, alone (no torch,
    nothing loaded): a local path that does not exist, a directory with only pickled weights or no
    config.json, a missing GGUF file, a string that is neither a path nor a hub id. Run when a run is
    planned, so a typo in a model path is one line before anything is built or stored."""
    _locate(os.fspath(source), gguf_file)


def count_layers(source: str | os.PathLike, *, gguf_file: str | None = None) -> int | None:
    """The number of decoder blocks of the model at ``source``, read from its config.json without
    loading weights (a local directory, or a hub model whose config is in the local cache); None
    when that is not known before loading (a GGUF file, a hub model not cached, a config without
    the field). Lets methods check layer options (``rmu,layer=``, ``rocr,layers=``) at plan time."""
    text = os.fspath(source)
    try:
        location, gguf_name, weight_files, _label = _locate(text, gguf_file)
    except UnlearnbenchError:
        return None
    if gguf_name is not None:
        return None
    if weight_files is not None:
        config = Path(location) / "config.json"
    else:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(text, "config.json")
        if not isinstance(found, str):
            return None
        config = Path(found)
    try:
        raw = json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(raw, dict):
        return None
    lm = raw["text_config"] if isinstance(raw.get("text_config"), dict) else raw  # multimodal: the LM's own
    for key in ("num_hidden_layers", "n_layer", "num_layers"):
        if isinstance(lm.get(key), int) and lm[key] > 0:
            return lm[key]
    return None


# --------------------------------------------------------------------------------------------
# helpers


def _locate(text: str, gguf_file: str | None) -> tuple[str, str | None, list[Path] | None, str]:
    """Where ``text`` points: (location for transformers, GGUF file name or None, the local weight
    files or None for a hub id, the label results record); a one-line error for a source that
    cannot be loaded, found before any weights are read."""
    path = Path(text).expanduser()
    if path.is_file():
        if path.suffix != ".gguf":
            _refuse_file(path)
        if gguf_file is not None and Path(gguf_file).name != path.name:
            raise UnlearnbenchError(f"source '{path}' is a GGUF file but gguf_file={gguf_file!r} names another one")
        return str(path.parent), path.name, [path], str(path)
    if path.is_dir():
        location, gguf_name, weight_files = _inspect_directory(path, gguf_file)
        return location, gguf_name, weight_files, str(path / gguf_name) if gguf_name else str(path)
    if _looks_like_path(text):
        raise UnlearnbenchError(f"no such file or directory: '{text}'")
    if _HUB_ID.fullmatch(text) and ".." not in text and "--" not in text:
        return text, gguf_file, None, text
    raise UnlearnbenchError(f"'{text}' is neither a local path nor a hub model id like 'org/name'")


def _drop_gguf_quantizer(model) -> None:
    """transformers dequantises GGUF weights into ordinary float tensors but keeps a 'gguf'
    quantizer on the model, which makes ``save_pretrained`` refuse. The weights in memory are plain
    tensors, so unlearned checkpoints of a GGUF model are saved as ordinary safetensors."""
    if getattr(model, "hf_quantizer", None) is not None and type(model.hf_quantizer).__name__.lower().startswith(
        "gguf"
    ):
        model.hf_quantizer = None
    if hasattr(model, "is_quantized"):
        try:
            model.is_quantized = False
        except AttributeError:  # a read-only property in some transformers versions
            pass
    if getattr(model.config, "quantization_config", None) is not None:
        del model.config.quantization_config


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 (hex) of one file's bytes, read in chunks."""
    return _sha256_files([Path(path)])


def _sha256_files(files) -> str:
    """One sha256 over the concatenated bytes of ``files``, read in chunks (weights can be GBs)."""
    digest = hashlib.sha256()
    for file in files:
        with open(file, "rb") as handle:
            while chunk := handle.read(_HASH_CHUNK):
                digest.update(chunk)
    return digest.hexdigest()


def _looks_like_path(text: str) -> bool:
    """True when a non-existent ``source`` was clearly meant as a path, so we say 'no such file'
    instead of sending a typo'd path to the hub as a model id."""
    return (
        text.startswith(("/", ".", "~"))
        or "\\" in text
        or text.count("/") >= 2
        or text.lower().endswith(_MODEL_FILE_SUFFIXES)
    )


def _refuse_file(path: Path) -> None:
    """Explain why a single non-GGUF file cannot be loaded."""
    if path.suffix in _PICKLED_SUFFIXES:
        raise UnlearnbenchError(f"refusing to load '{path}': it is pickled weights; {_CONVERT_HINT}")
    raise UnlearnbenchError(
        f"cannot load '{path}' as a model: pass the directory that holds config.json and *.safetensors, or a .gguf file"
    )


_CONVERT_HINT = (
    "unlearnbench loads safetensors only — convert with https://huggingface.co/spaces/safetensors/convert "
    "or save_pretrained() on a trusted machine"
)


def _inspect_directory(directory: Path, gguf_file: str | None) -> tuple[str, str | None, list[Path]]:
    """Check a local model directory before transformers sees it; return (dir, gguf name, weight files).

    Done by us rather than left to transformers because with only pickled weights transformers
    would either unpickle them or fail with a message about ``use_safetensors``; users need to know
    *why* we refuse and what to do.
    """
    names = sorted(f.name for f in directory.iterdir() if f.is_file())
    if gguf_file is not None:
        candidate = Path(gguf_file)
        target = candidate if candidate.is_absolute() else directory / candidate
        if not target.is_file():
            found = [n for n in names if n.endswith(".gguf")]
            raise UnlearnbenchError(
                f"no GGUF file '{gguf_file}' in '{directory}' (found: {', '.join(found) or 'no .gguf files'})"
            )
        return str(target.parent), target.name, [target]

    safetensors = [directory / n for n in names if n.endswith(".safetensors")]
    if not safetensors:
        pickled = [n for n in names if n.endswith(_PICKLED_SUFFIXES)]
        ggufs = [n for n in names if n.endswith(".gguf")]
        if pickled:
            raise UnlearnbenchError(
                f"refusing to load '{directory}': only pickled weights ({', '.join(pickled[:3])}) found; {_CONVERT_HINT}"
            )
        if ggufs:
            raise UnlearnbenchError(
                f"'{directory}' holds GGUF weights ({', '.join(ggufs[:3])}); pass gguf_file='{ggufs[0]}' or the .gguf path"
            )
        raise UnlearnbenchError(f"no *.safetensors weights in '{directory}'")
    if "config.json" not in names:
        raise UnlearnbenchError(
            f"'{directory}' has *.safetensors but no config.json; is it a transformers model directory?"
        )
    return str(directory), None, safetensors


def _require_gguf_support() -> None:
    """Fail with an install hint rather than transformers' generic ImportError."""
    if importlib.util.find_spec("gguf") is None:
        raise UnlearnbenchError("loading GGUF files needs the gguf package: pip install gguf")
    if importlib.util.find_spec("accelerate") is None:
        raise UnlearnbenchError("loading GGUF files needs the accelerate package: pip install accelerate")


class _hub_errors:
    """Context manager turning hub/cache failures into one-line UnlearnbenchErrors.

    It recognises the failure by the exception types huggingface_hub raises (found anywhere in the
    ``__cause__``/``__context__`` chain, since transformers wraps them in OSError) plus the one
    message transformers uses for 'this repo has no safetensors'. Anything else propagates as is.
    """

    def __init__(self, source: str, revision: str | None, is_hub: bool):
        self.source, self.revision, self.is_hub = source, revision, is_hub

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc is None or not self.is_hub or not isinstance(exc, (OSError, ValueError)):
            return False
        message = _hub_error_message(exc, self.source, self.revision)
        if message is None:
            return False
        raise UnlearnbenchError(message) from exc


def _hub_error_message(exc: BaseException, source: str, revision: str | None) -> str | None:
    from huggingface_hub.errors import (
        GatedRepoError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    chain = list(exception_chain(exc))
    at = f" at revision '{revision}'" if revision else ""
    if any(isinstance(e, (LocalEntryNotFoundError, OfflineModeIsEnabled)) for e in chain) or any(
        "couldn't connect to" in str(e).lower() for e in chain
    ):
        return (
            f"model '{source}'{at} is not in the local cache and the hub is unreachable — download it on a "
            f"connected machine (huggingface-cli download {source}) or pass a local directory"
        )
    if any(isinstance(e, GatedRepoError) for e in chain):
        return f"model '{source}' is gated on the hub — accept its licence and run huggingface-cli login"
    if any(isinstance(e, RepositoryNotFoundError) for e in chain):
        return f"model '{source}' was not found on the hub (a private repo needs huggingface-cli login)"
    if any(isinstance(e, RevisionNotFoundError) for e in chain):
        return f"model '{source}' has no revision '{revision}' on the hub"
    if any("cannot be loaded with `safetensors`" in str(e) for e in chain):
        return f"refusing to load '{source}'{at}: it has no safetensors weights; {_CONVERT_HINT}"
    return None


def _hub_weights_sha256(repo_id: str, revision: str | None, gguf_file: str | None) -> str:
    """Hash the cached weight files of a hub model, or '' when they cannot be located offline.

    Uses only the local cache (no network): the files were just loaded, so they are there unless
    the cache layout is unusual, in which case '' is an honest 'unknown'.
    """
    from huggingface_hub import try_to_load_from_cache

    def cached(filename: str) -> str | None:
        found = try_to_load_from_cache(repo_id, filename, revision=revision)
        return found if isinstance(found, str) else None

    if gguf_file is not None:
        found = cached(gguf_file)
        return _sha256_files([found]) if found else ""
    index = cached("model.safetensors.index.json")
    if index:
        try:
            shards = sorted(set(json.loads(Path(index).read_text())["weight_map"].values()))
        except (OSError, ValueError, KeyError, AttributeError):
            return ""
    else:
        shards = ["model.safetensors"]
    paths = [cached(name) for name in shards]
    if not all(paths):
        return ""
    return _sha256_files(paths)


def _ensure_pad_token(model, tokenizer) -> None:
    """Give the tokenizer a pad token (EOS) if it has none; never touch ``padding_side``.

    Batched scoring needs padding. padding_side is left exactly as the tokenizer says: whoever
    batches decides left (generation) or right (scoring) padding explicitly. We also tell the
    generation config, so ``generate`` does not warn on every call.
    """
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    generation_config = getattr(model, "generation_config", None)
    if generation_config is not None and generation_config.pad_token_id is None and tokenizer.pad_token_id is not None:
        generation_config.pad_token_id = tokenizer.pad_token_id
