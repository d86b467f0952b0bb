"""Jensen-Shannon probe: the formula on hand-made distributions, identical models give 0, different
models give a value in (0, ln 2], the top-k approximation is a lower bound, refusals."""

import copy
import logging
import math
from types import SimpleNamespace

import pytest
import torch

from unlearnbench.errors import UnlearnbenchError
from unlearnbench.probes import js as jsp

LN2 = math.log(2)


def logp(*probs):
    return torch.tensor(probs, dtype=torch.float32).log()


def test_formula_hand_made():
    assert float(jsp.js_from_logprobs(logp(0.2, 0.8), logp(0.2, 0.8))) == pytest.approx(0.0, abs=1e-7)
    assert float(jsp.js_from_logprobs(logp(1.0, 0.0), logp(0.0, 1.0))) == pytest.approx(LN2)
    # P = (1, 0), Q = (1/2, 1/2): M = (3/4, 1/4); JS = 1/2 ln(4/3) + 1/2 (1/2 ln(2/3) + 1/2 ln 2)
    want = 0.5 * math.log(4 / 3) + 0.5 * (0.5 * math.log(2 / 3) + 0.5 * math.log(2))
    assert float(jsp.js_from_logprobs(logp(1.0, 0.0), logp(0.5, 0.5))) == pytest.approx(want, rel=1e-5)
    batch = jsp.js_from_logprobs(torch.stack([logp(0.5, 0.5), logp(0.9, 0.1)]), torch.stack([logp(0.5, 0.5)] * 2))
    assert batch.shape == (2,) and float(batch[0]) == pytest.approx(0.0, abs=1e-7) and float(batch[1]) > 0


def test_coarsen_keeps_mass():
    lp = torch.log_softmax(torch.randn(3, 10), -1)
    top = lp.topk(4, -1).indices
    c = jsp.coarsen(lp, top)
    assert c.shape == (3, 5)
    assert torch.allclose(c.exp().sum(-1), torch.ones(3), atol=1e-6)


def items():
    return [
        SimpleNamespace(item_id=f"i{k}", prompt=f"Question: Where was person {k} born?\nAnswer:", answer=a)
        for k, a in enumerate(("Varnholm", "Quessa Otterlee", "Brisca"))
    ]


def lm(model, tok, sha):
    return SimpleNamespace(model=model, tokenizer=tok, weights_sha256=sha)


def test_identical_zero_different_positive():
    from helpers_tiny import tiny_model, tiny_tokenizer

    tok = tiny_tokenizer()
    a, b = tiny_model(tok, seed=0), tiny_model(tok, seed=1)
    p = jsp.JSDistanceProbe()
    its = items()
    same = p.score(copy.deepcopy(a), tok, its, reference=lm(a, tok, "a"))
    assert [r["js"] for r in same] == pytest.approx([0.0] * 3, abs=1e-6)
    diff = [r["js"] for r in p.score(a, tok, its, reference=lm(b, tok, "b"))]
    assert all(0.0 < v <= LN2 for v in diff)
    assert len(p._cache) == 2  # one oracle entry per (oracle, item list)
    p.score(a, tok, its, reference=lm(b, tok, "b"))
    assert len(p._cache) == 2  # reused
    # top-k + tail: a lower bound of the exact value; with k = vocab it is exact
    approx = jsp.JSDistanceProbe(jsp.JSConfig(full_vocab_max=10, top_k=5))
    low = [r["js"] for r in approx.score(a, tok, its, reference=lm(b, tok, "b"))]
    assert all(0.0 < lo <= ex + 1e-6 for lo, ex in zip(low, diff))
    full = jsp.JSDistanceProbe(jsp.JSConfig(full_vocab_max=10, top_k=len(tok)))
    assert [r["js"] for r in full.score(a, tok, its, reference=lm(b, tok, "b"))] == pytest.approx(diff, abs=1e-5)


def test_refusals_and_no_oracle(caplog):
    from helpers_tiny import tiny_model, tiny_tokenizer

    tok = tiny_tokenizer()
    a = tiny_model(tok)
    p = jsp.JSDistanceProbe()
    with caplog.at_level(logging.WARNING):
        assert p.score(a, tok, items(), reference=None) == []
    assert "no retrain oracle" in caplog.text
    other = copy.deepcopy(a)
    other.resize_token_embeddings(len(tok) + 8)
    with pytest.raises(UnlearnbenchError, match="different vocabularies"):
        p.score(a, tok, items(), reference=lm(other, tok, "o"))
    tok2 = copy.deepcopy(tok)
    tok2.get_vocab = lambda: {"x": 0}
    with pytest.raises(UnlearnbenchError, match="tokenizer and the oracle's differ"):
        p.score(a, tok, items(), reference=lm(tiny_model(tok), tok2, "o"))
    assert jsp.JSDistanceProbe.needs_reference is True


def test_report_table_from_store(tmp_path):
    from unlearnbench.report import distance_fluency_table, write_report
    from unlearnbench.store import ResultStore, ScoreRow, cell_id

    def commit(store, run, kind, label, rows):
        key = {"kind": kind, **label}
        store.commit_cell(run, cell_id(key), key, kind, label, rows)

    path = tmp_path / "r.sqlite"
    with ResultStore(path) as store:
        assert distance_fluency_table(store).rows == []
        run = store.start_run([], {})
        base = {"model": "m", "probe_suite": "js,fluency", "seed": 0}
        for kind, js in (("base", (0.3, 0.1)), ("oracle", (0.0, 0.0))):
            commit(
                store,
                run,
                kind,
                {**base, "method": kind},
                [ScoreRow(kind, -1, "forget", "js", f"i{k}", "js", js[0] + k * 0.1) for k in range(2)]
                + [
                    ScoreRow(kind, -1, "retain", "js", "i0", "js", js[1]),
                    ScoreRow(kind, -1, "forget", "fluency", "i0", "empty", 1.0),
                ],
            )
        label = {**base, "method": "npo", "method_config": {"lr": 1}}
        commit(store, run, "unlearn", label, [ScoreRow("unlearned", 0, "forget", "js", "i0", "js", 0.2)])
        commit(
            store,
            run,
            "attack",
            {**label, "attack": "finetune:arith", "attack_config": {}},
            [ScoreRow(f"epoch={e}", e, "forget", "js", "i0", "js", 0.1 * e) for e in range(3)],
        )
        store.finish_run(run)
        t = distance_fluency_table(store)
    assert t.header == ["metric / split", "base", "oracle", "npo", "npo + finetune:arith"]
    rows = {r[0]: r[1:] for r in t.rows}
    assert rows["JS to oracle (nats) / forget"] == pytest.approx([0.35, 0.05, 0.2, 0.2])  # attack: last epoch
    assert rows["JS to oracle (nats) / retain"][:2] == pytest.approx([0.1, 0.0])
    assert math.isnan(rows["JS to oracle (nats) / retain"][2])
    assert rows["empty generations / forget"][:2] == [1.0, 1.0]
    assert "empty generations / retain" not in rows  # no values: no row
    written = write_report(path, tmp_path / "out")
    assert "distance_fluency_table.csv" in written
    assert "Distribution distance and fluency" in (tmp_path / "out" / "report.html").read_text()
