"""The generation backend on a real run of the micro world: recorded in the run's meta, and an
unusable choice fails in one line before anything is stored."""

import json
import sqlite3

from unlearnbench import generation
from unlearnbench.cli import main

RUN = [
    "run",
    "--benchmark",
    "toy,size=micro",
    "--method",
    "gradascent,max_steps=1",
    "--probes",
    "qa",
    "--json",
    "--quiet",
]


def _run_metas(store):
    with sqlite3.connect(store) as conn:
        return [json.loads(m) for (m,) in conn.execute("SELECT meta FROM runs")]


def test_backend_is_recorded_in_the_run_meta(micro_cache, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(generation.ENV_VAR, "vllm")  # overridden by --backend; restored after the test
    store = tmp_path / "r.sqlite"
    assert main(RUN + ["--backend", "hf", "--store", str(store)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary
    (meta,) = _run_metas(store)
    assert meta["generation_backend"] == "hf"


def test_unusable_backend_from_env_fails_before_a_run_is_stored(micro_cache, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(generation, "vllm_installed", lambda: False)
    monkeypatch.setenv(generation.ENV_VAR, "vllm")
    store = tmp_path / "r.sqlite"
    assert main(RUN + ["--store", str(store)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unlearnbench[vllm]" in err
    assert not store.exists() or _run_metas(store) == []
