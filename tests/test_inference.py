"""unlearnbench.inference against hand computations on a tiny random Llama."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

torch.set_num_threads(1)

from helpers_tiny import tiny_model, tiny_tokenizer  # noqa: E402

from unlearnbench import inference  # noqa: E402
from unlearnbench.batching import encode_example  # noqa: E402

PAIRS = [
    ("Question: Where was Pelton Valemere born?\nAnswer:", " Quessa"),
    ("The birthplace of Alric Ashwood is", " Varnholm."),
    ("Q:", " a rather long answer with several more tokens in it"),
    ("", "Pelton Valemere plays the harp."),
    ("Text: The striker won the final.\nTopic:", " Sports"),
]


@pytest.fixture(scope="module")
def tm():
    tok = tiny_tokenizer()
    return tiny_model(tok, seed=3), tok


def _hand_nll(model, tok, prompt, target):
    e = encode_example(tok, prompt, target)
    ids = torch.tensor([e.ids])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0].float()
    tgt = ids[0, e.n_prompt :]
    nll = F.cross_entropy(logits[e.n_prompt - 1 : -1], tgt, reduction="none")
    acc = (logits[e.n_prompt - 1 : -1].argmax(-1) == tgt).float().mean().item()
    return nll.mean().item(), nll.sum().item(), len(tgt), acc


def test_score_targets_matches_hand_computation(tm):
    model, tok = tm
    scores = inference.score_targets(model, tok, PAIRS, batch_size=1)
    for (p, t), s in zip(PAIRS, scores):
        mean, total, n, acc = _hand_nll(model, tok, p, t)
        assert s.n_tokens == n
        assert s.mean_nll == pytest.approx(mean, abs=1e-5)
        assert s.sum_nll == pytest.approx(total, abs=1e-4)
        assert s.token_acc == pytest.approx(acc)
        assert s.prob == pytest.approx(math.exp(-mean), rel=1e-5)


def test_score_targets_batched_equals_unbatched(tm):
    model, tok = tm
    one = inference.score_targets(model, tok, PAIRS, batch_size=1)
    many = inference.score_targets(model, tok, PAIRS, batch_size=len(PAIRS))
    two = inference.score_targets(model, tok, PAIRS, batch_size=2)
    for a, b, c in zip(one, many, two):
        assert a.n_tokens == b.n_tokens == c.n_tokens
        assert b.mean_nll == pytest.approx(a.mean_nll, abs=1e-5)
        assert c.mean_nll == pytest.approx(a.mean_nll, abs=1e-5)
        assert b.token_acc == a.token_acc == c.token_acc


def test_greedy_generate_batched_equals_unbatched(tm):
    model, tok = tm
    prompts = [
        "Q:",
        "Question: Where was Pelton Valemere born?\nAnswer:",
        "The birthplace of Alric is",
        "Text: The striker won the final.\nTopic:",
    ]
    one = [inference.greedy_generate(model, tok, [p], max_new_tokens=8, stop=())[0] for p in prompts]
    many = inference.greedy_generate(model, tok, prompts, max_new_tokens=8, batch_size=len(prompts), stop=())
    assert many == one
    assert any(g for g in one)  # something was generated at all


def test_greedy_generate_cuts_at_stop(tm):
    model, tok = tm
    full = inference.greedy_generate(model, tok, ["Q:"], max_new_tokens=8, stop=())[0]
    assert len(full) >= 2
    stop = full[1]
    cut = inference.greedy_generate(model, tok, ["Q:"], max_new_tokens=8, stop=(stop,))[0]
    assert cut == full[: full.find(stop)]


def test_score_choices_sums_log_probs(tm):
    model, tok = tm
    prompts = ["Text: The striker won the final.\nTopic:", "Review: a dull film.\nSentiment:"]
    choices = [["World", "Sports", "Business", "Sci/Tech"], ["negative", "positive"]]
    got = inference.score_choices(model, tok, prompts, choices, batch_size=3)
    assert [len(g) for g in got] == [4, 2]
    for p, cs, row in zip(prompts, choices, got):
        ref = inference.score_targets(model, tok, [(p, " " + c) for c in cs], batch_size=1)
        for value, r in zip(row, ref):
            assert value == pytest.approx(-r.sum_nll, abs=1e-4)
            assert value == pytest.approx(-_hand_nll(model, tok, p, " " + cs[row.index(value)])[1], abs=1e-4)


def test_softmax_prob():
    assert inference.softmax_prob([0.0, 0.0], 0) == pytest.approx(0.5)
    assert inference.softmax_prob([0.0, math.log(3.0)], 1) == pytest.approx(0.75)
    assert inference.softmax_prob([-1000.0, -1001.0, -1002.0], 0) == pytest.approx(
        1 / (1 + math.exp(-1) + math.exp(-2))
    )
