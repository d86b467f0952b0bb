"""The cache: one root folder, its layout, and the one way anything is written into it.

Everything unlearnbench computes once and reuses lives under :func:`cache_dir`::

    <cache>/models/<name>-<role>-<key>/    embedded models (safetensors + tokenizer + quality.json)
    <cache>/models/<name>-tokenizer-<key>/ the tokenizer shared by an embedded target and its oracle
    <cache>/checkpoints/<cell>-<sha16>/    unlearned weights of a finished unlearning cell
    <cache>/rocr/<key>.safetensors (+.json) ROCR's second moments of MLP inputs
    <cache>/taskvec/<cell>-<tag>/          fine-tunes made for task-vector analysis

Every write goes through :class:`AtomicDir` or :func:`atomic_file`: the content is written under a
temporary name in the destination folder, then moved to its real name with one ``os.replace``, so a
killed process never leaves half a model or half a tensor under a name that readers trust.

This module imports no torch at import time (the CLI's ``--help`` path reaches it).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .errors import UnlearnbenchError


def cache_dir() -> Path:
    """``$UNLEARNBENCH_CACHE``, else ``$XDG_CACHE_HOME/unlearnbench``, else ``~/.cache/unlearnbench``."""
    if os.environ.get("UNLEARNBENCH_CACHE"):
        return Path(os.environ["UNLEARNBENCH_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "unlearnbench"


# -- atomic writes ------------------------------------------------------------------------------


class AtomicDir:
    """A fresh temporary folder under ``parent``; :meth:`publish` moves it to its real name.

    ::

        with AtomicDir(root) as stage:
            write_everything(stage.path)
            stage.publish("name", replace=True)

    Leaving the block without publishing (an exception, or no call) removes the temporary folder.
    ``replace=True`` swaps out a folder already at the destination; ``replace=False`` keeps it and
    drops the new copy (for content-addressed names: the same content is already there).

    Killed at any instant, the real name holds the old folder, the new one or nothing, never a
    mix (the old folder is renamed aside before it is deleted), and only names starting with the
    prefix are left over. When another process publishes the same name at the same moment, the
    first to arrive keeps it and the other drops its copy: a name is a key of the content.
    """

    def __init__(self, parent: str | os.PathLike, prefix: str = ".tmp-"):
        self.parent = Path(parent)
        self.prefix = prefix
        self.path: Path | None = None
        self.final: Path | None = None

    def __enter__(self) -> "AtomicDir":
        self.parent.mkdir(parents=True, exist_ok=True)
        self.path = Path(tempfile.mkdtemp(dir=self.parent, prefix=self.prefix))
        return self

    def publish(self, name: str, *, replace: bool = True) -> Path:
        assert self.path is not None, "publish() inside the with block"
        final = self.parent / name
        old = None
        if final.exists():
            if not replace:
                return self._drop(final)
            old = self.parent / f"{self.prefix}old-{uuid.uuid4().hex}"
            try:
                os.replace(final, old)  # one rename: readers see the old folder or no folder
            except FileNotFoundError:  # another process moved it first
                old = None
        try:
            os.replace(self.path, final)
        except OSError:
            if not final.is_dir():
                raise
            self._drop(final)  # another process published this name since we looked: keep its folder
        self.final = final
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return final

    def _drop(self, final: Path) -> Path:
        """Keep the folder already at ``final`` and remove our copy."""
        shutil.rmtree(self.path, ignore_errors=True)
        self.final = final
        return final

    def __exit__(self, *exc) -> None:
        if self.path is not None and self.final is None:  # not published: nothing may remain
            shutil.rmtree(self.path, ignore_errors=True)


@contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary file name beside ``path``; on success it replaces ``path`` in one move."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-")
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


# -- unlearned checkpoints ----------------------------------------------------------------------


def checkpoint_dir(cid: str, sha256: str | None = None) -> Path:
    """Where the unlearned weights of cell ``cid`` are kept: ``checkpoints/<cid>-<sha256[:16]>``.

    The weights' hash is part of the name because the cache is shared by every store: two stores
    can hold the same cell (same key) computed on machines whose float results differ (thread
    count, kernels), and neither may overwrite the other's checkpoint.
    """
    root = cache_dir() / "checkpoints"
    return root / (f"{cid}-{sha256[:16]}" if sha256 else cid)


def save_checkpoint(model, tokenizer, cid: str) -> str:
    """Save to its content-addressed place (``checkpoint_dir(cid, sha)``); returns the sha256."""
    from .models import save_model_atomically

    _path, sha = save_model_atomically(
        model, tokenizer, checkpoint_dir(cid).parent, lambda sha: checkpoint_dir(cid, sha).name
    )
    return sha


def find_checkpoint(cid: str, sha256: str | None) -> Path:
    """The folder holding cell ``cid``'s weights with hash ``sha256`` (or the layout before hashes
    were in the name); a one-line error when it is missing."""
    path = checkpoint_dir(cid, sha256)
    if not path.is_dir() and checkpoint_dir(cid).is_dir():
        path = checkpoint_dir(cid)
    if not (path / "model.safetensors").exists() and not list(path.glob("*.safetensors")):
        raise UnlearnbenchError(
            f"the unlearned checkpoint of cell {cid} is missing from {path}; "
            "delete that cell from the store (or use a new --store) to re-run unlearning"
        )
    return path


def load_checkpoint(cid: str, sha256: str | None, device: str = "cpu"):
    """The unlearned model of cell ``cid``, checked against the hash stored with the cell."""
    from .models import load_model

    lm = load_model(find_checkpoint(cid, sha256), device=device, dtype="auto")  # float32 on CPU, bf16 on GPUs
    if sha256 and lm.weights_sha256 != sha256:
        raise UnlearnbenchError(f"the unlearned checkpoint of cell {cid} does not match the hash stored for it")
    return lm.model


# -- cached tensors -----------------------------------------------------------------------------


def tensor_path(kind: str, key: str) -> Path:
    """``<cache>/<kind>/<key>.safetensors`` (its provenance beside it as ``<key>.json``)."""
    return cache_dir() / kind / f"{key}.safetensors"


def load_tensor(kind: str, key: str, name: str, shape: tuple[int, ...] | None = None):
    """The cached tensor ``name`` under ``key``, or ``None`` when absent, damaged, of another key
    or of another shape (a cache is recomputed, never trusted)."""
    from safetensors.torch import load_file

    path = tensor_path(kind, key)
    sidecar = path.with_suffix(".json")
    if not (path.exists() and sidecar.exists()):
        return None
    try:
        if json.loads(sidecar.read_text()).get("key") != key:
            return None
        t = load_file(str(path))[name]
    except Exception:
        return None
    return t if shape is None or tuple(t.shape) == tuple(shape) else None


def save_tensor(kind: str, key: str, name: str, tensor, provenance: dict) -> Path:
    """Cache ``tensor`` as ``name`` under ``key``, with ``provenance`` (JSON; ``key`` is added)."""
    from safetensors.torch import save_file

    path = tensor_path(kind, key)
    record = {**provenance, "key": key}
    with atomic_file(path) as tmp:
        save_file({name: tensor.contiguous()}, str(tmp), metadata={"key": key})
    with atomic_file(path.with_suffix(".json")) as tmp:
        tmp.write_text(json.dumps(record, indent=1))
    return path
