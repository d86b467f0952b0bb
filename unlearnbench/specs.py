"""Locating and reading the declarative YAML specs under ``tasks/``."""

from __future__ import annotations

import os
from pathlib import Path

from .errors import UnlearnbenchError


def tasks_dir() -> Path:
    """``$UNLEARNBENCH_TASKS``, else the ``tasks/`` folder beside the package (a source checkout)."""
    env = os.environ.get("UNLEARNBENCH_TASKS")
    path = Path(env) if env else Path(__file__).resolve().parent.parent / "tasks"
    if not path.is_dir():
        raise UnlearnbenchError(f"task specs folder not found at {path}; install unlearnbench from a source "
                                "checkout (pip install -e .) or set UNLEARNBENCH_TASKS")
    return path


def load_yaml(relative: str) -> dict:
    """A spec under ``tasks/`` (a mapping at top level)."""
    path = tasks_dir() / relative
    if not path.is_file():
        raise UnlearnbenchError(f"spec file not found: {path}")
    return read_yaml(path)


def read_yaml(path: Path) -> dict:
    """A YAML file that must hold a mapping; errors are one line naming the file."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise UnlearnbenchError(f"{path} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise UnlearnbenchError(f"{path} must hold a mapping at top level")
    return data
