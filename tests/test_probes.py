"""FormProbe.score: the documented metric keys, their ranges, and what 'correct' means."""

from __future__ import annotations

import math

import pytest
import torch

torch.set_num_threads(1)

from helpers_tiny import tiny_model, tiny_tokenizer, tiny_world  # noqa: E402

from unlearnbench import inference  # noqa: E402
from unlearnbench.data.types import ProbeItem  # noqa: E402
from unlearnbench.probes.base import ProbeConfig  # noqa: E402
from unlearnbench.probes.forms import MCQProbe, QAProbe, TrueFalseProbe  # noqa: E402

GEN_KEYS = {"prob", "token_acc", "em", "rougeL_recall", "correct", "generation"}
CHOICE_KEYS = {"prob", "correct"}


@pytest.fixture(scope="module")
def tm():
    tok = tiny_tokenizer()
    return tiny_model(tok, seed=1), tok


def _items(form, n=6):
    w = tiny_world()
    return w.probe_items(form, w.forget_ids)[:n]


def _in_unit(rows):
    """Every score in [0, 1]; the generated text (a string) is not a score."""
    return all(0.0 <= v <= 1.0 and not math.isnan(v) for r in rows for v in r.values() if not isinstance(v, str))


def test_generative_probe_keys_ranges_and_correct_is_em(tm):
    model, tok = tm
    items = _items("qa")
    rows = QAProbe(ProbeConfig(max_new_tokens=4, batch_size=4)).score(model, tok, items)
    assert len(rows) == len(items)
    assert all(set(r) == GEN_KEYS for r in rows)
    assert _in_unit(rows)
    assert all(r["correct"] == r["em"] for r in rows)
    # the text scored is the greedy generation, kept with the scores
    gens = inference.greedy_generate(model, tok, [it.prompt for it in items], 4, 4)
    assert [r["generation"] for r in rows] == gens
    # prob is exp(-mean NLL) of " " + answer
    ref = inference.score_targets(model, tok, [(it.prompt, " " + it.answer) for it in items])
    assert [r["prob"] for r in rows] == pytest.approx([s.prob for s in ref], rel=1e-5)


def test_generative_probe_scores_generation_against_answer(tm, monkeypatch):
    model, tok = tm
    items = _items("qa", 3)
    gens = [" " + items[0].answer + " and more", "nothing like it", items[2].answer.lower() + "."]
    monkeypatch.setattr(inference, "greedy_generate", lambda *a, **k: list(gens))
    rows = QAProbe().score(model, tok, items)
    assert [r["em"] for r in rows] == [1.0, 0.0, 1.0]
    assert [r["correct"] for r in rows] == [1.0, 0.0, 1.0]
    assert rows[0]["rougeL_recall"] == pytest.approx(1.0)
    assert rows[1]["rougeL_recall"] == pytest.approx(0.0)


@pytest.mark.parametrize("probe_cls,form", [(MCQProbe, "mcq"), (TrueFalseProbe, "tf")])
def test_choice_probe_keys_and_ranges(tm, probe_cls, form):
    model, tok = tm
    items = _items(form)
    assert all(it.choices and 0 <= it.label < len(it.choices) for it in items)
    rows = probe_cls(ProbeConfig(batch_size=4)).score(model, tok, items)
    assert len(rows) == len(items)
    assert all(set(r) == CHOICE_KEYS for r in rows)
    assert _in_unit(rows)
    assert all(r["correct"] in (0.0, 1.0) for r in rows)
    scores = inference.score_choices(model, tok, [it.prompt for it in items], [it.choices for it in items])
    for r, s, it in zip(rows, scores, items):
        assert r["prob"] == pytest.approx(inference.softmax_prob(s, it.label), rel=1e-5)
        assert r["correct"] == float(max(range(len(s)), key=s.__getitem__) == it.label)


def test_choice_correct_iff_argmax_is_label(tm, monkeypatch):
    model, tok = tm
    items = [
        ProbeItem(f"mcq/x/{i}", 0, "city", "mcq", f"Question {i}?\nAnswer:", "ABCD"[lab], ("A", "B", "C", "D"), lab)
        for i, lab in enumerate([0, 2, 3, 1])
    ]
    fake = [
        [-1.0, -2.0, -3.0, -4.0],  # argmax 0, label 0 -> right
        [-1.0, -2.0, -0.5, -4.0],  # argmax 2, label 2 -> right
        [-0.1, -2.0, -3.0, -0.2],  # argmax 0, label 3 -> wrong (close second)
        [-5.0, -5.0, -5.0, -5.0],
    ]  # a tie: argmax taken as the first, label 1 -> wrong
    monkeypatch.setattr(inference, "score_choices", lambda *a, **k: [list(s) for s in fake])
    rows = MCQProbe().score(model, tok, items)
    assert [r["correct"] for r in rows] == [1.0, 1.0, 0.0, 0.0]
    assert rows[3]["prob"] == pytest.approx(0.25)
    assert rows[0]["prob"] == pytest.approx(inference.softmax_prob(fake[0], 0))
    assert rows[2]["prob"] < 0.5
