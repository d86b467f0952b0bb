"""Progress reporting without printing from the library.

The library calls ``progress.task(description, total)`` and ``advance()``/``update(**fields)`` on
what it returns; the CLI passes a Rich-backed implementation, tests and library users get the
silent default. Log lines (``progress.log``) go the same way.
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


SILENT = Progress()
