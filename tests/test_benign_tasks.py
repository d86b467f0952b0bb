"""The benign tasks retain / syntax / filler: no forget information, fresh names, determinism,
disjoint test items, the syntax ordering of the six tasks, binding (runner, ILU, relearn), the
benchmark hook's errors, TOFU's and MUSE's retain task, 'text' scoring and the similarity measures."""

from __future__ import annotations

import functools
import re

import pytest
import torch

torch.set_num_threads(1)

from helpers_tiny import tiny_model, tiny_tokenizer  # noqa: E402

from unlearnbench import inference, similarity  # noqa: E402
from unlearnbench.benchmarks.toy import ToyBenchmark, ToyConfig  # noqa: E402
from unlearnbench.cli import main  # noqa: E402
from unlearnbench.data.types import Example, PlanContext, TaskData  # noqa: E402
from unlearnbench.errors import UnlearnbenchError  # noqa: E402
from unlearnbench.registry import TASKS  # noqa: E402
from unlearnbench.toy.tasks import build_task  # noqa: E402
from unlearnbench.toy.world import ATTRIBUTES  # noqa: E402

BENIGN = ("retain", "syntax", "filler")


@functools.lru_cache(maxsize=None)
def toy(size: str, seed: int) -> ToyBenchmark:
    return ToyBenchmark(ToyConfig(size=size, seed=seed))  # builds the world only; no model


def ctx(benchmark) -> PlanContext:
    return PlanContext(defaults_for=lambda name: {}, data_tasks={}, benchmark=benchmark)


def task(name: str, benchmark, **options) -> TaskData:
    cls = TASKS.get(name)
    t = cls(cls.Config(**options))
    t.bind(ctx(benchmark))
    return t.load()


def texts(data: TaskData) -> list[str]:
    return [ex.prompt + ex.target for ex in data.train + data.test]


def has_word(text: str, word: str) -> bool:
    return re.search(rf"\b{re.escape(word)}\b", text) is not None


WORLDS = [(size, seed) for size in ("micro", "small") for seed in (0, 1)]


@pytest.mark.parametrize("size, seed", WORLDS)
@pytest.mark.parametrize("name", BENIGN)
def test_no_forget_person_and_no_forget_fact(name, size, seed):
    b = toy(size, seed)
    w = b.world
    data = task(name, b)
    assert len(data.train) == 400 and len(data.test) == 100 and data.scoring == "text"
    forget = [w.by_id(i) for i in w.forget_ids]
    for text in texts(data):
        for e in forget:
            assert e.name not in text
            for a in ATTRIBUTES:
                assert not (e.name in text and e.attrs[a] in text)
            # not even a word of a forget person's name standing alone (first names are unique)
            assert not has_word(text, e.name.split()[0])


@pytest.mark.parametrize("size, seed", WORLDS)
def test_retain_is_the_method_retain_peoples_trained_text_without_neighbours(size, seed):
    b = toy(size, seed)
    w = b.world
    data = task("retain", b)
    trained = {(ex.prompt, ex.target) for ex in w.training_examples(exclude=set(w.forget_ids + w.neighbour_ids))}
    assert all((ex.prompt, ex.target) in trained for ex in data.train + data.test)
    for text in texts(data):
        assert not any(w.by_id(i).name in text for i in w.neighbour_ids)
    # every trained form is in train: bio sentences, QA, cloze, MCQ, true/false
    prompts = [ex.prompt for ex in data.train]
    assert any(p == "" for p in prompts) and any(p.startswith("True or false:") for p in prompts)
    assert any("\nA. " in p for p in prompts) and any(p.startswith("Fill in the blank:") for p in prompts)
    # test: questions whose prompt is not in train
    assert all(ex.prompt.startswith("Question: ") and ex.prompt.endswith("Answer:") for ex in data.test)
    assert not {ex.prompt for ex in data.test} & set(prompts)


@pytest.mark.parametrize("size, seed", WORLDS)
@pytest.mark.parametrize("name", ("syntax", "filler"))
def test_made_up_people_are_no_world_people(name, size, seed):
    b = toy(size, seed)
    w = b.world
    data = task(name, b)
    world_words = {x for e in w.entities for x in e.name.split()}
    for text in texts(data):
        assert not any(has_word(text, x) for x in world_words), text


@pytest.mark.parametrize("name", ("syntax", "filler"))
def test_template_tasks_use_the_forget_templates_and_hold_test_sentences_out(name):
    from unlearnbench.toy.world import _BIO

    def pattern(template: str, upto_value: bool = False) -> str:
        if upto_value:
            template = template[: template.index("{v}") + 3]
        return re.escape(template).replace(r"\{n\}", "(.+)").replace(r"\{v\}", "(.+)")

    b = toy("micro", 0)
    data = task(name, b)
    trained = [t for a in _BIO for t in _BIO[a][:-1]]
    held_out = [_BIO[a][-1] for a in _BIO]
    assert all(ex.prompt == "" for ex in data.train)
    for ex in data.train:
        assert any(re.fullmatch(pattern(t), ex.target) for t in trained), ex.target
    for ex in data.test:  # a trained template completed up to its value; that sentence is not in train
        text = ex.prompt + ex.target
        assert any(re.fullmatch(pattern(t, True), text) for t in trained), text
        assert not any(re.fullmatch(pattern(t, True), text) for t in held_out), text
        assert not any(tr.target.startswith(text) for tr in data.train), text
    from unlearnbench.toy.world import _POOLS

    pool_values = {v for pool in _POOLS.values() for v in pool}
    mentor = [ex for ex in data.test if "mentor" in ex.prompt or "learned the trade" in ex.prompt]
    others = [ex for ex in data.test if ex not in mentor]
    assert mentor and others
    assert not any(ex.target.strip() in pool_values for ex in mentor)
    if name == "syntax":  # values come from the world's pools (mentors are made-up people)
        assert all(ex.target.strip() in pool_values for ex in others)
    else:  # nonsense values
        assert not any(ex.target.strip() in pool_values for ex in others)


@pytest.mark.parametrize("name", BENIGN)
def test_deterministic_for_a_seed_and_different_for_another(name):
    b = toy("micro", 0)
    assert task(name, b) == task(name, ToyBenchmark(ToyConfig(size="micro", seed=0)))
    assert task(name, b, seed=1) != task(name, b)
    small = task(name, b, n_train=50, n_test=10)
    assert (len(small.train), len(small.test)) == (50, 10)


def test_too_many_examples_is_one_line():
    with pytest.raises(UnlearnbenchError, match=r"^task retain: the 16-person world has \d+ test questions"):
        task("retain", toy("micro", 0), n_test=10_000)


def test_syntax_ordering_of_the_six_tasks_on_micro():
    """Template overlap with the forget set: syntax, filler > retain > arith, topic, sentiment."""
    w = toy("micro", 0).world
    forget = similarity.texts_of(w.unlearning_examples(w.forget_ids))
    o = {n: similarity.template_overlap(similarity.texts_of(task(n, toy("micro", 0)).train), forget) for n in BENIGN}
    o.update(
        {
            n: similarity.template_overlap(similarity.texts_of(build_task(n).train), forget)
            for n in ("arith", "topic", "sentiment")
        }
    )
    assert min(o["syntax"], o["filler"]) > 0.6
    assert min(o["syntax"], o["filler"]) > o["retain"] > max(o["arith"], o["topic"], o["sentiment"])
    assert o["retain"] > 0.1


def test_template_overlap_definition():
    a = ["Alric Ashwood was born in Quessa.", "Bo Lin plays the harp."]
    assert similarity.masked_words(a[0]) == ["<N>", "was", "born", "in", "<N>", "."]
    assert similarity.masked_words("He has 12 apples") == ["<N>", "has", "<D>", "apples"]
    assert similarity.template_overlap(a, ["Zabe Moritan was born in Brightwell Mills."]) == pytest.approx(6 / 11)
    assert similarity.template_overlap(a, a) == pytest.approx(1.0)
    assert similarity.template_overlap(a, ["nothing alike here"]) == 0.0
    assert similarity.template_overlap([], a) == 0.0


def test_hidden_state_cosine_on_a_tiny_model():
    model, tok = tiny_model(), tiny_tokenizer()
    a = ["Alric was born in Quessa.", "The pet of Bo is a goat."]
    b = ["1 2 3 4 5 6 7 8", "?? !! ?? !!"]
    assert similarity.hidden_state_cosine(model, tok, a, a) == pytest.approx(1.0, abs=1e-5)
    # padding must not change a text's mean: one text alone equals it batched with a longer one
    one = similarity.mean_hidden_state(model, tok, a[:1])
    both = similarity.mean_hidden_state(model, tok, a, batch_size=2)
    alone = (one + similarity.mean_hidden_state(model, tok, a[1:])) / 2
    assert torch.allclose(both, alone, atol=1e-5)
    assert similarity.hidden_state_cosine(model, tok, a, b) < 0.999


# -- binding ------------------------------------------------------------------------------------


def test_load_without_bind_is_a_clear_error():
    t = TASKS.get("syntax")()
    with pytest.raises(UnlearnbenchError, match="built from the run's benchmark but was loaded without one"):
        t.load()


def test_a_benchmark_without_the_hook_or_the_task_is_refused_at_bind():
    class NoHook:
        name = "plain"

    with pytest.raises(
        UnlearnbenchError, match=r"benchmark 'plain' cannot build task 'syntax' \(its benign tasks: none\)"
    ):
        TASKS.get("syntax")().bind(ctx(NoHook()))
    with pytest.raises(UnlearnbenchError, match="none was given"):
        TASKS.get("retain")().bind(ctx(None))


def test_plan_refuses_the_task_in_one_line(tmp_path, capsys):
    code = main(
        [
            "run",
            "--benchmark",
            "wmdp,model=unused-model",
            "--method",
            "npo",
            "--attack",
            "finetune:syntax",
            "--store",
            str(tmp_path / "s.sqlite"),
            "--quiet",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "'wmdp'" in err and "'syntax'" in err, err


def test_plan_binds_finetune_relearn_and_ilu_tasks():
    from unlearnbench.runner import RunRequest, plan

    p = plan(
        RunRequest(method="ilu,envs=syntax", attacks=["finetune:retain", "relearn:filler"], benchmark="toy,size=micro")
    )
    b = p.benchmark.obj
    (_, ft_task), (relearn, _) = p.attacks
    assert ft_task.obj.load() == b.benign_task("retain", 400, 100, 0)
    assert p.method.obj._env_examples("syntax") == b.benign_task("syntax", 400, 100, 0).train
    samples, draw = relearn.obj._draw(None, b)
    pool = b.benign_task("filler", 400, 100, 0).train
    assert samples == [pool[i] for i in draw["sample_indices"]] and len(samples) == 20
    # keys of tasks that were already there do not move: ILU's arith environment adds nothing
    q = plan(RunRequest(method="ilu", attacks=["relearn:topic"], benchmark="toy,size=micro"))
    assert "env_data" not in q.method.obj.key_extra()
    assert q.attacks[0][0].obj.key_extra() == {"source_task": {"name": "topic", "version": "1"}}


def test_ilu_and_relearn_without_bind_say_so():
    from unlearnbench.attacks.relearn import RelearnAttack
    from unlearnbench.methods.ilu import ILU, ILUConfig

    with pytest.raises(UnlearnbenchError, match="loaded without one"):
        ILU(ILUConfig(envs=("retain",)))._env_examples("retain")
    with pytest.raises(UnlearnbenchError, match="loaded without one"):
        RelearnAttack(arg="syntax")._draw(None, toy("micro", 0))


# -- TOFU and MUSE: retain ----------------------------------------------------------------------


def test_tofu_retain_task_leaves_the_scored_retain_questions_out(tmp_path):
    from test_tofu import bench, write_tofu

    b = bench(write_tofu(tmp_path / "tofu", retain_n=40))
    data = task("retain", b, n_train=20, n_test=10)
    scored = {it.question for it in b.tofu_items("retain")}
    assert len(data.train) == 20 and len(data.test) == 10 and data.scoring == "text"
    assert not any(s in ex.prompt for s in scored for ex in data.train + data.test)
    assert not {ex.prompt for ex in data.test} & {ex.prompt for ex in data.train}
    assert all(
        "Bo Lintel" in ex.prompt + ex.target and "Ada Quill" not in ex.prompt + ex.target
        for ex in data.train + data.test
    )
    assert all(len(ex.target.split()) <= 8 for ex in data.test)
    with pytest.raises(UnlearnbenchError, match="tofu: no benign task 'syntax'"):
        b.benign_task("syntax", 1, 1, 0)
    with pytest.raises(UnlearnbenchError, match="cannot build task 'syntax'"):
        TASKS.get("syntax")().bind(ctx(b))
    with pytest.raises(UnlearnbenchError, match="fewer than n_train \\+ n_test = 500"):
        task("retain", b)


def test_muse_retain_task_windows_of_the_retain_corpus(tmp_path):
    from test_muse import bench, write_flat

    root = write_flat(tmp_path / "muse")
    (root / "raw_retain1.txt").write_text(" ".join(f"w{i}" for i in range(128 * 12)))
    b = bench(root)
    data = task("retain", b, n_train=8, n_test=4)
    train_words = {w for ex in data.train for w in ex.target.split()}
    for ex in data.test:
        assert len(ex.prompt.split()) == 32 and len(ex.target.split()) == 8
        assert not set((ex.prompt + ex.target).split()) & train_words  # other windows
        first = int(ex.prompt.split()[0][1:])
        assert ex.target.split()[0] == f"w{first + 32}"
    assert all(len(ex.target.split()) == 128 and ex.prompt == "" for ex in data.train)
    with pytest.raises(UnlearnbenchError, match="fewer than n_train \\+ n_test"):
        task("retain", b)


# -- 'text' scoring ------------------------------------------------------------------------------


def test_text_scoring_is_normalised_prefix_match(monkeypatch):
    data = TaskData(
        "t",
        [],
        [Example("p1", " Quessa"), Example("p2", " Brightwell Mills"), Example("p3", " oboe")],
        "text",
        max_new_tokens=7,
    )
    seen = {}

    def fake(model, tokenizer, prompts, max_new_tokens, batch_size):
        seen.update(prompts=list(prompts), max_new_tokens=max_new_tokens)
        return [" quessa, a town", " Brightwell", " The oboe."]

    monkeypatch.setattr(inference, "greedy_generate", fake)
    scores = inference.task_item_scores(None, None, data)
    assert scores == [("t/0", 1.0), ("t/1", 0.0), ("t/2", 1.0)]  # 'the' is an article: normalised away
    assert seen == {"prompts": ["p1", "p2", "p3"], "max_new_tokens": 7}
