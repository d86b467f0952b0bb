"""The embedded world generator: deterministic, well-formed, and honest about held-out templates."""

import hashlib
import json

import pytest

from unlearnbench.toy.tasks import SYNTHETIC_TASKS, build_task
from unlearnbench.toy.world import ATTRIBUTES, FORMS, LETTERS, WorldConfig, build_world


def _digest(world) -> str:
    blob = json.dumps(
        [[e.name, e.attrs] for e in world.entities]
        + [[x.prompt, x.target] for x in world.training_examples()]
        + [world.forget_ids, world.neighbour_ids, world.retain_probe_ids],
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


@pytest.fixture(scope="module")
def world():
    return build_world(WorldConfig(seed=3, n_entities=40, n_neighbours=5, n_retain_probe=8))


def test_same_seed_same_bytes_other_seed_other_world(world):
    again = build_world(WorldConfig(seed=3, n_entities=40, n_neighbours=5, n_retain_probe=8))
    other = build_world(WorldConfig(seed=4, n_entities=40, n_neighbours=5, n_retain_probe=8))
    assert _digest(world) == _digest(again)
    assert _digest(world) != _digest(other)


def test_entities_have_unique_multi_word_names_and_six_attributes(world):
    names = [e.name for e in world.entities]
    assert len(set(names)) == len(names)
    assert len({n.split()[0] for n in names}) == len(names)  # first names unique too
    for e in world.entities:
        assert len(e.name.split()) == 2
        assert set(e.attrs) == set(ATTRIBUTES) and len(ATTRIBUTES) >= 6


def test_mentor_is_a_derangement_so_the_relation_reads_both_ways(world):
    by_name = {e.name: e for e in world.entities}
    mentors = [e.attrs["mentor"] for e in world.entities]
    assert len(set(mentors)) == len(mentors)  # each person mentors exactly one other
    assert all(by_name[e.attrs["mentor"]].id != e.id for e in world.entities)


def test_splits_are_disjoint_and_sized(world):
    f, n, r = set(world.forget_ids), set(world.neighbour_ids), set(world.retain_probe_ids)
    assert len(f) == 4 and len(n) == 5 and len(r) == 8
    assert not (f & n) and not (f & r) and not (n & r)
    assert set(world.retain_ids) == set(range(40)) - f
    assert not (set(world.method_retain_ids()) & (f | n))


def test_neighbours_share_attribute_values_with_forget_people(world):
    for i in world.neighbour_ids:
        e = world.by_id(i)
        assert any(
            e.attrs[a] == world.by_id(j).attrs[a] for j in world.forget_ids for a in ATTRIBUTES if a != "mentor"
        ) or any(world.by_id(j).attrs["mentor"] == e.name for j in world.forget_ids)


def test_oracle_corpus_states_no_fact_about_forget_people(world):
    texts = [x.prompt + x.target for x in world.training_examples(exclude=set(world.forget_ids))]
    for i in world.forget_ids:
        e = world.by_id(i)
        # a forget person may still be named as a retain person's mentor; their own facts never appear
        own = [
            f"{e.name} was born in",
            f"birthplace of {e.name}",
            f"{e.name} plays",
            f"{e.name} works as",
            f"Where was {e.name} born?",
            f"Who mentored {e.name}?",
            f"{e.name} was mentored by",
        ]
        assert not any(o in t for o in own for t in texts)
    full = [x.prompt + x.target for x in world.training_examples()]
    assert len(full) > len(texts)


def test_held_out_paraphrase_prompts_never_appear_in_training(world):
    texts = [x.prompt + x.target for x in world.training_examples()]
    items = world.probe_items("paraphrase", world.forget_ids + world.retain_probe_ids)
    assert len({it.item_id.rsplit("/", 1)[1] for it in items}) == 4  # bio, qa, cloze and reverse templates
    for it in items:
        assert not any(it.prompt in t for t in texts), it.prompt
    # and the trained forms' prompts do appear (so the test above can fail)
    assert all(any(it.prompt in t for t in texts) for it in world.probe_items("qa", world.forget_ids))


def test_every_probe_form_has_items_with_answers(world):
    for form in FORMS:
        items = world.probe_items(form, world.forget_ids)
        assert items, form
        for it in items:
            assert it.prompt and it.answer
            if it.choices:
                assert it.choices[it.label] == it.answer
    mcq = world.probe_items("mcq", world.forget_ids)
    assert {it.answer for it in mcq} <= set(LETTERS)


def test_mcq_probes_use_option_orders_unseen_in_training(world):
    trained = {x.prompt for x in world.training_examples()}
    probes = world.probe_items("mcq", world.retain_probe_ids)
    assert sum(it.prompt in trained for it in probes) < len(probes) * 0.2


@pytest.mark.parametrize("name", SYNTHETIC_TASKS)
def test_tasks_are_deterministic_and_test_is_held_out(name):
    a, b = build_task(name, seed=1), build_task(name, seed=1)
    assert a.train == b.train and a.test == b.test
    assert len(a.train) == 400 and len(a.test) == 100
    assert not ({x.prompt for x in a.test} & {x.prompt for x in a.train})
    if a.scoring == "choice":
        assert {x.target.strip() for x in a.test} <= set(a.choices)
    else:
        assert all("####" in x.target for x in a.train)
