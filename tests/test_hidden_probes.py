"""Hidden-state probes ``lens`` and ``linear``: the lens agrees with the model's own output and with
HF's hidden states (Llama saved to disk and loaded back, GPT-2), batch size does not change it; the
linear probe decodes a linearly encoded value, cannot predict a value unseen in training, scores
the retain split held out by person, and reports its floors; refusals and items without facts."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from helpers_tiny import state_copy, states_equal, tiny_model, tiny_tokenizer, tiny_world

from unlearnbench.batching import encode_example
from unlearnbench.data.types import ProbeItem
from unlearnbench.errors import UnlearnbenchError
from unlearnbench.probes.lens import LensConfig, LogitLensProbe, best_layer_rows
from unlearnbench.probes.linear import LinearConfig, LinearProbe
from unlearnbench.registry import PROBES

torch.set_num_threads(1)


class WorldBench:
    """The tiny world as a benchmark (probe_items per split)."""

    splits = ("forget", "neighbour", "retain")

    def __init__(self):
        self.world = tiny_world()

    def probe_items(self, form, split):
        return self.world.probe_items(form, self.world.split_ids(split))


@pytest.fixture(scope="module")
def saved_llama(tmp_path_factory):
    from unlearnbench.models import load_model, save_model

    tok = tiny_tokenizer()
    directory = tmp_path_factory.mktemp("tiny-llama-lens")
    save_model(tiny_model(tok, seed=3), tok, directory)
    return load_model(directory, device="cpu", dtype="float32")


def qa_items():
    w = tiny_world()
    return w.probe_items("qa", w.forget_ids + w.retain_probe_ids)


def first_tokens(tok, items):
    out = []
    for it in items:
        e = encode_example(tok, it.prompt, " " + it.answer)
        out.append((e.ids[: e.n_prompt], e.ids[e.n_prompt]))
    return out


@torch.no_grad()
def reference_lens(model, tok, items):
    """Rank and prob of the answer's first token per layer, from HF's output_hidden_states (one
    unbatched forward per item); the last layer from the model's own logits."""
    from unlearnbench.hidden import final_norm

    n = model.config.num_hidden_layers
    ranks, probs = np.zeros((n, len(items)), int), np.zeros((n, len(items)))
    for i, (prompt_ids, a) in enumerate(first_tokens(tok, items)):
        out = model(input_ids=torch.tensor([prompt_ids]), output_hidden_states=True)
        for layer in range(n):
            if layer == n - 1:
                z = out.logits[0, -1].float()
            else:
                h = out.hidden_states[layer + 1][0, -1]
                z = model.get_output_embeddings()(final_norm(model)(h)).float()
            ranks[layer, i] = int((z > z[a]).sum())
            probs[layer, i] = float(torch.softmax(z, -1)[a])
    return ranks, probs


def test_registered_with_conventions():
    for name, cls in (("lens", LogitLensProbe), ("linear", LinearProbe)):
        assert PROBES.get(name) is cls and cls.version and cls.description
    with pytest.raises(ValueError, match="choice form"):
        LensConfig(form="mcq")
    with pytest.raises(ValueError, match="choice form"):
        LinearConfig(form="tf")
    with pytest.raises(ValueError, match="c must be positive"):
        LinearConfig(c=0)
    with pytest.raises(ValueError, match="folds"):
        LinearConfig(folds=1)
    with pytest.raises(ValueError, match="batch_size"):
        LensConfig(batch_size=0)


def test_lens_matches_hf_hidden_states_and_output_on_llama_from_disk(saved_llama):
    model, tok = saved_llama.model, saved_llama.tokenizer
    items = qa_items()
    before = state_copy(model)
    rows = LogitLensProbe().score(model, tok, items)
    assert states_equal(before, state_copy(model))
    ranks, probs = reference_lens(model, tok, items)
    n = model.config.num_hidden_layers
    for i, row in enumerate(rows):
        assert "correct" not in row
        assert set(row) == {f"{m}@{layer}" for m in ("rank", "prob", "top1") for layer in range(n)} | {"best_rank"}
        for layer in range(n):
            assert row[f"rank@{layer}"] == ranks[layer, i]
            assert row[f"prob@{layer}"] == pytest.approx(probs[layer, i], rel=1e-4, abs=1e-7)
            assert row[f"top1@{layer}"] == float(ranks[layer, i] == 0)
        assert row["best_rank"] == ranks[:, i].min()
    # the random model ranks the answers all over the vocabulary: the comparison above is not vacuous
    assert ranks.max() > 10 and len(set(ranks.ravel())) > 5


def test_lens_last_layer_is_the_models_greedy_token(saved_llama):
    model, tok = saved_llama.model, saved_llama.tokenizer
    base = qa_items()
    # make half the items' answers the model's own greedy first token, so top1 is 1 for some
    items = []
    with torch.no_grad():
        for k, (it, (prompt_ids, _a)) in enumerate(zip(base, first_tokens(tok, base))):
            greedy = int(model(input_ids=torch.tensor([prompt_ids])).logits[0, -1].argmax())
            answer = tok.decode([greedy]).strip() if k % 2 == 0 else it.answer
            items.append(ProbeItem(it.item_id, it.entity_id, it.attribute, "qa", it.prompt, answer or it.answer))
    rows = LogitLensProbe().score(model, tok, items)
    n = model.config.num_hidden_layers
    hits = 0
    with torch.no_grad():
        for row, (prompt_ids, a) in zip(rows, first_tokens(tok, items)):
            greedy = int(model(input_ids=torch.tensor([prompt_ids])).logits[0, -1].argmax())
            assert row[f"top1@{n - 1}"] == float(greedy == a)
            hits += greedy == a
    assert 0 < hits < len(items)


def test_lens_batch_size_does_not_change_figures(saved_llama):
    model, tok = saved_llama.model, saved_llama.tokenizer
    items = qa_items()
    one = LogitLensProbe(LensConfig(batch_size=1)).score(model, tok, items)
    many = LogitLensProbe(LensConfig(batch_size=7)).score(model, tok, items)
    for a, b in zip(one, many):
        assert {k: v for k, v in a.items() if not k.startswith("prob")} == {
            k: v for k, v in b.items() if not k.startswith("prob")
        }
        assert [a[k] for k in a if k.startswith("prob")] == pytest.approx(
            [b[k] for k in b if k.startswith("prob")], rel=1e-4, abs=1e-7
        )


def test_lens_on_gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    tok = tiny_tokenizer()
    torch.manual_seed(0)
    cfg = GPT2Config(
        vocab_size=len(tok),
        n_positions=256,
        n_embd=32,
        n_layer=3,
        n_head=2,
        initializer_range=0.2,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
    )
    model = GPT2LMHeadModel(cfg).eval()
    items = qa_items()
    rows = LogitLensProbe().score(model, tok, items)
    ranks, probs = reference_lens(model, tok, items)
    assert [r["rank@2"] for r in rows] == list(ranks[2])
    assert [r["prob@0"] for r in rows] == pytest.approx(list(probs[0]), rel=1e-4, abs=1e-7)
    assert [r["rank@1"] for r in rows] == list(ranks[1])


def test_best_layer_rows_ties_go_to_the_earliest_layer():
    scores = {"forget": [{"top1@0": 0.0, "top1@1": 1.0, "top1@2": 1.0}, {"top1@0": 1.0, "top1@1": 0.0, "top1@2": 0.0}]}
    assert best_layer_rows(scores, "top1", "best_top1") == [("forget", "best_layer", 0.0), ("forget", "best_top1", 0.5)]
    scores["forget"][1]["top1@2"] = 1.0
    assert best_layer_rows(scores, "top1", "best_top1") == [("forget", "best_layer", 2.0), ("forget", "best_top1", 1.0)]
    assert best_layer_rows({"forget": [{}, {}]}, "top1", "best_top1") == []


# -- linear: the classifier on hand-made states ----------------------------------------------------


class FactBench:
    """People with attribute values, two phrasings per fact."""

    splits = ("forget", "neighbour", "retain")

    def __init__(self, people: dict[str, list[tuple[int, dict[str, str]]]]):
        self.people = people

    def probe_items(self, form, split):
        return [
            ProbeItem(f"{form}/{e}/{a}/{k}", e, a, form, f"Q{k}: {a} of person {e}?", v)
            for e, facts in self.people[split]
            for a, v in facts.items()
            for k in range(2)
        ]


VALUES = ["owl", "cat", "dog", "eel", "fox", "yak"]


def fake_states(items, informative_layer=1, n_layers=2, seed=0):
    """[layers, items, d]: the value's one-hot at ``informative_layer``, seeded noise elsewhere."""
    rng = np.random.default_rng(seed + len(items))
    x = rng.normal(size=(n_layers, len(items), len(VALUES))).astype(np.float32)
    x[informative_layer] = 0.0
    for i, it in enumerate(items):
        x[informative_layer, i, VALUES.index(it.answer)] = 1.0
    return x


def linear_with_fake_states(monkeypatch, people, **cfg):
    probe = LinearProbe(LinearConfig(**cfg))
    monkeypatch.setattr(probe, "_states", lambda model, tok, items: fake_states(items))
    bench = FactBench(people)
    items = {s: probe.items(bench, s) for s in bench.splits}
    scores = {s: probe.score(None, None, items[s]) for s in bench.splits}
    return items, scores, probe.aggregate(scores)


def test_linear_decodes_seen_values_and_cannot_predict_unseen(monkeypatch):
    people = {
        "retain": [(0, {"pet": "owl"}), (1, {"pet": "cat"}), (2, {"pet": "owl"}), (3, {"pet": "dog"})],
        "forget": [(10, {"pet": "cat"}), (11, {"pet": "yak"})],  # yak: never among retain people
        "neighbour": [(20, {"pet": "owl"})],
    }
    items, scores, agg = linear_with_fake_states(monkeypatch, people)
    forget = dict(zip([it.item_id for it in items["forget"]], scores["forget"]))
    assert all(forget[f"qa/10/pet/{k}"]["acc@1"] == 1.0 for k in range(2))
    assert all(forget[f"qa/11/pet/{k}"]["acc@1"] == 0.0 for k in range(2))
    assert [s["acc@1"] for s in scores["neighbour"]] == [1.0, 1.0]
    got = {(s, m): v for s, m, v in agg}
    assert got["forget", "best_layer"] == 1.0 and got["forget", "best_acc"] == 0.5
    assert got["forget", "coverage"] == 0.5  # yak cannot be predicted
    assert got["forget", "majority"] == 0.0  # the majority value owl is nobody's in forget
    assert got["neighbour", "majority"] == 1.0
    assert all("correct" not in s for split in scores.values() for s in split)


def test_linear_scores_retain_held_out_by_person(monkeypatch):
    # every retain person shares each value with one other person: leave-one-person-out finds it
    shared = [(0, {"pet": "owl"}), (1, {"pet": "owl"}), (2, {"pet": "cat"}), (3, {"pet": "cat"})]
    people = {"retain": shared, "forget": [(10, {"pet": "owl"})], "neighbour": [(20, {"pet": "cat"})]}
    _items, scores, agg = linear_with_fake_states(monkeypatch, people)
    assert [s["acc@1"] for s in scores["retain"]] == [1.0] * 8
    # a value only one person has: held out, it is never in training, so 0 (training accuracy would be 1)
    unique = [(0, {"pet": "owl"}), (1, {"pet": "cat"}), (2, {"pet": "dog"}), (3, {"pet": "eel"})]
    people = {"retain": unique, "forget": [(10, {"pet": "owl"})], "neighbour": [(20, {"pet": "cat"})]}
    _items, scores, agg = linear_with_fake_states(monkeypatch, people)
    assert [s["acc@1"] for s in scores["retain"]] == [0.0] * 8
    assert {(s, m): v for s, m, v in agg}["retain", "coverage"] == 0.0


def test_linear_is_seeded_and_repeatable(monkeypatch):
    people = {
        "retain": [(e, {"pet": VALUES[e % 4], "city": VALUES[(e + 1) % 3]}) for e in range(8)],
        "forget": [(10, {"pet": "cat", "city": "owl"})],
        "neighbour": [(20, {"pet": "dog", "city": "cat"})],
    }
    first = linear_with_fake_states(monkeypatch, people, seed=3)[1]
    again = linear_with_fake_states(monkeypatch, people, seed=3)[1]
    assert first == again


def test_linear_without_facts_gives_no_items(caplog):
    from types import SimpleNamespace

    class TextOnly:  # e.g. TOFU: free-text items, no people or attributes
        splits = ("forget", "retain")

        def text_items(self, split):
            return [SimpleNamespace(item_id=f"{split}-{k}", prompt="Q?", answer="A") for k in range(3)]

    with caplog.at_level(logging.WARNING, logger="unlearnbench.probes.linear"):
        probe = LinearProbe()
        assert probe.items(TextOnly(), "forget") == [] and probe.items(TextOnly(), "retain") == []
    assert sum("name no person" in r.message for r in caplog.records) == 1
    assert len(LogitLensProbe().items(TextOnly(), "forget")) == 3  # the lens reads any per-item answer
    with pytest.raises(UnlearnbenchError, match="text_items"):
        LogitLensProbe().items(object(), "forget")


def test_linear_runs_on_llama_from_disk(saved_llama):
    model, tok = saved_llama.model, saved_llama.tokenizer
    before = state_copy(model)
    probe = LinearProbe()
    bench = WorldBench()
    items = {s: probe.items(bench, s) for s in bench.splits}
    scores = {s: probe.score(model, tok, items[s]) for s in bench.splits}
    assert states_equal(before, state_copy(model))
    n = model.config.num_hidden_layers
    for split in bench.splits:
        assert len(scores[split]) == len(items[split]) > 0
        assert all(set(s) == {f"acc@{layer}" for layer in range(n)} for s in scores[split])
        assert all(v in (0.0, 1.0) for s in scores[split] for v in s.values())
    metrics = {(s, m) for s, m, _ in probe.aggregate(scores)}
    assert metrics == {(s, m) for s in bench.splits for m in ("best_layer", "best_acc", "majority", "coverage")}


def test_items_default_form_falls_back_to_text_items_but_a_named_form_does_not():
    from types import SimpleNamespace

    class Muse:  # lists its forms, has no qa form, has text items
        forms = ("verbmem", "knowmem")

        def probe_items(self, form, split):
            raise AssertionError("the default form must not be asked of a benchmark without it")

        def text_items(self, split):
            return [SimpleNamespace(item_id="t0", prompt="Q?", answer="A")]

    assert [it.item_id for it in LogitLensProbe().items(Muse(), "forget")] == ["t0"]
    with pytest.raises(UnlearnbenchError, match="probe lens: unknown form 'qaa'"):
        LogitLensProbe(LensConfig(form="qaa")).items(WorldBench(), "forget")
    assert all(it.form == "cloze" for it in LogitLensProbe(LensConfig(form="cloze")).items(WorldBench(), "forget"))
