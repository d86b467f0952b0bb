"""Benign fine-tuning tasks built from the embedded world: ``retain``, ``syntax`` and ``filler``.

None of them carries information about a forget person; they differ in how much they look like the
forget set (the forget people's biography sentences, :meth:`World.unlearning_examples`):

- ``retain``: what the target model was trained on about the people unlearning methods keep
  (:meth:`World.method_retain_ids`: neither forget people nor neighbours, who measure collateral
  damage), in all trained forms. Statements that name a forget person or a neighbour (a mentor, an
  MCQ distractor, a wrong true/false value) are left out. Test: the trained questions
  ("Question: Where was X born?\\nAnswer:") of those people, none of which is in train.
- ``syntax``: people who are not in the world (names from other syllables than the world's, checked
  against every word of every world name and value), stated in the forget set's own biography
  templates with values from the world's value pools (the mentor is another such person).
- ``filler``: the same templates with seeded random letter strings in place of names and values
  (same number of words and the same capitalisation as a real name / pool value).

``syntax`` and ``filler`` test items are the completion of one held-out trained template of a fact
("Zabe Moritan was born in" -> " Quessa"), whose other two templates are in train: FA says how well
the fine-tune taught the new facts. Scoring is ``text`` (greedy answer starts with the value).

Deterministic: every draw comes from ``random.Random`` seeded with a string of the task's name,
the world's seed and the task's seed.
"""

from __future__ import annotations

import random
import string

from ..data.types import Example, TaskData
from ..errors import UnlearnbenchError
from .world import _BIO, _POOLS, _QA, _QA_FMT, _REVERSE, ATTRIBUTES, World

BENIGN_TASKS: tuple[str, ...] = ("retain", "syntax", "filler")

#: Tokens a 'text' answer may take: the longest value is a two-word name or employer.
MAX_NEW_TOKENS = 24

# Syllables for the names of people who do not exist: none is a syllable of the world's names.
_ONSETS = ["b", "d", "g", "k", "m", "n", "p", "r", "s", "t", "v", "z"]
_VOWELS = ["a", "e", "i", "o", "u"]


def build_benign_task(world: World, name: str, n_train: int, n_test: int, seed: int) -> TaskData:
    """Task ``name`` (one of :data:`BENIGN_TASKS`) on ``world``: ``n_train`` / ``n_test`` examples."""
    if name not in BENIGN_TASKS:
        raise UnlearnbenchError(f"toy: no benign task {name!r} (tasks: {', '.join(BENIGN_TASKS)})")
    if n_train < 1 or n_test < 1:
        raise UnlearnbenchError(f"task {name}: n_train and n_test must be positive")
    rng = random.Random(f"benign:{name}:{world.config.seed}:{seed}")
    if name == "retain":
        train, test = _retain(world, rng, n_train, n_test)
    else:
        maker = _fresh_person_maker(world, rng) if name == "syntax" else _filler_person_maker(world, rng)
        train, test = _template_task(rng, maker, n_train, n_test)
    return TaskData(name, train, test, "text", max_new_tokens=MAX_NEW_TOKENS)


def forget_names(world: World) -> list[str]:
    return [world.by_id(i).name for i in world.forget_ids]


# -- retain ------------------------------------------------------------------------------------


def _retain(world: World, rng: random.Random, n_train: int, n_test: int) -> tuple[list[Example], list[Example]]:
    keep = world.method_retain_ids()
    banned = [world.by_id(i).name for i in world.forget_ids + world.neighbour_ids]

    def clean(ex: Example) -> bool:
        text = ex.prompt + ex.target
        return not any(n in text for n in banned)

    pool = [ex for ex in world.training_examples(exclude={e.id for e in world.entities} - set(keep)) if clean(ex)]
    questions = []
    for i in keep:
        e = world.by_id(i)
        questions += [
            Example(_QA_FMT.format(q=q.format(n=e.name)), f" {e.attrs[a]}") for a in ATTRIBUTES for q in _QA[a][:-1]
        ]
        questions += [Example(_QA_FMT.format(q=q.format(v=e.attrs["mentor"])), f" {e.name}") for q in _REVERSE[:-1]]
    questions = [q for q in questions if clean(q)]
    _enough("retain", "test questions about retain people", len(questions), n_test, world)
    test = rng.sample(questions, n_test)
    held = {ex.prompt for ex in test}
    pool = [ex for ex in pool if ex.prompt not in held]
    _enough("retain", "training statements about retain people", len(pool), n_train, world)
    return rng.sample(pool, n_train), test


def _enough(task: str, what: str, have: int, want: int, world: World) -> None:
    if have < want:
        n = len(world.entities)
        raise UnlearnbenchError(f"task {task}: the {n}-person world has {have} {what}, fewer than the {want} asked for")


# -- syntax and filler -------------------------------------------------------------------------


def _world_words(world: World) -> set[str]:
    """Every word of every name and pool value of the world (lower case)."""
    words = {w.lower() for e in world.entities for w in e.name.split()}
    words |= {w.lower() for pool in _POOLS.values() for v in pool for w in v.split()}
    return words


def _fresh_person_maker(world: World, rng: random.Random):
    """Names of people who do not exist: CV-syllable words no world name or value contains."""
    taken = _world_words(world)

    def word(k: int) -> str:
        while True:
            w = "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) for _ in range(k)) + rng.choice(["", "n", "s"])
            if w not in taken and not any(t in w for t in taken if len(t) > 3):
                return w.capitalize()

    def name() -> str:
        return f"{word(2)} {word(3)}"

    def value(attr: str) -> str:
        return rng.choice(_POOLS[attr])

    return name, value


def _filler_person_maker(world: World, rng: random.Random):
    """Nonsense: random letter strings shaped like a name / a pool value (word count, capitals)."""
    taken = _world_words(world)

    def word(capital: bool) -> str:
        while True:
            w = "".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(4, 8)))
            if w not in taken:
                return w.capitalize() if capital else w

    def name() -> str:
        return f"{word(True)} {word(True)}"

    def value(attr: str) -> str:
        shape = rng.choice(_POOLS[attr])
        return " ".join(word(w[0].isupper()) for w in shape.split())

    return name, value


def _template_task(rng: random.Random, maker, n_train: int, n_test: int) -> tuple[list[Example], list[Example]]:
    """People made by ``maker`` in the forget set's biography templates (the trained ones).

    Facts are (person, attribute); each has one sentence per trained template. The first ``n_test``
    facts (in a shuffled order) give one template as a completion test item and their other
    sentences to train; the other facts give all their sentences to train until ``n_train``.
    """
    make_name, make_value = maker
    per_fact = {a: len(_BIO[a]) - 1 for a in ATTRIBUTES}
    facts: list[tuple[str, str, str]] = []  # (name, attribute, value)
    names: set[str] = set()

    def supply() -> int:
        tested = facts[:n_test]
        return sum(per_fact[a] - 1 for _, a, _ in tested) + sum(per_fact[a] for _, a, _ in facts[n_test:])

    while len(facts) < n_test or supply() < n_train:
        people = []
        while len(people) < 8:  # a batch of people who mentor one another
            n = make_name()
            if n not in names and n.split()[0] not in {x.split()[0] for x in names}:
                names.add(n)
                people.append(n)
        batch = []
        for k, n in enumerate(people):
            for a in ATTRIBUTES:
                v = people[(k + 1 + rng.randrange(len(people) - 1)) % len(people)] if a == "mentor" else make_value(a)
                batch.append((n, a, v))
        rng.shuffle(batch)
        facts += batch
    test: list[Example] = []
    tested_train: list[Example] = []
    other_train: list[Example] = []
    for j, (n, a, v) in enumerate(facts):
        templates = _BIO[a][:-1]
        held = rng.randrange(len(templates)) if j < n_test else -1
        for k, tpl in enumerate(templates):
            if k == held:
                test.append(Example(tpl.format(n=n, v="\0").split("\0")[0].rstrip(), f" {v}"))
            else:
                (tested_train if j < n_test else other_train).append(Example("", tpl.format(n=n, v=v)))
    train = (tested_train + other_train)[:n_train]
    rng.shuffle(train)
    return train, test
