"""``unlearnbench leaderboard verify``: accept or refuse a submission bundle, saying why.

Checks, in order (a bundle failing a file check is not read further):

1. files: only ``manifest.json``, ``scores.csv.gz`` and an optional ``README.md``, each a regular
   file within its size limit (:class:`~unlearnbench.leaderboard.bundle.Limits`); pickled weights
   (``*.bin``, ``*.pt``, ``*.pth``, ``*.pkl``, ..., or pickle/zip magic bytes), executable code
   (``*.py``, ``*.sh``, shared objects, executable bits, ``#!``) and links are refused by name;
   sub-folders are refused without being entered;
2. the manifest: its JSON nesting depth (checked on the raw text, before parsing), its format (a
   format 1 bundle is refused with one line naming the format), then against
   ``leaderboard/schema/submission-2.json``; no ``trust_remote_code``;
3. the matrix (this installation's ``tasks/leaderboard/<name>.yaml``, never the bundle's copy):
   benchmark, probes, seeds and controls match; every seed has a finished base, oracle, unlearn,
   one cell per attack and one control cell per (attack, control); nothing else;
4. provenance: each cell id is the hash of its key; keys agree with the manifest (seed, target and
   oracle sha256, unlearned checkpoint sha256, one method) and each attack starts from its seed's
   unlearned cell; each control cell ran on the model its control names (the oracle's sha256 is
   ``models.oracle_sha256``), holds no method, and ran the very attack (name, version, config, task)
   its seed's attack cell of the same matrix attack ran; an attack or control cell's key agrees
   with the options of its matrix spec; harness and benchmark/attack/probe versions are among those
   the matrix allows;
5. scores: the file's sha256, every cell's row count and canonical-listing hash, and every
   aggregate recomputed from the per-item scores (within 1e-6). The file is streamed and reading
   stops, refusing the bundle, at the first line past the line limit, byte past the
   decompressed-size limit, row past ``scores_file.rows`` (itself at most ``Limits.rows``) or row of
   a cell past its ``n_scores``: see :mod:`.bundle` for why that bound is sound. Peak memory is
   therefore bounded on any bundle, gzip bombs included;
6. optionally (``rerun=K``), K attack cells re-run here (when the method plugin with the same
   version is installed), with their unlearn and control cells, and compared with the bundle
   within the matrix's tolerance; with ``held_out=FILE`` the file must be the held-out grid the
   matrix commits to (else :class:`UnlearnbenchError`: exit 2) and the method is also run on every
   held-out attack in every seed, its worst case reported beside the bundle's (:mod:`.rerun`,
   :mod:`.heldout`).

Nothing from a bundle is ever unpickled, imported or executed: ``manifest.json`` is parsed with
``json``, ``scores.csv.gz`` with ``gzip`` and ``csv``, and ``README.md`` is never opened past its first
four bytes (the magic-byte check). So a ``README.md`` that holds Python source, or a protocol-0
pickle (plain text, no magic bytes), is accepted: it is inert text here. Files whose *name* makes
other tools run them (``*.py``, ``__init__.py``, ``*.pth``, which ``site`` would execute from
site-packages) are refused. ``tests/test_leaderboard_hostile.py`` checks this with payloads that
would write a marker file if anything loaded them.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UnlearnbenchError
from ..spec import canonical_spec, parse_spec
from . import bundle as B
from .compare import MEASURES, compare_aggregates
from .heldout import HeldOut, check_held_out, load_held_out
from .matrix import Matrix, load_matrix
from .rerun import rerun_sample

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib", ".npy", ".npz", ".h5", ".msgpack")
CODE_SUFFIXES = (
    ".py",
    ".pyc",
    ".pyo",
    ".pyw",
    ".pyd",
    ".pyx",
    ".ipynb",
    ".sh",
    ".bash",
    ".zsh",
    ".bat",
    ".cmd",
    ".ps1",
    ".so",
    ".dll",
    ".dylib",
    ".exe",
    ".js",
    ".mjs",
    ".whl",
    ".egg",
    ".jar",
    ".pl",
    ".rb",
)
ALLOWED = (B.MANIFEST, B.SCORES, B.README)
EXACT = 1e-6


@dataclass
class Verdict:
    bundle: str
    reasons: list[str] = field(default_factory=list)  # one line each; any reason refuses the bundle
    notes: list[str] = field(default_factory=list)  # informative (e.g. a re-run that was skipped)
    checks: list[str] = field(default_factory=list)  # the checks that ran
    manifest: dict | None = None
    held_out: dict | None = None  # verify --held-out: the held-out attacks' numbers (rerun.held_out_report)

    @property
    def accepted(self) -> bool:
        return not self.reasons

    def as_json(self) -> dict:
        m = self.manifest or {}
        return {
            "bundle": self.bundle,
            "accepted": self.accepted,
            "reasons": self.reasons,
            "notes": self.notes,
            "checks": self.checks,
            "method": (m.get("method") or {}).get("spec"),
            "matrix": (m.get("matrix") or {}).get("name"),
            "controls": (m.get("matrix") or {}).get("controls"),
            "held_out": self.held_out,
        }


def schema_path() -> Path:
    from ..spec import shipped_dir

    path = shipped_dir("_schema", "leaderboard/schema") / f"submission-{B.FORMAT}.json"
    if not path.is_file():
        raise UnlearnbenchError(f"submission schema not found at {path}; reinstall unlearnbench")
    return path


# -- 1. files ----------------------------------------------------------------------------------


def _magic(path: Path) -> bytes:
    with open(path, "rb") as f:
        return f.read(4)


MAX_ENTRIES = 100  # a bundle holds three files; past this many entries the listing stops


def check_files(folder: Path, limits: B.Limits | None = None) -> list[str]:
    """Reasons to refuse the bundle's files, read by name, mode, size and first four bytes only."""
    limits = limits or B.Limits()
    reasons = []
    entries = []
    for n, p in enumerate(folder.iterdir()):
        if n >= MAX_ENTRIES:
            reasons.append(f"more than {MAX_ENTRIES} entries in the folder (a bundle holds {', '.join(ALLOWED)})")
            break
        entries.append(p)
    for p in sorted(entries):
        rel = p.relative_to(folder).as_posix()
        name = p.name.lower()
        if p.is_symlink():
            reasons.append(f"{rel}: a symbolic link (bundles hold plain files only)")
        elif p.is_dir():
            reasons.append(f"{rel}/: a sub-folder (bundles are flat: {', '.join(ALLOWED)})")
        elif not p.is_file():
            reasons.append(f"{rel}: not a regular file (a pipe, socket or device); bundles hold plain files only")
        elif name.endswith(PICKLE_SUFFIXES):
            reasons.append(
                f"{rel}: pickled weights or arrays ({Path(name).suffix}) are refused; "
                "bundles carry sha256s of weights, not weights"
            )
        elif name.endswith(CODE_SUFFIXES):
            reasons.append(f"{rel}: executable code ({Path(name).suffix}) is refused; bundles hold data only")
        else:
            head = _magic(p)
            if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
                reasons.append(f"{rel}: starts with pickle magic bytes (pickled data is refused)")
            elif head.startswith(b"PK\x03\x04"):
                reasons.append(f"{rel}: a zip archive (torch checkpoints are pickles in zips; refused)")
            elif head.startswith(b"#!") or p.stat().st_mode & (stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH):
                reasons.append(f"{rel}: executable (a '#!' line or an executable bit); bundles hold data only")
            elif rel not in ALLOWED:
                reasons.append(f"{rel}: unexpected file (a bundle holds only {', '.join(ALLOWED)})")
            elif p.stat().st_size > limits.for_file(rel)[0]:
                limit, field_name = limits.for_file(rel)
                reasons.append(
                    f"{rel}: {p.stat().st_size:,} bytes, above the limit of {limit:,} ({B.Limits.env_name(field_name)})"
                )
    if not (folder / B.MANIFEST).is_file():
        reasons.append(f"{B.MANIFEST} is missing")
    if not (folder / B.SCORES).is_file():
        reasons.append(f"{B.SCORES} is missing (the per-item scores every aggregate is recomputed from)")
    return reasons


# -- 2. schema -----------------------------------------------------------------------------------


def check_schema(manifest: dict) -> list[str]:
    import json

    import jsonschema

    schema = json.loads(schema_path().read_text())
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(manifest), key=lambda e: list(e.absolute_path))
    out = []
    for e in errors[:10]:
        where = "/".join(str(x) for x in e.absolute_path) or "(top level)"
        out.append(f"schema: {where}: {e.message.splitlines()[0][:200]}")
    if len(errors) > 10:
        out.append(f"schema: {len(errors) - 10} more schema error(s)")
    return out


# -- 3. matrix -----------------------------------------------------------------------------------


def _cell_slot(c: dict) -> tuple:
    """(seed, kind, attack, control): what one cell of the matrix is."""
    kind = c["kind"]
    return (
        c["seed"],
        kind,
        c["attack"] if kind in ("attack", "control") else None,
        c.get("control") if kind == "control" else None,
    )


def _slot_text(slot: tuple) -> str:
    seed, kind, attack, control = slot
    return f"seed {seed} {kind}" + (f" {control}" if control else "") + (f" {attack}" if attack else "")


def check_matrix(manifest: dict, matrix: Matrix) -> list[str]:
    reasons = []
    m = manifest["matrix"]
    if (
        canonical_spec(manifest["benchmark"]["spec"]) != matrix.benchmark
        or canonical_spec(m["benchmark"]) != matrix.benchmark
    ):
        reasons.append(f"matrix: benchmark {manifest['benchmark']['spec']!r} is not the matrix's {matrix.benchmark!r}")
    if sorted(m["seeds"]) != sorted(matrix.seeds) or sorted(manifest["seeds"]) != sorted(matrix.seeds):
        reasons.append(f"matrix: seeds {manifest['seeds']} are not the matrix's {list(matrix.seeds)}")
    if matrix.probes and list(m["probes"]) != list(matrix.probes):
        reasons.append(f"matrix: probes {m['probes']} are not the matrix's {list(matrix.probes)}")
    if sorted(m["controls"]) != sorted(matrix.controls):
        reasons.append(f"matrix: controls {m['controls']} are not the matrix's {list(matrix.controls)}")
    have: dict[tuple, list[dict]] = {}
    for c in manifest["cells"]:
        have.setdefault(_cell_slot(c), []).append(c)
    wanted = [(s, k, None, None) for s in matrix.seeds for k in ("base", "oracle", "unlearn")]
    wanted += [(s, "attack", a, None) for s in matrix.seeds for a in matrix.attacks]
    wanted += [(s, "control", a, k) for s in matrix.seeds for a in matrix.attacks for k in matrix.controls]
    for w in wanted:
        what = _slot_text(w)
        cells = have.get(w, [])
        if not cells:
            reasons.append(f"incomplete: no {what} cell")
        elif len(cells) > 1:
            reasons.append(f"matrix: {len(cells)} cells for {what} (expected one)")
        elif cells[0]["status"] != "finished":
            reasons.append(f"incomplete: the {what} cell is {cells[0]['status']!r}, not finished")
    for extra in sorted(set(have) - set(wanted), key=str):
        reasons.append(f"matrix: cell {_slot_text(extra)} is not in matrix {matrix.name!r}")
    return reasons


# -- 4. provenance and versions -------------------------------------------------------------------


def _allowed(policy: dict, name: str, version: str) -> bool:
    return str(version) in [str(v) for v in (policy.get(name) or [])]


def _same_value(given: str, used) -> bool:
    """Whether a spec option's text ``given`` names the config value ``used`` (30 vs "30", 1e-3 vs 0.001)."""
    if isinstance(used, bool):
        return given.lower() == str(used).lower()
    if isinstance(used, (int, float)):
        try:
            return float(given) == float(used)
        except ValueError:
            return False
    if isinstance(used, (list, tuple)):
        return given.split("+") == [str(x) for x in used]
    return given == str(used)


def _spec_disagrees(spec: str, attack_key: dict) -> str | None:
    """Why an attack key is not a run of ``spec`` (name, argument, every option the spec sets), or None."""
    try:
        parsed = parse_spec(spec)
    except UnlearnbenchError as e:
        return f"its attack {spec!r} is not a valid spec ({e})"
    if (attack_key.get("name"), attack_key.get("arg")) != (parsed.name, parsed.arg):
        return f"its key runs {attack_key.get('name')}:{attack_key.get('arg')}, not {spec!r}"
    config = attack_key.get("config") or {}
    for option, value in parsed.options.items():
        if option not in config or not _same_value(str(value), config[option]):
            return f"its key has {option}={config.get(option)!r}, the spec {spec!r} says {value}"
    return None


def check_provenance(manifest: dict, matrix: Matrix) -> list[str]:
    from ..store import cell_id

    reasons = []
    v = matrix.versions
    harness_ok = [str(x) for x in v.get("harness", [])]
    if manifest["harness"]["version"] not in harness_ok:
        reasons.append(
            f"version: harness {manifest['harness']['version']} is not allowed by matrix "
            f"{matrix.name!r} (allowed: {', '.join(harness_ok)})"
        )
    try:
        spec_name = parse_spec(manifest["method"]["spec"]).name
    except UnlearnbenchError as e:
        spec_name = None
        reasons.append(f"provenance: method.spec is not a valid spec: {e}")
    if spec_name is not None and spec_name != manifest["method"]["name"]:
        reasons.append(f"provenance: method.spec names {spec_name!r}, method.name is {manifest['method']['name']!r}")
    models = manifest["models"]
    unlearn_by_seed = {c["seed"]: c for c in manifest["cells"] if c["kind"] == "unlearn"}
    attack_by_slot = {(c["seed"], c["attack"]): c for c in manifest["cells"] if c["kind"] == "attack"}
    control_sha = {"oracle": models["oracle_sha256"], "base": models["target_sha256"]}
    bad_versions: set[str] = set()
    for c in manifest["cells"]:
        key, cid, where = c["key"], c["cell_id"], f"cell {c['cell_id']}"
        if cell_id(key) != cid:
            reasons.append(f"provenance: {where}: its id is not the hash of its key (key or id altered)")
        if key.get("seed") != c["seed"] or key.get("kind") != c["kind"]:
            reasons.append(f"provenance: {where}: seed/kind differ from its key")
        if str(key.get("harness")) not in harness_ok:
            bad_versions.add(f"version: harness {key.get('harness')} (in cell keys) is not allowed")
        b = key.get("benchmark") or {}
        if not _allowed(v.get("benchmark") or {}, b.get("name"), b.get("version")):
            bad_versions.add(f"version: benchmark {b.get('name')} v{b.get('version')} is not allowed by the matrix")
        for p in key.get("probes") or []:
            if not _allowed(v.get("probes") or {}, p.get("name"), p.get("version")):
                bad_versions.add(f"version: probe {p.get('name')} v{p.get('version')} is not allowed by the matrix")
        if [p.get("name") for p in key.get("probes") or []] != list(manifest["matrix"]["probes"]):
            reasons.append(f"provenance: {where}: its probe suite differs from the manifest's")
        sha = (key.get("model") or {}).get("sha256")
        if c["kind"] in ("base", "unlearn", "attack") and sha != models["target_sha256"]:
            reasons.append(f"provenance: {where}: target weights sha256 differs from models.target_sha256")
        if c["kind"] == "oracle" and sha != models["oracle_sha256"]:
            reasons.append(f"provenance: {where}: oracle weights sha256 differs from models.oracle_sha256")
        if c["kind"] in ("unlearn", "attack"):
            mk = key.get("method") or {}
            cfg = {k: x for k, x in (mk.get("config") or {}).items() if k != "seed"}
            if (mk.get("name"), mk.get("version"), cfg) != (
                manifest["method"]["name"],
                manifest["method"]["version"],
                manifest["method"]["config"],
            ):
                reasons.append(f"provenance: {where}: method name/version/config differ from the manifest's method")
        if c["kind"] == "unlearn" and c["meta"].get("checkpoint_sha256") != models["unlearned_sha256"].get(
            str(c["seed"])
        ):
            reasons.append(f"provenance: {where}: unlearned checkpoint sha256 differs from models.unlearned_sha256")
        if c["kind"] in ("attack", "control"):
            a = key.get("attack") or {}
            if not _allowed(v.get("attacks") or {}, a.get("name"), a.get("version")):
                bad_versions.add(f"version: attack {a.get('name')} v{a.get('version')} is not allowed by the matrix")
            why = _spec_disagrees(str(c["attack"]), a)
            if why:
                reasons.append(f"provenance: {where}: {why}")
        if c["kind"] == "attack":
            u = unlearn_by_seed.get(c["seed"])
            if u is None or key.get("unlearn_cell") != u["cell_id"]:
                reasons.append(f"provenance: {where}: does not start from seed {c['seed']}'s unlearned cell")
        if c["kind"] == "control":
            ctrl = c.get("control")
            if key.get("control") != ctrl or ctrl not in control_sha:
                reasons.append(f"provenance: {where}: its control {ctrl!r} is not its key's {key.get('control')!r}")
            elif sha != control_sha[ctrl]:
                which = "models.oracle_sha256" if ctrl == "oracle" else "models.target_sha256"
                reasons.append(f"provenance: {where}: {ctrl} control weights sha256 differs from {which}")
            if "method" in key or "unlearn_cell" in key:
                reasons.append(f"provenance: {where}: a control cell's key holds a method (controls are method-free)")
            twin = attack_by_slot.get((c["seed"], c["attack"]))
            if twin is not None and (
                key.get("attack") != twin["key"].get("attack") or key.get("task") != twin["key"].get("task")
            ):
                reasons.append(
                    f"provenance: {where}: its attack or task (name, version, config) differs from seed "
                    f"{c['seed']}'s attack cell {twin['cell_id']}"
                )
    return reasons + sorted(bad_versions)


# -- 5. scores and aggregates ---------------------------------------------------------------------


def check_scores(folder: Path, manifest: dict, limits: B.Limits | None = None) -> list[str]:
    limits = limits or B.Limits()
    path = folder / B.SCORES
    declared = manifest["scores_file"]["rows"]
    if declared > limits.rows:
        return [
            f"scores: scores_file.rows is {declared:,}, above the limit of {limits.rows:,} rows "
            f"({B.Limits.env_name('rows')}); {B.SCORES} was not read"
        ]
    if B.sha256_file(path) != manifest["scores_file"]["sha256"]:
        return [f"scores: {B.SCORES} sha256 differs from scores_file.sha256 (the file was changed)"]
    try:
        cell_rows: dict[str, int] = {}
        for c in manifest["cells"]:
            cell_rows[c["cell_id"]] = cell_rows.get(c["cell_id"], 0) + c["n_scores"]
        scores = B.read_scores(path, max_rows=declared, limits=limits, cell_rows=cell_rows)
    except B.TooLarge as e:
        return [f"scores: {B.SCORES} {e}"]
    except ValueError as e:
        return [f"scores: {B.SCORES} is not the expected gzip CSV: {e}"]
    reasons = []  # rows of cells the manifest does not list were refused while reading
    if sum(len(r) for r in scores.values()) != manifest["scores_file"]["rows"]:
        reasons.append("scores: row count differs from scores_file.rows")
    measured = B.all_aggregates(manifest["cells"], scores)
    exact = {m: EXACT for m in ("recall", "task_accuracy", *MEASURES)}
    for c in manifest["cells"]:
        rows = scores.get(c["cell_id"], [])
        where = f"cell {c['cell_id']} (seed {c['seed']} {c['kind']}{' ' + c['attack'] if c['attack'] else ''})"
        if len(rows) != c["n_scores"]:
            reasons.append(f"scores: {where}: {len(rows)} score rows, manifest says {c['n_scores']}")
        if B.scores_sha256(rows) != c["scores_sha256"]:
            reasons.append(f"scores: {where}: per-item scores do not match scores_sha256")
        diffs = compare_aggregates(c["aggregates"], measured[c["cell_id"]], exact)
        if diffs:
            more = f" (+{len(diffs) - 1} more)" if len(diffs) > 1 else ""
            reasons.append(f"aggregates: {where}: not what the per-item scores give: {diffs[0]}{more}")
    return reasons


# -- the whole verification -----------------------------------------------------------------------


MAX_REASON = 500  # characters of one reason (they quote bundle text)


def _one_line(text: str) -> str:
    """A reason as one printable line: bundle text quoted in it cannot add lines or escapes."""
    text = text if len(text) <= MAX_REASON else text[:MAX_REASON] + "..."
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)


def verify(
    folder: str | Path,
    rerun: int = 0,
    progress=None,
    limits: B.Limits | None = None,
    held_out: HeldOut | str | Path | None = None,
) -> Verdict:
    """The verdict on one bundle. ``limits``: what a bundle may hold (default: :meth:`Limits.from_env`,
    so ``UNLEARNBENCH_BUNDLE_MAX_*`` variables apply to the CLI and to ``leaderboard build``).
    ``held_out``: a held-out file (or :class:`HeldOut`); raises UnlearnbenchError (one line) when it
    is unreadable or not the grid the bundle's matrix commits to."""
    if held_out is not None and not isinstance(held_out, HeldOut):
        held_out = load_held_out(held_out)
    verdict = _verify(Path(folder), rerun, progress, limits, held_out)
    verdict.reasons = [_one_line(r) for r in verdict.reasons]
    verdict.notes = [_one_line(n) for n in verdict.notes]
    return verdict


def format_refusal(manifest) -> str | None:
    """One line for a bundle of a format this harness no longer verifies (None otherwise)."""
    schema = manifest.get("schema") if isinstance(manifest, dict) else None
    if schema in B.OLD_SCHEMAS:
        return (
            f"format: a format {B.OLD_SCHEMAS[schema]} bundle ({schema}); this harness verifies format "
            f"{B.FORMAT} only ({B.SCHEMA_ID}: control cells, worst case under attack); make it again with "
            "unlearnbench submit"
        )
    return None


def _verify(folder: Path, rerun: int, progress, limits: B.Limits | None, held_out: HeldOut | None) -> Verdict:
    verdict = Verdict(str(folder))
    if not folder.is_dir():
        verdict.reasons.append(f"{folder} is not a folder")
        return verdict
    limits = limits or B.Limits.from_env()
    verdict.checks.append("files")
    verdict.reasons += check_files(folder, limits)
    if verdict.reasons:
        return verdict
    try:
        manifest = B.load_json(folder / B.MANIFEST, limits.manifest_bytes, limits.json_depth)
    except ValueError as e:
        verdict.reasons.append(f"{B.MANIFEST} {e}")
        return verdict
    verdict.checks.append("format")
    old = format_refusal(manifest)
    if old:
        verdict.reasons.append(old)
        return verdict
    verdict.checks.append("trust_remote_code")
    verdict.reasons += [
        f"config asks for trust_remote_code at {w} (remote code is never run)"
        for w in B.find_trust_remote_code(manifest)
    ]
    verdict.checks.append("schema")
    schema_errors = check_schema(manifest)
    verdict.reasons += schema_errors
    if schema_errors:
        return verdict
    verdict.manifest = manifest
    try:
        matrix = load_matrix(manifest["matrix"]["name"])
    except UnlearnbenchError as e:
        verdict.reasons.append(f"matrix: {e}")
        return verdict
    if held_out is not None:
        check_held_out(held_out, matrix)  # a wrong file is the verifier's mistake: an error, not a refusal
    for name, check in (
        ("matrix", lambda: check_matrix(manifest, matrix)),
        ("provenance", lambda: check_provenance(manifest, matrix)),
        ("scores", lambda: check_scores(folder, manifest, limits)),
    ):
        verdict.checks.append(name)
        try:
            verdict.reasons += check()
        except (UnlearnbenchError, KeyError, TypeError, AttributeError, ValueError) as e:
            # the schema leaves keys open; a malformed one is a refusal, never a crash
            verdict.reasons.append(f"{name}: malformed bundle ({type(e).__name__}: {str(e)[:200]})")
    if (rerun > 0 or held_out is not None) and verdict.accepted:
        verdict.checks.append(f"rerun {rerun}" + (f", held out {len(held_out.attacks)}" if held_out else ""))
        reasons, notes, report = rerun_sample(manifest, matrix, rerun, progress, held_out=held_out)
        verdict.reasons += reasons
        verdict.notes += notes
        verdict.held_out = report
    return verdict
