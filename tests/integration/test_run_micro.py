"""End to end on the micro world: unlearn + attack + probes, re-run, resume after kill -9, bad input.

The first test of the session trains the micro target and oracle models (about a minute on 2
cores); the rest reuse them from the session cache.
"""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from unlearnbench.cli import main

MICRO = "toy,size=micro"
RUN = ["run", "--benchmark", MICRO, "--method", "npo", "--attack", "finetune:arith,epochs=2", "--json", "--quiet"]


def _run_json(capsys, args) -> tuple[int, dict]:
    code = main(args)
    out = capsys.readouterr().out
    return code, json.loads(out)


@pytest.fixture(scope="module")
def first_run(micro_cache, tmp_path_factory):
    store = tmp_path_factory.mktemp("store") / "r.sqlite"
    import io
    from contextlib import redirect_stdout

    buf = io.StringIO()
    with redirect_stdout(buf):
        code = main(RUN + ["--store", str(store)])
    return code, json.loads(buf.getvalue()), store


def test_run_produces_every_phase_and_form(first_run):
    code, doc, _ = first_run
    assert code == 0
    kinds = [c["kind"] for c in doc["cells"]]
    assert kinds == ["base", "oracle", "control", "unlearn", "attack"]  # control: the attack on the oracle
    assert all(c["status"] == "finished" for c in doc["cells"])
    cols = [c["column"] for c in doc["columns"]]
    assert cols[:3] == ["base", "oracle", "unlearned"]
    assert [c["checkpoint"] for c in doc["columns"][3:]] == ["epoch=1", "epoch=2"]
    for col in cols:
        assert set(doc["recall"][col]) == {"forget", "neighbour", "retain"}
        assert set(doc["recall"][col]["forget"]) == {"bio", "qa", "cloze", "mcq", "tf", "reverse", "paraphrase"}
    # FA: all utility tasks before the attack, the attacked task at every epoch
    assert set(doc["task_accuracy"]["base"]) == {"arith", "topic", "sentiment"}
    assert set(doc["task_accuracy"][cols[-1]]) == {"arith"}


def test_oracle_and_base_bracket_the_forget_set(first_run):
    _, doc, _ = first_run
    base, oracle = doc["recall"]["base"]["forget"], doc["recall"]["oracle"]["forget"]
    for form in ("bio", "qa", "cloze", "reverse"):
        assert base[form] >= 0.9, form
        assert oracle[form] <= 0.35, form
    assert doc["forget_quality"]["base"]["mean"] == 0.0
    assert doc["forget_quality"]["oracle"]["mean"] == 1.0


def test_npo_forgets_in_the_unlearning_form(first_run):
    _, doc, _ = first_run
    base = doc["recall"]["base"]["forget"]["bio"]
    unlearned = doc["recall"]["unlearned"]["forget"]["bio"]
    assert unlearned < base - 0.2
    meta = next(c for c in doc["cells"] if c["kind"] == "unlearn")["meta"]
    assert meta["effective_batch_size"] >= 1 and meta["stats"]["steps"] > 0


def test_rerun_reuses_every_cell_and_gives_identical_numbers(first_run, capsys):
    _, doc, store = first_run
    t0 = time.time()
    code, again = _run_json(capsys, RUN + ["--store", str(store)])
    assert code == 0
    assert [c["status"] for c in again["cells"]] == ["cached"] * 5
    assert again["recall"] == doc["recall"] and again["task_accuracy"] == doc["task_accuracy"]
    assert time.time() - t0 < 60  # no training: models and cells come from the caches


def test_results_export(first_run, capsys):
    _, _, store = first_run
    assert main(["results", "--store", str(store), "--format", "json", "--level", "summary"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["split"] for r in rows} >= {"forget", "neighbour", "retain", "task"}
    assert main(["results", "--store", str(store), "--format", "csv", "--level", "items"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("cell_id") or "cell_id" in lines[0]
    assert len(lines) > 1000


@pytest.mark.parametrize(
    "args, needle",
    [
        (["run", "--method", "nop", "--benchmark", MICRO], "did you mean 'npo'"),
        (["run", "--method", "npo,bta=0.1", "--benchmark", MICRO], "did you mean 'beta'"),
        (["run", "--method", "npo,beta=high", "--benchmark", MICRO], "beta"),
        (["run", "--method", "npo", "--attack", "finetune:arithh", "--benchmark", MICRO], "did you mean 'arith'"),
        (["run", "--method", "npo", "--attack", "finetune", "--benchmark", MICRO], "needs a task"),
        (["run", "--method", "npo", "--benchmark", "toy,size=huge"], "size"),
        (["results", "--store", "/nonexistent/x.sqlite"], "no results store"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_loses_nothing(first_run, capsys, args, needle):
    _, _, store = first_run
    before = sqlite3.connect(store).execute("select count(*) from scores").fetchone()[0]
    if "--store" not in args:
        args = args + ["--store", str(store)]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert needle in err
    assert sqlite3.connect(store).execute("select count(*) from scores").fetchone()[0] == before


def test_kill_9_mid_run_then_resume(micro_cache, tmp_path):
    """Kill the run once the unlearn cell is committed; the re-run skips it and finishes the attack."""
    store = tmp_path / "k.sqlite"
    env = {**os.environ, "UNLEARNBENCH_CACHE": micro_cache}
    args = [
        sys.executable,
        "-m",
        "unlearnbench.cli",
        "run",
        "--benchmark",
        MICRO,
        "--method",
        "npo,epochs=2",
        "--attack",
        "finetune:topic,epochs=3",
        "--quiet",
        "--store",
        str(store),
    ]
    proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    try:
        while time.time() < deadline:
            if store.exists():
                try:
                    done = (
                        sqlite3.connect(store, timeout=1)
                        .execute("select count(*) from cells where kind='unlearn' and status='finished'")
                        .fetchone()[0]
                    )
                except sqlite3.OperationalError:
                    done = 0
                if done:
                    break
            if proc.poll() is not None:
                pytest.fail("run ended before it could be killed")
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finally:
        if proc.poll() is None:
            proc.kill()
    con = sqlite3.connect(store)
    assert con.execute("pragma integrity_check").fetchone()[0] == "ok"
    statuses = dict(con.execute("select kind, status from cells").fetchall())
    assert statuses.get("unlearn") == "finished" and "attack" not in statuses
    con.close()
    out = subprocess.run(args + ["--json"], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    doc = json.loads(out.stdout)
    assert [c["status"] for c in doc["cells"]] == ["cached", "cached", "cached", "cached", "finished"]
    assert Path(micro_cache, "checkpoints").is_dir()


def test_golden_numbers_within_tolerance(first_run):
    """The micro run reproduces tests/integration/golden/micro_npo_arith.json within its tolerances."""
    _, doc, _ = first_run
    golden = json.loads((Path(__file__).parent / "golden" / "micro_npo_arith.json").read_text())
    tol = golden["tolerance"]
    off = []
    for col, splits in golden["recall"].items():
        for split, forms in splits.items():
            for form, want in forms.items():
                got = doc["recall"][col][split][form]
                if abs(got - want) > tol["recall"]:
                    off.append(f"recall {col}/{split}/{form}: {got} vs golden {want}")
    for col, tasks in golden["task_accuracy"].items():
        for task, want in tasks.items():
            got = doc["task_accuracy"][col][task]
            if abs(got - want) > tol["task_accuracy"]:
                off.append(f"FA {col}/{task}: {got} vs golden {want}")
    for col, forms in golden["forget_quality"].items():
        for form, want in forms.items():
            got = doc["forget_quality"][col]["per_form"][form]
            if (got is None) != (want is None) or (want is not None and abs(got - want) > tol["forget_quality"]):
                off.append(f"forget quality {col}/{form}: {got} vs golden {want}")
    assert not off, "\n".join(off)


def test_stored_cell_ids_are_the_ones_cell_ids_computes(first_run):
    """runner.cell_ids (what tests/test_cell_ids.py pins against the golden ids) is what run() stores."""
    from unlearnbench.runner import RunRequest, cell_ids, plan
    from unlearnbench.store import ResultStore

    _, doc, store = first_run
    stored = {c["kind"]: c["cell_id"] for c in doc["cells"]}
    s = ResultStore(str(store))

    def sha(kind):
        key = s.get_cell(stored[kind])["key"]
        return (key if isinstance(key, dict) else json.loads(key))["model"]["sha256"]

    p = plan(RunRequest(method="npo", attacks=["finetune:arith,epochs=2"], benchmark=MICRO))
    assert cell_ids(p, sha("base"), sha("oracle")) == {
        "base": stored["base"],
        "oracle": stored["oracle"],
        "unlearn": stored["unlearn"],
        "attack finetune:arith,epochs=2": stored["attack"],
        "control oracle finetune:arith,epochs=2": stored["control"],
    }
