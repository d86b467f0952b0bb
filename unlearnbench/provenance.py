"""Which harness code computed something: its version and, from a git checkout, the commit.

Used wherever a result records where it came from (leaderboard bundles, shipped embedded weights).
No torch at import time.
"""

from __future__ import annotations

import subprocess
from pathlib import Path


def harness_provenance() -> dict:
    """Harness version, and the git commit (with a dirty flag) when running from a git checkout."""
    from . import __version__

    root = Path(__file__).resolve().parents[1]
    out = {"version": __version__, "git_commit": None, "git_dirty": None}
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
        if commit.returncode == 0 and commit.stdout.strip():
            out["git_commit"] = commit.stdout.strip()
            status = subprocess.run(
                ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                capture_output=True,
                text=True,
                timeout=10,
            )
            out["git_dirty"] = bool(status.stdout.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    return out
