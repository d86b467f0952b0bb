"""Task-vector cosines on hand-made checkpoints (exact values), streamed from safetensors files."""

import math

import pytest
import torch
from safetensors.torch import save_file

from unlearnbench.errors import UnlearnbenchError
from unlearnbench.taskvec import cosines, summarize


def _ckpt(path, tensors):
    path.mkdir()
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path / "model.safetensors"))
    return path


def test_cosines_match_flat_vectors(tmp_path):
    g = torch.Generator().manual_seed(0)
    o = {"a": torch.randn(3, 4, generator=g), "b": torch.randn(5, generator=g)}
    u = {k: v + torch.randn(v.shape, generator=g) for k, v in o.items()}
    ft = {k: v + torch.randn(v.shape, generator=g) for k, v in o.items()}
    uft = {k: u[k] - 0.5 * (u[k] - o[k]) + 0.1 * torch.randn(v.shape, generator=g) for k, v in o.items()}
    r = cosines(
        _ckpt(tmp_path / "o", o), _ckpt(tmp_path / "u", u), _ckpt(tmp_path / "uft", uft), _ckpt(tmp_path / "ft", ft)
    )

    def flat(d):
        return torch.cat([d[k].flatten().double() for k in sorted(d)])

    tu, tft, tuft = flat(u) - flat(o), flat(ft) - flat(o), flat(uft) - flat(u)
    cos = torch.nn.functional.cosine_similarity
    assert r.cosine["u_ft~u"] == pytest.approx(float(cos(tuft, tu, dim=0)), abs=1e-9)
    assert r.cosine["u_ft~ft"] == pytest.approx(float(cos(tuft, tft, dim=0)), abs=1e-9)
    assert r.cosine["u~ft"] == pytest.approx(float(cos(tu, tft, dim=0)), abs=1e-9)
    assert r.cosine["u_ft~u"] < -0.5  # the "attack" undoes half of the unlearning
    assert r.norms["u"] == pytest.approx(float(tu.norm()), rel=1e-9)
    assert r.n_params == 17 and set(r.per_tensor) == {"a", "b"}


def test_sharded_checkpoint_and_mismatch(tmp_path):
    o = {"a": torch.zeros(2), "b": torch.ones(2)}
    d = tmp_path / "sharded"
    d.mkdir()
    save_file({"a": torch.ones(2)}, str(d / "model-00001-of-00002.safetensors"))
    save_file({"b": torch.full((2,), 2.0)}, str(d / "model-00002-of-00002.safetensors"))
    base = _ckpt(tmp_path / "o", o)
    r = cosines(base, d, d, d)
    assert r.cosine["u~ft"] == pytest.approx(1.0) and math.isnan(r.cosine["u_ft~u"])  # τ_u→ft = 0
    other = _ckpt(tmp_path / "x", {"a": torch.zeros(2), "c": torch.zeros(2)})
    with pytest.raises(UnlearnbenchError, match="other tensors"):
        cosines(base, other, d, d)


def test_summarize_over_seeds():
    rows = [
        {"method": "npo", "attack": "finetune:arith", "seed": s, "cos_uft_u": v, "cos_uft_ft": 0.1, "cos_u_ft": 0.0}
        for s, v in ((0, -0.4), (1, -0.2))
    ]
    (row,) = summarize(rows)
    assert row["cos_uft_u"] == pytest.approx(-0.3) and row["seeds"] == [0, 1] and row["cos_uft_u_std"] > 0
