"""Terminal rendering for the CLI (Rich): progress bars and the live sweep matrix on stderr, result
tables on stdout. Imported only by the command handlers (Rich is not needed for ``--help``)."""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.progress import Progress as _RichProgress
from rich.table import Column, Table

from ..progress import Progress, TaskHandle

_err = Console(stderr=True)


#: Below this many columns the progress line drops its bar (the bars collapsed to nothing at 80).
NARROW = 100
#: Without a terminal, a running task says where it is at most this often (seconds).
PLAIN_EVERY = 30.0


def _stamp() -> str:
    return time.strftime("%H:%M:%S")


def _fields_text(fields: dict) -> str:
    return " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in fields.items())


def _duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class _RichHandle(TaskHandle):
    def __init__(self, bar: _RichProgress, task_id):
        self.bar, self.task_id = bar, task_id

    def advance(self, n: int = 1) -> None:
        self.bar.advance(self.task_id, n)

    def update(self, **fields) -> None:
        self.bar.update(self.task_id, info=_fields_text(fields))


class _PlainHandle(TaskHandle):
    """A task as timestamped lines (stderr is not a terminal: a log file, CI, ``nohup``)."""

    def __init__(self, owner: "RichProgress", description: str, total: int | None):
        self.owner, self.description, self.total = owner, description, total
        self.done, self.fields = 0, ""
        self.started = self.last = time.time()

    def advance(self, n: int = 1) -> None:
        self.done += n
        self._maybe_say()

    def update(self, **fields) -> None:
        self.fields = _fields_text(fields)
        self._maybe_say()

    def _maybe_say(self) -> None:
        now = time.time()
        if now - self.last >= PLAIN_EVERY:
            self.last = now
            self.owner.log(f"{self.description}: {self._where(now)}")

    def _where(self, now: float) -> str:
        elapsed = now - self.started
        parts = [f"{self.done}/{self.total}" if self.total else f"{self.done}", f"{_duration(elapsed)}"]
        if self.total and 0 < self.done < self.total:
            parts.append(f"ETA {_duration(elapsed / self.done * (self.total - self.done))}")
        return " · ".join(parts) + (f" · {self.fields}" if self.fields else "")


class RichProgress(Progress):
    """Progress on stderr: Rich bars on a terminal (without the bar below :data:`NARROW` columns),
    plain timestamped lines otherwise (a start line, one every :data:`PLAIN_EVERY` seconds with
    the position and ETA, a done line with the time taken). ``drop_finished``: remove a task's bar
    when it ends (the sweep view, which must stay one screen high) instead of leaving it completed."""

    def __init__(self, enabled: bool = True, drop_finished: bool = False, console: Console | None = None):
        self.enabled = enabled
        self.drop_finished = drop_finished
        self.console = console or _err
        self.plain = not self.console.is_terminal
        narrow = self.console.width < NARROW
        columns = [TextColumn("[bold]{task.description}", table_column=Column(ratio=2 if narrow else None))]
        if not narrow:
            columns.append(BarColumn(bar_width=24))
        columns += [
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[info]}", table_column=Column(no_wrap=True, overflow="ellipsis", ratio=1)),
        ]
        self.bar = _RichProgress(
            *columns, console=self.console, disable=not enabled or self.plain, transient=False, expand=narrow
        )

    def __enter__(self):
        self.bar.__enter__()
        return self

    def __exit__(self, *exc):
        return self.bar.__exit__(*exc)

    @contextmanager
    def task(self, description: str, total: int | None) -> Iterator[TaskHandle]:
        if self.plain:
            handle = _PlainHandle(self, description, total)
            if self.enabled:
                self.log(f"{description}: start" + (f" ({total} steps)" if total else ""))
            try:
                yield handle
            finally:
                if self.enabled:
                    self.log(f"{description}: done in {_duration(time.time() - handle.started)}")
            return
        task_id = self.bar.add_task(description, total=total, info="")
        try:
            yield _RichHandle(self.bar, task_id)
        finally:
            if self.drop_finished:
                self.bar.remove_task(task_id)
            else:
                self.bar.update(task_id, completed=total if total is not None else 1)

    def log(self, message: str) -> None:
        if not self.enabled:
            return
        if self.plain:
            print(f"[{_stamp()}] {message}", file=self.console.file, flush=True)
        else:
            self.bar.console.print(message)


def _fmt(v) -> str:
    return "–" if v is None else f"{v:.2f}"


def _interval(ci) -> str:
    return "–" if not ci or ci[0] is None else f"{ci[0]:.2f}–{ci[1]:.2f}"


def _stdout_console(width: int) -> Console:
    """A console for tables; when piped, wide enough not to squeeze them into 80 columns."""
    console = Console()
    return console if console.is_terminal else Console(width=max(100, width))


def render_run(summary: dict, console: Console | None = None) -> None:
    cols = [c["column"] for c in summary["columns"]]
    console = console or _stdout_console(30 + 16 * len(cols))
    recall, fa, fq = summary["recall"], summary["task_accuracy"], summary["forget_quality"]
    for c in summary["cells"]:
        if c["status"] == "failed":
            console.print(
                f"[red]failed[/red] {c['kind']} {c['label'].get('method')} "
                f"{c['label'].get('attack') or ''}: {c['reason']}"
            )
    if not cols:
        return
    table = Table(title="Recall per form (em for free-text forms, accuracy for MCQ/TF)", show_lines=False)
    table.add_column("split")
    table.add_column("form")
    for col in cols:
        table.add_column(col.replace(" ", "\n"), justify="right")
    splits = []
    for col in cols:
        for s in recall.get(col, {}):
            if s not in splits:
                splits.append(s)
    for split in splits:
        forms = []
        for col in cols:
            for f in recall.get(col, {}).get(split, {}):
                if f not in forms:
                    forms.append(f)
        for i, form in enumerate(forms):
            table.add_row(
                split if i == 0 else "",
                form,
                *[_fmt(recall.get(col, {}).get(split, {}).get(form)) for col in cols],
                end_section=(i == len(forms) - 1),
            )
    tasks = sorted({t for col in cols for t in fa.get(col, {})})
    for i, t in enumerate(tasks):
        table.add_row(
            "FA" if i == 0 else "",
            t,
            *[_fmt(fa.get(col, {}).get(t)) for col in cols],
            end_section=(i == len(tasks) - 1),
        )
    if fq:  # the headline (unlearnbench.headline): its 95% interval over items and the items behind it
        table.add_row("forget quality", "headline", *[_fmt(fq.get(col, {}).get("mean")) for col in cols])
        table.add_row("", "95% CI (items)", *[_interval(fq.get(col, {}).get("ci")) for col in cols])
        table.add_row("", "n items", *[str(fq[col]["n"]) if col in fq else "–" for col in cols])
    rob = summary.get("robustness") or {}
    if rob:  # under attack: against the oracle attacked the same way, and the share of removed recall back
        table.add_row(
            "FQ vs attacked oracle",
            "headline",
            *[_fmt(rob.get(c, {}).get("forget_quality_attacked_oracle", {}).get("mean")) for c in cols],
        )
        table.add_row("recovery", "headline", *[_fmt(rob.get(c, {}).get("recovery", {}).get("mean")) for c in cols])
    pl = summary.get("privleak") or {}
    if pl:  # MUSE: (AUC - AUC_retrain) / AUC_retrain x 100; ~0 ideal, negative = still memorised
        table.add_row(
            "PrivLeak %",
            "min-k 40%",
            *["–" if pl.get(c, {}).get("privleak") is None else f"{pl[c]['privleak']:+.1f}" for c in cols],
        )
    dist = summary.get("distance") or {}
    for split in ("forget", "neighbour", "retain"):
        if any("js.js" in dist.get(c, {}).get(split, {}) for c in cols):  # nats, 0 = the oracle's distributions
            table.add_row("JS to oracle", split, *[_fmt(dist.get(c, {}).get(split, {}).get("js.js")) for c in cols])
    wm = summary.get("wmdp") or {}
    if wm:  # WMDP: forget quality = 1 - accuracy on the WMDP questions (0.75 at chance)
        table.add_row("1 - acc", "wmdp", *[_fmt(wm.get(c, {}).get("forget", {}).get("forget_quality")) for c in cols])
        subsets = sorted(
            {
                k[len("forget_quality_") :]
                for c in cols
                for k in wm.get(c, {}).get("forget", {})
                if k.startswith("forget_quality_")
            }
        )
        for sub in subsets:  # per subset: the ILU paper's headline is WMDP-Bio
            table.add_row(
                "1 - acc",
                f"wmdp {sub}",
                *[_fmt(wm.get(c, {}).get("forget", {}).get(f"forget_quality_{sub}")) for c in cols],
            )
    if recall or fa:
        console.print(table)
        first = next((fq[c] for c in cols if c in fq), None)
        if first:  # the rule's outcome (the same forms at every column: it is decided by base and oracle)
            forms = ", ".join(f"{f} ({n})" for f, n in first["forms"].items()) or "none"
            left = "; ".join(f"{f}: {why}" for f, why in first["left_out"].items())
            console.print(f"forget quality headline: forms (items) {forms}" + (f"; left out: {left}" if left else ""))
    if summary.get("tofu"):
        console.print(tofu_table(summary["tofu"], cols))
    if summary.get("worst_case"):
        console.print(worst_case_table(summary["worst_case"]))
    for note in summary.get("notes") or []:
        console.print(f"note: {note}")
    cached = sum(c["status"] == "cached" for c in summary["cells"])
    if cached:
        console.print(f"{cached} cell(s) reused from the store.")


def worst_case_table(worst: dict) -> Table:
    """Per attack: the last checkpoint's numbers and the worst over the curve (with its step)."""
    table = Table(title="Under attack: last checkpoint and worst case over the curve (step)")
    for name in ("attack", "FQ last", "FQ worst", "FQ vs attacked oracle last", "worst", "recovery last", "max"):
        table.add_column(name, justify="left" if name == "attack" else "right")

    def at(point):
        return "–" if not point else f"{_fmt(point['value'])} @{point['step']}"

    for attack, w in worst.items():
        last = w["last"]
        table.add_row(
            attack,
            _fmt(last["forget_quality"]),
            at(w["min_forget_quality"]),
            _fmt(last["forget_quality_attacked_oracle"]),
            at(w["min_forget_quality_attacked_oracle"]),
            _fmt(last["recovery"]),
            at(w["max_recovery"]),
        )
    return table


def tofu_table(tofu: dict, cols: list[str]) -> Table:
    """TOFU's numbers per column: split means of prob, ROUGE-L recall, truth ratio (raw R and TOFU's
    statistic), forget quality (KS p-value, often tiny: scientific notation) and model utility."""

    def fmt(v):
        return "–" if v is None else (f"{v:.2e}" if 0 < abs(v) < 0.01 else f"{v:.3f}")

    table = Table(title="TOFU (split means; forget_quality_ks: KS p-value vs the retain model)")
    table.add_column("split")
    table.add_column("metric")
    for col in cols:
        table.add_column(col.replace(" ", "\n"), justify="right")
    rows: dict[str, list[str]] = {}
    for col in cols:
        for split, metrics in tofu.get(col, {}).items():
            for m in metrics:
                if m not in rows.setdefault(split, []):
                    rows[split].append(m)
    for split, metrics in rows.items():
        for i, m in enumerate(metrics):
            table.add_row(
                split if i == 0 else "",
                m,
                *[fmt(tofu.get(col, {}).get(split, {}).get(m)) for col in cols],
                end_section=(i == len(metrics) - 1),
            )
    return table


def render_regress(diffs, baseline: dict, console: Console | None = None) -> None:
    """The regression verdict: one row per number outside tolerance (or missing on one side)."""
    console = console or _stdout_console(130)
    n = sum(
        len(where)
        for cols in baseline.get("numbers", {}).values()
        for col in cols.values()
        for metric, where in col.items()
        if metric in baseline["tolerance"]  # the worst case's steps are kept for the reader, not compared
    )
    if not diffs:
        console.print(f"[green]no regression[/green]: {n} numbers within tolerance {baseline['tolerance']}")
        return
    table = Table(title=f"{len(diffs)} of {n} numbers outside tolerance")
    for name in ("method", "column", "metric", "where", "baseline", "measured", "delta", "tolerance"):
        table.add_column(name, justify="right" if name in ("baseline", "measured", "delta", "tolerance") else "left")
    for d in diffs:
        delta = "new/missing" if d.delta is None else f"{d.delta:+.3f}"
        table.add_row(
            d.method, d.column, d.metric, d.where, _fmt(d.baseline), _fmt(d.measured), delta, f"{d.tolerance:g}"
        )
    console.print(table)


def render_world_build(records: list[dict], console: Console | None = None) -> None:
    """``world build``: per role, the lowest gated recall, the hash and whether it is the shipped one."""
    console = console or _stdout_console(130)
    table = Table(title="embedded models rebuilt from the recipe (quality gate passed)")
    for name in ("role", "folder", "min gated recall", "sha256", "shipped sha256", "same", "train s"):
        table.add_column(name, justify="right" if name in ("min gated recall", "train s") else "left")
    for r in records:
        same = {True: "[green]yes[/green]", False: "[yellow]no[/yellow]", None: "-"}[r["matches_shipped"]]
        shipped = (r["shipped_sha256"] or "none of this key")[:16]
        table.add_row(
            r["role"], r["folder"], _fmt(r["min_gated_recall"]), r["sha256"][:16], shipped, same, f"{r['seconds']:.0f}"
        )
    console.print(table)
    if any(r["matches_shipped"] is False for r in records):
        m = records[0]["machine"]
        console.print(
            f"this machine ({m['cpu']}, {m['cpu_capability']}, torch {m['torch']}) trains other bytes than the "
            "shipped ones: float sums follow the CPU's kernels. Runs keep using the shipped weights."
        )
    if any(r["shipped_now"] for r in records):
        console.print("copied into unlearnbench/toy/weights/ (manifest updated): commit them")


# -- sweeps ----------------------------------------------------------------------------------------

_SYMBOL = {
    "pending": "[dim]·[/dim]",
    "running": "[yellow]▶[/yellow]",
    "finished": "[green]✓[/green]",
    "cached": "[cyan]↺[/cyan]",
    "failed": "[red]✗[/red]",
    "skipped": "[red]-[/red]",
}


def sweep_table(state) -> Table:
    """The matrix: the shared base/oracle rows (their evaluation, then their control cells), then one row
    per method; one column per unlearn/attack, one symbol per seed."""
    counts = state.counts()
    done = sum(counts.get(k, 0) for k in ("finished", "cached", "failed", "skipped"))
    eta = state.eta()
    table = Table(
        title=f"sweep: {done}/{len(state.status)} cells · {_duration(time.time() - state.started)}"
        + (f" · ETA {_duration(eta)}" if eta is not None else "")
        + " · ✓ done ↺ reused ✗ failed ▶ running · one symbol per seed "
        f"({','.join(map(str, state.seeds))})",
        title_justify="left",
    )
    table.add_column("method")
    for c in state.columns:
        table.add_column(c, justify="center")
    for row in ("base", "oracle"):
        if any(r == row for r, _s, _c in state.refs):
            symbols = [
                "".join(_SYMBOL[state.refs[(row, s, c)]] for s in state.seeds if (row, s, c) in state.refs)
                for c in state.columns
            ]
            table.add_row(f"[dim]{row}[/dim]", *symbols)
    for m in state.methods:
        table.add_row(m, *["".join(_SYMBOL[state.status[(m, s, c)]] for s in state.seeds) for c in state.columns])
    return table


class SweepView(RichProgress):
    """Progress bars under a live matrix of the sweep (one Rich Live display for both). Without a
    terminal: one timestamped line per decided cell (with the count and ETA) and the plain progress
    lines of :class:`RichProgress`."""

    def __init__(self, state, enabled: bool = True, console: Console | None = None):
        super().__init__(enabled, drop_finished=True, console=console)
        self.state = state
        self._live = None
        if self.plain and enabled:
            state.listener = self._say

    def _say(self, row, seed, column, status, reason="") -> None:
        if status in ("pending", "running"):
            return
        counts = self.state.counts()
        done = sum(counts.get(k, 0) for k in ("finished", "cached", "failed", "skipped"))
        eta = self.state.eta()
        what = "evaluation" if column == "unlearn" and row in ("base", "oracle") else column
        where = f"sweep {done}/{len(self.state.status)}" + (f" · ETA {_duration(eta)}" if eta is not None else "")
        self.log(f"{where} · {row} seed {seed} {what}: {status}" + (f" ({reason})" if reason else ""))

    def __rich__(self):
        from rich.console import Group

        return Group(sweep_table(self.state), self.bar.get_renderable())

    def __enter__(self):
        if self.enabled and not self.plain:
            from rich.live import Live

            self._live = Live(self, console=self.console, refresh_per_second=4, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc):
        if self._live is not None:
            self._live.__exit__(*exc)
        return False


def _seed_table(title: str, rows: dict, cols: list[str]) -> Table:
    """method x column of ``{"mean", "std"}`` over seeds, '–' where nothing was measured."""
    table = Table(title=title)
    table.add_column("method")
    for c in cols:
        table.add_column(c, justify="right")
    for method, row in rows.items():
        cells = []
        for c in cols:
            v = row.get(c)
            if not v or v["mean"] is None:
                cells.append("–")
            else:
                cells.append(f"{v['mean']:.2f}" + (f" ± {v['std']:.2f}" if v["std"] is not None else ""))
        table.add_row(method, *cells)
    return table


def render_sweep(summary: dict, console: Console | None = None) -> None:
    """Forget quality per method x column (mean ± std over seeds), then failed cells with reasons."""
    cols = ["unlearned", *summary["attacks"]]
    console = console or _stdout_console(30 + 18 * len(cols))
    console.print(
        _seed_table(
            f"forget quality (mean ± std over seeds {summary['seeds']}; 1 = like the retrained oracle)",
            summary["forget_quality"],
            cols,
        )
    )
    under = summary.get("under_attack") or {}
    for measure, title in (
        ("min_forget_quality_attacked_oracle", "worst forget quality against the attacked oracle over each curve"),
        ("max_recovery", "highest recovery (share of the removed recall that came back) over each curve"),
    ):
        if under.get(measure):
            console.print(_seed_table(f"{title} (mean ± std over seeds)", under[measure], summary["attacks"]))
    worst = summary.get("worst_attacker") or {}
    if len(summary["attacks"]) > 1 and worst:
        t = Table(title="the strongest attack per method (worst case over each curve, mean over seeds)")
        for name in (
            "method",
            "lowest forget quality: attack",
            "FQ",
            "against",
            "highest recovery: attack",
            "recovery",
        ):
            t.add_column(name, justify="right" if name in ("FQ", "recovery") else "left")
        for method, w in worst.items():
            fq, rec = w.get("forget_quality") or {}, w.get("recovery") or {}
            t.add_row(
                method,
                fq.get("attack", "–"),
                _fmt(fq.get("mean")),
                w["against"],
                rec.get("attack", "–"),
                _fmt(rec.get("mean")),
            )
        console.print(t)
    for f in summary["failed"]:
        console.print(
            f"[red]failed[/red] {f['kind']} {f['method']} {f['attack'] or ''} seed {f['seed']}: {f['reason']}"
        )
    counts = summary["counts"]
    console.print(
        f"{counts.get('finished', 0)} cell(s) run, {counts.get('cached', 0)} reused, "
        f"{counts.get('failed', 0) + counts.get('skipped', 0)} failed, in {summary['seconds']}s."
    )


def render_taskvec(summary: list[dict], console: Console | None = None) -> None:
    console = console or _stdout_console(110)
    table = Table(title="task vectors: cos(τ_u→ft, τ_u) < 0 means the attack moves back along the unlearning direction")
    for name in ("method", "attack", "seeds", "cos(τ_u→ft, τ_u)", "cos(τ_u→ft, τ_ft)", "cos(τ_u, τ_ft)"):
        table.add_column(name, justify="left" if name in ("method", "attack") else "right")

    def cell(row, k):
        v, sd = row[k], row[k + "_std"]
        return "–" if v is None else f"{v:+.3f}" + (f" ± {sd:.3f}" if sd is not None else "")

    for r in summary:
        table.add_row(
            r["method"],
            r["attack"],
            ",".join(map(str, r["seeds"])),
            cell(r, "cos_uft_u"),
            cell(r, "cos_uft_ft"),
            cell(r, "cos_u_ft"),
        )
    console.print(table)


def render_study(study) -> None:
    """A finished :class:`unlearnbench.study.StudyRun`: the sweep's table, each expected finding with
    its verdict and numbers, and the files written. Findings are printed as plain text (their
    ``[holds]`` marks are not Rich markup)."""
    render_sweep(study.summary)
    mark = {True: "[holds]", False: "[does NOT hold]", None: "[not measured]"}
    for i, f in enumerate(study.findings, 1):
        print(f"{i}. {mark[f.holds]} {f.claim}\n   {f.detail}")
    print(
        f"wrote {study.files[0]}, {study.files[1]} and {len(study.report_files)} report files to {study.report_dir}/ "
        f"({study.sweep.seconds:.0f} s)"
    )


def render_weightspace(doc: dict, console: Console | None = None) -> None:
    """An ``analyze weightspace`` result: distances and barriers per cell, relative distance per
    layer, the interpolation path, and the correlations with the worst-case recovery."""
    rows = doc["rows"]
    console = console or _stdout_console(40 + 24 * len(rows))
    seeds = {r["seed"] for r in rows}
    names = [r["method"] + (f" s{r['seed']}" if len(seeds) > 1 else "") for r in rows]

    def num(v, spec=".3f") -> str:
        return "–" if v is None or v != v else format(v, spec)

    t = Table(title=f"weight space: θ_u − θ_o (original), θ_u − θ_r (oracle); {doc['benchmark']}")
    heads = ("method", "‖θ_u−θ_o‖", "relative", "‖θ_u−θ_r‖", "÷ ‖θ_o−θ_r‖", "barrier forget", "barrier retain")
    for name in (*heads, f"worst recovery ({doc['attack']})"):
        t.add_column(name, justify="left" if name == "method" else "right")
    for name, r in zip(names, rows):
        t.add_row(
            name,
            num(r["l2"]),
            num(r["relative"], ".4f"),
            num(r["oracle_l2"]),
            num(r["oracle_ratio"], ".4f"),
            num(r["barrier_forget"], ".4f"),
            num(r["barrier_retain"], ".4f"),
            num(r["worst_recovery"]),
        )
    console.print(t)

    t = Table(title="relative distance ‖θ_u−θ_o‖ / ‖θ_o‖ per layer")
    t.add_column("group")
    for name in names:
        t.add_column(name, justify="right")
    groups = list(dict.fromkeys(g["group"] for r in rows for g in r["per_layer"]))
    for g in groups:
        cells = [next((x["relative"] for x in r["per_layer"] if x["group"] == g), None) for r in rows]
        t.add_row(g, *(num(v, ".4f") for v in cells))
    console.print(t)

    t = Table(title=f"θ_o + α (θ_u − θ_o): {doc['probe']} recall forget/retain, NLL forget/retain")
    t.add_column("α", justify="right")
    for name in names:
        t.add_column(f"{name} recall", justify="right")
        t.add_column(f"{name} NLL", justify="right")
    for i, a in enumerate(doc["alphas"]):
        cells = []
        for r in rows:
            p = r["lmc"][i]
            cells += [
                f"{num(p['forget_recall'], '.2f')}/{num(p['retain_recall'], '.2f')}",
                f"{num(p['forget_loss'], '.2f')}/{num(p['retain_loss'], '.2f')}",
            ]
        t.add_row(f"{a:g}", *cells)
    console.print(t)

    t = Table(title="correlation with the worst-case recovery across cells")
    for name in ("figure", "n", "spearman (p)", "pearson (p)"):
        t.add_column(name, justify="left" if name == "figure" else "right")
    for c in doc["correlations"]:
        if c["note"]:
            t.add_row(c["figure"], str(c["n"]), c["note"], c["note"])
        else:
            t.add_row(
                c["figure"],
                str(c["n"]),
                f"{c['spearman']:+.2f} ({c['spearman_p']:.2g})",
                f"{c['pearson']:+.2f} ({c['pearson_p']:.2g})",
            )
    console.print(t)
    ps = {c["p_method"] for c in doc["correlations"] if c["p_method"]}
    console.print(f"p-values: {', '.join(sorted(ps)) or '–'}; {len(rows)} cell(s) in {doc['seconds']} s.")
