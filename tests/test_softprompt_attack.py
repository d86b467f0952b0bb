"""The softprompt attack: the wrapper behaves like the causal LM with the soft prompt prepended
(scoring with right padding, generation with left padding, stop strings), k=0 is the plain model,
training moves only the prompt and lowers its loss, the draw is seeded."""

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

from unlearnbench import inference  # noqa: E402
from unlearnbench.attacks.softprompt import (  # noqa: E402
    SoftPromptAttack,
    SoftPromptConfig,
    SoftPromptLM,
    initial_prompt,
)
from unlearnbench.batching import collate, encode_example, pad_id_of  # noqa: E402
from unlearnbench.data.types import UnlearnData  # noqa: E402
from unlearnbench.errors import UnlearnbenchError  # noqa: E402

PAIRS = [
    ("Question: Where was Isric born?\nAnswer:", " Quessa"),
    ("The", " birthplace of someone is a town far away."),
    ("A longer prompt that runs on for quite a few tokens before", " it ends"),
    ("", "Only a target."),
]
PROMPTS = [p or "Hi" for p, _ in PAIRS]


class FakeBenchmark:
    def unlearn_data(self, tokenizer):
        w = tiny_world()
        owners = [k for k, i in enumerate(w.forget_ids) for _ in w.unlearning_examples([i])]
        return UnlearnData(
            forget_examples(),
            retain_examples(),
            tokenizer,
            concepts=[w.by_id(i).name for i in w.forget_ids],
            forget_owners=owners,
            concept_ids=list(w.forget_ids),
        )


def _wrapper(k=4, seed=0, model=None):
    model = model or tiny_model()
    init, _ = initial_prompt(model, tiny_tokenizer(), k, seed)
    return SoftPromptLM(model, init + 0.3 * torch.randn(init.shape, generator=torch.Generator().manual_seed(seed)))


def _by_hand_logits(w, ids):
    """The plain model fed [soft; embed(ids)] through inputs_embeds, one unpadded row."""
    emb = w.lm.get_input_embeddings()(torch.tensor([ids]))
    full = torch.cat([w.soft.detach().unsqueeze(0), emb], dim=1)
    return w.lm(inputs_embeds=full).logits[0, w.prefix_length :]


def _by_hand_greedy(w, tok, prompt, n):
    ids = tok(prompt)["input_ids"]
    out = []
    for _ in range(n):
        t = int(_by_hand_logits(w, ids + out)[-1].argmax())
        if t == tok.eos_token_id:
            break
        out.append(t)
    return tok.decode(out, skip_special_tokens=True)


@torch.no_grad()
def test_wrapper_logits_on_a_right_padded_batch_equal_inputs_embeds_by_hand():
    w, tok = _wrapper(), tiny_tokenizer()
    enc = [encode_example(tok, p, t) for p, t in PAIRS]
    batch = collate(enc, pad_id_of(tok))
    logits = w(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    assert logits.shape[:2] == batch["input_ids"].shape
    for row, e in enumerate(enc):
        ref = _by_hand_logits(w, e.ids)
        assert torch.allclose(logits[row, : len(e.ids)], ref, atol=1e-5), row
    # and the soft prompt matters: the plain model's logits differ
    plain = w.lm(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    assert not torch.allclose(plain[0, : len(enc[0].ids)], logits[0, : len(enc[0].ids)], atol=1e-3)


def test_wrapper_generation_with_left_padding_equals_greedy_by_hand():
    w, tok = _wrapper(), tiny_tokenizer()
    got = inference.greedy_generate(w, tok, PROMPTS, max_new_tokens=8, batch_size=4, stop=None)
    want = [_by_hand_greedy(w, tok, p, 8) for p in PROMPTS]
    assert got == want
    # stop strings: the criteria see the prompt ids too, so the text is the one cut at the stop
    from unlearnbench.generation import cut_at_stop

    stopped = inference.greedy_generate(w, tok, PROMPTS, max_new_tokens=8, batch_size=4, stop=(" ", "e"))
    assert stopped == [cut_at_stop(g, (" ", "e")) for g in want]


@torch.no_grad()
def test_zero_soft_tokens_scores_and_generates_like_the_plain_model():
    model, tok = tiny_model(), tiny_tokenizer()
    w = SoftPromptLM(model, torch.zeros(0, model.config.hidden_size))
    a = inference.score_targets(w, tok, PAIRS, batch_size=3)
    b = inference.score_targets(model, tok, PAIRS, batch_size=3)
    for x, y in zip(a, b):
        assert x.n_tokens == y.n_tokens and abs(x.sum_nll - y.sum_nll) < 1e-4 and x.token_acc == y.token_acc
    assert inference.greedy_generate(w, tok, PROMPTS, 8, 3) == inference.greedy_generate(model, tok, PROMPTS, 8, 3)


@torch.no_grad()
def test_hidden_state_readers_see_the_real_tokens_through_the_wrapper():
    """last_prompt_states / token_states of the wrapper are the frozen model's block outputs at the
    real tokens, fed [soft; embed(ids)] by hand (shifted by k), on a padded batch."""
    from unlearnbench.hidden import last_prompt_states, token_states

    w, tok = _wrapper(), tiny_tokenizer()
    k, n_layers = w.prefix_length, w.lm.config.num_hidden_layers
    by_hand = {}
    for i, (p, t) in enumerate(PAIRS):
        e = encode_example(tok, p, t)
        emb = w.lm.get_input_embeddings()(torch.tensor([e.ids]))
        hs = w.lm(inputs_embeds=torch.cat([w.soft.unsqueeze(0), emb], 1), output_hidden_states=True).hidden_states
        # hidden_states[l + 1] is block l's output, but the last one has the final norm applied: hook it instead
        by_hand[i] = (e, [hs[layer + 1][0] for layer in range(n_layers - 1)])
    for idx, states in last_prompt_states(w, tok, PAIRS, batch_size=3):
        for r, i in enumerate(idx):
            e, layers = by_hand[i]
            for layer, h in enumerate(layers):
                assert torch.allclose(states[layer, r], h[k + e.n_prompt - 1], atol=1e-5), (i, layer)
    plain_tokens = sum(len(by_hand[i][0].ids) - 1 for i in by_hand)  # every token but the leading BOS
    got = sum(states.shape[1] for _idx, states in token_states(w, tok, PAIRS, batch_size=3))
    assert got == plain_tokens


class Recorder:
    """Records each checkpoint and the mean target NLL of the trained forget examples there."""

    def __init__(self, examples):
        self.examples = examples
        self.calls, self.losses, self.prompts = [], [], []

    def __call__(self, checkpoint, step, model):
        self.calls.append((checkpoint, step))
        scores = inference.score_targets(model, tiny_tokenizer(), [(e.prompt, e.target) for e in self.examples])
        self.losses.append(sum(s.sum_nll for s in scores) / sum(s.n_tokens for s in scores))
        self.prompts.append(model.soft.detach().clone())


def test_trains_only_the_prompt_lowers_its_loss_and_evaluates_every_k_steps():
    model = tiny_model()
    before = state_copy(model)
    rec = Recorder(forget_examples())
    cfg = SoftPromptConfig(tokens=4, n=-1, steps=25, eval_every=10, lr=0.05, batch_size=8)
    stats = SoftPromptAttack(cfg).run(model, tiny_tokenizer(), None, rec, benchmark=FakeBenchmark())
    assert rec.calls == [("step=0", 0), ("step=10", 10), ("step=20", 20), ("step=25", 25)]
    assert stats["evaluated_steps"] == [0, 10, 20, 25]
    assert states_equal(model.state_dict(), before)
    assert all(p.grad is None for p in model.parameters())
    assert rec.losses[-1] < rec.losses[0] - 0.3  # the soft prompt fits the forget texts
    assert stats["final_loss"] < stats["first_loss"]
    assert not torch.equal(rec.prompts[0], rec.prompts[-1])
    assert stats["n_samples"] == len(forget_examples()) and stats["tokens"] == 4


def test_draw_and_training_are_seeded_and_people_holds_people_out():
    w = tiny_world()
    names = {w.by_id(i).name for i in w.forget_ids}
    cfg = SoftPromptConfig(tokens=3, n=5, people=1, steps=3, eval_every=3, seed=4)
    runs = []
    for _ in range(2):
        rec = Recorder(forget_examples()[:2])
        runs.append(
            (SoftPromptAttack(cfg).run(tiny_model(), tiny_tokenizer(), None, rec, benchmark=FakeBenchmark()), rec)
        )
    (a, ra), (b, rb) = runs
    assert a["sample_indices"] == b["sample_indices"] and a["init_token_ids"] == b["init_token_ids"]
    assert torch.equal(ra.prompts[-1], rb.prompts[-1]) and a["final_loss"] == b["final_loss"]
    assert len(a["trained_people"]) == 1 and set(a["trained_people"]) | set(a["held_out_people"]) == names
    assert a["n_samples"] == 5


def test_config_and_backend_refusals(monkeypatch):
    for bad in ({"tokens": 0}, {"steps": 0}, {"lr": 0}, {"n": 0}, {"people": -2}, {"max_length": 1}):
        with pytest.raises(ValueError):
            SoftPromptConfig(**bad)
    import unlearnbench.generation as generation

    monkeypatch.setattr(generation, "resolve", lambda name=None: "vllm")
    with pytest.raises(UnlearnbenchError, match="--backend hf"):
        SoftPromptAttack().run(tiny_model(), tiny_tokenizer(), None, lambda *a: None, benchmark=FakeBenchmark())


def test_stopping_criteria_see_the_ids_they_would_see_with_the_plain_model():
    from transformers import StoppingCriteriaList

    from unlearnbench.batching import Encoded
    from unlearnbench.generation import eos_ids, greedy_config

    model, tok = tiny_model(), tiny_tokenizer()
    ids = [tok(p)["input_ids"] for p in PROMPTS]
    batch = collate([Encoded(i, len(i)) for i in ids], pad_id_of(tok), left_pad=True)
    cfg = greedy_config(4, pad_id_of(tok), eos_ids(model, tok))
    seen = {"plain": [], "wrapped": []}

    def recorder(name):
        def fn(input_ids, scores, **kwargs):
            seen[name].append(input_ids.clone())
            return torch.zeros(input_ids.shape[0], dtype=torch.bool)

        return fn

    w = SoftPromptLM(model, torch.zeros(0, model.config.hidden_size))
    with torch.inference_mode():
        a = model.generate(
            **{k: batch[k] for k in ("input_ids", "attention_mask")},
            generation_config=cfg,
            stopping_criteria=StoppingCriteriaList([recorder("plain")]),
        )
        b = w.generate(
            **{k: batch[k] for k in ("input_ids", "attention_mask")},
            generation_config=cfg,
            stopping_criteria=StoppingCriteriaList([recorder("wrapped")]),
        )
    assert torch.equal(a, b)
    assert len(seen["plain"]) == len(seen["wrapped"]) > 0
    assert all(torch.equal(x, y) for x, y in zip(seen["plain"], seen["wrapped"]))
