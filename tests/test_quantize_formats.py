"""quantize:<format>: deployment formats through their libraries (GGUF via gguf, optimum-quanto,
torchao, bitsandbytes). Each supported format round-trips a random matrix within the bound its
definition gives; unknown and not-runnable formats fail in one line; the attack works end to end
on the tiny Llama; the update-versus-bin figures are right on constructed cases. Tests of a
library that is not installed skip (CI installs only .[dev], which has gguf)."""

from __future__ import annotations

import importlib.util
from types import SimpleNamespace

import pytest
import torch
from torch import nn

torch.set_num_threads(1)

from helpers_tiny import state_copy, states_equal, tiny_model  # noqa: E402

from unlearnbench.attacks import quant_formats  # noqa: E402
from unlearnbench.attacks.quant_formats import FORMATS, Format, Unquantizable  # noqa: E402
from unlearnbench.attacks.quantize import QuantizeAttack, QuantizeConfig, parse_format, update_vs_bin  # noqa: E402
from unlearnbench.errors import UnlearnbenchError  # noqa: E402

OUT, IN = 16, 256


def _matrix(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    m = torch.randn(OUT, IN, generator=g) * 0.05
    m[0, :32] = 0.0  # an all-zero block
    m[1, 5] = 0.9  # an outlier
    return m


def _has(lib: str) -> bool:
    return importlib.util.find_spec(lib) is not None  # top-level names only


def _blocks(m: torch.Tensor, block: int) -> torch.Tensor:
    return m.reshape(-1, block)


def _fp16(x: torch.Tensor) -> torch.Tensor:
    return x.half().float()


def _symmetric_bound(m: torch.Tensor, block: int, div: float, top: float) -> torch.Tensor:
    """q4_0/q5_0: d = max|x|/div (fp16); levels -div..top times d; the side opposite the extreme
    value clips at top*d."""
    b = _blocks(m, block)
    d = b.abs().amax(dim=1, keepdim=True) / div
    d16 = _fp16(d)
    slack = div * (d16 - d).abs()
    return (torch.maximum(d16 / 2, b.abs() - top * d16) + slack).reshape(m.shape)


def _affine_bound(m: torch.Tensor, block: int, steps: int) -> torch.Tensor:
    """q4_1/q5_1: d = (max-min)/steps, m = min, both fp16: |err| <= d/2 plus their rounding."""
    b = _blocks(m, block)
    lo, hi = b.amin(dim=1, keepdim=True), b.amax(dim=1, keepdim=True)
    d = (hi - lo) / steps
    slack = (_fp16(lo) - lo).abs() + steps * (_fp16(d) - d).abs()
    return (_fp16(d) / 2 + slack).expand_as(b).reshape(m.shape)


def _nearest_level_bound(m: torch.Tensor, block: int, scale: torch.Tensor, levels) -> torch.Tensor:
    """The distance from each weight to the nearest level of scale * levels (a round-to-nearest grid)."""
    b = _blocks(m, block)
    grid = scale.reshape(-1, 1, 1) * torch.tensor(levels, dtype=torch.float32).reshape(1, 1, -1)
    return (b.unsqueeze(-1) - grid).abs().amin(dim=-1).reshape(m.shape)


def q8_0_bound(m):
    b = _blocks(m, 32)
    d = b.abs().amax(dim=1, keepdim=True) / 127
    return (_fp16(d) / 2 + 127 * (_fp16(d) - d).abs()).expand_as(b).reshape(m.shape)


def ternary_bound(m):
    b = _blocks(m, 256)
    d = b.abs().amax(dim=1, keepdim=True)
    return (_fp16(d) / 2 + (_fp16(d) - d).abs()).expand_as(b).reshape(m.shape)


def mxfp4_bound(m):
    b = _blocks(m, 32)
    mx = b.abs().amax(dim=1)
    d = torch.where(mx > 0, torch.pow(2.0, torch.floor(torch.log2(mx)) - 3), torch.zeros_like(mx))
    e2m1 = (0, 1, 2, 3, 4, 6, 8, 12)
    return _nearest_level_bound(m, 32, d, e2m1 + tuple(-v for v in e2m1))


def float_bound(dtype):
    def bound(m):
        return (m - m.to(dtype).float()).abs()  # exactly the cast: round to nearest even

    return bound


def quanto_int8_bound(m):
    return (m.abs().amax(dim=1, keepdim=True) / 127 / 2).expand_as(m)


def quanto_int4_bound(m):
    b = m.reshape(OUT, -1, 128)  # quanto's group of 128 (256 columns)
    d = (b.amax(dim=-1, keepdim=True) - b.amin(dim=-1, keepdim=True)) / 15
    return (d / 2).expand_as(b).reshape(m.shape)


def torchao_int8_bound(m):
    return (m.abs().amax(dim=1, keepdim=True) / 127.5 / 2).expand_as(m)


def torchao_int4_bound(m):
    b = _blocks(m, 32)
    return (b.abs().amax(dim=1, keepdim=True) / 7.5 / 2).expand_as(b).reshape(m.shape)


# NormalFloat4 and bitsandbytes' FP4 code (QLoRA, arXiv 2305.14314, appendix; bitsandbytes functional.py)
NF4 = (-1.0, -0.6961928, -0.52507305, -0.3949175, -0.28444138, -0.18477343, -0.09105004, 0.0)
NF4 += (0.0795803, 0.1609302, 0.2461123, 0.33791524, 0.44070983, 0.562617, 0.72295684, 1.0)
FP4 = (0.0, 0.0052083335, 0.16666667, 0.25, 0.33333334, 0.5, 0.6666667, 1.0)
FP4 += tuple(-v for v in FP4)


def bnb_bound(levels):
    def bound(m):
        absmax = _blocks(m, 64).abs().amax(dim=1)
        return _nearest_level_bound(m, 64, absmax, levels)

    return bound


BOUNDS = {
    "q8_0": q8_0_bound,
    "q4_0": lambda m: _symmetric_bound(m, 32, 8, 7),
    "q5_0": lambda m: _symmetric_bound(m, 32, 16, 15),
    "q4_1": lambda m: _affine_bound(m, 32, 15),
    "q5_1": lambda m: _affine_bound(m, 32, 31),
    "tq1_0": ternary_bound,
    "tq2_0": ternary_bound,
    "mxfp4": mxfp4_bound,
    "f16": float_bound(torch.float16),
    "bf16": float_bound(torch.bfloat16),
    "quanto-int8": quanto_int8_bound,
    "quanto-int4": quanto_int4_bound,
    "torchao-int8": torchao_int8_bound,
    "torchao-int4": torchao_int4_bound,
    "bnb-nf4": bnb_bound(NF4),
    "bnb-fp4": bnb_bound(FP4),
}


def test_every_format_has_a_round_trip_bound():
    assert set(BOUNDS) | {"quanto-int2"} == set(FORMATS)


@pytest.mark.parametrize("name", sorted(BOUNDS), ids=str)
def test_round_trip_within_the_format_bound(name):
    if not FORMATS[name].available():
        pytest.skip(f"{FORMATS[name].library} is not installed")
    m = _matrix()
    q, width = FORMATS[name].quantize(m.clone(), -1)
    assert q.shape == m.shape and q.dtype == torch.float32 and width.shape == m.shape
    err = (q - m).abs()
    bound = BOUNDS[name](m)
    tol = 1e-6 * (1 + m.abs())
    worst = (err - bound - tol).max().item()
    assert worst <= 0, f"{name}: error above its bound by {worst}"
    assert err.max() > 0  # it does quantize
    assert torch.all(width >= 0) and torch.all(width[2:] > 0)
    assert torch.equal(q[0, :32], torch.zeros(32)) or name.startswith(("quanto-int4", "bnb"))


@pytest.mark.skipif(not _has("gguf"), reason="gguf is not installed")
def test_q8_0_bin_width_is_the_block_scale_and_codes_are_integers():
    m = _matrix(1)
    q, width = FORMATS["q8_0"].quantize(m, -1)
    d = _fp16(_blocks(m, 32).abs().amax(dim=1, keepdim=True) / 127)
    assert torch.equal(_blocks(width, 32), d.expand(-1, 32))
    k = _blocks(q, 32)[1:] / d[1:]
    assert torch.allclose(k, k.round(), atol=1e-3) and k.abs().max() <= 127 + 1e-3


@pytest.mark.skipif(not _has("gguf"), reason="gguf is not installed")
def test_rows_off_the_block_are_unquantizable():
    with pytest.raises(Unquantizable, match="multiple of"):
        FORMATS["q4_0"].quantize(torch.randn(4, 48), -1)
    with pytest.raises(Unquantizable, match="256"):
        FORMATS["tq1_0"].quantize(torch.randn(4, 128), -1)


def test_grid_gap_on_a_non_uniform_grid():
    levels = torch.tensor([-2.0, 0.0, 1.0, 3.0])
    x = torch.tensor([-5.0, -1.0, 0.0, 0.5, 2.0, 9.0])
    assert torch.equal(quant_formats.grid_gap(x, levels), torch.tensor([2.0, 2.0, 1.0, 1.0, 2.0, 2.0]))


# -- argument parsing ------------------------------------------------------------------------


def test_unknown_format_fails_in_one_line_with_the_list_and_a_suggestion():
    for bad, hint in (("q4-0", "did you mean q4_0"), ("gguf-q8_0", "did you mean q8_0"), ("Q4_0", "did you mean q4_0")):
        with pytest.raises(UnlearnbenchError) as e:
            parse_format(bad)
        msg = str(e.value)
        assert "\n" not in msg and hint in msg and "q8_0, q5_0" in msg and "2 to 8" in msg
    with pytest.raises(UnlearnbenchError, match="2 to 8") as e:
        parse_format("nonsense")
    assert "did you mean" not in str(e.value)


def test_known_formats_that_do_not_run_here_say_why():
    for name, why in (("q4_k", "only a dequantizer"), ("bnb-int8", "activations"), ("gguf-q6_k", "llama-quantize")):
        with pytest.raises(UnlearnbenchError, match=why) as e:
            parse_format(name)
        assert "not supported here" in str(e.value) and "\n" not in str(e.value)


def test_missing_library_names_the_extra(monkeypatch):
    fake = Format("fake-int4", "no_such_library_for_unlearnbench", "fakeextra", "x", lambda m, g: (m, m))
    monkeypatch.setitem(FORMATS, "fake-int4", fake)
    with pytest.raises(UnlearnbenchError, match=r"pip install 'unlearnbench\[fakeextra\]'"):
        parse_format("fake-int4")


def test_bits_still_parse_and_group_size_only_where_the_format_has_a_free_block():
    assert parse_format("4") == 4 and parse_format(" 8 ") == 8
    assert parse_format("q4_0") is FORMATS["q4_0"]
    with pytest.raises(UnlearnbenchError, match="2 to 8"):
        parse_format("12")
    with pytest.raises(UnlearnbenchError, match="fixed block"):
        QuantizeAttack(QuantizeConfig(group_size=64), arg="q4_0")
    QuantizeAttack(QuantizeConfig(group_size=32), arg="4")


def test_rtn_cell_key_is_unchanged_and_formats_key_their_library():
    from unlearnbench import runner

    p = runner.plan(
        runner.RunRequest(method="npo", attacks=["quantize:4", "quantize:q8_0"], benchmark="toy,size=micro")
    )
    (rtn, _), (q8, _) = p.attacks
    assert rtn.key() == {
        "name": "quantize",
        "arg": "4",
        "version": "1",
        "config": {"group_size": -1, "embeddings": False, "lm_head": True},
    }
    if _has("gguf"):
        assert q8.key()["library"].startswith("gguf ") and q8.key()["arg"] == "q8_0"


# -- the attack ------------------------------------------------------------------------------


class Recorder:
    def __init__(self):
        self.calls, self.states = [], []

    def __call__(self, checkpoint, step, model):
        self.calls.append((checkpoint, step))
        self.states.append(state_copy(model))


class FakeBenchmark:
    """Hands out one original model as its target, and counts the loads."""

    def __init__(self, model):
        self.model, self.loads = model, 0

    def load(self, which):
        assert which == "target"
        self.loads += 1
        return SimpleNamespace(model=self.model)


@pytest.mark.skipif(not _has("gguf"), reason="gguf is not installed")
def test_attack_end_to_end_on_the_tiny_llama():
    model = tiny_model()
    before = state_copy(model)
    rec = Recorder()
    out = QuantizeAttack(QuantizeConfig(), arg="q8_0").run(model, None, None, rec)
    assert states_equal(before, state_copy(model))  # the model handed in is untouched
    assert rec.calls == [("before", 0), ("quantized", 1)] and states_equal(rec.states[0], before)
    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    assert out["format"] == "q8_0" and out["tensors_quantized"] == len(linears) and out["kept_full_precision"] == []
    for n in linears:
        q, _ = FORMATS["q8_0"].quantize(before[n + ".weight"], -1)
        assert torch.equal(rec.states[1][n + ".weight"], q)
    assert torch.equal(rec.states[1]["model.embed_tokens.weight"], before["model.embed_tokens.weight"])
    assert "no benchmark" in out["update_vs_bin"]["note"]


@pytest.mark.skipif(not _has("gguf"), reason="gguf is not installed")
def test_matrices_off_the_block_stay_full_precision_and_are_listed():
    model = tiny_model()  # hidden 32, intermediate 64: every matrix has rows of 32 or 64
    rec = Recorder()
    with pytest.raises(
        UnlearnbenchError, match="no weight matrix fits the format .* not a multiple of TQ1_0.s block of 256"
    ):
        QuantizeAttack(QuantizeConfig(), arg="tq1_0").run(model, None, None, rec)
    out = QuantizeAttack(QuantizeConfig(embeddings=True), arg="q4_0").run(
        nn.Sequential(nn.Linear(32, 8), nn.Linear(8, 4)), None, None, rec
    )
    assert out["kept_full_precision"] == ["1"] and out["tensors_quantized"] == 1


@pytest.mark.skipif(not _has("gguf"), reason="gguf is not installed")
def test_tiny_update_snaps_back_and_a_large_one_does_not():
    original = tiny_model()
    unlearned = tiny_model()
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for p in unlearned.parameters():
            p.add_(1e-6 * torch.randn(p.shape, generator=g))
    bench = FakeBenchmark(original)
    attack = QuantizeAttack(QuantizeConfig(), arg="q4_0")
    fig = attack.run(unlearned, None, None, Recorder(), benchmark=bench)["update_vs_bin"]
    total = fig["total"]
    assert total["changed"] > 0.99 and total["snap_back"] > 0.99 and total["mean_ratio"] < 1e-3
    name = "model.layers.0.mlp.down_proj"
    assert fig["tensors"][name]["median_ratio"] < 1e-3 and fig["tensors"][name]["snap_back_of_changed"] > 0.99

    with torch.no_grad():
        for p in unlearned.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))
    fig = attack.run(unlearned, None, None, Recorder(), benchmark=bench)["update_vs_bin"]
    assert fig["total"]["snap_back"] < 0.5 and fig["total"]["mean_ratio"] > 0.5
    assert bench.loads == 1  # the original is loaded once per attack object


def test_update_vs_bin_on_hand_values():
    w_o = torch.tensor([[0.0, 1.0, 2.0, 3.0]])
    w_u = torch.tensor([[0.0, 1.1, 2.0, 2.0]])
    q_o = torch.tensor([[0.0, 1.0, 2.0, 3.0]])
    q_u = torch.tensor([[0.0, 1.0, 2.0, 2.0]])
    f = update_vs_bin(w_u, w_o, q_u, q_o, torch.full((1, 4), 0.5))
    assert f["snap_back"] == 0.75 and f["changed"] == 0.5 and f["snap_back_of_changed"] == 0.5
    assert f["mean_ratio"] == pytest.approx((0.2 + 2.0) / 4) and f["median_ratio"] == pytest.approx(0.0)


@pytest.mark.skipif(not _has("gguf"), reason="gguf is not installed")
def test_rtn_gets_the_figures_too_without_changing_its_weights():
    from unlearnbench.attacks.quantize import quantize_rtn

    original, unlearned = tiny_model(seed=0), tiny_model(seed=0)
    rec = Recorder()
    out = QuantizeAttack(QuantizeConfig(), arg="4").run(unlearned, None, None, rec, benchmark=FakeBenchmark(original))
    assert out["update_vs_bin"]["total"]["snap_back"] == 1.0 and out["update_vs_bin"]["total"]["changed"] == 0.0
    w = "model.layers.1.self_attn.q_proj.weight"
    assert torch.equal(rec.states[1][w], quantize_rtn(state_copy(original)[w], 4))
