"""Embedded-world models shipped inside the package: the first run loads them instead of training.

Training the embedded models is deterministic on one machine but not bit-identical across machines:
float sums are ordered by the CPU's vector width and by the BLAS kernels it picks, and a few
hundred optimiser steps amplify one-ulp differences into different weights (four CPU settings on
one machine gave four micro targets). Everything measured on the embedded world then moves "by a
few items" between machines. Shipping one canonical copy of the weights makes every machine start
from the same bytes.

Layout, inside the package::

    unlearnbench/toy/weights/<name>-<role>-<key>/   a model folder exactly as a training run
                                                   publishes it (model.safetensors, config,
                                                   tokenizer, quality.json)
    unlearnbench/toy/weights/manifest.json          sha256 of every file of every folder, and
                                                   where and how the folder was trained

The folder name carries the same content key as the cache (:func:`..model.model_key`: world,
recipe, left-out people, torch version, recipe version), so a changed recipe or another torch
finds no shipped folder and trains from the recipe as before. A shipped folder is copied into the
cache only after each of its files matched the manifest's sha256; a mismatch is one error, never a
silently different model.

``UNLEARNBENCH_SHIPPED=0`` ignores the shipped weights (everything is trained from the recipe);
``unlearnbench world build`` retrains them and says whether this machine reproduces them.

No torch at import time.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from ..cache import AtomicDir
from ..errors import UnlearnbenchError
from ..models import file_sha256

#: Where the shipped folders live (inside the installed package, wheel or checkout alike).
ROOT = Path(__file__).resolve().parent / "weights"
MANIFEST = "manifest.json"


def enabled() -> bool:
    """False when ``UNLEARNBENCH_SHIPPED`` is 0/false/no/off."""
    return os.environ.get("UNLEARNBENCH_SHIPPED", "1").strip().lower() not in ("0", "false", "no", "off")


def manifest(root: Path | None = None) -> dict:
    """The manifest's ``folders`` mapping (empty when nothing is shipped)."""
    path = (root or ROOT) / MANIFEST
    if not path.is_file():
        return {}
    return json.loads(path.read_text()).get("folders", {})


def verify(name: str, root: Path | None = None) -> Path | None:
    """The shipped folder ``name`` after checking every file against the manifest; None when no
    such folder is shipped. Raises when it is listed but its bytes differ or files are missing."""
    root = root or ROOT
    entry = manifest(root).get(name)
    if entry is None:
        return None
    folder = root / name
    bad = []
    for fname, want in sorted(entry["files"].items()):
        path = folder / fname
        if not path.is_file():
            bad.append(f"{fname} missing")
        elif file_sha256(path) != want:
            bad.append(f"{fname} sha256 differs")
    if bad:
        raise UnlearnbenchError(
            f"the shipped embedded model {name} does not match its manifest ({'; '.join(bad)}); "
            "reinstall unlearnbench, or set UNLEARNBENCH_SHIPPED=0 to train it from the recipe"
        )
    return folder


def install(name: str, models_dir: Path, root: Path | None = None) -> Path | None:
    """Copy the verified shipped folder ``name`` into ``models_dir`` (atomically); its path there,
    or None when nothing of that name is shipped or shipping is switched off."""
    if not enabled():
        return None
    src = verify(name, root)
    if src is None:
        return None
    models_dir.mkdir(parents=True, exist_ok=True)
    with AtomicDir(models_dir) as stage:
        for f in sorted(src.iterdir()):
            if f.is_file():
                shutil.copy2(f, stage.path / f.name)
        return stage.publish(name, replace=False)


def ship(folder: Path, trained_on: dict, root: Path | None = None) -> dict:
    """Put a trained model folder into the package's weights (maintainers: then commit it); returns
    its manifest entry. Folders of an older key with the same model name and role stay until the
    maintainer removes them (``git rm``), so a rebuild never deletes what another torch uses."""
    root = root or ROOT
    root.mkdir(parents=True, exist_ok=True)
    dest = root / folder.name
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(folder, dest)
    files = {f.name: file_sha256(f) for f in sorted(dest.iterdir()) if f.is_file()}
    doc_path = root / MANIFEST
    doc = json.loads(doc_path.read_text()) if doc_path.is_file() else {"about": _ABOUT, "folders": {}}
    doc["folders"][folder.name] = entry = {"files": files, "trained_on": trained_on}
    doc_path.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    return entry


_ABOUT = (
    "Canonical embedded-world models shipped with unlearnbench (unlearnbench/toy/shipped.py). "
    "Each folder is the cache folder a training run of that recipe publishes; files are checked "
    "against these sha256 before use. Made by `unlearnbench world build --ship`."
)
