"""Retrain the embedded models from their recipe (``unlearnbench world build``).

Training happens in a temporary folder, never in the user's cache and never from the shipped copy,
so the result says whether *this machine* reproduces the shipped bytes: the quality gate must pass
(else an error), and the weights' sha256 is compared with the shipped folder of the same key. A
different hash is not an error (kernels differ between CPUs, see :mod:`.shipped`); runs keep using
the shipped copy. ``ship=True`` (maintainers) copies the new folders into the package's weights.
"""

from __future__ import annotations

import datetime
import platform
import tempfile
import time
from pathlib import Path

from ..progress import SILENT, Progress
from ..provenance import harness_provenance
from . import shipped
from .model import ModelRecipe, check_quality, gated_recall, get_model_dir
from .world import World


def machine() -> dict:
    """What the weights depend on besides the recipe: CPU, kernel level, library versions, commit."""
    import torch
    import transformers

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "commit": _commit(),
        "date": datetime.date.today().isoformat(),
    }


def _commit() -> str | None:
    """The short commit of the harness checkout, ``-dirty`` when it has uncommitted changes."""
    p = harness_provenance()
    if not p["git_commit"]:
        return None
    return p["git_commit"][:7] + ("-dirty" if p["git_dirty"] else "")


def rebuild(
    world: World,
    recipe: ModelRecipe,
    name: str,
    roles: tuple[str, ...] = ("target", "oracle"),
    ship: bool = False,
    progress: Progress = SILENT,
) -> list[dict]:
    """Train each role from the recipe, check its quality gate, compare with the shipped copy.

    Returns one record per role: folder name, sha256, the shipped sha256 (None when nothing of this
    key is shipped), whether they match, recall per split and form and the lowest gated one, and
    training seconds.
    """
    from transformers.utils import logging as hf_logging

    from ..models import weights_sha256

    hf_logging.disable_progress_bar()  # "Writing model shards" bars; progress is ours
    where = machine()
    records = []
    with tempfile.TemporaryDirectory(prefix="unlearnbench-build-") as tmp:
        root = Path(tmp) / "models"
        for role in roles:
            t0 = time.time()
            path = get_model_dir(world, recipe, role, name, progress, root=root, use_shipped=False)
            quality = check_quality(path, role=role)  # raises below the gate
            sha = weights_sha256(path)
            entry = shipped.manifest().get(path.name)
            want = entry["files"]["model.safetensors"] if entry else None
            if ship:
                shipped.ship(path, trained_on={**where, "train_threads": recipe.train_threads})
            records.append(
                {
                    "role": role,
                    "folder": path.name,
                    "sha256": sha,
                    "shipped_sha256": want,
                    "matches_shipped": None if want is None else want == sha,
                    "recall": quality["recall"],
                    "min_gated_recall": min(gated_recall(quality, role).values()),
                    "gated_forms": list(recipe.gated_forms),
                    "seconds": round(time.time() - t0, 1),
                    "shipped_now": ship,
                    "machine": where,
                }
            )
    return records
