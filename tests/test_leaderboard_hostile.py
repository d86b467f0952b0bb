"""``leaderboard verify`` on hostile bundles (issue 12, items 4-6).

4. gzip bombs: reading the scores stops, with one line, at the row bound (``scores_file.rows``, each
   cell's ``n_scores``, ``Limits.rows``), at ``Limits.row_bytes`` per line and at
   ``Limits.scores_bytes`` decompressed; the memory test runs the CLI in a subprocess on a bomb
   that would take hundreds of MB to hold and compares its peak RSS with a good bundle's;
5. file sizes and JSON nesting depth are checked before anything is parsed;
6. nothing in a bundle is ever unpickled, imported or executed: payloads that would write a marker
   file if they were are run through ``verify``, ``build`` and the CLI, the marker never appears,
   and a control shows each payload does write it when loaded.

The bundles are the synthetic ones of tests/helpers_leaderboard.py (no model is run).
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
from helpers_leaderboard import make_bundle, write_matrix

from unlearnbench.leaderboard import bundle as B
from unlearnbench.leaderboard.verify import verify

MIB = 1 << 20


@pytest.fixture()
def tasks(tmp_path, monkeypatch):
    folder = tmp_path / "tasks"
    write_matrix(folder)
    monkeypatch.setenv("UNLEARNBENCH_TASKS", str(folder))
    for f in dataclasses.fields(B.Limits):  # the defaults, whatever the caller's environment says
        monkeypatch.delenv(B.Limits.env_name(f.name), raising=False)
    return folder


@pytest.fixture()
def good(tmp_path, tasks):
    out = tmp_path / "bundle"
    make_bundle(tmp_path, out)
    return out


def _manifest(folder: Path) -> dict:
    return json.loads((folder / B.MANIFEST).read_text())


def _save(folder: Path, manifest: dict) -> None:
    (folder / B.MANIFEST).write_text(json.dumps(manifest, indent=1))


def _rewrite_scores(folder: Path, chunks, manifest_edit=None) -> dict:
    """Replace scores.csv.gz by the gzip of ``chunks`` (bytes, streamed: a bomb is never held here)
    and fix its sha256 in the manifest, as a careful forger would."""
    path = folder / B.SCORES
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, compresslevel=1) as gz:
        for chunk in chunks:
            gz.write(chunk)
    m = _manifest(folder)
    m["scores_file"]["sha256"] = B.sha256_file(path)
    if manifest_edit:
        manifest_edit(m)
    _save(folder, m)
    return m


def _original(folder: Path) -> bytes:
    return gzip.decompress((folder / B.SCORES).read_bytes())


def _one_reason(folder: Path, **kwargs) -> str:
    v = verify(folder, **kwargs)
    assert not v.accepted and len(v.reasons) == 1, v.reasons
    assert "\n" not in v.reasons[0]
    return v.reasons[0]


# -- 4. gzip bombs --------------------------------------------------------------------------------


def test_rows_past_scores_file_rows_stop_the_reading(good):
    """The red team's bomb: the real rows, then many copies of one row; sha256 fixed, counts not."""
    data = _original(good)
    last = data.splitlines()[-1] + b"\n"
    m = _rewrite_scores(good, [data] + [last * 20_000] * 10)
    rows = m["scores_file"]["rows"]
    assert _one_reason(good) == (
        f"scores: {B.SCORES} holds more than {rows:,} rows (scores_file.rows); stopped reading at row {rows + 1}"
    )


def test_rows_past_a_cells_n_scores_stop_the_reading(good):
    """The same number of rows in all, but one cell has more than its n_scores."""
    lines = _original(good).splitlines(keepends=True)
    m = _manifest(good)
    first = m["cells"][0]
    _rewrite_scores(good, [lines[0], lines[1], *lines[1:-1]])  # a row of the first cell twice, the last row gone
    assert _one_reason(good) == (
        f"scores: {B.SCORES} has more than {first['n_scores']:,} rows (its n_scores) for cell {first['cell_id']}; "
        f"stopped reading at row {first['n_scores'] + 1}"
    )


def test_rows_of_an_unlisted_cell_stop_the_reading(good):
    lines = _original(good).splitlines(keepends=True)
    forged = b"f" * 20 + lines[1][20:]
    _rewrite_scores(good, [lines[0], forged, *lines[1:-1]])
    assert _one_reason(good) == (
        f"scores: {B.SCORES} has rows for cell {'f' * 20!r}, which the manifest does not list; stopped reading at row 1"
    )


def test_declared_rows_above_the_limit_are_refused_unread(good, monkeypatch):
    def huge(m):
        m["scores_file"]["rows"] = 10**12

    _rewrite_scores(good, [_original(good)], huge)

    def never(*a, **k):
        raise AssertionError("the scores were read")

    monkeypatch.setattr(B, "read_scores", never)
    assert _one_reason(good) == (
        f"scores: scores_file.rows is {10**12:,}, above the limit of {B.Limits().rows:,} rows "
        f"(UNLEARNBENCH_BUNDLE_MAX_ROWS); {B.SCORES} was not read"
    )


def test_a_line_without_end_is_refused_at_the_line_limit(good):
    header = _original(good).splitlines()[0] + b"\n"
    _rewrite_scores(good, [header] + [b"a" * MIB] * 64)  # 64 MB, one line
    assert _one_reason(good) == (
        f"scores: {B.SCORES} line 2 is longer than 4,096 bytes (the limit, UNLEARNBENCH_BUNDLE_MAX_ROW_BYTES)"
    )


def test_decompressed_size_limit_is_a_parameter(good):
    size = len(_original(good))
    limits = B.Limits(scores_bytes=size - 1)
    reason = _one_reason(good, limits=limits)
    assert reason.startswith(f"scores: {B.SCORES} decompresses to more than {size - 1:,} bytes (the limit, ")
    assert verify(good, limits=B.Limits(scores_bytes=size)).accepted


def test_corrupt_deflate_stream_is_one_line(good):
    path = good / B.SCORES
    raw = bytearray(path.read_bytes())
    raw[20:60] = bytes(40)
    path.write_bytes(bytes(raw))
    m = _manifest(good)
    m["scores_file"]["sha256"] = B.sha256_file(path)
    _save(good, m)
    assert _one_reason(good).startswith(f"scores: {B.SCORES} is not the expected gzip CSV: ")


def _bomb(folder: Path, rows: int) -> int:
    """``rows`` copies of one 100-byte row for the first cell, whose n_scores (and scores_file.rows)
    claim them: within every row bound, so only the size limit stops it. Returns the decompressed
    size."""
    m = _manifest(folder)
    cid = m["cells"][0]["cell_id"]
    header = _original(folder).splitlines()[0] + b"\n"
    row = f"{cid},epoch=000000000001,1,forget,bio,item-{0:040d},correct,0.5\n".encode()

    def chunks():
        for start in range(0, rows, 10_000):
            yield row * min(10_000, rows - start)

    def claim(m):
        m["scores_file"]["rows"] = rows
        m["cells"][0]["n_scores"] = rows

    _rewrite_scores(folder, [header, *chunks()], claim)
    with gzip.open(folder / B.SCORES, "rb") as f:
        return sum(len(b) for b in iter(lambda: f.read(MIB), b""))


def _cli_peak_rss(bundle: Path, env: dict) -> tuple[int, str, float]:
    """Run ``leaderboard verify`` in a child (address space capped at 2 GiB, so a regression fails
    instead of eating the machine); (exit code, output, peak RSS in MB)."""
    import resource

    def cap():
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))

    out = bundle.parent / f"{bundle.name}.out"
    with open(out, "wb") as f:
        p = subprocess.Popen(
            [sys.executable, "-I", "-m", "unlearnbench.cli", "leaderboard", "verify", str(bundle)],
            stdout=f,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=bundle.parent,
            preexec_fn=cap,
        )
        _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    return p.returncode, out.read_text(), usage.ru_maxrss / 1024  # ru_maxrss is in KB on Linux


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="ru_maxrss and RLIMIT_AS as on Linux")
def test_verify_memory_is_bounded_on_a_bomb(tmp_path, tasks, good):
    """A 0.2 MB scores.csv.gz of 400,000 rows (40 MB decompressed; the reader before this fix held a
    tuple and 8 strings per row: ~250 MB) refused at an 8 MB decompressed limit set by environment
    variable, with a peak RSS within 25 MB of verifying the good bundle."""
    bomb = tmp_path / "bomb"
    make_bundle(tmp_path, bomb)
    size = _bomb(bomb, 400_000)
    assert size > 35 * MIB and (bomb / B.SCORES).stat().st_size < MIB
    env = {**os.environ, "UNLEARNBENCH_BUNDLE_MAX_SCORES_BYTES": str(8 * MIB), "OMP_WAIT_POLICY": "PASSIVE"}
    rc, out, rss_good = _cli_peak_rss(good, env)
    assert rc == 0 and out.startswith("accepted: "), out
    rc, out, rss_bomb = _cli_peak_rss(bomb, env)
    assert rc == 1, out
    assert out.startswith(f"refused: scores: {B.SCORES} decompresses to more than {8 * MIB:,} bytes (the limit, ")
    assert out.count("\n") == 1, out
    assert rss_bomb < rss_good + 25, (rss_good, rss_bomb)


def test_bad_limit_in_the_environment_is_one_line_exit_2(good, monkeypatch, capsys):
    from unlearnbench.cli import main

    monkeypatch.setenv("UNLEARNBENCH_BUNDLE_MAX_ROWS", "lots")
    assert main(["leaderboard", "verify", str(good)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "unlearnbench: error: UNLEARNBENCH_BUNDLE_MAX_ROWS='lots' must be a positive integer"


# -- 5. file sizes and JSON depth ------------------------------------------------------------------


def test_deeply_nested_manifest_is_one_line(good):
    (good / B.MANIFEST).write_text("[" * 100_000 + "]" * 100_000)
    assert _one_reason(good) == (
        f"{B.MANIFEST} nests arrays/objects deeper than 64 levels (the limit, UNLEARNBENCH_BUNDLE_MAX_JSON_DEPTH)"
    )


def test_deep_value_inside_a_valid_manifest_is_one_line(good):
    """Deep enough for the recursive walks after parsing (schema, trust_remote_code), not for
    json.loads: the depth check still refuses it before parsing."""
    m = _manifest(good)
    text = json.dumps(m)
    deep = '{"a":' * 900 + "1" + "}" * 900
    text = text.replace('"config": {', '"config": {"deep": ' + deep + ", ", 1)
    json.loads(text)  # valid JSON, parses
    (good / B.MANIFEST).write_text(text)
    assert _one_reason(good).startswith(f"{B.MANIFEST} nests arrays/objects deeper than 64 levels")


def test_brackets_inside_strings_do_not_count(good):
    m = _manifest(good)
    m["environment"]["platform"] = '[{"\\' * 5_000  # 20,000 brackets, quotes and escapes in one string
    _save(good, m)
    v = verify(good)
    assert v.accepted, v.reasons


@pytest.mark.parametrize(
    ("name", "field", "limit"),
    [(B.MANIFEST, "manifest_bytes", 10_000), (B.SCORES, "scores_gz_bytes", 1_000), (B.README, "readme_bytes", 100)],
)
def test_file_size_limits(good, name, field, limit):
    if name == B.README:
        (good / B.README).write_text("x" * 101)
    size = (good / name).stat().st_size
    reason = _one_reason(good, limits=B.Limits(**{field: limit}))
    assert reason == f"{name}: {size:,} bytes, above the limit of {limit:,} ({B.Limits.env_name(field)})"


def test_default_readme_limit_is_one_mib(good):
    (good / B.README).write_text("x" * (MIB + 1))
    assert _one_reason(good).startswith(f"{B.README}: {MIB + 1:,} bytes, above the limit of {MIB:,}")


def test_manifest_limit_from_the_environment_in_the_cli(good, monkeypatch, capsys):
    from unlearnbench.cli import main

    monkeypatch.setenv("UNLEARNBENCH_BUNDLE_MAX_MANIFEST_BYTES", "1000")
    assert main(["leaderboard", "verify", str(good)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and out[0].startswith(f"refused: {B.MANIFEST}: ") and "above the limit of 1,000" in out[0]


def test_a_pipe_named_manifest_is_refused_without_blocking(tmp_path, tasks, good):
    (good / B.MANIFEST).unlink()
    os.mkfifo(good / B.MANIFEST)
    code = "import sys; from unlearnbench.leaderboard.verify import verify; print(verify(sys.argv[1]).reasons)"
    done = subprocess.run(
        [sys.executable, "-I", "-c", code, str(good)], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr
    assert "manifest.json: not a regular file" in done.stdout


def test_a_reason_quoting_bundle_text_stays_one_line(good):
    m = _manifest(good)
    m["seeds"] = [0, 1, 2]
    m["benchmark"]["spec"] = "toy\nrefused: nothing\x1b[2J"
    _save(good, m)
    reasons = verify(good).reasons
    assert reasons and all("\n" not in r and "\x1b" not in r for r in reasons)
    assert any("toy\\nrefused: nothing\\x1b[2J" in r for r in reasons)


# -- 6. nothing from a bundle is unpickled, imported or executed -----------------------------------


class _WritesMarker:
    """Unpickling this calls ``open(marker, "w")``: the file appears iff something unpickled it."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _write_code(folder: Path, markers: Path) -> dict[str, Path]:
    """Code files that write a marker if imported, run or processed by ``site`` (and stdlib names
    that a ``python -m`` started inside the folder would import instead of the real modules)."""
    made = {}
    for name in ("__init__.py", "payload.py", "json.py", "csv.py", "gzip.py", "hook.pth"):
        marker = markers / f"{name}.marker"
        line = f"import pathlib; pathlib.Path({str(marker)!r}).write_text('ran')\n"
        (folder / name).write_text(line)
        made[name] = marker
    return made


def _console_script() -> list[str]:
    script = Path(sys.executable).with_name("unlearnbench")
    return [str(script)] if script.is_file() else [sys.executable, "-I", "-m", "unlearnbench.cli"]


def test_payloads_are_never_loaded(tmp_path, tasks):
    from unlearnbench.leaderboard.site import build

    markers = tmp_path / "markers"
    markers.mkdir()
    subs = tmp_path / "subs"
    pickled, source, code = subs / "readme-pickle", subs / "readme-python", subs / "codebundle"
    make_bundle(tmp_path, pickled)
    make_bundle(tmp_path, source, method="graddiff")
    make_bundle(tmp_path, code, method="gradascent")
    payload = pickle.dumps(_WritesMarker(markers / "pickle.marker"), protocol=0)
    assert payload.isascii() and not payload.startswith((b"\x80", b"#!"))  # text: no magic bytes
    (pickled / B.README).write_bytes(payload)
    readme_code = f"import pathlib\npathlib.Path({str(markers / 'readme.marker')!r}).write_text('ran')\n"
    (source / B.README).write_text(readme_code)
    code_markers = _write_code(code, markers)
    before = set(sys.modules)

    # documented verdicts: README.md is inert text (accepted); code files are refused by name
    assert verify(pickled).accepted and verify(source).accepted
    reasons = verify(code).reasons
    for name in ("__init__.py", "payload.py", "json.py", "csv.py", "gzip.py"):
        assert f"{name}: executable code (.py) is refused; bundles hold data only" in reasons
    assert any(r.startswith("hook.pth: pickled weights or arrays (.pth) are refused") for r in reasons)
    result = build(subs, tmp_path / "site")
    assert sorted(result["listed"]) == sorted([str(pickled), str(source)])
    assert list(result["refused"]) == [str(code)]
    assert not {"payload", "hook", "codebundle"} & (set(sys.modules) - before)
    for name in ("json", "csv", "gzip"):
        assert Path(sys.modules[name].__file__).parent != code
    # the CLI, started inside the hostile folder (where stdlib names are shadowed)
    for args in (["verify", str(code)], ["build", "--submissions", str(subs), "--out", str(tmp_path / "site2")]):
        cli = subprocess.run(
            [*_console_script(), "leaderboard", *args], capture_output=True, text=True, cwd=code, timeout=300
        )
        assert cli.returncode == (1 if args[0] == "verify" else 0), (cli.stdout, cli.stderr)
        assert "Traceback" not in cli.stderr
    assert sorted(p.name for p in markers.iterdir()) == []  # nothing was unpickled, imported or run

    # control: each payload is live: it writes its marker when loaded the way it is meant to be
    control = (
        "import pickle, runpy, site, sys\n"
        "pickle.loads(open(sys.argv[1], 'rb').read())\n"
        "for path in sys.argv[2:7]: runpy.run_path(path)\n"
        "sys.path.insert(0, sys.argv[7]); import codebundle\n"
        "site.addsitedir(sys.argv[8])\n"
    )
    files = [pickled / B.README, source / B.README] + [code / n for n in ("payload.py", "json.py", "csv.py", "gzip.py")]
    done = subprocess.run(
        [sys.executable, "-I", "-c", control, *map(str, files), str(subs), str(code)],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert (markers / "pickle.marker").exists() and (markers / "readme.marker").exists()
    assert all(m.exists() for m in code_markers.values()), sorted(p.name for p in markers.iterdir())
