"""ILU (methods/ilu.py): the IRMv1 penalty against finite differences and its closed form, the
wrapping of a base method (λ=0 reproduces it bit for bit), environments, binding and the runner hook."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

torch.set_num_threads(1)

from helpers_tiny import (  # noqa: E402
    forget_examples,
    retain_examples,
    state_copy,
    states_equal,
    tiny_model,
    tiny_tokenizer,
)

from unlearnbench.batching import collate, encode_example, pad_id_of  # noqa: E402
from unlearnbench.data.types import PlanContext, UnlearnData  # noqa: E402
from unlearnbench.errors import UnlearnbenchError  # noqa: E402
from unlearnbench.methods import ilu  # noqa: E402
from unlearnbench.methods.base import Batch  # noqa: E402
from unlearnbench.methods.graddiff import GradDiff, GradDiffConfig  # noqa: E402
from unlearnbench.methods.ilu import ILU, ILUConfig, irm_penalty  # noqa: E402
from unlearnbench.methods.npo import NPO, NPOConfig  # noqa: E402
from unlearnbench.registry import METHODS  # noqa: E402
from unlearnbench.runner import RunRequest, plan  # noqa: E402
from unlearnbench.spec import build_config  # noqa: E402
from unlearnbench.toy.tasks import build_task  # noqa: E402

TRAIN = {"lr": 1e-2, "max_steps": 3, "batch_size": 4, "seed": 3}


@pytest.fixture(autouse=True)
def small_envs(monkeypatch):
    """16 training examples per environment task instead of the default 400."""
    monkeypatch.setattr(ilu, "environment_examples", lambda name: build_task(name, n_train=16, n_test=4).train)


def _env_batch(name, idx=(0, 3, 7, 12)):
    tok = tiny_tokenizer()
    enc = [encode_example(tok, e.prompt, e.target) for e in build_task(name, n_train=16, n_test=4).train]
    return Batch(collate([enc[i] for i in idx], pad_id_of(tok)), torch.tensor(idx)), [enc[i] for i in idx]


def _data():
    return UnlearnData(forget_examples(), retain_examples(), tiny_tokenizer())


def _answer_logits(model, enc):
    """(logits predicting each answer token, the answer tokens) of one example, unbatched."""
    ids = torch.tensor([enc.ids])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, enc.n_prompt - 1 : -1]
    return logits.double(), ids[0, enc.n_prompt :]


# -- the penalty --------------------------------------------------------------------------


def test_penalty_matches_finite_difference_of_scaled_ce():
    model = tiny_model()
    batch, encs = _env_batch("arith")
    parts = [_answer_logits(model, e) for e in encs]

    def ce(w):  # token-mean over all answer tokens of the batch, float64
        return torch.cat([F.cross_entropy(w * z, y, reduction="none") for z, y in parts]).mean().item()

    h = 1e-4
    fd = (ce(1 + h) - ce(1 - h)) / (2 * h)  # truncation error O(h²) ~ 1e-8 relative
    assert abs(fd) > 1e-2  # a non-trivial derivative, so the comparison means something
    # float32 model forward (batched, padded) vs float64 finite difference: 1e-4 relative
    assert irm_penalty(model, batch).item() == pytest.approx(fd**2, rel=1e-4)


def test_penalty_equals_closed_form():
    model = tiny_model(seed=2)
    batch, encs = _env_batch("topic", idx=(1, 2, 9, 15))
    terms = []
    for e in encs:  # d/dw CE(w·z)_y at w=1 = E_p[z] - z_y, p = softmax(z)
        z, y = _answer_logits(model, e)
        terms.append((F.softmax(z, -1) * z).sum(-1) - z.gather(1, y[:, None])[:, 0])
    want = torch.cat(terms).mean().item() ** 2
    # answers of different lengths: padding is exercised and a per-sequence mean would differ
    assert len({len(t) for t in terms}) > 1
    per_seq = (sum(t.mean().item() for t in terms) / len(terms)) ** 2
    assert abs(per_seq - want) > 1e-3 * want
    assert irm_penalty(model, batch).item() == pytest.approx(want, rel=1e-4)


def test_penalty_gradients_reach_the_model():
    model = tiny_model()
    batch, _ = _env_batch("arith")
    irm_penalty(model, batch).backward()
    for p in (
        model.model.embed_tokens.weight,
        model.model.layers[0].mlp.down_proj.weight,
        model.model.layers[1].self_attn.q_proj.weight,
        model.lm_head.weight,
    ):
        assert p.grad is not None and p.grad.abs().sum().item() > 0


# -- wrapping a base method ---------------------------------------------------------------


def _run(method):
    model = tiny_model()
    stats = method.unlearn(model, _data())
    return state_copy(model), stats


def _ilu(base, lam, **kw):
    m = ILU(ILUConfig(base=base, lam=lam, **kw))
    m.bind(PlanContext(lambda name: dict(TRAIN, beta=0.5) if name == "npo" else dict(TRAIN), {}))
    return m


@pytest.mark.parametrize(
    "base,make",
    [
        ("npo", lambda: NPO(NPOConfig(beta=0.5, **TRAIN))),
        ("graddiff", lambda: GradDiff(GradDiffConfig(**TRAIN))),
    ],
)
def test_lambda_zero_reproduces_base_and_lambda_positive_differs(base, make):
    plain, plain_stats = _run(make())
    zero, zero_stats = _run(_ilu(base, 0.0))
    assert states_equal(plain, zero)
    assert zero_stats["steps"] == plain_stats["steps"] == 3
    assert zero_stats["base"] == base and zero_stats["lam"] == 0.0 and zero_stats["envs"] == ["arith"]
    assert all(h["irm_penalty"] > 0 for h in zero_stats["history"])
    for k, v in plain_stats["final"].items():  # the base's own terms are still reported, unchanged
        assert zero_stats["final"][k] == v
    penalised, _ = _run(_ilu(base, 1.0))
    assert not states_equal(plain, penalised)


def test_rmu_base_trains_only_rmus_parameters():
    if "rmu" not in METHODS:
        pytest.skip("methods/rmu.py is not there")
    model = tiny_model()
    before = state_copy(model)
    m = ILU(ILUConfig(base="rmu", lam=1.0))
    m.bind(PlanContext(lambda name: {"lr": 1e-2, "max_steps": 2, "batch_size": 4, "alpha": 1.0}, {}))
    stats = m.unlearn(model, _data())
    after = state_copy(model)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {f"model.layers.{i}.mlp.down_proj.weight" for i in stats["trainable_layers"]}
    assert stats["history"][0]["irm_penalty"] > 0
    assert all(p.requires_grad for p in model.parameters())  # the base loop restored the flags


def test_multiple_environments_sum_their_penalties(monkeypatch):
    seen = []
    real = ilu.irm_penalty

    def spy(model, batch):
        seen.append(copy.deepcopy(batch))
        return real(model, batch)

    monkeypatch.setattr(ilu, "irm_penalty", spy)
    m = ILU(ILUConfig(envs=("arith", "topic"), lam=1.0))
    m.bind(PlanContext(lambda name: {"lr": 1e-2, "max_steps": 1, "batch_size": 4}, {}))
    model = tiny_model()
    start = copy.deepcopy(model)
    stats = m.unlearn(model, _data())
    assert len(seen) == 2
    tok = tiny_tokenizer()
    texts = [tok.decode(b.tensors["input_ids"][0], skip_special_tokens=True) for b in seen]
    assert texts[0].startswith("Question:") and texts[1].startswith("Text:")  # arith, then topic
    assert [b.tensors["input_ids"].shape[0] for b in seen] == [4, 4]  # env_batch_size=-1: 4
    separate = [real(start, b).item() for b in seen]
    assert min(separate) > 0
    # step 0's penalty is computed on the starting weights
    assert stats["history"][0]["irm_penalty"] == pytest.approx(sum(separate), rel=1e-5)


def test_sdpa_model_runs_with_eager_attention_and_is_switched_back(monkeypatch):
    model = tiny_model()
    model.set_attn_implementation("sdpa")
    during = []
    real = ilu.irm_penalty
    monkeypatch.setattr(ilu, "irm_penalty", lambda m, b: during.append(m.config._attn_implementation) or real(m, b))
    m = ILU(ILUConfig())
    m.bind(PlanContext(lambda name: {"lr": 1e-2, "max_steps": 1, "batch_size": 4}, {}))
    m.unlearn(model, _data())
    assert during == ["eager"]
    assert model.config._attn_implementation == "sdpa"


# -- configuration ------------------------------------------------------------------------


def test_bind_base_uses_defaults_and_overrides():
    asked = []
    m = ILU(ILUConfig(base="npo", lr=5e-4, seed=7))
    m.bind(PlanContext(lambda name: asked.append(name) or {"lr": 1e-4, "epochs": 2, "beta": 0.3}, {}))
    assert asked == ["npo"]
    assert isinstance(m.base, NPO)
    c = m.base.config
    assert (c.lr, c.epochs, c.beta, c.seed) == (5e-4, 2, 0.3, 7)
    assert m.key_extra()["base"] == {
        "name": "npo",
        "version": NPO.version,
        "config": {**m.key_extra()["base"]["config"], "lr": 5e-4, "beta": 0.3},
    }
    unbound = ILU(ILUConfig(base="graddiff"))
    assert unbound.key_extra()["base"]["config"]["lr"] == GradDiffConfig().lr  # empty defaults


def test_refusals():
    with pytest.raises(UnlearnbenchError, match="base=ilu"):
        build_config(ILUConfig, {"base": "ilu"}, plugin="ilu")
    with pytest.raises(UnlearnbenchError, match="did you mean 'arith'"):
        ILU(build_config(ILUConfig, {"envs": "arith+arth"}, plugin="ilu"))
    with pytest.raises(UnlearnbenchError, match="did you mean 'npo'"):
        ILU(ILUConfig(base="nop"))
    with pytest.raises(UnlearnbenchError, match="twice"):
        build_config(ILUConfig, {"envs": "arith+arith"}, plugin="ilu")
    assert build_config(ILUConfig, {"envs": "arith+topic"}).envs == ("arith", "topic")
    assert METHODS.get("ilu") is ILU


def test_runner_binds_base_to_benchmark_defaults_and_keys_it():
    p = plan(RunRequest(method="ilu,lam=0.5", benchmark="toy,size=micro", seed=4))
    base = p.method.obj.base
    assert isinstance(base, NPO)
    tuned = p.benchmark.obj.defaults("methods", "npo")  # toy.yaml npo defaults
    assert tuned and tuned["epochs"] != NPO.Config().epochs  # so the check below can fail
    assert (base.config.lr, base.config.epochs, base.config.seed) == (tuned["lr"], tuned["epochs"], 4)
    key = p.method.key()
    assert key["config"]["lam"] == 0.5 and key["base"]["config"]["lr"] == tuned["lr"]
    other = plan(RunRequest(method="ilu,lam=0.5,base=graddiff", benchmark="toy,size=micro", seed=4))
    assert other.method.key()["base"]["name"] == "graddiff"
    assert other.method.key() != key
