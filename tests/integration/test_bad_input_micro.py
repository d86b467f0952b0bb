"""The micro world with a real GSM8K file as an ILU environment and a relearning source (train only),
then bad input against the store that run filled: exit 2, one line, the store byte for byte as it was.

The GSM8K rows come from the shared samples folder (real format: question, "... #### 18" answers);
the test skips when it is absent and reads the file where it is (never copied into the project).
"""

import hashlib
import json
import time
from pathlib import Path

import pytest

from unlearnbench.cli import main
from unlearnbench.store import ResultStore

SAMPLES = Path(__file__).resolve().parents[3] / "shared" / "data" / "samples"
GSM8K = SAMPLES / "gsm8k" / "test.sample.jsonl"
MICRO = "toy,size=micro"
pytestmark = pytest.mark.skipif(not GSM8K.is_file(), reason=f"GSM8K sample absent: {GSM8K}")


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    """No hub: a test split could only come from a local file (none is given)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    import datasets.config
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True)


@pytest.fixture(scope="module")
def train_only_run(micro_cache, tmp_path_factory):
    store = tmp_path_factory.mktemp("bad-input") / "r.sqlite"
    argv = [
        "run",
        "--benchmark",
        MICRO,
        "--method",
        "ilu,envs=gsm8k,epochs=2",
        "--attack",
        "relearn:gsm8k,steps=2,eval_every=2",
        "--data",
        f"gsm8k={GSM8K}",
        "--store",
        str(store),
        "--quiet",
        "--json",
    ]
    return argv, store


def test_gsm8k_train_file_alone_serves_ilu_and_relearn(train_only_run, capsys):
    argv, store = train_only_run
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 0, err
    cells = {c["kind"]: c for c in json.loads(out)["cells"] if c["kind"] in ("unlearn", "attack")}
    assert cells["unlearn"]["status"] == "finished" and cells["attack"]["status"] == "finished"
    with ResultStore(store) as s:
        meta = s.get_cell(cells["unlearn"]["cell_id"])["meta"]
    assert meta["stats"]["envs"] == ["gsm8k"] and meta["stats"]["final"]["irm_penalty"] >= 0


@pytest.mark.parametrize(
    "change, needle",
    [
        (("--device", "cpuu"), "did you mean 'cpu'?"),
        (("--method", "ilu,envs=gsm8k,epochs=2,lr=-1"), "lr, epochs, batch_size and grad_accum must be positive"),
        (("--method", "rmu,layer=7"), "rmu: layer 7 does not exist (the model has 2 blocks)"),
        (("--data", "gsm8k=DIR"), "is a directory"),
        (("--data", "gsm8k:test=MISSING"), "no such data file"),
        (("--data", "sst2=GSM8K"), "--data sst2: no attack or ILU environment"),
    ],
)
def test_bad_input_leaves_finished_results_alone(train_only_run, capsys, change, needle):
    """Against the store the good run filled, with the micro models cached: refused in seconds."""
    argv, store = train_only_run
    if not store.exists():
        main(argv)
    capsys.readouterr()
    before = hashlib.sha256(store.read_bytes()).hexdigest()
    flag, value = change
    value = value.replace("DIR", str(store.parent)).replace("MISSING", str(store.parent / "nope.jsonl"))
    value = value.replace("=GSM8K", f"={GSM8K}")
    bad = list(argv)
    if flag == "--data" and value.startswith("gsm8k="):  # in place of the good train file
        bad[bad.index(f"gsm8k={GSM8K}")] = value
    elif flag in bad and flag != "--data":
        bad[bad.index(flag) + 1] = value
    else:
        bad += [flag, value]
    t0 = time.time()
    assert main(bad) == 2
    elapsed = time.time() - t0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and needle in err, err
    assert hashlib.sha256(store.read_bytes()).hexdigest() == before
    assert elapsed < 30, f"refused after {elapsed:.0f} s"
