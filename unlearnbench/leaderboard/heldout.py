"""The held-out attack grid of a matrix: commit in public, reveal to the verifier only.

A matrix lives in a public repository, so a held-out grid cannot be written in it. Instead the
matrix commits to it: ``held_out: {sha256: <hex>, count: N}``, where the hex is the sha256 of the
canonical JSON (:func:`unlearnbench.spec.canonical_json`: sorted keys, no spaces) of

    {"attacks": [<canonical attack spec>, ...], "salt": "<the file's salt, or an empty string>"}

and the maintainers keep the file itself outside the repository. The file is YAML (or JSON)::

    salt: 3f9c...            # any string; a long random one stops anyone hashing likely specs
    attacks:
      - finetune:filler,steps=30,eval_every=10
      - ...

Each spec is canonicalised (options sorted) before hashing, so ``steps=30,eval_every=10`` and
``eval_every=10,steps=30`` give the same hash; the list's order counts. The salt matters: without
one, a short list of plausible specs could be found by hashing guesses.
``unlearnbench leaderboard held-out-hash FILE`` prints the ``held_out:`` entry for a file;
``unlearnbench leaderboard verify BUNDLE --rerun K --held-out FILE`` checks the file against the
bundle's matrix (a mismatch is a one-line error, exit 2) and re-runs the submitted method on the
held-out attacks here. ``submit`` never reads a held-out file.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from ..errors import UnlearnbenchError
from ..spec import canonical_json, canonical_spec
from .matrix import Matrix

MIN_SALT = 16  # characters; held-out-hash warns below this


@dataclass(frozen=True)
class HeldOut:
    attacks: tuple[str, ...]  # canonical specs
    salt: str
    path: str

    @property
    def sha256(self) -> str:
        return held_out_sha256(self.attacks, self.salt)

    def as_matrix_entry(self) -> dict:
        return {"sha256": self.sha256, "count": len(self.attacks)}


def held_out_sha256(attacks, salt: str = "") -> str:
    """sha256 hex of the canonical JSON of ``{"attacks": [canonical specs], "salt": salt}``."""
    doc = {"attacks": [canonical_spec(a) for a in attacks], "salt": str(salt or "")}
    return hashlib.sha256(canonical_json(doc).encode("utf-8")).hexdigest()


def load_held_out(path: str | Path) -> HeldOut:
    """A held-out file (YAML or JSON: ``attacks`` list and optional ``salt``); one-line errors."""
    from ..spec import read_yaml

    path = Path(path)
    if not path.is_file():
        raise UnlearnbenchError(f"--held-out {path}: no such file")
    doc = read_yaml(path)
    attacks, salt = doc.get("attacks"), doc.get("salt", "")
    unknown = sorted(set(doc) - {"attacks", "salt"})
    if unknown:
        raise UnlearnbenchError(f"--held-out {path}: unknown key(s) {', '.join(map(str, unknown))} (attacks, salt)")
    if not isinstance(attacks, list) or not attacks or not all(isinstance(a, str) for a in attacks):
        raise UnlearnbenchError(f"--held-out {path}: 'attacks' must be a non-empty list of attack specs")
    if not isinstance(salt, str):
        raise UnlearnbenchError(f"--held-out {path}: 'salt' must be a string (quote it)")
    specs = tuple(canonical_spec(a) for a in attacks)
    if len(set(specs)) != len(specs):
        raise UnlearnbenchError(f"--held-out {path}: an attack is listed twice")
    return HeldOut(specs, salt, str(path))


def check_held_out(held: HeldOut, matrix: Matrix) -> None:
    """Raise a one-line UnlearnbenchError unless ``held`` is the grid ``matrix`` committed to."""
    if not matrix.held_out:
        raise UnlearnbenchError(f"--held-out {held.path}: matrix {matrix.name!r} declares no held-out grid")
    want = matrix.held_out
    if held.sha256 != want["sha256"] or len(held.attacks) != want["count"]:
        raise UnlearnbenchError(
            f"--held-out {held.path}: its hash {held.sha256[:16]}... ({len(held.attacks)} attacks) is not the "
            f"held-out grid matrix {matrix.name!r} commits to ({want['sha256'][:16]}..., {want['count']} attacks)"
        )
