"""quantize:<bits>: symmetric round-to-nearest per output channel (or group), dequantized; the
attack evaluates before/after on a copy and never touches its input."""

from __future__ import annotations

import pytest
import torch
from torch import nn

torch.set_num_threads(1)

from helpers_tiny import state_copy, states_equal, tiny_model  # noqa: E402

from unlearnbench.attacks.quantize import QuantizeAttack, QuantizeConfig, parse_bits, quantize_rtn, rtn_scales  # noqa: E402
from unlearnbench.errors import UnlearnbenchError  # noqa: E402

W = torch.tensor([[0.3, -1.0, 0.25, 0.1], [2.0, 0.3, -0.7, 1.1]])


def test_8bit_matches_a_hand_computation():
    # row 0: scale 1/127; 0.3*127 = 38.1 -> 38, -127, 31.75 -> 32, 12.7 -> 13
    # row 1: scale 2/127; 0.3*63.5 = 19.05 -> 19, -0.7*63.5 = -44.45 -> -44, 1.1*63.5 = 69.85 -> 70
    expected = torch.tensor([[38 / 127, -1.0, 32 / 127, 13 / 127], [2.0, 19 * 2 / 127, -44 * 2 / 127, 70 * 2 / 127]])
    assert torch.allclose(quantize_rtn(W, 8), expected, atol=1e-7, rtol=0)
    # 2 bits: levels {-1, 0, 1} x max|row|; row 1: -0.7/2 -> 0, 1.1/2 -> 1
    assert torch.equal(quantize_rtn(W, 2), torch.tensor([[0.0, -1.0, 0.0, 0.0], [2.0, 0.0, 0.0, 2.0]]))


def test_scales_are_per_output_channel():
    assert torch.allclose(rtn_scales(W, 8), torch.tensor([[1 / 127], [2 / 127]]))
    assert torch.allclose(rtn_scales(W, 4), torch.tensor([[1 / 7], [2 / 7]]))
    # a small row next to a huge one keeps its own resolution (a per-tensor scale would zero it)
    m = torch.tensor([[1e-3, -2e-3, 5e-4, 1.5e-3], [100.0, -50.0, 25.0, 80.0]])
    q = quantize_rtn(m, 4)
    assert (q[0] != 0).sum() >= 3
    assert ((q[0] - m[0]).norm() / m[0].norm()) < 0.2
    assert torch.equal(rtn_scales(torch.zeros(2, 3), 4), torch.ones(2, 1))  # zero rows: no 0/0
    assert torch.equal(quantize_rtn(torch.zeros(2, 3), 4), torch.zeros(2, 3))


def test_group_wise_differs_from_per_channel_and_is_finer():
    g = torch.Generator().manual_seed(0)
    m = torch.randn(6, 16, generator=g) * torch.logspace(-2, 0, 16)  # column magnitudes vary
    per_channel, grouped = quantize_rtn(m, 4), quantize_rtn(m, 4, group_size=4)
    assert not torch.equal(per_channel, grouped)
    assert (grouped - m).norm() < (per_channel - m).norm()
    s = rtn_scales(m, 4, group_size=4)
    assert s.shape == (6, 4)
    assert torch.allclose(s, m.abs().reshape(6, 4, 4).amax(-1) / 7)
    # a ragged last group (10 columns in groups of 4) gets the scale of its own 2 columns
    r = m[:, :10]
    s = rtn_scales(r, 4, group_size=4)
    assert s.shape == (6, 3) and torch.allclose(s[:, 2], r[:, 8:].abs().amax(-1) / 7)
    assert quantize_rtn(r, 4, group_size=4).shape == r.shape
    assert torch.equal(quantize_rtn(m, 4, group_size=16), per_channel)


@pytest.mark.parametrize("bits", range(2, 9))
@pytest.mark.parametrize("group_size", [-1, 4, 5])
def test_values_lie_on_the_grid(bits, group_size):
    m = torch.randn(5, 12, generator=torch.Generator().manual_seed(bits))
    q = quantize_rtn(m, bits, group_size)
    scale = rtn_scales(m, bits, group_size)
    gs = 12 if group_size < 0 else group_size
    per_col = scale.repeat_interleave(gs, dim=1)[:, :12]
    k = q / per_col
    assert torch.allclose(k, k.round(), atol=1e-4)
    assert k.abs().max() <= 2 ** (bits - 1) - 1 + 1e-4
    assert len(torch.unique(k.round())) <= 2**bits - 1


class Recorder:
    def __init__(self):
        self.calls, self.states, self.models = [], [], []

    def __call__(self, checkpoint, step, model):
        self.calls.append((checkpoint, step))
        self.states.append(state_copy(model))
        self.models.append(model)


def test_attack_quantizes_a_copy_and_evaluates_before_and_after():
    model = tiny_model()
    before = state_copy(model)
    rec = Recorder()
    out = QuantizeAttack(QuantizeConfig(), arg="4").run(model, None, None, rec)
    assert states_equal(before, state_copy(model))
    assert rec.calls == [("before", 0), ("quantized", 1)]
    assert rec.models[0] is not model and states_equal(rec.states[0], before)
    after = rec.states[1]
    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    assert out["tensors_quantized"] == len(linears) == 2 * 7 + 1 and out["bits"] == 4
    assert out["params_quantized"] == sum(dict(model.named_modules())[n].weight.numel() for n in linears)
    for n in linears:
        assert torch.equal(after[n + ".weight"], quantize_rtn(before[n + ".weight"], 4))
    assert torch.equal(after["model.embed_tokens.weight"], before["model.embed_tokens.weight"])
    norms = [k for k in before if "norm" in k]
    assert norms and all(torch.equal(after[k], before[k]) for k in norms)


def test_fewer_bits_more_error():
    model = tiny_model()
    err = {
        b: QuantizeAttack(QuantizeConfig(), arg=str(b)).run(model, None, None, lambda *a: None)["mean_relative_error"]
        for b in (8, 4, 2)
    }
    assert 0 < err[8] < err[4] < err[2]
    assert (quantize_rtn(W, 4) - W).norm() > (quantize_rtn(W, 8) - W).norm()


def test_embeddings_lm_head_and_tied_weights():
    model = tiny_model()
    before = state_copy(model)
    rec = Recorder()
    out = QuantizeAttack(QuantizeConfig(embeddings=True, lm_head=False), arg="8").run(model, None, None, rec)
    after = rec.states[1]
    assert not torch.equal(after["model.embed_tokens.weight"], before["model.embed_tokens.weight"])
    assert torch.equal(after["lm_head.weight"], before["lm_head.weight"])
    assert out["tensors_quantized"] == 2 * 7 + 1
    tied = tiny_model()
    tied.lm_head.weight = tied.model.embed_tokens.weight
    rec = Recorder()
    out = QuantizeAttack(QuantizeConfig(), arg="4").run(tied, None, None, rec)
    assert out["skipped_tied"] == ["lm_head"] and out["tensors_quantized"] == 2 * 7
    assert torch.equal(rec.states[1]["model.embed_tokens.weight"], tied.model.embed_tokens.weight)
    rec = Recorder()
    out = QuantizeAttack(QuantizeConfig(embeddings=True), arg="4").run(tied, None, None, rec)
    assert out["skipped_tied"] == [] and out["tensors_quantized"] == 2 * 7 + 1  # the shared matrix once
    w = rec.models[1]
    assert w.lm_head.weight is w.model.embed_tokens.weight
    assert torch.equal(w.lm_head.weight, quantize_rtn(tied.lm_head.weight, 4))


def test_conv1d_is_quantized_per_output_channel():
    from transformers.pytorch_utils import Conv1D

    net = nn.Sequential(Conv1D(nf=3, nx=8))  # weight (in=8, out=3)
    torch.nn.init.normal_(net[0].weight)
    w0 = net[0].weight.detach().clone()
    rec = Recorder()
    QuantizeAttack(QuantizeConfig(), arg="3").run(net, None, None, rec)
    assert torch.equal(rec.models[1][0].weight, quantize_rtn(w0.t(), 3).t())
    assert torch.equal(net[0].weight, w0)


def test_bits_and_options_are_validated():
    assert parse_bits("8") == 8 and parse_bits(" 2 ") == 2
    for bad in ("1", "9", "16", "0", "four", "", None, "4.5"):
        with pytest.raises(UnlearnbenchError, match="2 to 8"):
            QuantizeAttack(QuantizeConfig(), arg=bad)
    for bad in (0, -2):
        with pytest.raises(ValueError):
            QuantizeConfig(group_size=bad)
    with pytest.raises(ValueError):
        quantize_rtn(W, 9)
    with pytest.raises(UnlearnbenchError, match="no weight matrices"):
        QuantizeAttack(QuantizeConfig(), arg="4").run(nn.Sequential(nn.LayerNorm(4)), None, None, lambda *a: None)


def test_runner_plan_resolves_quantize_without_a_task():
    from unlearnbench import runner

    p = runner.plan(runner.RunRequest(method="npo", attacks=["quantize:4,group_size=32"], benchmark="toy,size=micro"))
    ((attack, task),) = p.attacks
    assert task is None and attack.obj.bits == 4 and attack.config.group_size == 32
    with pytest.raises(UnlearnbenchError, match="2 to 8"):
        runner.plan(runner.RunRequest(method="npo", attacks=["quantize:12"], benchmark="toy,size=micro"))
