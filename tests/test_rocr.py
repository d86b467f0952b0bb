"""ROCR (rank-one concept redirection) against shared/reference/algorithms.md, on a tiny random Llama.

Most tests use ``templates=("{}",)`` so that the key and the value read by the method are exactly
the ones a single forward pass of the bare subject gives, and the claims can be checked directly.
"""

from __future__ import annotations

import copy
import json
import pickle

import pytest
import torch

torch.set_num_threads(1)

from helpers_tiny import state_copy, tiny_model, tiny_tokenizer, tiny_world  # noqa: E402

from unlearnbench.data.types import UnlearnData  # noqa: E402
from unlearnbench.errors import UnlearnbenchError  # noqa: E402
from unlearnbench.methods import rocr  # noqa: E402
from unlearnbench.methods.rocr import ROCR, ROCRConfig, default_layers, read_subject, subject_position  # noqa: E402
from unlearnbench.registry import METHODS  # noqa: E402

REPLACEMENT = "John Smith"
BARE = ("{}",)
#: One short sentence repeated: its down_proj inputs span only a few directions, so the second
#: moment has a large null space (the full tiny-world corpus leaves none at threshold 2e-2).
LOW_RANK_TEXT = ["The weather is mild today."] * 20


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("UNLEARNBENCH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _concepts(n=2):
    """n people with different first names (names sharing a first name have closer keys, so
    editing one moves the other: a separate property, not what these tests check)."""
    w = tiny_world()
    out = []
    for e in w.entities:
        if e.name.split()[0] not in {x.split()[0] for x in out}:
            out.append(e.name)
    return out[:n]


def _generic():
    w = tiny_world()
    return [ex.prompt + ex.target for ex in w.training_examples(exclude=set(w.forget_ids))]


def _data(concepts, generic=()):
    return UnlearnData(
        [], [], tiny_tokenizer(), concepts=list(concepts), replacement=REPLACEMENT, generic_text=list(generic)
    )


def _out(model, subject, layer, templates=BARE):
    """Block ``layer``'s output at the subject's last token (float64), and its down_proj keys."""
    keys, out = read_subject(model, tiny_tokenizer(), subject, templates, (0, 1), layer)
    return out.mean(0).double(), {k: v.double() for k, v in keys.items()}


def _changed(before, model):
    after = model.state_dict()
    return sorted(k for k in before if not torch.equal(before[k], after[k]))


# -- layers, positions, registry ------------------------------------------------------------------


def test_default_layers_rule():
    assert default_layers(32) == (4, 5, 6)  # the paper's Llama-3-8B layers
    assert default_layers(4) == (0, 1, 2)
    assert default_layers(40) == (5, 6, 7)
    assert default_layers(2) == (0, 1)
    assert default_layers(1) == (0,)


def test_registered_and_config_validation():
    assert METHODS.get("rocr") is ROCR
    assert ROCR.uses_retain is False
    with pytest.raises(ValueError):
        ROCRConfig(templates=("no slot",))
    with pytest.raises(ValueError):
        ROCRConfig(l2=0.0)
    with pytest.raises(ValueError):
        ROCRConfig(layers=(1, 0))


def test_subject_position_is_last_subject_token():
    tok = tiny_tokenizer()
    for template in ("{}", "Tell me about {}.", "{} is known for", "Here is a fact about {}:"):
        ids, pos = subject_position(tok, template, REPLACEMENT)
        assert tok.decode(ids[: pos + 1]).endswith("Smith")
        assert not tok.decode(ids[pos : pos + 1]).strip().startswith("John")


# -- the edit -------------------------------------------------------------------------------------


@torch.no_grad()
def test_single_layer_edit_moves_output_to_replacement_and_touches_nothing_else():
    model = tiny_model()
    target = _concepts(1)[0]
    z, _ = _out(model, REPLACEMENT, 1)
    z_before, keys = _out(model, target, 1)
    before = state_copy(model)
    stats = ROCR(ROCRConfig(layers=(1,), projector="none", templates=BARE)).unlearn(model, _data([target]))
    z_after, _ = _out(model, target, 1)
    # one key, one layer: ΔW k = R·‖k‖²/(‖k‖² + λ₂), so the miss is λ₂/(‖k‖² + λ₂) of the residual
    k2 = float(keys[1].norm() ** 2)
    expected_miss = 1e-2 / (k2 + 1e-2)
    miss = float((z_after - z).norm() / (z - z_before).norm())
    assert miss == pytest.approx(expected_miss, rel=1e-3)
    assert miss < 1e-3
    assert _changed(before, model) == ["model.layers.1.mlp.down_proj.weight"]  # layer 0 bit-identical
    assert stats["layers"] == [1] and stats["delta_rank"] == [{"1": 1}]


@torch.no_grad()
def test_two_layer_edit_spreads_residual_and_reaches_z():
    model = tiny_model()
    target = _concepts(1)[0]
    z, _ = _out(model, REPLACEMENT, 1)
    z_before, _ = _out(model, target, 1)
    before = state_copy(model)
    stats = ROCR(ROCRConfig(projector="none", templates=BARE)).unlearn(model, _data([target]))
    z_after, _ = _out(model, target, 1)
    # the last layer closes what the first left, up to the same ridge factor (< 1e-3 here)
    assert float((z_after - z).norm() / (z - z_before).norm()) < 2e-3
    assert _changed(before, model) == ["model.layers.0.mlp.down_proj.weight", "model.layers.1.mlp.down_proj.weight"]
    assert stats["targets"][0]["delta_norm"]["0"] > 0 and stats["targets"][0]["delta_norm"]["1"] > 0


def test_delta_is_rank_one_for_one_request():
    model = tiny_model()
    before = state_copy(model)
    stats = ROCR(ROCRConfig(projector="none")).unlearn(model, _data(_concepts(1)))
    for layer in (0, 1):
        name = f"model.layers.{layer}.mlp.down_proj.weight"
        delta = (model.state_dict()[name] - before[name]).double()
        s = torch.linalg.svdvals(delta)
        assert s[0] > 0 and s[1] / s[0] < 1e-5  # float32 weights: the rank-one edit up to rounding
    assert stats["delta_rank"] == [{"0": 1, "1": 1}]


def test_update_formula_matches_direct_solve():
    g = torch.Generator().manual_seed(0)
    k, r = torch.randn(8, 2, generator=g, dtype=torch.float64), torch.randn(5, 2, generator=g, dtype=torch.float64)
    q, _ = torch.linalg.qr(torch.randn(8, 8, generator=g, dtype=torch.float64))
    p = q[:, :5] @ q[:, :5].T
    c = torch.randn(8, 3, generator=g, dtype=torch.float64)
    c = c @ c.T
    direct = torch.linalg.solve(p @ (k @ k.T + c) + 0.1 * torch.eye(8, dtype=torch.float64), p @ k @ r.T).T
    torch.testing.assert_close(rocr.rocr_update(k, r, p, c, 0.1), direct)


# -- null space -----------------------------------------------------------------------------------


@torch.no_grad()
def test_nullspace_update_leaves_preserved_subspace_alone():
    model = tiny_model()
    tok = tiny_tokenizer()
    before = state_copy(model)
    cfg = ROCRConfig(templates=BARE)
    stats = ROCR(cfg).unlearn(model, _data(_concepts(1), LOW_RANK_TEXT))
    ids = rocr.generic_token_ids(tok, LOW_RANK_TEXT, cfg.stats_tokens)
    # the statistic of the unedited model, as the method computed it
    moments = rocr.compute_second_moments(tiny_model(), ids, tok.pad_token_id, (0, 1))
    for layer in (0, 1):
        w, v = torch.linalg.eigh(moments[layer].double())
        preserved, null_rank = v[:, w >= cfg.nullspace_threshold], int((w < cfg.nullspace_threshold).sum())
        assert 0 < null_rank < 64 and stats["projector_rank"][str(layer)] == null_rank
        name = f"model.layers.{layer}.mlp.down_proj.weight"
        delta = (model.state_dict()[name] - before[name]).double()
        assert delta.norm() > 1e-3
        # ‖ΔW·u‖ for unit u in the preserved subspace, against ‖ΔW‖: zero up to float32 rounding
        assert float((delta @ preserved).norm(dim=0).max() / delta.norm()) < 1e-5
    # the generic sentence's own hidden states barely move (its keys span the preserved subspace)
    fresh = tiny_model()
    h0 = fresh(input_ids=torch.tensor([ids[0]]), output_hidden_states=True).hidden_states[2]
    h1 = model(input_ids=torch.tensor([ids[0]]), output_hidden_states=True).hidden_states[2]
    assert float((h1 - h0).norm() / h0.norm()) < 0.05


def test_empty_null_space_is_an_error_not_a_no_op():
    model = tiny_model()
    before = state_copy(model)
    with pytest.raises(UnlearnbenchError, match="null space .* empty.*projector=none"):
        ROCR(ROCRConfig(nullspace_threshold=1e-9)).unlearn(model, _data(_concepts(1), _generic()))
    assert _changed(before, model) == []


def test_nullspace_needs_generic_text():
    with pytest.raises(UnlearnbenchError, match="generic"):
        ROCR(ROCRConfig()).unlearn(tiny_model(), _data(_concepts(1)))


# -- several concepts -----------------------------------------------------------------------------


@torch.no_grad()
@pytest.mark.parametrize("batch", [False, True])
def test_two_concepts_both_move(batch):
    model = tiny_model()
    a, b = _concepts(2)
    z, _ = _out(model, REPLACEMENT, 1)
    start = {c: _out(model, c, 1)[0] for c in (a, b)}
    stats = ROCR(ROCRConfig(projector="none", templates=BARE, batch=batch)).unlearn(model, _data([a, b]))
    for c in (a, b):
        moved = float((_out(model, c, 1)[0] - z).norm() / (start[c] - z).norm())
        # sequential: the second edit keeps the first one's keys in C, so the first stays close;
        # batch: the last layer solves both at once
        # measured: sequential 0.065 (first) and 3e-4 (second), batch ≤ 3e-4; unedited: 1
        assert moved < (0.1 if not batch else 1e-2), (c, moved)
        assert stats["final_relative_residual"][c] == pytest.approx(moved, rel=1e-3, abs=1e-6)
    if batch:
        assert len(stats["targets"]) == 1 and stats["targets"][0]["concepts"] == [a, b]
        assert stats["delta_rank"] == [{"0": 2, "1": 2}]
    else:
        assert [t["concepts"] for t in stats["targets"]] == [[a], [b]]
        assert stats["delta_rank"] == [{"0": 1, "1": 1}, {"0": 1, "1": 1}]


@torch.no_grad()
def test_sequential_memory_protects_the_first_edit():
    """C matters: two separate calls (C restarts at 0) disturb the first concept more than one call."""
    a, b = _concepts(2)
    miss = {}
    for how in ("one call", "two calls"):
        model = tiny_model()
        z, _ = _out(model, REPLACEMENT, 1)
        start, _ = _out(model, a, 1)
        method = ROCR(ROCRConfig(projector="none", templates=BARE))
        if how == "one call":
            method.unlearn(model, _data([a, b]))
        else:
            method.unlearn(model, _data([a]))
            method.unlearn(model, _data([b]))
        miss[how] = float((_out(model, a, 1)[0] - z).norm() / (start - z).norm())
    # measured (world v2 names): one call 0.073, two calls 0.126
    assert miss["one call"] < 0.7 * miss["two calls"], miss


# -- cache ----------------------------------------------------------------------------------------


def test_second_moment_cache(monkeypatch, _cache):
    calls = []
    real = rocr.compute_second_moments

    def spy(model, ids, pad, layers):
        calls.append(tuple(layers))
        return real(model, ids, pad, layers)

    monkeypatch.setattr(rocr, "compute_second_moments", spy)
    model = tiny_model()
    data = _data(_concepts(1), LOW_RANK_TEXT)
    s1 = ROCR(ROCRConfig()).unlearn(copy.deepcopy(model), data)
    assert calls == [(0, 1)] and s1["cache_hits"] == [] and s1["cache_misses"] == [0, 1]
    files = sorted(p.name for p in (_cache / "rocr").iterdir())
    assert len(files) == 4 and sum(f.endswith(".safetensors") for f in files) == 2
    sidecar = json.loads(next((_cache / "rocr").glob("*.json")).read_text())
    for field in ("key", "layer", "tokens", "corpus_token_ids_sha256", "feeding_weights_sha256"):
        assert field in sidecar
    assert sidecar["tokens"] == s1["stats_tokens"]

    def no_pickle(*a, **k):
        raise AssertionError("the cache must be read with safetensors")

    monkeypatch.setattr(torch, "load", no_pickle)
    monkeypatch.setattr(pickle, "load", no_pickle)
    s2 = ROCR(ROCRConfig(nullspace_threshold=5e-2)).unlearn(copy.deepcopy(model), data)  # threshold-independent
    assert calls == [(0, 1)] and s2["cache_hits"] == [0, 1]

    # layer 1's down_proj feeds neither statistic; layer 1's up_proj feeds layer 1's only
    changed = copy.deepcopy(model)
    with torch.no_grad():
        changed.model.layers[1].mlp.down_proj.weight.add_(0.01)
    assert ROCR(ROCRConfig()).unlearn(changed, data)["cache_hits"] == [0, 1]
    changed = copy.deepcopy(model)
    with torch.no_grad():
        changed.model.layers[1].mlp.up_proj.weight.add_(0.01)
    s3 = ROCR(ROCRConfig()).unlearn(changed, data)
    assert s3["cache_hits"] == [0] and calls[-1] == (1,)
    changed = copy.deepcopy(model)
    with torch.no_grad():
        changed.model.embed_tokens.weight.mul_(1.01)
    assert ROCR(ROCRConfig()).unlearn(changed, data)["cache_misses"] == [0, 1]
    # a different corpus is a different statistic
    assert ROCR(ROCRConfig()).unlearn(copy.deepcopy(model), _data(_concepts(1), LOW_RANK_TEXT[:5]))["cache_misses"] == [
        0,
        1,
    ]


def test_damaged_cache_file_is_recomputed(monkeypatch, _cache):
    model = tiny_model()
    data = _data(_concepts(1), LOW_RANK_TEXT)
    ROCR(ROCRConfig()).unlearn(copy.deepcopy(model), data)
    for f in (_cache / "rocr").glob("*.safetensors"):
        f.write_bytes(b"not a tensor file")
    assert ROCR(ROCRConfig()).unlearn(copy.deepcopy(model), data)["cache_misses"] == [0, 1]


# -- modes and stats ------------------------------------------------------------------------------


@torch.no_grad()
def test_noise_mode_has_target_norm_and_is_reached():
    model = tiny_model()
    a, b = _concepts(2)
    norms = {c: float(_out(model, c, 1)[0].norm()) for c in (a, b)}
    # batch editing: both targets are solved together, so each reaches its own noise vector
    stats = ROCR(ROCRConfig(mode="noise", projector="none", templates=BARE, seed=3, batch=True)).unlearn(
        model, _data([a, b])
    )
    for c in (a, b):
        assert stats["noise_norms"][c]["z"] == pytest.approx(norms[c], rel=1e-6)
        assert stats["noise_norms"][c]["z_cur"] == pytest.approx(norms[c], rel=1e-6)
        assert stats["final_relative_residual"][c] < 0.05
    assert stats["replacement"] is None


def test_stats_fields():
    stats = ROCR(ROCRConfig(templates=BARE)).unlearn(tiny_model(), _data(_concepts(2), LOW_RANK_TEXT))
    for key in (
        "seconds",
        "targets",
        "delta_rank",
        "projector_rank",
        "update_norm",
        "layers",
        "cache_hits",
        "cache_misses",
        "stats_tokens",
        "final_relative_residual",
        "history",
    ):
        assert key in stats, key
    assert stats["layers"] == [0, 1] and set(stats["projector_rank"]) == {"0", "1"}
    assert all(t["seconds"] >= 0 and set(t["delta_rank"]) == {"0", "1"} for t in stats["targets"])
    assert stats["history"] == []  # the runner stores stats["history"] as the loss history
    json.dumps(stats)  # the runner stores them as JSON


# -- the authors' protocol (Acruxos/ORT): options ---------------------------------------------------

CHAT = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def test_paper_protocol_options_and_defaults():
    c = ROCRConfig()
    assert (c.l2, c.template_set, c.contexts, c.value_context, c.targets, c.noise_scale) == (
        1e-2,
        "harness",
        "plain",
        "mean",
        "sequential",
        1.0,
    )
    assert rocr.resolve_templates(c, tiny_tokenizer()) == rocr.DEFAULT_TEMPLATES
    ort = ROCRConfig(template_set="ort")
    assert rocr.resolve_templates(ort, tiny_tokenizer())[0] == "{}." and len(rocr.ORT_TEMPLATES) == 6
    with pytest.raises(ValueError):
        ROCRConfig(noise_scale=0.0)


def test_chat_contexts_wrap_each_template_and_need_a_chat_template():
    tok = tiny_tokenizer()
    cfg = ROCRConfig(template_set="ort", contexts="chat")
    if getattr(tok, "chat_template", None):
        tok.chat_template = None
    with pytest.raises(UnlearnbenchError, match="chat template"):
        rocr.resolve_templates(cfg, tok)
    tok.chat_template = CHAT
    wrapped = rocr.resolve_templates(cfg, tok)
    assert wrapped[4] == "<|im_start|>user\nTell me about {}.<|im_end|>\n<|im_start|>assistant\nAnswer:"
    assert len(wrapped) == 6 and all(t.count("{}") == 1 for t in wrapped)
    ids, pos = subject_position(tok, wrapped[4], REPLACEMENT)
    assert tok.decode(ids[: pos + 1]).endswith("Smith")


@torch.no_grad()
def test_value_context_first_reads_the_first_context_only():
    model = tiny_model()
    templates = ("{}", "Tell me about {}.", "{} is known for")
    for mode, want in (("first", lambda o: o[0]), ("mean", lambda o: o.mean(0))):
        cfg = ROCRConfig(templates=templates, value_context=mode, projector="none")
        edit = rocr._Edit(model, tiny_tokenizer(), cfg, (0, 1), templates)
        z, _ = edit.values([_concepts(1)[0]], REPLACEMENT)
        out = read_subject(model, tiny_tokenizer(), REPLACEMENT, templates, (0, 1), 1)[1]
        assert torch.allclose(next(iter(z.values())).float(), want(out), atol=1e-5)
    assert not torch.allclose(out[0], out.mean(0), atol=1e-3)  # the two options differ here


@torch.no_grad()
def test_noise_scale_sets_the_norm():
    model = tiny_model()
    a = _concepts(1)[0]
    stats = ROCR(ROCRConfig(mode="noise", projector="none", templates=BARE, noise_scale=2.0)).unlearn(model, _data([a]))
    n = stats["noise_norms"][a]
    assert n["z"] == pytest.approx(2.0 * n["z_cur"], rel=1e-6)


def test_independent_targets_sum_edits_made_from_the_unedited_model():
    """targets=independent: each target edited from the starting weights with C = 0 (the authors:
    one target per freshly loaded model), the edits summed; sequential editing differs."""
    a, b = _concepts(2)
    start = tiny_model()
    w0 = state_copy(start)
    cfg = dict(projector="none", templates=BARE, layers=(0, 1))

    def edited(concepts, **kw):
        m = copy.deepcopy(start)
        ROCR(ROCRConfig(**cfg, **kw)).unlearn(m, _data(concepts))
        return m.state_dict()

    da = {k: v - w0[k] for k, v in edited([a]).items()}
    db = {k: v - w0[k] for k, v in edited([b]).items()}
    both = edited([a, b], targets="independent")
    seq = edited([a, b])
    name = "model.layers.1.mlp.down_proj.weight"
    assert torch.allclose(both[name], w0[name] + da[name] + db[name], atol=1e-6)
    assert not torch.allclose(seq[name], both[name], atol=1e-5)
    assert all(torch.equal(both[k], w0[k]) for k in w0 if "down_proj" not in k)


@torch.no_grad()
def test_residual_before_is_read_before_the_first_layer_is_edited():
    """Each target's residual_before is ‖z − z_cur‖ under the weights before its first layer's edit
    (the value read at i == 0), not a later layer's."""
    model = tiny_model()
    a = _concepts(1)[0]
    z_rep = _out(model, REPLACEMENT, 1)[0]
    z_cur = _out(model, a, 1)[0]
    stats = ROCR(ROCRConfig(projector="none", templates=BARE, layers=(0, 1))).unlearn(model, _data([a]))
    t = stats["targets"][0]
    assert t["residual_before"][0] == pytest.approx(float((z_rep - z_cur).norm()), rel=1e-5)
    assert t["residual_after"][0] < 0.5 * t["residual_before"][0]
