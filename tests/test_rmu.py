"""RMU (unlearnbench/methods/rmu.py) against the WMDP reference recipe, on a tiny random Llama."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

torch.set_num_threads(1)

from helpers_tiny import encode_all as _enc  # noqa: E402
from helpers_tiny import forget_examples, retain_examples, state_copy, tiny_model  # noqa: E402
from helpers_tiny import make_batch as _batch
from helpers_tiny import unlearn_data as _data

from unlearnbench.errors import UnlearnbenchError  # noqa: E402
from unlearnbench.methods.rmu import (  # noqa: E402
    RMU,
    RMUConfig,
    activation_mse,
    block_output,
    control_vector,
    default_layer,
    resolve_layers,
)
from unlearnbench.registry import METHODS  # noqa: E402
from unlearnbench.spec import build_config  # noqa: E402

IDX = [0, 5, 11, 20]  # forget examples of different lengths: padded


def _same_length(enc, k=4):
    """k forget examples with the same token count (a batch without padding)."""
    by_len = {}
    for i, e in enumerate(enc):
        by_len.setdefault(len(e.ids), []).append(i)
    group = max(by_len.values(), key=len)
    assert len(group) >= k
    return group[:k]


def _ready(config=None, model=None):
    model = model or tiny_model()
    m = RMU(config or RMUConfig())
    m.setup(model, _data(), _enc(forget_examples()))
    return m, model


@torch.no_grad()
def _hidden_states(model, batch):
    t = batch.tensors
    return model(input_ids=t["input_ids"], attention_mask=t["attention_mask"], output_hidden_states=True).hidden_states


# -- configuration --------------------------------------------------------------------------


def test_registered_and_config_defaults():
    assert "rmu" in METHODS.names() and METHODS.get("rmu") is RMU and RMU.version == "1"
    c = RMUConfig()
    assert (
        c.steering_coeff,
        c.alpha,
        c.gamma,
        c.layer,
        c.trainable_layers,
        c.vector_seed,
        c.mask,
        c.average,
        c.retain_loss,
    ) == (6.5, 1200.0, 1.0, -1, (), 42, "attention", "token", "activation")
    # options as typed on a command line
    c = build_config(RMUConfig, {"trainable_layers": "0+1", "mask": "answer", "average": "sequence", "layer": "1"})
    assert c.trainable_layers == (0, 1) and (c.mask, c.average) == ("answer", "sequence") and c.layer == 1
    for bad in (
        {"layer": -2},
        {"trainable_layers": (-1,)},
        {"steering_coeff": 0.0},
        {"alpha": -1.0},
        {"retain_loss": "nll"},
    ):
        with pytest.raises(ValueError):
            RMUConfig(**bad)


def test_default_layer_choice():
    # round_half_up(7·n/32) in [1, n-1]: 7 of 32 (the 7B recipe), 1 of the 4-layer toy model,
    # and for the 2-layer test model block 1, the last one, with down_proj of blocks 0 and 1 trained
    assert [default_layer(n) for n in (1, 2, 4, 6, 10, 30, 32)] == [0, 1, 1, 1, 2, 7, 7]
    # Zephyr-7B (32 blocks): the WMDP recipe's layer 7 and trainable 5-7 (round(0.25 * 32) = 8 was not)
    assert resolve_layers(RMUConfig(), 32) == (7, (5, 6, 7))
    assert resolve_layers(RMUConfig(), 2) == (1, (0, 1))
    assert resolve_layers(RMUConfig(layer=7), 32) == (7, (5, 6, 7))
    assert resolve_layers(RMUConfig(layer=1, trainable_layers=(1, 1)), 2) == (1, (1,))
    m, model = _ready()
    assert m.layer == 1 and m.trainable == (0, 1) and m.layer < model.config.num_hidden_layers
    with pytest.raises(UnlearnbenchError, match="does not exist"):
        resolve_layers(RMUConfig(layer=2), 2)
    with pytest.raises(UnlearnbenchError, match="after L"):
        resolve_layers(RMUConfig(layer=0, trainable_layers=(0, 1)), 2)


# -- control vector -------------------------------------------------------------------------


def test_control_vector_is_scaled_uniform_noise():
    u = control_vector(32, 6.5, 42)
    assert u.shape == (1, 1, 32)
    assert torch.linalg.vector_norm(u).item() == pytest.approx(6.5, rel=1e-6)
    r = torch.rand(1, 1, 32, generator=torch.Generator().manual_seed(42))
    assert (r >= 0).all() and (u >= 0).all()  # uniform [0,1): no negative entries
    assert torch.allclose(u, 6.5 * r / r.norm())
    assert torch.equal(u, control_vector(32, 6.5, 42))
    assert not torch.allclose(u, control_vector(32, 6.5, 43))
    # Gaussian noise would have negative entries; uniform noise has mean ≈ c/√d·(0.5/√(1/3))
    big = control_vector(4096, 1.0, 0)
    assert (big >= 0).all() and big.mean().item() == pytest.approx(0.866 / 64, rel=0.05)


def test_setup_uses_the_configured_seed_and_coeff():
    m, model = _ready(RMUConfig(steering_coeff=3.0, vector_seed=7))
    assert torch.equal(m.control, control_vector(model.config.hidden_size, 3.0, 7))
    assert torch.linalg.vector_norm(m.control).item() == pytest.approx(3.0, rel=1e-6)


# -- which tensor is h_L --------------------------------------------------------------------


def test_block_output_is_the_residual_stream_after_block_l():
    model, enc = tiny_model(), _enc(forget_examples())
    b = _batch(enc, IDX)
    hs = _hidden_states(model, b)
    assert len(hs) == 3
    with torch.no_grad():
        h0, h1 = block_output(model, 0, b.tensors), block_output(model, 1, b.tensors)
    assert torch.allclose(h0, hs[1], atol=1e-5)  # output of block 0 == hidden_states[1]
    # for the last block transformers returns the *final-normed* state in hidden_states[-1]
    assert not torch.allclose(h1, hs[2], atol=1e-2)
    assert torch.allclose(model.model.norm(h1), hs[2], atol=1e-5)
    # by hand: block 1 applied to hidden_states[1] (one unpadded example, no mask needed)
    ids = torch.tensor([enc[0].ids])
    with torch.no_grad():
        x = model.model.embed_tokens(ids)
        pos = torch.arange(ids.shape[1]).unsqueeze(0)
        cos_sin = model.model.rotary_emb(x, position_ids=pos)
        causal = torch.full((ids.shape[1], ids.shape[1]), float("-inf")).triu(1)[None, None]
        for layer in model.model.layers:
            x = layer(x, attention_mask=causal, position_embeddings=cos_sin, position_ids=pos)
            x = x[0] if isinstance(x, tuple) else x
        single = block_output(model, 1, {"input_ids": ids, "attention_mask": torch.ones_like(ids)})
    assert torch.allclose(single, x, atol=1e-5)


def test_block_output_stops_the_forward_after_block_l():
    model, enc = tiny_model(), _enc(forget_examples())
    called = []
    handle = model.model.layers[1].register_forward_hook(lambda *a: called.append(1))
    with torch.no_grad():
        block_output(model, 0, _batch(enc, IDX).tensors)
    handle.remove()
    assert called == []


def test_frozen_partial_stack_matches_start_and_stays_frozen():
    m, model = _ready()
    enc = _enc(retain_examples())
    b = _batch(enc, [1, 7, 30])
    hs = _hidden_states(model, b)
    with torch.no_grad():
        live = block_output(model, m.layer, b.tensors)
    frozen = m.frozen_block_output(model, b.tensors)
    assert torch.allclose(frozen, live, atol=1e-5)
    assert torch.allclose(model.model.norm(frozen), hs[-1], atol=1e-5)  # L=1 is the last block
    m0, model0 = _ready(RMUConfig(layer=0))
    assert torch.allclose(m0.frozen_block_output(model0, b.tensors), hs[1], atol=1e-5)

    # only 3 small matrices are kept, not a second model
    assert set(m.frozen) == {"model.layers.0.mlp.down_proj.weight", "model.layers.1.mlp.down_proj.weight"}
    assert m.ref_model is None
    # move the trainable weights: the live h_L moves, the frozen one does not
    with torch.no_grad():
        for p in m.trainable_parameters(model):
            p.add_(torch.randn_like(p) * 0.1)
        moved = block_output(model, m.layer, b.tensors)
    assert not torch.allclose(moved, live, atol=1e-3)
    assert torch.equal(m.frozen_block_output(model, b.tensors), frozen)
    assert m.frozen["model.layers.0.mlp.down_proj.weight"] is not model.model.layers[0].mlp.down_proj.weight


# -- the loss -------------------------------------------------------------------------------


def test_forget_loss_by_hand_masked_and_unmasked():
    model, enc = tiny_model(), _enc(forget_examples())
    b = _batch(enc, IDX)
    mask = b.tensors["attention_mask"].bool()
    masked = RMU(RMUConfig(retain_loss="none"))
    masked.setup(model, _data(), enc)
    unmasked = RMU(RMUConfig(retain_loss="none", mask="none"))
    unmasked.setup(model, _data(), enc)
    assert torch.equal(masked.control, unmasked.control)
    with torch.no_grad():
        h = block_output(model, 1, b.tensors)
        lm, pm = masked.loss(model, b, None)
        lu, _ = unmasked.loss(model, b, None)
    u = masked.control
    want_masked = ((h[mask] - u[0]) ** 2).mean().item()  # real tokens only
    want_unmasked = ((h - u) ** 2).mean().item()  # the reference: every position
    assert lm.item() == pytest.approx(want_masked, rel=1e-5) and pm["forget_loss"] == pytest.approx(
        want_masked, rel=1e-5
    )
    assert lu.item() == pytest.approx(want_unmasked, rel=1e-5)
    assert abs(lm.item() - lu.item()) > 1e-3 * lm.item()  # padding present: they differ
    # no padding: the same number
    nb = _batch(enc, _same_length(enc))
    assert nb.tensors["attention_mask"].all()
    with torch.no_grad():
        assert masked.loss(model, nb, None)[0].item() == pytest.approx(
            unmasked.loss(model, nb, None)[0].item(), rel=1e-6
        )


def test_activation_mse_ignores_padding_values_when_masked():
    g = torch.Generator().manual_seed(0)
    h, t = torch.randn(2, 5, 4, generator=g), torch.randn(2, 5, 4, generator=g)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    h2 = h.clone()
    h2[0, 3:] += 100.0
    for average in ("token", "sequence"):
        assert activation_mse(h2, t, mask, average).item() == pytest.approx(
            activation_mse(h, t, mask, average).item(), rel=1e-6
        )
    assert activation_mse(h, t, mask, "token").item() == pytest.approx(
        F.mse_loss(h[mask.bool()], t[mask.bool()]).item(), rel=1e-6
    )
    # per sequence: each row's mean over its tokens, then the mean of the rows (open-unlearning)
    rows = [((h[i][mask[i].bool()] - t[i][mask[i].bool()]) ** 2).mean() for i in range(2)]
    assert activation_mse(h, t, mask, "sequence").item() == pytest.approx(torch.stack(rows).mean().item(), rel=1e-6)
    assert abs(activation_mse(h, t, mask, "sequence").item() - activation_mse(h, t, mask, "token").item()) > 1e-4
    # mask=none: every position, padding included (the WMDP reference code)
    assert activation_mse(h2, t, None, "token").item() > activation_mse(h, t, None, "token").item() + 100


def test_answer_mask_is_open_unlearnings_loss():
    """mask=answer, average=sequence: labels != -100 positions, squared error averaged over d, summed
    over the sequence, divided by its answer-token count, mean over the batch."""
    model, enc = tiny_model(), _enc(forget_examples())
    b = _batch(enc, IDX)
    ou = RMU(RMUConfig(retain_loss="none", mask="answer", average="sequence"))
    ou.setup(model, _data(), enc)
    with torch.no_grad():
        h = block_output(model, 1, b.tensors)
        got = ou.loss(model, b, None)[0].item()
        att = RMU(RMUConfig(retain_loss="none"))
        att.setup(model, _data(), enc)
        old = att.loss(model, b, None)[0].item()
    m = (b.tensors["labels"] != -100).float()
    sq = ((h.float() - ou.control) ** 2).mean(-1)
    want = ((sq * m).sum(1) / m.sum(1)).mean().item()
    assert got == pytest.approx(want, rel=1e-5)
    assert abs(got - old) > 1e-3 * old  # prompts are in the forget examples: the variants differ


def test_retain_term_is_zero_at_start_then_weighted_by_alpha():
    m, model = _ready(RMUConfig(alpha=5.0, gamma=0.5))
    fenc, renc = _enc(forget_examples()), _enc(retain_examples())
    fb, rb = _batch(fenc, IDX), _batch(renc, [1, 7, 30])
    with torch.no_grad():
        loss, parts = m.loss(model, fb, rb)
    assert parts["retain"] == 0.0
    assert loss.item() == pytest.approx(0.5 * parts["forget_loss"], rel=1e-6)
    with torch.no_grad():
        model.model.layers[0].mlp.down_proj.weight.add_(0.1)
        loss, parts = m.loss(model, fb, rb)
        h, h0 = block_output(model, 1, rb.tensors), m.frozen_block_output(model, rb.tensors)
    mask = rb.tensors["attention_mask"].bool()
    assert parts["retain"] == pytest.approx(((h[mask] - h0[mask]) ** 2).mean().item(), rel=1e-5)
    assert parts["retain"] > 1e-4
    assert loss.item() == pytest.approx(0.5 * parts["forget_loss"] + 5.0 * parts["retain"], rel=1e-5)


# -- training -------------------------------------------------------------------------------


def test_unlearn_trains_only_down_proj_of_chosen_layers_and_restores_flags():
    model = tiny_model()
    model.lm_head.weight.requires_grad_(False)  # an unusual pattern that must come back as it was
    model.model.norm.weight.requires_grad_(False)
    flags = {n: p.requires_grad for n, p in model.named_parameters()}
    before = state_copy(model)
    m = RMU(RMUConfig(lr=1e-2, max_steps=3, batch_size=4, layer=1, trainable_layers=(1,), alpha=1.0))
    out = m.unlearn(model, _data())
    after = state_copy(model)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed == {"model.layers.1.mlp.down_proj.weight"}
    assert {n: p.requires_grad for n, p in model.named_parameters()} == flags
    assert out["layer"] == 1 and out["trainable_layers"] == [1] and out["steps"] == 3
    assert m.frozen is None and not model.training

    model = tiny_model()
    before = state_copy(model)
    RMU(RMUConfig(lr=1e-2, max_steps=2, batch_size=4)).unlearn(model, _data())  # default: L=1, blocks 0,1
    after = state_copy(model)
    assert {k for k in before if not torch.equal(before[k], after[k])} == {
        "model.layers.0.mlp.down_proj.weight",
        "model.layers.1.mlp.down_proj.weight",
    }
    assert all(p.requires_grad for p in model.parameters())


def test_unlearn_moves_forget_activations_towards_u():
    model, enc = tiny_model(), _enc(forget_examples())
    b = _batch(enc, list(range(len(enc))))
    u = control_vector(model.config.hidden_size, 6.5, 42)

    def forget_mse():
        with torch.no_grad():
            return activation_mse(block_output(model, 1, b.tensors), u, b.tensors["attention_mask"], True).item()

    before = forget_mse()
    m = RMU(RMUConfig(lr=1e-2, max_steps=6, batch_size=4, warmup=0.0, alpha=10.0))
    out = m.unlearn(model, _data())
    after = forget_mse()
    assert after < 0.8 * before
    hist = [h["forget_loss"] for h in out["history"]]
    assert hist[-1] < hist[0]
    assert all(h["retain"] >= 0 for h in out["history"]) and out["history"][-1]["retain"] > 0
