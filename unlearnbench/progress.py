"""Progress reporting without printing from the library.

The library calls ``progress.task(description, total)`` and ``advance()``/``update(**fields)`` on
what it returns; the CLI passes a Rich-backed implementation, tests and library users get the
silent default. Log lines (``progress.log``) go the same way. The runner says which cell it is
about to compute (``begin_cell``), so a tracker can name the per-step numbers that follow.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator


class TaskHandle:
    def advance(self, n: int = 1) -> None:
        pass

    def update(self, **fields) -> None:
        pass


class Progress:
    """Silent progress: the default when the library is used from Python."""

    @contextmanager
    def task(self, description: str, total: int | None) -> Iterator[TaskHandle]:
        yield TaskHandle()

    def log(self, message: str) -> None:
        pass

    def begin_cell(self, kind: str, label: dict) -> None:
        """The runner is about to compute a cell (``kind``: base, oracle, control, unlearn or attack;
        ``label``: its labels: method, attack, seed, ...). Cells reused from the store are not begun."""


SILENT = Progress()
