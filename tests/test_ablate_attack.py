"""The ablate attack: difference-of-means directions projected out of every residual write, on a
copy; exact zero component along each direction where it is ablated; Llama (also tied and saved
to disk) and GPT-2 layouts; a zero direction changes nothing; other layouts refused in one line."""

from __future__ import annotations

import pytest
import torch

torch.set_num_threads(1)

from helpers_tiny import (  # noqa: E402
    forget_examples,
    retain_examples,
    state_copy,
    states_equal,
    tiny_model,
    tiny_tokenizer,
    tiny_world,
)

from unlearnbench.attacks.ablate import (  # noqa: E402
    AblateAttack,
    AblateConfig,
    parse_layers,
    residual_writes,
)
from unlearnbench.data.types import PlanContext, UnlearnData  # noqa: E402
from unlearnbench.errors import UnlearnbenchError  # noqa: E402
from unlearnbench.hidden import token_states  # noqa: E402


class FakeBenchmark:
    """unlearn_data() with whose each forget example is; ``same=True``: retain = forget (no direction)."""

    def __init__(self, same: bool = False, layers: int | None = None):
        self.same = same
        self.layers = layers

    def unlearn_data(self, tokenizer):
        w = tiny_world()
        forget = forget_examples()
        owners = [k for k, i in enumerate(w.forget_ids) for _ in w.unlearning_examples([i])]
        return UnlearnData(
            forget,
            list(forget) if self.same else retain_examples(),
            tokenizer,
            concepts=[w.by_id(i).name for i in w.forget_ids],
            forget_owners=owners,
            concept_ids=list(w.forget_ids),
        )

    def n_layers(self):
        return self.layers


class Recorder:
    def __init__(self):
        self.calls, self.states, self.models = [], [], []

    def __call__(self, checkpoint, step, model):
        self.calls.append((checkpoint, step))
        self.states.append(state_copy(model))
        self.models.append(model)


def _run(cfg=None, model=None, benchmark=None, tok=None):
    rec = Recorder()
    stats = AblateAttack(cfg or AblateConfig()).run(
        model if model is not None else tiny_model(),
        tok or tiny_tokenizer(),
        None,
        rec,
        benchmark=benchmark or FakeBenchmark(),
    )
    return stats, rec


def _direction(model, tok, layer):
    """The direction the attack estimates at ``layer``, computed here from the means by hand."""
    data = FakeBenchmark().unlearn_data(tok)

    def mean(examples):
        states = [s[0] for _, s in token_states(model, tok, [(e.prompt, e.target) for e in examples], 7, [layer])]
        return torch.cat(states).double().mean(0)

    d = mean(data.forget) - mean(data.retain)
    return d / d.norm()


PROBE_TEXTS = [("Question: who is", " the mentor?"), ("", "A sentence the estimate never saw."), ("x", " y z")]


def test_evaluates_before_and_after_on_a_copy_and_leaves_the_input_untouched():
    model = tiny_model()
    before = state_copy(model)
    stats, rec = _run(model=model)
    assert rec.calls == [("before", 0), ("ablated", 1)]
    assert states_equal(model.state_dict(), before)  # the input model is never modified
    assert states_equal(rec.states[0], before)  # 'before' is the unlearned model as it is
    assert rec.models[0] is not model
    assert not states_equal(rec.states[1], before)
    assert stats["layers"] == [0, 1] and stats["layers_with_direction"] == [0, 1]
    assert set(stats["direction_norms"]) == {"0", "1"} and all(v > 0 for v in stats["direction_norms"].values())
    assert all(0 < v < 1 for v in stats["forget_norm_fraction"].values())
    assert all(v < 1e-5 for v in stats["forget_norm_fraction_after"].values())
    assert stats["forget_tokens"] > 0 and stats["retain_tokens"] > 0 and stats["seconds"] >= 0


def test_upto_scope_leaves_no_component_along_each_layers_direction_at_that_layer():
    model = tiny_model()
    tok = tiny_tokenizer()
    dirs = {layer: _direction(model, tok, layer) for layer in (0, 1)}
    _, rec = _run(model=model)
    ablated = rec.models[1]
    for _, states in token_states(ablated, tok, PROBE_TEXTS, 8, [0, 1]):
        for k, layer in enumerate((0, 1)):
            h = states[k].double()
            along = (h @ dirs[layer]).abs().max()
            assert along < 1e-4 * h.norm(dim=-1).max(), layer  # texts never used for the estimate too
    # ... while the original model has a sizeable component along them
    for _, states in token_states(model, tok, PROBE_TEXTS, 8, [1]):
        assert (states[0].double() @ dirs[1]).abs().max() > 1e-2


def test_all_scope_removes_every_direction_from_every_write_and_upto_keeps_later_blocks():
    model = tiny_model()
    tok = tiny_tokenizer()
    r0 = _direction(model, tok, 0)
    _, rec = _run(AblateConfig(layers="0", scope="all"), model=model)
    work = rec.models[1]
    for w in residual_writes(work):
        wt = w.module.weight.detach().double()
        out = wt.T @ r0 if w.kind == "linear" else wt @ r0
        assert out.abs().max() < 1e-5, w.name
    # upto: the direction of layer 0 is not removed from block 1's writes
    _, rec = _run(AblateConfig(layers="0", scope="upto"), model=model)
    work = rec.models[1]
    assert torch.equal(work.model.layers[1].mlp.down_proj.weight, model.model.layers[1].mlp.down_proj.weight)
    assert not torch.equal(work.model.layers[0].mlp.down_proj.weight, model.model.layers[0].mlp.down_proj.weight)
    assert not torch.equal(work.model.embed_tokens.weight, model.model.embed_tokens.weight)


def test_a_zero_direction_changes_nothing():
    model = tiny_model()
    stats, rec = _run(model=model, benchmark=FakeBenchmark(same=True))
    assert stats["layers_with_direction"] == [] and stats["layers_without_direction"] == [0, 1]
    assert stats["tensors_orthogonalised"] == []
    assert states_equal(rec.states[0], rec.states[1])


def test_tied_embeddings_are_untied_and_the_unembedding_is_kept():
    from transformers import LlamaForCausalLM

    base = tiny_model()
    cfg = base.config
    cfg.tie_word_embeddings = True
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg).eval()
    assert model.lm_head.weight is model.model.embed_tokens.weight
    head = model.lm_head.weight.detach().clone()
    stats, rec = _run(model=model)
    work = rec.models[1]
    assert stats["untied_output_embeddings"] is True
    assert work.lm_head.weight is not work.model.embed_tokens.weight
    assert torch.equal(work.lm_head.weight, head)
    assert not torch.equal(work.model.embed_tokens.weight, head)
    assert work.config.tie_word_embeddings is False
    assert model.lm_head.weight is model.model.embed_tokens.weight  # the input is still tied


def test_runs_on_a_tiny_random_llama_saved_to_disk(tmp_path):
    from unlearnbench.models import load_model, save_model

    tok = tiny_tokenizer()
    save_model(tiny_model(seed=3), tok, tmp_path / "m")
    lm = load_model(tmp_path / "m")
    stats, rec = _run(AblateConfig(layers="1"), model=lm.model, tok=lm.tokenizer)
    assert stats["layers_with_direction"] == [1]
    out = rec.models[1](**lm.tokenizer(["Isric Thornwood was born in"], return_tensors="pt")).logits
    assert torch.isfinite(out).all()


def test_gpt2_layout_with_conv1d_and_position_embeddings():
    from transformers import GPT2Config, GPT2LMHeadModel

    tok = tiny_tokenizer()
    torch.manual_seed(0)
    model = GPT2LMHeadModel(
        GPT2Config(vocab_size=len(tok), n_positions=128, n_embd=32, n_layer=2, n_head=2, bos_token_id=1, eos_token_id=2)
    ).eval()
    stats, rec = _run(AblateConfig(scope="all"), model=model)
    work = rec.models[1]
    names = set(stats["tensors_orthogonalised"])
    assert {"transformer.wte", "transformer.wpe", "transformer.h.1.attn.c_proj", "transformer.h.0.mlp.c_proj"} <= names
    assert not torch.equal(work.transformer.wpe.weight, model.transformer.wpe.weight)
    assert torch.equal(work.lm_head.weight, model.lm_head.weight)  # untied from wte first
    assert all(v < 1e-5 for v in stats["forget_norm_fraction_after"].values())


def test_people_option_names_estimated_and_held_out_people():
    w = tiny_world()
    names = {w.by_id(i).name for i in w.forget_ids}
    stats, _ = _run(AblateConfig(people=1, seed=2))
    assert len(stats["estimated_people"]) == 1 and len(stats["held_out_people"]) == len(names) - 1
    assert set(stats["estimated_people"]) | set(stats["held_out_people"]) == names
    assert stats["n_estimation_examples"] < stats["n_forget_examples"]
    again, _ = _run(AblateConfig(people=1, seed=2))
    assert again["estimated_people"] == stats["estimated_people"]
    assert again["direction_norms"] == stats["direction_norms"]


def test_refuses_a_layout_it_does_not_handle():
    model = tiny_model()
    model.model.layers[0].post_feedforward_layernorm = torch.nn.Identity()  # a Gemma-2-style post-norm
    with pytest.raises(UnlearnbenchError, match="post-block norms"):
        _run(model=model)

    class Other(torch.nn.Module):
        def parameters(self, recurse=True):
            return iter([torch.nn.Parameter(torch.zeros(1))])

    with pytest.raises(UnlearnbenchError, match="decoder blocks"):
        _run(model=Other())


def test_layer_syntax_and_bounds():
    assert parse_layers("all", 3) == [0, 1, 2]
    assert parse_layers("0+2", 3) == [0, 2]
    assert parse_layers("1-3+0", 4) == [0, 1, 2, 3]
    with pytest.raises(UnlearnbenchError, match="layer 5 does not exist"):
        parse_layers("5", 2)
    for bad in ("", "first", "1,2", "3-1", "-1"):
        with pytest.raises(ValueError):
            AblateConfig(layers=bad)
    with pytest.raises(ValueError):
        AblateConfig(people=0)
    with pytest.raises(UnlearnbenchError, match="layer 4 does not exist"):
        AblateAttack(AblateConfig(layers="4")).bind(PlanContext(lambda n: {}, {}, FakeBenchmark(layers=2)))
    assert AblateAttack(AblateConfig(layers="1")).bind(PlanContext(lambda n: {}, {}, FakeBenchmark(layers=2))) == []


def test_token_states_skip_bos_and_padding_and_match_unbatched_forwards():
    model, tok = tiny_model(), tiny_tokenizer()
    pairs = [("Question: who", " is it?"), ("", "Short."), ("A much longer prompt with many words", " end")]
    from unlearnbench.batching import encode_example

    lengths = [len(encode_example(tok, p, t).ids) for p, t in pairs]
    got = {}
    for idx, states in token_states(model, tok, pairs, 2, [0, 1]):
        offset = 0
        for i in idx:
            n = lengths[i] - 1  # every token but BOS
            got[i] = states[:, offset : offset + n]
            offset += n
        assert offset == states.shape[1]
    for i, (p, t) in enumerate(pairs):
        ids = torch.tensor([encode_example(tok, p, t).ids])
        hs = model(input_ids=ids, output_hidden_states=True).hidden_states
        assert torch.allclose(got[i][0], hs[1][0, 1:], atol=1e-5)  # block 0's output, BOS left out
