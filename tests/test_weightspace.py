"""Weight-space diagnostics: distances on hand-made checkpoints (exact values), tensor grouping,
the interpolation path's exact ends, the barrier, the correlations, and bad input through the CLI."""

import math

import numpy as np
import pytest
import torch
from helpers_tiny import (
    forget_examples,
    perturb_,
    retain_examples,
    state_copy,
    states_equal,
    tiny_model,
    tiny_tokenizer,
    tiny_world,
)
from safetensors.torch import save_file

from unlearnbench.cli import main
from unlearnbench.data.types import ProbeItem
from unlearnbench.errors import UnlearnbenchError
from unlearnbench.inference import score_targets
from unlearnbench.probes.forms import QAProbe
from unlearnbench.store import ResultStore
from unlearnbench.weightspace import barrier, correlations, distances, group_of, interpolation_curve, parse_alphas

torch.set_num_threads(1)


def _ckpt(path, tensors, shards=1):
    path.mkdir()
    names = sorted(tensors)
    for i in range(shards):
        part = {k: tensors[k].contiguous() for k in names[i::shards]}
        save_file(part, str(path / f"model-{i + 1:05d}-of-{shards:05d}.safetensors"))
    return path


BASE = {
    "model.embed_tokens.weight": torch.ones(4, 3),  # ‖·‖² 12
    "model.layers.0.mlp.up_proj.weight": torch.full((2, 2), 2.0),  # 16
    "model.layers.1.mlp.up_proj.weight": torch.ones(2, 2),  # 4
    "model.norm.weight": torch.ones(3),  # 3
}


def test_distances_with_a_known_delta_in_one_layer(tmp_path):
    u = dict(BASE)
    u["model.layers.1.mlp.up_proj.weight"] = BASE["model.layers.1.mlp.up_proj.weight"] + torch.tensor(
        [[3.0, 0.0], [0.0, 4.0]]
    )  # Δ of norm 5 in layer 1 only
    r_ = {k: v + 1.0 for k, v in BASE.items()}  # the oracle: +1 everywhere, 23 parameters
    r_["model.layers.1.mlp.up_proj.weight"] = u["model.layers.1.mlp.up_proj.weight"]  # equal to θ_u there
    d = distances(_ckpt(tmp_path / "o", BASE), _ckpt(tmp_path / "u", u, shards=2), _ckpt(tmp_path / "r", r_))
    assert d.l2 == pytest.approx(5.0, rel=1e-12)
    assert d.norm_base == pytest.approx(math.sqrt(35.0), rel=1e-12)
    assert d.relative == pytest.approx(5.0 / math.sqrt(35.0), rel=1e-12)
    assert d.n_params == 23
    groups = {g["group"]: g for g in d.per_group}
    assert list(groups) == ["embed", "layer.0", "layer.1", "other"]
    assert groups["layer.1"]["l2"] == pytest.approx(5.0) and groups["layer.1"]["relative"] == pytest.approx(2.5)
    assert all(groups[g]["l2"] == 0.0 and groups[g]["relative"] == 0.0 for g in ("embed", "layer.0", "other"))
    # θ_u − θ_r: −1 on the 19 parameters outside layer 1, 0 in it; θ_o − θ_r: −1 on those 19, −Δ in layer 1
    assert d.oracle_l2 == pytest.approx(math.sqrt(19.0), rel=1e-12)
    assert d.base_oracle_l2 == pytest.approx(math.sqrt(19.0 + 25.0), rel=1e-12)
    assert d.oracle_ratio == pytest.approx(math.sqrt(19.0 / 44.0), rel=1e-12)
    assert groups["layer.1"]["oracle_l2"] == 0.0 and groups["embed"]["oracle_l2"] == pytest.approx(math.sqrt(12.0))
    without = distances(tmp_path / "o", tmp_path / "u")
    assert without.l2 == pytest.approx(5.0) and without.oracle_l2 is None and without.oracle_ratio is None


def test_distances_refuse_another_architecture(tmp_path):
    base = _ckpt(tmp_path / "o", BASE)
    other = _ckpt(tmp_path / "x", {**BASE, "model.layers.2.mlp.up_proj.weight": torch.ones(2)})
    with pytest.raises(UnlearnbenchError, match="other tensors"):
        distances(base, other)
    shaped = _ckpt(tmp_path / "s", {**BASE, "model.norm.weight": torch.ones(4)})
    with pytest.raises(UnlearnbenchError, match="another shape"):
        distances(base, shaped)


@pytest.mark.parametrize(
    "name, group",
    [
        ("model.embed_tokens.weight", "embed"),
        ("model.layers.0.self_attn.q_proj.weight", "layer.0"),
        ("model.layers.11.mlp.down_proj.weight", "layer.11"),
        ("model.norm.weight", "other"),
        ("lm_head.weight", "head"),
        ("transformer.wte.weight", "embed"),
        ("transformer.wpe.weight", "embed"),
        ("transformer.h.3.attn.c_attn.weight", "layer.3"),
        ("transformer.h.10.ln_2.bias", "layer.10"),
        ("transformer.ln_f.weight", "other"),
        ("gpt_neox.embed_in.weight", "embed"),
        ("embed_out.weight", "head"),
    ],
)
def test_group_of_llama_and_gpt2_names(name, group):
    assert group_of(name) == group


def test_group_of_gpt2_model_names():
    """Every parameter of a real (tiny, random) GPT-2 falls in the group its block says."""
    from transformers import GPT2Config, GPT2LMHeadModel

    m = GPT2LMHeadModel(GPT2Config(n_layer=2, n_embd=16, n_head=2, vocab_size=50, n_positions=16))
    groups = {group_of(n) for n, _ in m.named_parameters()}
    assert groups == {"embed", "layer.0", "layer.1", "other"}  # lm_head is tied to wte: listed once


def _items(model, tok, ids, tag):
    """qa items whose answers are ``model``'s own greedy answers (so it scores 1 on them)."""
    from unlearnbench.inference import greedy_generate

    ents = {e.id: e for e in tiny_world().entities}
    prompts = [f"What does {ents[i].name} do? Answer:" for i in ids]
    answers = greedy_generate(model, tok, prompts, 4)
    return [ProbeItem(f"{tag}-{i}", i, "job", "qa", p, a) for i, p, a in zip(ids, prompts, answers)]


def test_interpolation_is_exact_at_both_ends_and_leaves_the_models_alone():
    tok = tiny_tokenizer()
    original = tiny_model(tok, seed=0)
    unlearned = tiny_model(tok, seed=0)
    perturb_(unlearned, scale=0.3, seed=3)
    before_o, before_u = state_copy(original), state_copy(unlearned)
    examples = {"forget": forget_examples(), "retain": retain_examples()}
    w = tiny_world()
    items = {
        "forget": _items(original, tok, w.forget_ids, "f"),
        "retain": _items(original, tok, w.method_retain_ids()[:4], "r"),
    }
    probe = QAProbe(QAProbe.Config(max_new_tokens=4))
    curve = interpolation_curve(original, unlearned, tok, examples, probe, items, (0.0, 0.5, 1.0, 1.2))
    assert [r["alpha"] for r in curve] == [0.0, 0.5, 1.0, 1.2]
    assert states_equal(state_copy(original), before_o) and states_equal(state_copy(unlearned), before_u)

    def loss(model, exs):
        s = score_targets(model, tok, [(e.prompt, e.target) for e in exs])
        return sum(x.sum_nll for x in s) / sum(x.n_tokens for x in s)

    for row, model in ((curve[0], original), (curve[2], unlearned)):
        for split in ("forget", "retain"):
            assert row[f"{split}_loss"] == loss(model, examples[split])  # bit for bit: the same weights
            scored = probe.score(model, tok, items[split])
            assert row[f"{split}_recall"] == sum(s["correct"] for s in scored) / len(scored)
    assert curve[0]["forget_recall"] == 1.0 and curve[0]["retain_recall"] == 1.0  # the original's own answers
    assert curve[2]["forget_recall"] < 1.0  # ... which the perturbed model does not give: the check can fail
    assert curve[0]["forget_loss"] != curve[2]["forget_loss"]  # the two ends differ: the check can fail
    assert curve[1]["forget_loss"] not in (curve[0]["forget_loss"], curve[2]["forget_loss"])


def test_interpolation_refuses_other_parameters():
    tok = tiny_tokenizer()
    from transformers import GPT2Config, GPT2LMHeadModel

    other = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=len(tok), n_positions=64))
    with pytest.raises(UnlearnbenchError, match="other parameters"):
        interpolation_curve(tiny_model(tok), other, tok, {}, QAProbe(), {}, (0.0, 1.0))


def test_barrier():
    def curve(values, alphas=(0.0, 0.5, 1.0, 1.2)):
        return [{"alpha": a, "L": v} for a, v in zip(alphas, values)]

    assert barrier(curve([1.0, 3.0, 2.0, 9.0]), "L") == pytest.approx(1.5)  # 3 − (1 + 2) / 2; 1.2 is left out
    assert barrier(curve([1.0, 1.5, 2.0, 0.0]), "L") == pytest.approx(0.0)  # on the line
    assert barrier(curve([1.0, 0.2, 2.0, 0.0]), "L") == 0.0  # below it: the ends count, never negative
    assert math.isnan(barrier(curve([1.0, 2.0], alphas=(0.0, 0.5)), "L"))


def test_correlations_on_constructed_numbers():
    rows = [
        {"l2": 1.0, "relative": 0.1, "worst_recovery": 0.2},
        {"l2": 2.0, "relative": 0.1, "worst_recovery": 0.4},
        {"l2": 3.0, "relative": 0.1, "worst_recovery": 0.6},
        {"l2": 4.0, "relative": 0.1, "worst_recovery": 0.9},
        {"l2": 5.0, "relative": float("nan"), "worst_recovery": None},  # no recovery: left out
    ]
    by = {c["figure"]: c for c in correlations(rows, figures=("l2", "relative", "oracle_l2"))}
    c = by["l2"]
    assert c["n"] == 4 and c["spearman"] == pytest.approx(1.0) and c["p_method"] == "exact permutation"
    assert c["spearman_p"] == pytest.approx(2 / 24)  # the two perfect orders out of 4! pairings
    assert c["pearson"] == pytest.approx(float(np.corrcoef([1, 2, 3, 4], [0.2, 0.4, 0.6, 0.9])[0, 1]), rel=1e-12)
    assert by["relative"]["note"] == "constant" and by["relative"]["spearman"] is None
    assert by["oracle_l2"]["n"] == 0 and by["oracle_l2"]["note"] == "too few cells"
    few = correlations(rows[:2], figures=("l2",))[0]
    assert few["n"] == 2 and few["note"] == "too few cells" and few["pearson"] is None
    many = [{"l2": float(i), "worst_recovery": float((i * 7) % 10)} for i in range(10)]
    big = correlations(many, figures=("l2",))[0]
    assert big["n"] == 10 and big["p_method"] == "asymptotic" and -1.0 <= big["spearman"] <= 1.0


def test_parse_alphas():
    assert parse_alphas("1,0,0.5,1.2") == (0.0, 0.5, 1.0, 1.2)
    for bad in ("0,0.5", "0.5,1", "0,x,1", "0,inf,1"):
        with pytest.raises(UnlearnbenchError, match="--alphas"):
            parse_alphas(bad)


def test_cli_bad_input_is_one_line(tmp_path, capsys):
    from helpers_leaderboard import make_store

    empty = tmp_path / "empty.sqlite"
    ResultStore(empty).close()
    assert main(["analyze", "weightspace", "--store", str(empty)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no finished unlearning cell" in err
    store, _cells = make_store(tmp_path / "s.sqlite", seeds=(0,))
    store.close()
    for extra, says in (
        (["--cell", "ffffffff"], "no finished unlearning cell 'ffffffff'"),
        (["--method", "rmu"], "method 'rmu'"),
        (["--alphas", "0,0.5"], "--alphas"),
    ):
        assert main(["analyze", "weightspace", "--store", str(tmp_path / "s.sqlite"), *extra]) == 2
        err = capsys.readouterr().err.strip()
        assert err.count("\n") == 0 and says in err, err
    assert main(["analyze", "weightspace", "--store", str(tmp_path / "missing.sqlite")]) == 2
    assert "no results store" in capsys.readouterr().err
