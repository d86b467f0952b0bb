"""Submission matrices: what every leaderboard submission on one benchmark must contain.

A matrix is a YAML file ``tasks/leaderboard/<name>.yaml`` (see ``toy-micro.yaml``):

``benchmark``   benchmark spec (``toy,size=micro``)
``attacks``     attack specs run after unlearning, each in every seed (the public grid)
``seeds``       the seeds (each seed is one full run: base, oracle, controls, unlearn, every attack)
``controls``    the control models every attack of every seed is also run on (same data, seed and
                budget; ``oracle``, optionally ``base``): a bundle carries one ``control`` cell per
                (attack, seed, control). Default ``[oracle]``; the headline needs the oracle
``held_out``    optional commitment to a held-out attack grid: ``{sha256: <hex>, count: N}``, the
                sha256 of the canonical JSON of the held-out file (:mod:`.heldout`). ``submit``
                never sees that grid; ``verify --rerun K --held-out FILE`` runs it
``probes``      probe names, or null for the benchmark's default suite
``versions``    allowed versions: ``harness`` (list), ``benchmark``/``attacks``/``probes`` (name -> list)
``tolerance``   largest absolute difference per metric when ``verify --rerun`` re-runs cells
                (``recall``, ``task_accuracy``, ``forget_quality``; ``recovery`` defaults to the
                forget-quality tolerance, which also applies to forget quality against the
                attacked oracle)
``headline``    which split and forms the site's utility column averages

The headline under attack (bundle format 2) is the worst case over each attack's curve: the lowest
forget quality against the attacked oracle over the checkpoints after step 0, with its step, and
the last checkpoint beside it (:func:`unlearnbench.leaderboard.bundle.attack_headline`).

Verification always reads the matrix of *this* installation, never one carried by a bundle.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..errors import UnlearnbenchError
from ..spec import canonical_spec

TOLERANCE_METRICS = ("recall", "task_accuracy", "forget_quality")
MATRIX_CONTROLS = ("oracle", "base")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class Matrix:
    name: str
    benchmark: str  # canonical spec
    attacks: tuple[str, ...]  # canonical specs (the runner's attack labels)
    seeds: tuple[int, ...]
    probes: tuple[str, ...] | None
    versions: dict = field(hash=False)
    tolerance: dict = field(hash=False)
    description: str = ""
    headline: dict = field(default_factory=dict, hash=False)
    controls: tuple[str, ...] = ("oracle",)
    held_out: dict | None = field(default=None, hash=False)  # {"sha256": hex, "count": N} or None

    def as_manifest(self, probes: list[str]) -> dict:
        """The matrix as a bundle records it (with the probe suite that was really used). The
        held-out grid is not recorded: a bundle is made without it."""
        return {
            "name": self.name,
            "benchmark": self.benchmark,
            "attacks": list(self.attacks),
            "seeds": list(self.seeds),
            "probes": list(probes),
            "controls": list(self.controls),
        }


def _controls(doc: dict, where: str) -> tuple[str, ...]:
    raw = doc.get("controls", ["oracle"])
    if not isinstance(raw, list) or not raw or any(c not in MATRIX_CONTROLS for c in raw):
        raise UnlearnbenchError(f"{where}: 'controls' must be a list of {', '.join(MATRIX_CONTROLS)} (got {raw!r})")
    if "oracle" not in raw:
        raise UnlearnbenchError(
            f"{where}: 'controls' must include oracle (the headline is against the attacked oracle)"
        )
    if len(set(raw)) != len(raw):
        raise UnlearnbenchError(f"{where}: a control is listed twice")
    return tuple(c for c in MATRIX_CONTROLS if c in raw)  # the runner's order: oracle, then base


def _held_out(doc: dict, where: str) -> dict | None:
    raw = doc.get("held_out")
    if raw is None:
        return None
    if (
        not isinstance(raw, dict)
        or set(raw) != {"sha256", "count"}
        or not isinstance(raw["sha256"], str)
        or not _SHA256.match(raw["sha256"])
        or not isinstance(raw["count"], int)
        or isinstance(raw["count"], bool)
        or raw["count"] < 1
    ):
        raise UnlearnbenchError(
            f"{where}: 'held_out' must be {{sha256: <64 lowercase hex>, count: <positive integer>}} "
            "(compute it with: unlearnbench leaderboard held-out-hash FILE)"
        )
    return {"sha256": raw["sha256"], "count": raw["count"]}


def load_matrix(name: str) -> Matrix:
    """``tasks/leaderboard/<name>.yaml`` as a :class:`Matrix` (one-line errors for bad files)."""
    from ..spec import load_yaml, tasks_dir

    if not name or "/" in name or "\\" in name or name.startswith("."):
        raise UnlearnbenchError(f"matrix name {name!r} must be a plain name like toy-micro")
    if not (tasks_dir() / "leaderboard" / f"{name}.yaml").is_file():
        known = ", ".join(list_matrices()) or "none"
        raise UnlearnbenchError(f"unknown leaderboard matrix {name!r} (known: {known})")
    doc = load_yaml(f"leaderboard/{name}.yaml")
    where = f"tasks/leaderboard/{name}.yaml"
    for key in ("benchmark", "attacks", "seeds", "versions", "tolerance"):
        if key not in doc:
            raise UnlearnbenchError(f"{where} lacks '{key}'")
    if not isinstance(doc["attacks"], list) or not isinstance(doc["seeds"], list) or not doc["seeds"]:
        raise UnlearnbenchError(f"{where}: 'attacks' and 'seeds' must be lists (seeds not empty)")
    missing = [m for m in TOLERANCE_METRICS if m not in doc["tolerance"]]
    if missing:
        raise UnlearnbenchError(f"{where}: tolerance lacks {', '.join(missing)}")
    if "harness" not in doc["versions"]:
        raise UnlearnbenchError(f"{where}: versions lacks 'harness' (the harness versions allowed)")
    try:
        seeds = tuple(int(s) for s in doc["seeds"])
    except (TypeError, ValueError):
        raise UnlearnbenchError(f"{where}: seeds must be integers") from None
    if len(set(seeds)) != len(seeds):
        raise UnlearnbenchError(f"{where}: a seed is listed twice")
    attacks = tuple(canonical_spec(a) for a in doc["attacks"])
    if len(set(attacks)) != len(attacks):
        raise UnlearnbenchError(f"{where}: an attack is listed twice")
    tolerance = {k: float(doc["tolerance"][k]) for k in TOLERANCE_METRICS}
    tolerance["recovery"] = float(doc["tolerance"].get("recovery", tolerance["forget_quality"]))
    probes = doc.get("probes")
    return Matrix(
        name=doc.get("name", name),
        benchmark=canonical_spec(doc["benchmark"]),
        attacks=attacks,
        seeds=seeds,
        probes=tuple(probes) if probes else None,
        versions=dict(doc["versions"]),
        tolerance=tolerance,
        description=doc.get("description", ""),
        headline=dict(doc.get("headline") or {}),
        controls=_controls(doc, where),
        held_out=_held_out(doc, where),
    )


def list_matrices() -> list[str]:
    from ..spec import tasks_dir

    folder = tasks_dir() / "leaderboard"
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []
