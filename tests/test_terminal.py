"""What the terminal shows: plain timestamped lines without a TTY, a layout that fits 80 columns, an
ETA, the shared base/oracle rows in the sweep view, and --quiet silencing the libraries."""

from __future__ import annotations

import io
import logging
import re
import warnings

import pytest
from rich.console import Console

from unlearnbench.cli import render
from unlearnbench.cli.render import RichProgress, SweepView, sweep_table
from unlearnbench.runner import CellResult
from unlearnbench.sweep import SweepState, show_cell

STAMP = re.compile(r"^\[\d\d:\d\d:\d\d\] ")


def _plain_console() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=False, width=120), out


def test_without_a_terminal_tasks_are_timestamped_lines_with_position_and_eta(monkeypatch):
    console, out = _plain_console()
    monkeypatch.setattr(render, "PLAIN_EVERY", 0.0)  # say where it is at every step
    progress = RichProgress(console=console)
    assert progress.plain
    with progress:
        with progress.task("unlearn (npo)", 4) as task:
            task.advance()
            task.update(loss=0.5)
        progress.log("a note")
    lines = out.getvalue().splitlines()
    assert lines and all(STAMP.match(line) for line in lines), lines
    assert lines[0].endswith("unlearn (npo): start (4 steps)")
    assert any("unlearn (npo): 1/4 · " in line and "ETA" in line for line in lines)
    assert any(line.endswith("loss=0.5") for line in lines)
    assert re.search(r"unlearn \(npo\): done in \d+s$", lines[-2]) and lines[-1].endswith("a note")
    assert out.getvalue().endswith("\n")


def test_plain_progress_says_where_it_is_at_most_every_period():
    console, out = _plain_console()
    progress = RichProgress(console=console)  # PLAIN_EVERY = 30 s: nothing in between here
    with progress, progress.task("evaluate base", 100) as task:
        for _ in range(100):
            task.advance()
    assert len(out.getvalue().splitlines()) == 2  # start and done


def test_disabled_progress_prints_nothing():
    console, out = _plain_console()
    with RichProgress(enabled=False, console=console) as progress, progress.task("x", 3) as task:
        task.advance()
        progress.log("hidden")
    assert out.getvalue() == ""


def test_at_80_columns_the_line_drops_the_bar_and_fits():
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=80, color_system=None)
    progress = RichProgress(console=console)
    assert not any(isinstance(c, render.BarColumn) for c in progress.bar.columns)
    wide = RichProgress(console=Console(file=io.StringIO(), force_terminal=True, width=140))
    assert any(isinstance(c, render.BarColumn) for c in wide.bar.columns)
    with progress:
        with progress.task("evaluate unlearned", 24) as task:
            task.advance(6)
            task.update(loss=0.123456, lr=1e-4, note="a long field " * 6)
            progress.bar.refresh()
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out.getvalue())
    rows = [r for r in text.replace("\r", "\n").splitlines() if "evaluate unlearned" in r]
    assert rows and all(len(r) <= 80 for r in rows), rows
    assert "6/24" in rows[-1] or "24/24" in rows[-1]


def _state():
    return SweepState(["npo", "rmu"], ["finetune:arith", "relearn:forget"], [0, 1])


def test_sweep_table_shows_base_oracle_and_their_controls_and_an_eta():
    state = _state()
    attacks = iter(state.attacks)
    base = CellResult("base", "b", {"method": "base"}, "finished")
    oracle = CellResult("oracle", "o", {"method": "oracle"}, "cached")
    control = CellResult("control", "c", {"method": "oracle", "attack": "finetune:arith"}, "finished")
    for cell in (base, oracle, control):
        assert show_cell(state, "npo", 0, cell, attacks) is False
    assert state.refs == {("base", 0, "unlearn"): "finished", ("oracle", 0, "unlearn"): "cached",
                          ("oracle", 0, "finetune:arith"): "finished"}  # fmt: skip
    show_cell(state, "npo", 0, CellResult("unlearn", "u", {"method": "npo"}, "finished"), attacks)
    state.started -= 60  # one computed cell took a minute: 11 of the 12 are left
    out = io.StringIO()
    Console(file=out, width=160, color_system=None).print(sweep_table(state))
    text = out.getvalue()
    assert "ETA 11m00s" in text, text
    rows = {line.split("│")[1].strip(): line for line in text.splitlines() if line.count("│") > 2}
    assert {"base", "oracle", "npo", "rmu"} <= set(rows)
    assert "✓" in rows["base"] and "↺" in rows["oracle"]


def test_plain_sweep_view_writes_one_line_per_decided_cell():
    console, out = _plain_console()
    state = _state()
    view = SweepView(state, console=console)
    with view:
        attacks = iter(state.attacks)
        show_cell(state, "npo", 0, CellResult("base", "b", {"method": "base"}, "finished"), attacks)
        state.set("npo", 0, "unlearn", "running")
        show_cell(state, "npo", 0, CellResult("unlearn", "u", {"method": "npo"}, "finished"), attacks)
        show_cell(state, "npo", 0, CellResult("attack", "a", {"method": "npo"}, "failed", "NaN loss"), attacks)
    lines = out.getvalue().splitlines()
    assert len(lines) == 3 and all(STAMP.match(line) for line in lines), lines
    assert lines[0].endswith("base seed 0 evaluation: finished")
    assert "sweep 1/12" in lines[1] and "ETA" in lines[1] and lines[1].endswith("npo seed 0 unlearn: finished")
    assert lines[2].endswith("npo seed 0 finetune:arith: failed (NaN loss)")


def test_quiet_silences_library_warnings_and_logs_for_the_command_only(monkeypatch):
    import os

    from transformers.utils import logging as hf_logging

    from unlearnbench.cli.commands import QUIET_LOGGERS, quiet_libraries

    monkeypatch.delenv("TRANSFORMERS_NO_ADVISORY_WARNINGS", raising=False)
    levels = {name: logging.getLogger(name).level for name in QUIET_LOGGERS}
    verbosity = hf_logging.get_verbosity()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with quiet_libraries():
            warnings.warn("`past_key_values` is deprecated", FutureWarning, stacklevel=2)
            assert all(logging.getLogger(n).getEffectiveLevel() >= logging.ERROR for n in QUIET_LOGGERS)
            assert hf_logging.get_verbosity() == logging.ERROR
            assert os.environ["TRANSFORMERS_NO_ADVISORY_WARNINGS"] == "1"
        assert caught == []
        warnings.warn("after the command", FutureWarning, stacklevel=2)  # put back: this one shows
        assert len(caught) == 1
    assert {name: logging.getLogger(name).level for name in QUIET_LOGGERS} == levels
    assert hf_logging.get_verbosity() == verbosity and "TRANSFORMERS_NO_ADVISORY_WARNINGS" not in os.environ


@pytest.mark.parametrize("seconds, text", [(5, "5s"), (75, "1m15s"), (3 * 3600 + 120, "3h02m")])
def test_durations(seconds, text):
    assert render._duration(seconds) == text


def test_a_shared_cell_reused_by_the_next_method_is_not_news():
    state = _state()
    said = []
    state.listener = lambda *a: said.append(a)
    state.set_ref("oracle", 0, "unlearn", "finished")
    state.set_ref("oracle", 0, "unlearn", "cached")
    assert state.refs[("oracle", 0, "unlearn")] == "finished" and len(said) == 1
    state.set_ref("base", 1, "unlearn", "cached")  # reused from an earlier sweep: shown as such
    assert state.refs[("base", 1, "unlearn")] == "cached" and len(said) == 2
