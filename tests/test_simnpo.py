"""SimNPO against its formula (shared/reference/algorithms.md, with the sign of the paper and of
open-unlearning, see unlearnbench/methods/simnpo.py) on a tiny random Llama."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

torch.set_num_threads(1)

from helpers_tiny import encode_all as _enc  # noqa: E402
from helpers_tiny import forget_examples, perturb_, retain_examples, tiny_model, tiny_tokenizer  # noqa: E402
from helpers_tiny import make_batch as _batch
from helpers_tiny import seq_nll as _seq_nll
from helpers_tiny import unlearn_data as _data

from unlearnbench import inference  # noqa: E402
from unlearnbench.methods.simnpo import SimNPO, SimNPOConfig, simnpo_forget_loss  # noqa: E402
from unlearnbench.registry import METHODS  # noqa: E402

IDX = [0, 5, 11, 20]  # different lengths: the batch is padded


def _by_hand(model, enc, idx, beta, delta):
    terms = []
    for i in idx:
        s, n = _seq_nll(model, enc[i])
        terms.append(math.log(1 / (1 + math.exp(-beta * (s / n - delta)))))
    return -(2 / beta) * sum(terms) / len(terms)


def test_registered_with_open_unlearning_defaults():
    assert "simnpo" in METHODS.names() and METHODS.get("simnpo") is SimNPO
    c = SimNPOConfig()
    assert (c.beta, c.gamma, c.alpha, c.delta, c.retain_loss) == (4.5, 0.125, 1.0, 0.0, "nll")
    assert SimNPO.version == "1"
    for bad in ({"beta": 0.0}, {"beta": -1.0}, {"lr": 0.0}):
        with pytest.raises(ValueError):
            SimNPOConfig(**bad)


def test_forget_loss_formula_on_random_tensors():
    g = torch.Generator().manual_seed(0)
    s, n = torch.rand(6, generator=g) * 40, torch.randint(1, 12, (6,), generator=g)
    for beta, delta in ((4.5, 0.0), (1.0, 0.7), (0.2, -1.0)):
        want = (
            -(2 / beta)
            * sum(math.log(1 / (1 + math.exp(-beta * (a / b - delta)))) for a, b in zip(s.tolist(), n.tolist()))
            / 6
        )
        assert simnpo_forget_loss(s, n, beta, delta).item() == pytest.approx(want, rel=1e-5)
    # NLL -> 0 at δ=0 gives (2/β)·log 2, and the loss falls as the forget NLL rises
    assert simnpo_forget_loss(torch.zeros(3), torch.ones(3), 4.5, 0.0).item() == pytest.approx(2 / 4.5 * math.log(2))
    assert simnpo_forget_loss(s + 5, n, 4.5, 0.0) < simnpo_forget_loss(s, n, 4.5, 0.0)


def test_loss_equals_formula_by_hand_on_a_padded_batch():
    model, enc = tiny_model(), _enc(forget_examples())
    beta = 0.5  # a small β keeps σ away from saturation, so the comparison is sensitive
    m = SimNPO(SimNPOConfig(beta=beta, gamma=1.0, retain_loss="none"))
    loss, parts = m.loss(model, _batch(enc, IDX), None)
    want = _by_hand(model, enc, IDX, beta, 0.0)
    summed = (
        -(2 / beta) * sum(F.logsigmoid(torch.tensor(beta * _seq_nll(model, enc[i])[0])).item() for i in IDX) / len(IDX)
    )
    assert abs(want - summed) > 1e-2  # length normalisation is observable
    assert loss.item() == pytest.approx(want, rel=1e-5)
    assert parts["forget_loss"] == pytest.approx(want, rel=1e-5)
    assert parts["retain"] == 0.0


def test_gamma_alpha_and_nll_retain_term():
    model = tiny_model()
    fenc, renc = _enc(forget_examples()), _enc(retain_examples())
    ridx = [1, 7, 30]
    m = SimNPO(SimNPOConfig(beta=0.5, gamma=0.125, alpha=2.0, retain_loss="nll"))
    loss, parts = m.loss(model, _batch(fenc, IDX), _batch(renc, ridx))
    s, n = zip(*(_seq_nll(model, renc[i]) for i in ridx))
    retain_nll = sum(s) / sum(n)
    assert parts["retain"] == pytest.approx(retain_nll, rel=1e-5)
    assert loss.item() == pytest.approx(0.125 * _by_hand(model, fenc, IDX, 0.5, 0.0) + 2.0 * retain_nll, rel=1e-5)


@pytest.mark.parametrize("delta", [-1.0, 0.5, 3.0])
def test_delta_shifts_the_per_token_nll(delta):
    model, enc = tiny_model(), _enc(forget_examples())
    beta = 0.5
    b = _batch(enc, IDX)
    base = SimNPO(SimNPOConfig(beta=beta, retain_loss="none", gamma=1.0)).loss(model, b, None)[0].item()
    shifted = SimNPO(SimNPOConfig(beta=beta, delta=delta, retain_loss="none", gamma=1.0)).loss(model, b, None)[0].item()
    assert shifted == pytest.approx(_by_hand(model, enc, IDX, beta, delta), rel=1e-5)
    # a larger margin δ lowers the argument of σ, so the loss rises (and vice versa)
    assert (shifted > base) == (delta > 0) and abs(shifted - base) > 1e-3


def test_keeps_no_reference_model():
    model, enc = tiny_model(), _enc(forget_examples())
    m = SimNPO(SimNPOConfig(beta=0.5, gamma=1.0, retain_loss="nll"))
    m.setup(model, _data(), enc)
    assert m.ref_model is None
    assert not any(isinstance(v, (torch.Tensor, torch.nn.Module)) for v in vars(m).values())
    # the loss is a function of the current model only: after a change it is the formula again
    perturb_(model, 0.05)
    assert m.loss(model, _batch(enc, IDX), None)[1]["forget_loss"] == pytest.approx(
        _by_hand(model, enc, IDX, 0.5, 0.0), rel=1e-5
    )


def test_unlearn_lowers_forget_likelihood():
    model, tok = tiny_model(), tiny_tokenizer()
    pairs = [(e.prompt, e.target) for e in forget_examples()]

    def mean_nll():
        scores = inference.score_targets(model, tok, pairs)
        return sum(s.mean_nll for s in scores) / len(scores)

    before = mean_nll()
    # the retain set shares the forget set's templates: without a retain term the forget effect is clean
    m = SimNPO(SimNPOConfig(lr=1e-2, max_steps=3, batch_size=4, beta=0.5, gamma=1.0, retain_loss="none"))
    out = m.unlearn(model, _data())
    assert out["steps"] == 3 and len(out["history"]) == 3
    assert mean_nll() > before + 0.05
    assert m.ref_model is None and not model.training
