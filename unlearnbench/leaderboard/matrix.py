"""Submission matrices: what every leaderboard submission on one benchmark must contain.

A matrix is a YAML file ``tasks/leaderboard/<name>.yaml`` (see ``toy-micro.yaml``):

``benchmark``   benchmark spec (``toy,size=micro``)
``attacks``     attack specs run after unlearning, each in every seed
``seeds``       the seeds (each seed is one full run: base, oracle, unlearn, every attack)
``probes``      probe names, or null for the benchmark's default suite
``versions``    allowed versions: ``harness`` (list), ``benchmark``/``attacks``/``probes`` (name -> list)
``tolerance``   largest absolute difference per metric when ``verify --rerun`` re-runs cells
``headline``    which split and forms the site's utility column averages

Verification always reads the matrix of *this* installation, never one carried by a bundle.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import UnlearnbenchError
from ..spec import canonical_spec

TOLERANCE_METRICS = ("recall", "task_accuracy", "forget_quality")


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

    def as_manifest(self, probes: list[str]) -> dict:
        """The matrix as a bundle records it (with the probe suite that was really used)."""
        return {
            "name": self.name,
            "benchmark": self.benchmark,
            "attacks": list(self.attacks),
            "seeds": list(self.seeds),
            "probes": list(probes),
        }


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
    probes = doc.get("probes")
    return Matrix(
        name=doc.get("name", name),
        benchmark=canonical_spec(doc["benchmark"]),
        attacks=tuple(canonical_spec(a) for a in doc["attacks"]),
        seeds=seeds,
        probes=tuple(probes) if probes else None,
        versions=dict(doc["versions"]),
        tolerance={k: float(doc["tolerance"][k]) for k in TOLERANCE_METRICS},
        description=doc.get("description", ""),
        headline=dict(doc.get("headline") or {}),
    )


def list_matrices() -> list[str]:
    from ..spec import tasks_dir

    folder = tasks_dir() / "leaderboard"
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []
