"""Gradient unlearning methods (GradAscent, GradDiff, NPO) against the formulas in
shared/reference/algorithms.md, on a tiny random Llama."""

from __future__ import annotations

import copy
import math
from collections import defaultdict
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

torch.set_num_threads(1)

from helpers_tiny import encode_all as _enc  # noqa: E402
from helpers_tiny import (  # noqa: E402
    forget_examples,
    perturb_,
    retain_examples,
    state_copy,
    tiny_model,
    tiny_tokenizer,
)
from helpers_tiny import make_batch as _batch
from helpers_tiny import seq_nll as _seq_nll
from helpers_tiny import unlearn_data as _data

from unlearnbench import inference  # noqa: E402
from unlearnbench.batching import encode_example  # noqa: E402
from unlearnbench.data.types import UnlearnData  # noqa: E402
from unlearnbench.errors import UnlearnbenchError  # noqa: E402
from unlearnbench.methods.base import GradientMethodConfig, MethodDiverged  # noqa: E402
from unlearnbench.methods.gradascent import GradAscent, GradAscentConfig  # noqa: E402
from unlearnbench.methods.graddiff import GradDiff, GradDiffConfig  # noqa: E402
from unlearnbench.methods.npo import NPO, NPOConfig, npo_forget_loss  # noqa: E402

# -- helpers ------------------------------------------------------------------------------


def _token_mean(model, enc, idx):
    s, n = zip(*(_seq_nll(model, enc[i]) for i in idx))
    return sum(s) / sum(n)


def _mean_forget_nll(model):
    tok = tiny_tokenizer()
    scores = inference.score_targets(model, tok, [(e.prompt, e.target) for e in forget_examples()])
    return sum(s.mean_nll for s in scores) / len(scores)


IDX = [0, 5, 11, 20]  # examples of different lengths


# -- NPO ----------------------------------------------------------------------------------


def test_npo_forget_loss_formula_on_random_tensors():
    g = torch.Generator().manual_seed(0)
    nll, ref = torch.rand(7, generator=g) * 30, torch.rand(7, generator=g) * 30
    for beta in (0.1, 0.5, 2.0):
        want = (
            -(2 / beta)
            * sum(math.log(1 / (1 + math.exp(-beta * (a - b)))) for a, b in zip(nll.tolist(), ref.tolist()))
            / 7
        )
        assert npo_forget_loss(nll, ref, beta).item() == pytest.approx(want, rel=1e-5)
    # at nll == ref: log sigma(0) = -log 2
    assert npo_forget_loss(ref, ref, 0.1).item() == pytest.approx(20 * math.log(2), rel=1e-6)


def test_npo_summed_loss_at_step0_is_two_over_beta_log2():
    model, enc = tiny_model(), _enc(forget_examples())
    beta = 0.1
    m = NPO(NPOConfig(beta=beta, retain_loss="none"))
    m.setup(model, _data(), enc)
    full = _batch(enc, list(range(len(enc))))  # the very batch setup used: bit-identical
    loss, parts = m.loss(model, full, None)
    assert loss.item() == pytest.approx((2 / beta) * math.log(2), rel=1e-6)
    assert parts["forget_loss"] == pytest.approx((2 / beta) * math.log(2), rel=1e-6)
    sub = _batch(enc, IDX)  # other padding width: equal up to float noise
    loss, _ = m.loss(model, sub, None)
    assert loss.item() == pytest.approx((2 / beta) * math.log(2), abs=1e-4)


def test_npo_setup_precomputes_reference_and_keeps_no_copy_for_nll():
    model, enc = tiny_model(), _enc(forget_examples())
    m = NPO(NPOConfig(retain_loss="nll"))
    m.setup(model, _data(), enc)
    assert m.ref_model is None
    assert m.ref_sum.shape == m.ref_count.shape == (len(enc),)
    for i in range(len(enc)):
        s, n = _seq_nll(model, enc[i])
        assert m.ref_sum[i].item() == pytest.approx(s, rel=1e-5)
        assert m.ref_count[i].item() == n

    kl = NPO(NPOConfig(retain_loss="kl"))
    kl.setup(model, _data(), enc)
    assert kl.ref_model is not None and kl.ref_model is not model
    assert not any(p.requires_grad for p in kl.ref_model.parameters())
    ref_state = kl.ref_model.state_dict()
    assert all(torch.equal(v, ref_state[k]) for k, v in model.state_dict().items())


@pytest.mark.parametrize("variant", ["summed", "mean"])
def test_npo_loss_by_hand_after_perturbation(variant):
    model, enc = tiny_model(), _enc(forget_examples())
    ref = copy.deepcopy(model)
    beta = 0.5
    m = NPO(NPOConfig(beta=beta, variant=variant, retain_loss="none"))
    m.setup(model, _data(), enc)
    perturb_(model, 0.05)
    loss, parts = m.loss(model, _batch(enc, IDX), None)
    if variant == "mean":
        d = _token_mean(model, enc, IDX) - _token_mean(ref, enc, IDX)
        want = -(2 / beta) * F.logsigmoid(torch.tensor(beta * d, dtype=torch.float64)).item()
    else:
        ds = [_seq_nll(model, enc[i])[0] - _seq_nll(ref, enc[i])[0] for i in IDX]
        want = -(2 / beta) * F.logsigmoid(beta * torch.tensor(ds, dtype=torch.float64)).mean().item()
    assert abs(want - (2 / beta) * math.log(2)) > 1e-2  # the perturbation moved it
    assert loss.item() == pytest.approx(want, rel=1e-4)
    assert parts["forget_nll"] == pytest.approx(_token_mean(model, enc, IDX), rel=1e-4)


# -- GradAscent / GradDiff ----------------------------------------------------------------


def test_gradascent_loss_is_negative_token_mean_ce():
    model, enc = tiny_model(), _enc(forget_examples())
    loss, parts = GradAscent().loss(model, _batch(enc, IDX), None)
    want = _token_mean(model, enc, IDX)
    mean_of_means = sum(s / n for s, n in (_seq_nll(model, enc[i]) for i in IDX)) / len(IDX)
    assert abs(want - mean_of_means) > 1e-4  # the distinction below is observable
    assert loss.item() == pytest.approx(-want, rel=1e-5)
    assert parts["forget_ce"] == pytest.approx(want, rel=1e-5)


def test_graddiff_loss_is_weighted_difference():
    model = tiny_model()
    fenc, renc = _enc(forget_examples()), _enc(retain_examples())
    m = GradDiff(GradDiffConfig(gamma=0.5, alpha=2.0, retain_loss="nll"))
    ridx = [1, 7, 30]
    loss, parts = m.loss(model, _batch(fenc, IDX), _batch(renc, ridx))
    ce_f, nll_r = _token_mean(model, fenc, IDX), _token_mean(model, renc, ridx)
    assert loss.item() == pytest.approx(-0.5 * ce_f + 2.0 * nll_r, rel=1e-5)
    assert parts["retain"] == pytest.approx(nll_r, rel=1e-5)
    none = GradDiff(GradDiffConfig(gamma=0.5, alpha=2.0, retain_loss="none"))
    assert none.loss(model, _batch(fenc, IDX), _batch(renc, ridx))[0].item() == pytest.approx(-0.5 * ce_f, rel=1e-5)


def test_kl_retain_term_zero_at_start_positive_after_perturbation():
    model = tiny_model()
    renc = _enc(retain_examples())
    m = GradDiff(GradDiffConfig(retain_loss="kl_answer"))
    m.setup(model, _data(), _enc(forget_examples()))
    rb = _batch(renc, [2, 9, 40])
    assert m.retain_term(model, rb).item() == pytest.approx(0.0, abs=1e-7)
    perturb_(model, 0.05)
    kl = m.retain_term(model, rb).item()
    assert kl > 1e-4
    # by hand on one example: mean over answer tokens of KL(p_theta || p_ref)
    e = renc[2]
    ids = torch.tensor([e.ids])
    with torch.no_grad():
        lp = F.log_softmax(model(input_ids=ids).logits[0, e.n_prompt - 1 : -1].float(), -1)
        lq = F.log_softmax(m.ref_model(input_ids=ids).logits[0, e.n_prompt - 1 : -1].float(), -1)
    want = (lp.exp() * (lp - lq)).sum(-1).mean().item()
    assert m.retain_term(model, _batch(renc, [2])).item() == pytest.approx(want, rel=1e-4)


def test_kl_is_the_reference_term_over_every_position():
    """``kl`` is TOFU / open-unlearning's KL(p_ref || p_theta) over every position of the padded
    batch, mean over batch x length; the old answer-token KL(p_theta || p_ref) is ``kl_answer``."""
    assert GradDiffConfig(retain_loss="kl").retain_loss == "kl_ref"  # never equal to old stored "kl"
    model = tiny_model()
    renc = _enc(retain_examples())
    ref_m = GradDiff(GradDiffConfig(retain_loss="kl"))
    ref_m.setup(model, _data(), _enc(forget_examples()))
    old = GradDiff(GradDiffConfig(retain_loss="kl_answer"))
    old.ref_model = ref_m.ref_model
    perturb_(model, 0.05)
    idx = [2, 9, 40]
    rb = _batch(renc, idx)
    t = rb.tensors
    with torch.no_grad():
        lp = F.log_softmax(model(input_ids=t["input_ids"], attention_mask=t["attention_mask"]).logits.double(), -1)
        lq = F.log_softmax(
            ref_m.ref_model(input_ids=t["input_ids"], attention_mask=t["attention_mask"]).logits.double(), -1
        )
    b, n, _ = lp.shape
    want = (lq.exp() * (lq - lp)).sum(-1).sum().item() / (b * n)  # every position, padding included
    got = ref_m.retain_term(model, rb).item()
    assert got == pytest.approx(want, rel=1e-4)
    assert abs(got - old.retain_term(model, rb).item()) > 1e-3 * got  # the two definitions differ here


# -- the training loop --------------------------------------------------------------------


@pytest.mark.parametrize(
    "method",
    [
        GradAscent(GradAscentConfig(lr=1e-2, max_steps=3, batch_size=4)),
        NPO(NPOConfig(lr=1e-2, max_steps=3, batch_size=4, beta=0.5)),
    ],
)
def test_unlearn_lowers_forget_likelihood(method):
    model = tiny_model()
    before = _mean_forget_nll(model)
    out = method.unlearn(model, _data())
    after = _mean_forget_nll(model)
    assert out["steps"] == 3 and len(out["history"]) == 3
    assert out["effective_batch_size"] == 4
    assert after > before + 0.05
    assert method.ref_model is None
    assert not model.training


def test_steps_and_effective_batch_size_with_grad_accum(monkeypatch):
    n = len(forget_examples())  # 36
    calls = defaultdict(int)
    orig = GradAscent.loss

    def counting(self, model, forget, retain):
        calls[self.config.grad_accum] += 1
        return orig(self, model, forget, retain)

    monkeypatch.setattr(GradAscent, "loss", counting)
    a = GradAscent(GradAscentConfig(lr=1e-3, epochs=1, batch_size=4, grad_accum=1)).unlearn(tiny_model(), _data())
    b = GradAscent(GradAscentConfig(lr=1e-3, epochs=1, batch_size=4, grad_accum=3)).unlearn(tiny_model(), _data())
    assert a["steps"] == math.ceil(n / 4) == 9 and a["effective_batch_size"] == 4
    assert b["steps"] == math.ceil(n / 12) == 3 and b["effective_batch_size"] == 12
    assert calls[1] == 9 and calls[3] == 9  # micro-batches per epoch unchanged


def test_grad_accum_matches_large_batch(monkeypatch):
    tok = tiny_tokenizer()
    by_len = defaultdict(list)
    for ex in forget_examples():
        by_len[len(encode_example(tok, ex.prompt, ex.target).ids)].append(ex)
    four = next(v for v in by_len.values() if len(v) >= 4)[:4]  # equal token counts: token means agree
    data = UnlearnData(four, [], tok)

    def run(bs, ga):
        grads, seen = [], []
        orig_clip, orig_loss = torch.nn.utils.clip_grad_norm_, GradAscent.loss

        def clip(params, max_norm):
            params = list(params)
            grads.append([p.grad.detach().clone() for p in params])
            return orig_clip(params, max_norm)

        def loss(self, model, forget, retain):
            seen.extend(forget.index.tolist())
            return orig_loss(self, model, forget, retain)

        monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", clip)
        monkeypatch.setattr(GradAscent, "loss", loss)
        model = tiny_model()
        GradAscent(GradAscentConfig(lr=1e-3, batch_size=bs, grad_accum=ga, max_steps=1)).unlearn(model, data)
        monkeypatch.undo()
        return grads, sorted(seen), state_copy(model)

    g_acc, seen_acc, w_acc = run(2, 2)
    g_big, seen_big, w_big = run(4, 1)
    assert seen_acc == seen_big == [0, 1, 2, 3]
    assert len(g_acc) == len(g_big) == 1
    assert max(g.abs().max().item() for g in g_big[0]) > 1e-3
    for a, b in zip(g_acc[0], g_big[0]):
        assert torch.allclose(a, b, atol=1e-5, rtol=1e-4)
    w0 = state_copy(tiny_model())
    assert any(not torch.equal(w0[k], w_big[k]) for k in w0)
    for k in w_big:
        assert torch.allclose(w_acc[k], w_big[k], atol=1e-5)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_nonfinite_loss_raises_method_diverged(monkeypatch, bad):
    def loss(self, model, forget, retain):
        return token_like(model) * bad, {}

    def token_like(model):
        return next(model.parameters()).sum() * 0 + 1

    monkeypatch.setattr(GradAscent, "loss", loss)
    with pytest.raises(MethodDiverged, match="step 0"):
        GradAscent(GradAscentConfig(max_steps=2, batch_size=4)).unlearn(tiny_model(), _data())


def test_empty_forget_set_is_an_error():
    with pytest.raises(UnlearnbenchError, match="empty"):
        GradAscent().unlearn(tiny_model(), UnlearnData([], retain_examples(), tiny_tokenizer()))


@pytest.mark.parametrize(
    "cls,kwargs",
    [
        (GradientMethodConfig, {"lr": 0.0}),
        (GradientMethodConfig, {"lr": -1e-3}),
        (GradientMethodConfig, {"warmup": 1.0}),
        (GradientMethodConfig, {"warmup": -0.1}),
        (GradientMethodConfig, {"batch_size": 0}),
        (GradientMethodConfig, {"grad_accum": 0}),
        (GradientMethodConfig, {"epochs": 0}),
        (NPOConfig, {"beta": 0.0}),
        (NPOConfig, {"beta": -0.1}),
        (NPOConfig, {"lr": 0.0}),
    ],
)
def test_config_validation(cls, kwargs):
    with pytest.raises(ValueError):
        cls(**kwargs)
    cls()  # defaults are valid


def test_unlearn_restores_trainability_and_drops_reference_even_on_divergence(monkeypatch):
    model = tiny_model()
    model.model.embed_tokens.weight.requires_grad_(False)
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    m = GradDiff(GradDiffConfig(retain_loss="kl", max_steps=2, batch_size=4))

    def loss(self, model, forget, retain):
        for p in model.parameters():  # a method that freezes weights while training
            p.requires_grad_(False)
        return torch.tensor(float("nan")), {}

    monkeypatch.setattr(GradDiff, "loss", loss)
    with pytest.raises(MethodDiverged):
        m.unlearn(model, _data())
    assert {n: p.requires_grad for n, p in model.named_parameters()} == flags
    assert m.ref_model is None
    assert not model.training


@pytest.mark.parametrize("bench", ["tofu", "muse-news", "muse-books", "wmdp", "toy"])
def test_benchmark_recipes_name_their_retain_term(bench):
    """Each benchmark's recipe says which retain term it uses (issue 11, item 2)."""
    import yaml

    path = Path(__file__).resolve().parents[1] / "tasks" / "benchmarks" / f"{bench}.yaml"
    methods = yaml.safe_load(path.read_text())["defaults"]["methods"]
    with_retain = {m: cfg for m, cfg in methods.items() if m in ("graddiff", "npo", "simnpo")}
    assert with_retain
    for name, cfg in with_retain.items():
        assert cfg.get("retain_loss") in ("nll", "kl", "kl_answer"), (bench, name)


def _factors(schedule, warmup, steps):
    from unlearnbench.methods.base import lr_schedule

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = lr_schedule(opt, schedule, warmup, steps)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_lr_schedules():
    """constant (MUSE: no warm-up), the old warm-up + constant, and HF Trainer's linear decay (TOFU, WMDP NPO)."""
    assert _factors("constant", 0.0, 5) == [1.0] * 5
    assert _factors("constant", 0.4, 5) == pytest.approx([0.5, 1.0, 1.0, 1.0, 1.0])  # W = 2, unchanged rule
    # transformers' linear schedule: s/W in the warm-up, then (T - s)/(T - W) down to 0
    assert _factors("linear", 0.2, 10) == pytest.approx([0.0, 0.5, 1.0, 0.875, 0.75, 0.625, 0.5, 0.375, 0.25, 0.125])
    assert _factors("linear", 0.0, 4) == pytest.approx([1.0, 0.75, 0.5, 0.25])
    from unlearnbench.errors import SpecError
    from unlearnbench.spec import build_config

    with pytest.raises(SpecError, match="expects one of 'constant', 'linear'"):
        build_config(GradDiffConfig, {"schedule": "cosine"})


@pytest.mark.parametrize(
    "bench,method,schedule,warmup",
    [("muse-news", "npo", "constant", 0.0), ("tofu", "npo", "linear", 0.1), ("wmdp", "npo", "linear", 0.1)],
)
def test_benchmark_recipes_choose_their_reference_schedule(bench, method, schedule, warmup):
    import yaml

    path = Path(__file__).resolve().parents[1] / "tasks" / "benchmarks" / f"{bench}.yaml"
    cfg = yaml.safe_load(path.read_text())["defaults"]["methods"][method]
    assert (cfg["schedule"], cfg["warmup"]) == (schedule, warmup)
