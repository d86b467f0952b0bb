"""A tiny, fully synthetic leaderboard world for the leaderboard tests (no model is run).

``make_store`` writes base/oracle/control/unlearn/attack cells into a ResultStore exactly as the
runner keys them (same key fields, ids from ``store.cell_id``), with hand-made per-item scores (the
control cell: the attack on the oracle, whose forget recall rises as :data:`CONTROL_FORGET` says);
``make_bundle`` turns them into a bundle with the real bundle writer. A tmp ``tasks/leaderboard``
folder holds a small matrix (``UNLEARNBENCH_TASKS`` points at it). ``html_tables`` and
``empty_columns`` read the tables of a site page back (stdlib ``html.parser``, no browser).
"""

from __future__ import annotations

import json
import random
from html.parser import HTMLParser
from pathlib import Path

import yaml

from unlearnbench import __version__
from unlearnbench.store import ResultStore, ScoreRow, cell_id

MATRIX = "test-mini"
ATTACK = "finetune:arith,epochs=2"
FORMS = ("bio", "qa")
SPLITS = ("forget", "retain")
TARGET, ORACLE = "a" * 64, "b" * 64
HELD_OUT_FILE = Path(__file__).resolve().parent / "leaderboard_held_out_example.yaml"
# the oracle control's forget recall per attack epoch: (bio, qa) at epochs 0, 1, 2
CONTROL_FORGET = ((0.0, 0.0), (0.0, 0.25), (0.5, 0.25))
# the attacked model's retain recall on bio and its accuracy on the attack's task (arith, also the
# utility task) at epochs 0, 1, 2 (unlearned: 1.0 and 0.5)
RETAIN_BIO = (1.0, 0.75, 0.5)
ATTACK_FA = (0.5, 0.25, 0.75)


def write_matrix(tasks: Path, seeds=(0, 1), harness=(__version__,), held_out: dict | None = None) -> Path:
    folder = tasks / "leaderboard"
    folder.mkdir(parents=True, exist_ok=True)
    doc = {
        "name": MATRIX,
        "description": "test matrix.",
        "benchmark": "toy,size=micro",
        "attacks": [ATTACK],
        "seeds": list(seeds),
        "probes": list(FORMS),
        "versions": {
            "harness": list(harness),
            "benchmark": {"toy": ["1"]},
            "attacks": {"finetune": ["1"]},
            "probes": {f: ["1"] for f in FORMS},
        },
        "controls": ["oracle"],
        "tolerance": {"recall": 0.1, "task_accuracy": 0.1, "forget_quality": 0.15, "recovery": 0.15},
        "headline": {"utility_split": "retain", "utility_forms": list(FORMS)},
    }
    if held_out is not None:
        doc["held_out"] = held_out
    (folder / f"{MATRIX}.yaml").write_text(yaml.safe_dump(doc))
    return folder / f"{MATRIX}.yaml"


#: Forget/retain items per form in the fake bundles (>= the headline's MIN_ITEMS; a multiple of 4).
ITEMS = 16


class Cell:
    def __init__(self, cid: str, kind: str):
        self.cell_id, self.kind, self.status = cid, kind, "finished"


def _rows(checkpoint: str, step: int, recall: dict[tuple[str, str], float], rng: random.Random, fa: float | None):
    rows = []
    for (split, form), p in recall.items():
        # p is rounded to quarters (the hand-computed numbers of the tests are in quarters), then spread
        # over ITEMS items: enough for a form to enter the headline (unlearnbench.headline)
        right = round(p * 4) * ITEMS // 4
        for i in range(ITEMS):
            correct = 1.0 if i < right else 0.0
            rows.append(ScoreRow(checkpoint, step, split, form, f"{split}-{form}-{i}", "correct", correct))
            rows.append(ScoreRow(checkpoint, step, split, form, f"{split}-{form}-{i}", "prob", rng.random()))
    if fa is not None:
        rows += [
            ScoreRow(checkpoint, step, "task", "arith", f"t{i}", "correct", 1.0 if i < fa * 4 else 0.0)
            for i in range(4)
        ]
    return rows


def make_store(
    path: Path,
    method: str = "npo",
    strength: float = 0.25,
    seeds=(0, 1),
    harness: str = __version__,
    attack_version: str = "1",
) -> tuple[ResultStore, list[Cell]]:
    """Cells keyed like the runner's; ``strength`` sets the unlearned forget recall."""
    store = ResultStore(path)
    run_id = store.start_run(["test"], {})
    rng = random.Random(0)
    cells = []
    bench = {"name": "toy", "arg": None, "version": "1", "config": {"seed": 0, "size": "micro"}}
    probes = [{"name": f, "arg": None, "version": "1", "config": {}} for f in FORMS]
    for seed in seeds:
        common = {"harness": harness, "benchmark": bench, "seed": seed, "probes": probes}
        label = {"model": "toy-micro-s0", "probe_suite": ",".join(FORMS), "seed": seed}
        full = {(s, f): 1.0 for s in SPLITS for f in FORMS}
        for kind, sha, rec in (
            ("base", TARGET, full),
            ("oracle", ORACLE, {**full, ("forget", "bio"): 0.0, ("forget", "qa"): 0.0}),
        ):
            key = {
                **common,
                "kind": kind,
                "model": {"name": "toy-micro-s0" + ("-oracle" if kind == "oracle" else ""), "sha256": sha},
            }
            cid = cell_id(key)
            store.commit_cell(run_id, cid, key, kind, {**label, "method": kind}, _rows(kind, -1, rec, rng, 0.5))
            cells.append(Cell(cid, kind))
        aconf = {"epochs": 2, "lr": 0.001, "seed": seed}
        attack_key = {"name": "finetune", "arg": "arith", "version": attack_version, "config": aconf}
        task_key = {"name": "arith", "arg": None, "version": "1", "config": {}}
        ckey = {
            **common,
            "kind": "control",
            "control": "oracle",
            "model": {"name": "toy-micro-s0-oracle", "sha256": ORACLE},
            "attack": attack_key,
            "task": task_key,
        }
        crows = []
        for ep, (bio, qa) in enumerate(CONTROL_FORGET):
            crows += _rows(f"epoch={ep}", ep, {**full, ("forget", "bio"): bio, ("forget", "qa"): qa}, rng, 0.25)
        ccid = cell_id(ckey)
        store.commit_cell(
            run_id,
            ccid,
            ckey,
            "control",
            {**label, "method": "oracle", "attack": ATTACK, "attack_config": aconf},
            crows,
            {"seconds": 1.0, "stats": {"steps": 6}},
        )
        cells.append(Cell(ccid, "control"))
        mconf = {"lr": 0.001, "seed": seed, "trust_remote_code": False}
        ukey = {
            **common,
            "kind": "unlearn",
            "model": {"name": "toy-micro-s0", "sha256": TARGET},
            "method": {"name": method, "arg": None, "version": "1", "config": mconf},
        }
        ucid = cell_id(ukey)
        ulabel = {**label, "method": method, "method_config": mconf}
        unlearned = {**full, ("forget", "bio"): strength, ("forget", "qa"): strength / 2 + 0.25 * seed}
        store.commit_cell(
            run_id,
            ucid,
            ukey,
            "unlearn",
            ulabel,
            _rows("unlearned", 0, unlearned, rng, 0.5),
            {"checkpoint_sha256": f"{seed:x}" * 64, "stats": {"steps": 3}},
        )
        cells.append(Cell(ucid, "unlearn"))
        akey = {**ukey, "kind": "attack", "unlearn_cell": ucid, "attack": attack_key, "task": task_key}
        acid = cell_id(akey)
        rows = []
        for ep in range(3):
            moved = {("forget", "bio"): min(1.0, strength + 0.25 * ep), ("retain", "bio"): RETAIN_BIO[ep]}
            rows += _rows(f"epoch={ep}", ep, {**unlearned, **moved}, rng, ATTACK_FA[ep])
        store.commit_cell(
            run_id,
            acid,
            akey,
            "attack",
            {**ulabel, "attack": ATTACK, "attack_config": aconf},
            rows,
            {"seconds": 1.0, "stats": {"steps": 6}},
        )
        cells.append(Cell(acid, "attack"))
    return store, cells


def make_bundle(tmp: Path, out: Path, method: str = "npo", **kwargs) -> dict:
    """Write a bundle for the synthetic cells (tasks folder must already hold the matrix)."""
    from unlearnbench.leaderboard.matrix import load_matrix
    from unlearnbench.leaderboard.submit import write_bundle

    store, cells = make_store(tmp / f"store-{method}-{out.name}.sqlite", method=method, **kwargs)
    with store:
        return write_bundle(out, store, cells, load_matrix(MATRIX), method)


def read_manifest(folder: Path) -> dict:
    from unlearnbench.leaderboard import bundle as B

    return json.loads((folder / B.MANIFEST).read_text())


def save_manifest(folder: Path, manifest: dict) -> None:
    from unlearnbench.leaderboard import bundle as B

    (folder / B.MANIFEST).write_text(json.dumps(manifest, indent=1))


def refusal_reasons(folder: Path) -> list[str]:
    """``verify``'s reasons for a bundle that must be refused (asserts it is)."""
    from unlearnbench.leaderboard.verify import verify

    v = verify(folder)
    assert not v.accepted
    return v.reasons


class _Tables(HTMLParser):
    """The text of every table cell, per table (``id``, header row, body rows); text inside an
    inline ``<svg>``, ``<script>`` or ``<style>`` is skipped."""

    def __init__(self):
        super().__init__()
        self.tables: list[tuple[str | None, list[str], list[list[str]]]] = []
        self.cell: list[str] | None = None
        self.row: list[str] | None = None
        self.in_head = False
        self.hidden = 0

    def handle_starttag(self, tag, attrs):
        if tag == "table":
            self.tables.append((dict(attrs).get("id"), [], []))
        elif tag == "thead":
            self.in_head = True
        elif tag == "tr" and self.tables:
            self.row = []
        elif tag in ("td", "th") and self.row is not None:
            self.cell = []
        elif tag in ("svg", "script", "style"):
            self.hidden += 1

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self.cell is not None:
            self.row.append(" ".join("".join(self.cell).split()))
            self.cell = None
        elif tag == "tr" and self.row is not None:
            _tid, head, body = self.tables[-1]
            head.extend(self.row) if self.in_head else body.append(self.row)
            self.row = None
        elif tag == "thead":
            self.in_head = False
        elif tag in ("svg", "script", "style"):
            self.hidden -= 1

    def handle_data(self, data):
        if self.cell is not None and not self.hidden:
            self.cell.append(data)


def html_tables(text: str) -> list[tuple[str | None, list[str], list[list[str]]]]:
    """(id, header cells, body rows of cell texts) of every table of an HTML page (a table without
    ``<thead>`` has no header cells)."""
    parser = _Tables()
    parser.feed(text)
    return parser.tables


EMPTY = ("", "n/a", "–")


def empty_columns(text: str) -> list[str]:
    """'table id: column header' of every table column of a page with no number or text in any
    body row (each cell empty, 'n/a' or '–'), and 'table id: no rows' of a table without any."""
    out = []
    for tid, head, body in html_tables(text):
        if not body:
            out.append(f"{tid}: no rows")
            continue
        for j in range(max(len(head), *(len(r) for r in body))):
            if all((r[j] if j < len(r) else "") in EMPTY for r in body):
                out.append(f"{tid}: {head[j] if j < len(head) else j}")
    return out
