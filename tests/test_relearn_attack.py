"""The relearn:forget / relearn:<task> attack: trains a copy on a seeded draw of samples, evaluates
every eval_every steps, records whose forget examples it relearned, never touches its input."""

from __future__ import annotations

import pytest
import torch

torch.set_num_threads(1)

from helpers_tiny import (  # noqa: E402
    encode_all,
    forget_examples,
    retain_examples,
    seq_nll,
    state_copy,
    states_equal,
    tiny_model,
    tiny_tokenizer,
    tiny_world,
)

from unlearnbench.attacks.relearn import RelearnAttack, RelearnConfig  # noqa: E402
from unlearnbench.data.types import UnlearnData  # noqa: E402
from unlearnbench.errors import UnlearnbenchError  # noqa: E402


class FakeBenchmark:
    """What relearn:forget reads from a benchmark: unlearn_data(), with or without saying whose
    each forget example is (``UnlearnData.forget_owners``, as the embedded world does)."""

    def __init__(self, with_world: bool = True):
        self.with_world = with_world
        self.calls = 0

    def unlearn_data(self, tokenizer):
        self.calls += 1
        w = tiny_world()
        owners = [k for k, i in enumerate(w.forget_ids) for _ in w.unlearning_examples([i])] if self.with_world else []
        return UnlearnData(
            forget_examples(),
            retain_examples(),
            tokenizer,
            concepts=[w.by_id(i).name for i in w.forget_ids],
            forget_owners=owners,
            concept_ids=list(w.forget_ids) if self.with_world else [],
        )


class Recorder:
    def __init__(self):
        self.calls, self.states, self.models, self.training = [], [], [], []

    def __call__(self, checkpoint, step, model):
        self.calls.append((checkpoint, step))
        self.states.append(state_copy(model))
        self.models.append(model)
        self.training.append(model.training)


def _run(cfg, arg="forget", benchmark=None, model=None, rec=None):
    model = model or tiny_model()
    rec = rec or Recorder()
    out = RelearnAttack(cfg, arg=arg).run(
        model, tiny_tokenizer(), None, rec, benchmark=benchmark if benchmark is not None else FakeBenchmark()
    )
    return out, rec


def _mean_nll(model, enc):
    tot, n = 0.0, 0
    for e in enc:
        s, k = seq_nll(model, e)
        tot, n = tot + s, n + k
    return tot / n


def test_leaves_input_untouched_and_evaluates_every_k_steps():
    model = tiny_model()
    before = state_copy(model)
    out, rec = _run(RelearnConfig(n=12, steps=7, eval_every=3, lr=1e-2), model=model)
    assert states_equal(before, state_copy(model))
    assert rec.calls == [("step=0", 0), ("step=3", 3), ("step=6", 6), ("step=7", 7)]
    assert out["steps"] == 7 and out["evaluated_steps"] == [0, 3, 6, 7]
    assert all(m is not model for m in rec.models)
    assert not any(rec.training)
    assert states_equal(rec.states[0], before)
    assert not states_equal(rec.states[1], rec.states[0])
    assert not states_equal(rec.states[3], rec.states[2])
    assert out["final_loss"] is not None and out["final_loss"] < out["first_loss"]


def test_relearning_lowers_the_forget_set_nll():
    model = tiny_model()
    forget = encode_all(forget_examples())
    out, rec = _run(RelearnConfig(n=20, steps=20, eval_every=10, lr=1e-2), model=model)
    drawn = [forget[i] for i in out["sample_indices"]]
    held = [e for i, e in enumerate(forget) if i not in set(out["sample_indices"])]
    final = rec.models[-1]
    assert _mean_nll(final, drawn) < 0.8 * _mean_nll(model, drawn)
    assert _mean_nll(final, forget) < 0.8 * _mean_nll(model, forget)
    assert _mean_nll(final, held) < _mean_nll(model, held)  # other sentences of the same people


def test_draw_is_seeded_recorded_and_names_the_people():
    cfg = RelearnConfig(n=10, steps=1)
    a, _ = _run(cfg)
    b, _ = _run(cfg)
    c, _ = _run(RelearnConfig(n=10, steps=1, seed=1))
    assert a["sample_indices"] == b["sample_indices"] != c["sample_indices"]
    assert a["n_samples"] == 10 and len(set(a["sample_indices"])) == 10
    assert a["n_forget_examples"] == len(forget_examples())
    w = tiny_world()
    names = {w.by_id(i).name: i for i in w.forget_ids}
    pool = forget_examples()
    owners = {next(n for n, i in names.items() if pool[j] in w.unlearning_examples([i])) for j in a["sample_indices"]}
    assert set(a["relearned_people"]) == owners
    assert set(a["relearned_people"]) | set(a["held_out_people"]) == set(names)
    assert a["relearned_ids"] == [names[n] for n in a["relearned_people"]]
    assert sum(a["samples_per_person"].values()) == 10
    everything, _ = _run(RelearnConfig(n=-1, steps=1))
    assert everything["sample_indices"] == list(range(len(pool)))
    assert _run(RelearnConfig(n=1000, steps=1))[0]["n_samples"] == len(pool)


@pytest.mark.parametrize("with_world", [True, False])
def test_people_holds_the_other_forget_people_out(with_world):
    out, _ = _run(RelearnConfig(n=8, people=1, steps=1), benchmark=FakeBenchmark(with_world))
    w = tiny_world()
    assert len(out["relearned_people"]) == 1 and len(out["held_out_people"]) == len(w.forget_ids) - 1
    (name,) = out["relearned_people"]
    own = w.unlearning_examples([next(i for i in w.forget_ids if w.by_id(i).name == name)])
    pool = forget_examples()
    assert out["n_samples"] == 8 and all(pool[j] in own for j in out["sample_indices"])
    assert out["samples_per_person"] == {name: 8}
    assert ("held_out_ids" in out) == with_world


def test_relearn_on_a_task_uses_the_task_registry():
    rec = Recorder()
    attack = RelearnAttack(RelearnConfig(n=6, steps=2, eval_every=1, batch_size=4, lr=1e-2), arg="topic")
    out = attack.run(tiny_model(), tiny_tokenizer(), None, rec, benchmark=None)  # no benchmark needed
    assert out["source"] == "topic" and out["n_samples"] == 6 and len(set(out["sample_indices"])) == 6
    assert "relearned_people" not in out
    assert [c for c, _ in rec.calls] == ["step=0", "step=1", "step=2"]
    assert attack.key_extra() == {"source_task": {"name": "topic", "version": "1"}}
    assert RelearnAttack(RelearnConfig(), arg="forget").key_extra() == {}


def test_unknown_source_and_bad_options_fail_clearly():
    with pytest.raises(UnlearnbenchError, match="did you mean 'forget'"):
        RelearnAttack(RelearnConfig(), arg="forgt")
    with pytest.raises(UnlearnbenchError, match="did you mean 'topic'"):
        RelearnAttack(RelearnConfig(), arg="topik")
    with pytest.raises(UnlearnbenchError, match="needs a source"):
        RelearnAttack(RelearnConfig(), arg=None)
    with pytest.raises(UnlearnbenchError, match="people"):
        RelearnAttack(RelearnConfig(people=1), arg="topic")
    with pytest.raises(UnlearnbenchError, match="benchmark"):
        RelearnAttack(RelearnConfig(steps=1), arg="forget").run(
            tiny_model(), tiny_tokenizer(), None, lambda *a: None, benchmark=None
        )
    for bad in ({"steps": 0}, {"eval_every": 0}, {"lr": 0.0}, {"batch_size": 0}, {"n": 0}, {"n": -2}, {"people": 0}):
        with pytest.raises(ValueError):
            RelearnConfig(**bad)


def test_lora_trains_only_adapters():
    pytest.importorskip("peft")
    model = tiny_model()
    before = state_copy(model)
    out, rec = _run(RelearnConfig(n=8, steps=3, eval_every=3, lr=1e-2, lora=True, lora_r=2, lora_alpha=4), model=model)
    assert states_equal(before, state_copy(model))
    work = rec.models[-1]
    trainable = [n for n, p in work.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    first, last = rec.states[0], rec.states[-1]
    changed = [k for k in first if not torch.equal(first[k], last[k])]
    assert changed and all("lora_" in k for k in changed)


def test_runner_plan_resolves_relearn_without_a_task():
    from unlearnbench import runner

    p = runner.plan(
        runner.RunRequest(method="npo", attacks=["relearn:forget,n=4", "relearn:topic"], benchmark="toy,size=micro")
    )
    assert [(a.label(), t) for a, t in p.attacks] == [("relearn:forget,n=4", None), ("relearn:topic", None)]
    assert p.attacks[0][0].config.n == 4
    with pytest.raises(UnlearnbenchError, match="did you mean 'forget'"):
        runner.plan(runner.RunRequest(method="npo", attacks=["relearn:foget"], benchmark="toy,size=micro"))


@pytest.mark.parametrize("people", [-1, 1])
def test_on_the_embedded_world_samples_come_only_from_forget_people(people):
    """The real toy benchmark: every drawn sample is a fact about a forget person (the person it is
    about is named first; a mentor named later may be anyone); with people=k the held-out forget
    people are never the subject of what is relearned."""
    from unlearnbench.benchmarks.toy import ToyBenchmark, ToyConfig

    b = ToyBenchmark(ToyConfig(size="micro"))
    w = b.world
    samples, stats = RelearnAttack(RelearnConfig(n=-1, people=people, steps=1), arg="forget")._draw(None, b)
    names = [e.name for e in w.entities]
    forget = {w.by_id(i).name for i in w.forget_ids}

    def subject(text):
        return min((text.find(n), n) for n in names if n in text)[1]

    subjects = [subject(ex.prompt + ex.target) for ex in samples]
    assert subjects and set(subjects) <= forget
    held = set(stats["held_out_people"])
    assert not held & set(subjects) and set(stats["relearned_people"]) == set(subjects)
    assert (len(held) == len(forget) - 1) if people == 1 else not held
