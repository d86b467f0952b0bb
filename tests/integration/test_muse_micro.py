"""MUSE end to end on tiny models: a target trained on forget + retain "articles" and an oracle
trained on the retain ones only (about 15 s of training), synthetic MUSE files in the older flat
layout, then ``unlearnbench run --benchmark muse-news,... --method npo --attack finetune:arith``.

The target has memorised the forget articles, so VerbMem must be higher and the privleak AUC lower
than the oracle's; every VerbMem/KnowMem number lies in [0, 1] and PrivLeak in [-100, 100/AUC_retrain].
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

import pytest
import torch

from unlearnbench.cli import main

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from helpers_tiny import tiny_tokenizer  # noqa: E402

WORDS = (
    "council bridge river market school doctor village harbour station garden museum festival "
    "storm budget minister court police train farmer teacher report hospital winter summer"
).split()


def _article(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(20)) + "."


def _train(tok, texts: list[str], seed: int, out: Path) -> str:
    """A 2-layer Llama fitted to ``texts`` (full batch, 200 AdamW steps), saved as safetensors."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from unlearnbench.batching import collate, encode_example
    from unlearnbench.models import save_model

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=256,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    model = LlamaForCausalLM(cfg)
    batch = collate([encode_example(tok, "", t) for t in texts], tok.pad_token_id)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(200):
        loss = model(**batch).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.generation_config.pad_token_id = tok.pad_token_id
    save_model(model.eval(), tok, out)
    return str(out)


@pytest.fixture(scope="module")
def muse_world(micro_cache, tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("muse")
    rng = random.Random(0)
    forget, retain, holdout = ([_article(rng) for _ in range(4)] for _ in range(3))
    tok = tiny_tokenizer()
    target = _train(tok, forget + retain, 0, root / "target")
    oracle = _train(tok, retain, 1, root / "oracle")
    data = root / "data"
    data.mkdir()
    files = {
        "verbmem_forget.json": [
            {"prompt": " ".join(a.split()[:10]), "gt": " " + " ".join(a.split()[10:])} for a in forget
        ],
        "knowmem_forget_qa.json": [
            {"question": f"Which word follows '{a.split()[0]}' in article {i}?", "answer": a.split()[1]}
            for i, a in enumerate(forget)
        ],
        "knowmem_forget_qa_icl.json": [{"question": "Which word opens the report?", "answer": "council"}],
        "knowmem_retain2_qa.json": [
            {"question": f"Which word follows '{a.split()[0]}' in story {i}?", "answer": a.split()[1]}
            for i, a in enumerate(retain)
        ],
        "privleak_forget.json": forget,
        "privleak_holdout.json": holdout,
    }
    for name, value in files.items():
        (data / name).write_text(json.dumps(value))
    (data / "raw_forget.txt").write_text("\n\n".join(forget))
    (data / "raw_retain1.txt").write_text("\n\n".join(retain))
    return {"target": target, "oracle": oracle, "data": data, "root": root}


def _run(capsys, args) -> tuple[int, dict]:
    code = main(args)
    out = capsys.readouterr().out
    return code, json.loads(out) if code == 0 else {}


def _check_ranges(doc: dict) -> None:
    for col in (c["column"] for c in doc["columns"]):
        rec = doc["recall"][col]
        assert set(rec["forget"]) == {"verbmem", "knowmem"} and set(rec["retain"]) == {"knowmem"}
        for value in (rec["forget"]["verbmem"], rec["forget"]["knowmem"], rec["retain"]["knowmem"]):
            assert 0.0 <= value <= 1.0
        leak = doc["privleak"][col]
        assert 0.0 <= leak["auc"] <= 1.0
        assert -100.0 <= leak["privleak"] <= 100.0 / leak["auc_retrain"] - 100.0 + 1e-6


def test_muse_run_without_oracle_uses_the_yaml_constant(muse_world, tmp_path, capsys):
    w = muse_world
    bench = f"muse-news,model={w['target']},data={w['data']},max_length=64"
    code, doc = _run(
        capsys,
        [
            "run",
            "--benchmark",
            bench,
            "--method",
            "npo,epochs=1",
            "--attack",
            "finetune:arith,epochs=1",
            "--store",
            str(tmp_path / "r.sqlite"),
            "--json",
            "--quiet",
        ],
    )
    assert code == 0
    assert [c["kind"] for c in doc["cells"]] == ["base", "unlearn", "attack"]
    assert all(c["status"] == "finished" for c in doc["cells"])
    _check_ranges(doc)
    base = doc["privleak"]["base"]
    assert base["reference"] == "constant" and base["auc_retrain"] == pytest.approx(0.4772)
    assert base["auc"] < 0.25 and base["privleak"] < -40  # memorised forget texts leak
    assert doc["recall"]["base"]["forget"]["verbmem"] > 0.3
    assert set(doc["task_accuracy"]["finetune:arith,epochs=1 ep1"]) == {"arith"}


def test_muse_run_with_oracle_and_report(muse_world, tmp_path, capsys):
    from unlearnbench.report import write_report

    w = muse_world
    store = tmp_path / "r.sqlite"
    bench = f"muse-news,model={w['target']},oracle={w['oracle']},data={w['data']},max_length=64"
    code, doc = _run(
        capsys,
        [
            "run",
            "--benchmark",
            bench,
            "--method",
            "npo,epochs=1,lr=1e-3",
            "--attack",
            "finetune:arith,epochs=1",
            "--store",
            str(store),
            "--json",
            "--quiet",
        ],
    )
    assert code == 0
    assert [c["kind"] for c in doc["cells"]] == ["base", "oracle", "control", "unlearn", "attack"]
    _check_ranges(doc)
    rec, leak = doc["recall"], doc["privleak"]
    assert rec["base"]["forget"]["verbmem"] > rec["oracle"]["forget"]["verbmem"] + 0.2
    assert leak["base"]["auc"] < leak["oracle"]["auc"]
    assert leak["unlearned"]["reference"] == "oracle"
    assert leak["unlearned"]["auc_retrain"] == pytest.approx(leak["oracle"]["auc"])
    assert leak["oracle"]["privleak"] == pytest.approx(0.0)
    # the MUSE report table switches to MUSE's own columns
    written = write_report(store, tmp_path / "report")
    table = Path(written["muse_table.md"]).read_text()
    assert "| VerbMem on D_f | KnowMem on D_f | KnowMem on D_r | PrivLeak (%) | FA (arith) |" in table
    assert "the oracle's AUC" in table


def test_muse_missing_file_is_a_one_line_cli_error(muse_world, tmp_path, capsys):
    w = muse_world
    data = tmp_path / "partial"
    data.mkdir()
    for f in Path(w["data"]).iterdir():
        if f.name != "privleak_holdout.json":
            (data / f.name).write_text(f.read_text())
    code = main(
        [
            "run",
            "--benchmark",
            f"muse-news,model={w['target']},data={data}",
            "--method",
            "npo",
            "--store",
            str(tmp_path / "r.sqlite"),
            "--json",
            "--quiet",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.count("\n") == 0 and "'privleak_holdout'" in err and "privleak_holdout.json" in err
    (data / "raw_forget.txt").unlink()
    code = main(
        [
            "run",
            "--benchmark",
            f"muse-news,model={w['target']},data={data}",
            "--method",
            "npo",
            "--store",
            str(tmp_path / "r.sqlite"),
            "--quiet",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and "'raw_forget'" in err and "raw_forget.txt" in err
