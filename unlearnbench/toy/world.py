"""The embedded world: fictitious people and facts, stated in several forms of asking.

Deterministic: the same :class:`WorldConfig` gives the same bytes (all randomness flows from one
``random.Random(seed)``; no hashing of Python objects, no set iteration order).

Each person has six attributes. Five are drawn from small value pools (so several people share a
value, which is what makes *neighbours*); the sixth, ``mentor``, is a relation to another person
in the world (a derangement, so each person mentors exactly one other), which lets the relation be
asked forwards ("Who mentored X?") and backwards ("Whom did Y mentor?").

Every fact is written in several *forms* (see :data:`FORMS`). For each form some templates are used
for training and at least one is held out and only ever used by the ``paraphrase`` probe. MCQ and
true/false items seen in training use other option orders / distractors than the probe items, so a
probe cannot be answered by recalling a memorised letter.

Why several forms are trained: a first tiny-world experiment (shared/reference/embedded-world-notes)
showed that a fact trained in one form only is not recalled in an unseen form; the benchmark would
then measure tokenisation, not knowledge.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from ..data.types import Example, ProbeItem

# --------------------------------------------------------------------------------------------
# Vocabulary. Names are built from syllables so that they are fictitious and multi-token.

_FIRST_SYLLABLES = [
    "Al",
    "Bri",
    "Cor",
    "Da",
    "El",
    "Fen",
    "Gar",
    "Hal",
    "Is",
    "Jo",
    "Ka",
    "Lor",
    "Mar",
    "Nev",
    "Or",
    "Pel",
    "Quin",
    "Ros",
    "Sel",
    "Tam",
    "Ul",
    "Vor",
    "Wen",
    "Yar",
]
_FIRST_ENDINGS = ["ric", "wen", "dor", "ina", "mir", "ton", "isa", "vek", "ara", "len", "dric", "ly"]
_LAST_SYLLABLES = [
    "Ash",
    "Bram",
    "Cald",
    "Dun",
    "Ember",
    "Frost",
    "Grim",
    "Holt",
    "Ivers",
    "Kess",
    "Lang",
    "Mire",
    "North",
    "Pike",
    "Quarr",
    "Rook",
    "Stone",
    "Thorn",
    "Vale",
    "Wick",
]
_LAST_ENDINGS = ["wood", "ley", "ford", "mere", "by", "hart", "well", "ton", "shaw", "croft"]

_POOLS: dict[str, list[str]] = {
    "city": [
        "Varnholm",
        "Quessa",
        "Otterlee",
        "Brisca",
        "Mendaro",
        "Calloway",
        "Duskfield",
        "Elvaren",
        "Tirnach",
        "Sombreuil",
        "Halvik",
        "Pellmoor",
    ],
    "occupation": [
        "carpenter",
        "stonemason",
        "beekeeper",
        "cartographer",
        "glassblower",
        "librarian",
        "ferryman",
        "botanist",
        "clockmaker",
        "surveyor",
        "weaver",
        "potter",
    ],
    "instrument": ["violin", "harp", "oboe", "cello", "lute", "flute", "accordion", "banjo", "clarinet", "zither"],
    "pet": ["parrot", "tortoise", "ferret", "goat", "hedgehog", "raven", "lizard", "rabbit", "heron", "donkey"],
    "employer": [
        "Brightwell Mills",
        "Corvan Shipping",
        "Ostrel Bank",
        "Tandry Press",
        "Halcyon Foundry",
        "Morrow Gardens",
        "Ketterby Rail",
        "Aldous Glassworks",
        "Pinecrest Bakery",
        "Veyra Observatory",
    ],
}

ATTRIBUTES: tuple[str, ...] = ("city", "occupation", "instrument", "pet", "employer", "mentor")

# Templates. '{n}' is the person, '{v}' the value. Completion forms end with the value so that the
# prompt is everything before it. The last template of each list is held out of training.
_BIO = {
    "city": [
        "{n} was born in {v}.",
        "The birthplace of {n} is {v}.",
        "{n} grew up in the town of {v}.",
        "{n} comes from {v}.",
    ],
    "occupation": [
        "{n} works as a {v}.",
        "By profession, {n} is a {v}.",
        "The job of {n} is that of a {v}.",
        "{n} earns a living as a {v}.",
    ],
    "instrument": [
        "{n} plays the {v}.",
        "The instrument of {n} is the {v}.",
        "In the evenings {n} practises the {v}.",
        "{n} is a keen player of the {v}.",
    ],
    "pet": [
        "{n} keeps a {v} as a pet.",
        "The pet of {n} is a {v}.",
        "At home {n} looks after a {v}.",
        "{n} shares a house with a pet {v}.",
    ],
    "employer": [
        "{n} is employed by {v}.",
        "The employer of {n} is {v}.",
        "Every morning {n} goes to work at {v}.",
        "{n} draws a salary from {v}.",
    ],
    "mentor": [
        "{n} was mentored by {v}.",
        "The mentor of {n} was {v}.",
        "{n} learned the trade from {v}.",
        "{n} was taught by {v}.",
    ],
}
_QA = {
    "city": ["Where was {n} born?", "What is the birthplace of {n}?", "Which town does {n} come from?"],
    "occupation": ["What does {n} do for a living?", "What is the profession of {n}?", "What job does {n} have?"],
    "instrument": [
        "Which instrument does {n} play?",
        "What instrument is {n} known to play?",
        "What does {n} play in the evenings?",
    ],
    "pet": ["What pet does {n} keep?", "What kind of animal is the pet of {n}?", "Which animal lives with {n}?"],
    "employer": ["Who employs {n}?", "Which company does {n} work for?", "Where is {n} employed?"],
    "mentor": ["Who mentored {n}?", "Who was the mentor of {n}?", "From whom did {n} learn the trade?"],
}
_CLOZE = {
    "city": ["{n} was born in the town of ___.", "The town where {n} was born is ___."],
    "occupation": ["{n} has the profession of ___.", "The occupation of {n} is ___."],
    "instrument": ["{n} plays an instrument called the ___.", "The instrument {n} plays is the ___."],
    "pet": ["The animal that {n} keeps as a pet is a ___.", "{n} owns a pet ___."],
    "employer": ["{n} works for the company ___.", "The company that employs {n} is ___."],
    "mentor": ["{n} was trained by the mentor ___.", "The person who mentored {n} is ___."],
}
# The mentor relation asked backwards: the answer is the person, the subject is the mentor.
_REVERSE = ["Whom did {v} mentor?", "Who did {v} teach?", "Who was a student of {v}?"]

_QA_FMT = "Question: {q}\nAnswer:"
_CLOZE_FMT = "Fill in the blank: {c}\nAnswer:"
_MCQ_FMT = "Question: {q}\nA. {a}\nB. {b}\nC. {c}\nD. {d}\nAnswer:"
_TF_FMT = "True or false: {s}\nAnswer:"
LETTERS = ("A", "B", "C", "D")
#: Each fact is trained as 2 x MCQ_REPEATS multiple-choice items (fresh option orders): choosing a
#: letter is a skill a tiny model learns only from many instances.
MCQ_REPEATS = 4

#: Bump when the generated text changes for an unchanged WorldConfig (it keys the model cache).
WORLD_VERSION = "1"

#: Probe forms. ``bio`` is the unlearning form (the forget set is written in it).
FORMS: tuple[str, ...] = ("bio", "qa", "cloze", "mcq", "tf", "reverse", "paraphrase")


@dataclass(frozen=True)
class WorldConfig:
    seed: int = 0
    n_entities: int = 100
    forget_frac: float = 0.1
    n_neighbours: int = 10  # retain people most similar to the forget people (collateral damage)
    n_retain_probe: int = 20  # retain people probed for utility (disjoint from neighbours)


@dataclass(frozen=True)
class Entity:
    id: int
    name: str
    attrs: dict[str, str]


@dataclass
class World:
    config: WorldConfig
    entities: list[Entity]
    forget_ids: list[int]
    neighbour_ids: list[int]
    retain_ids: list[int]  # every non-forget person (neighbours included)
    retain_probe_ids: list[int]
    _train_docs: dict[int, list[Example]] = field(default_factory=dict, repr=False)

    # -- splits ---------------------------------------------------------------------------
    def split_ids(self, split: str) -> list[int]:
        return {"forget": self.forget_ids, "neighbour": self.neighbour_ids, "retain": self.retain_probe_ids}[split]

    def by_id(self, i: int) -> Entity:
        return self.entities[i]

    # -- training text --------------------------------------------------------------------
    def training_examples(self, exclude: set[int] | frozenset[int] = frozenset()) -> list[Example]:
        """Every trained statement about every person not in ``exclude`` (all trained forms)."""
        return [t for e in self.entities if e.id not in exclude for t in self._train_docs[e.id]]

    def unlearning_examples(self, ids: list[int]) -> list[Example]:
        """The unlearning form: the trained biography sentences of these people, as raw text."""
        out = []
        for i in ids:
            e = self.entities[i]
            for attr in ATTRIBUTES:
                for tpl in _BIO[attr][:-1]:
                    out.append(Example("", tpl.format(n=e.name, v=e.attrs[attr])))
        return out

    def method_retain_ids(self) -> list[int]:
        """Retain people handed to unlearning methods: neighbours are kept out so that the
        neighbour split measures collateral damage on people the method never saw."""
        held = set(self.neighbour_ids)
        return [i for i in self.retain_ids if i not in held]

    # -- probes ---------------------------------------------------------------------------
    def probe_items(self, form: str, ids: list[int]) -> list[ProbeItem]:
        if form not in FORMS:
            raise ValueError(f"unknown form {form!r}")
        items: list[ProbeItem] = []
        for i in ids:
            items.extend(_probe_items_for(self, self.entities[i], form))
        return items


# --------------------------------------------------------------------------------------------
# Generation


def build_world(config: WorldConfig) -> World:
    if config.n_entities < 8:
        raise ValueError("a world needs at least 8 people")
    rng = random.Random(config.seed)
    names = _make_names(rng, config.n_entities)
    n = config.n_entities
    mentors = _derangement(rng, n)
    entities = []
    for i in range(n):
        attrs = {a: rng.choice(_POOLS[a]) for a in ATTRIBUTES if a != "mentor"}
        attrs["mentor"] = names[mentors[i]]
        entities.append(Entity(i, names[i], attrs))

    n_forget = max(2, round(config.forget_frac * n))
    order = list(range(n))
    rng.shuffle(order)
    forget_ids = sorted(order[:n_forget])
    rest = [i for i in order[n_forget:]]
    neighbour_ids = _neighbours(entities, forget_ids, rest, config.n_neighbours)
    left = [i for i in rest if i not in set(neighbour_ids)]
    retain_probe_ids = sorted(left[: config.n_retain_probe])
    world = World(config, entities, forget_ids, neighbour_ids, sorted(rest), retain_probe_ids)
    for e in entities:
        world._train_docs[e.id] = _training_statements(random.Random(f"{config.seed}:{e.id}"), world, e)
    return world


def _make_names(rng: random.Random, n: int) -> list[str]:
    seen: set[str] = set()
    names: list[str] = []
    while len(names) < n:
        name = (
            rng.choice(_FIRST_SYLLABLES)
            + rng.choice(_FIRST_ENDINGS)
            + " "
            + rng.choice(_LAST_SYLLABLES)
            + rng.choice(_LAST_ENDINGS)
        )
        first = name.split()[0]
        # unique full names and unique first names, so no two people share a prefix of a prompt
        if name not in seen and first not in {x.split()[0] for x in names}:
            seen.add(name)
            names.append(name)
    return names


def _derangement(rng: random.Random, n: int) -> list[int]:
    """A permutation with no fixed point: each person mentors exactly one other person."""
    while True:
        p = list(range(n))
        rng.shuffle(p)
        if all(p[i] != i for i in range(n)):
            return p


def _neighbours(entities: list[Entity], forget: list[int], candidates: list[int], k: int) -> list[int]:
    """Retain people who share the most attribute values with some forget person, plus the
    mentor relation counted as a shared value (they appear in the forget people's facts)."""
    forget_set = set(forget)

    def score(i: int) -> tuple[int, int]:
        e = entities[i]
        best = 0
        for f in forget:
            fe = entities[f]
            shared = sum(e.attrs[a] == fe.attrs[a] for a in ATTRIBUTES if a != "mentor")
            shared += fe.attrs["mentor"] == e.name or e.attrs["mentor"] == fe.name
            best = max(best, shared)
        return (-best, i)

    ranked = sorted((i for i in candidates if i not in forget_set), key=score)
    return sorted(ranked[:k])


def _distractors(rng: random.Random, world: World, e: Entity, attr: str, k: int) -> list[str]:
    if attr == "mentor":
        pool = [x.name for x in world.entities if x.name not in (e.attrs["mentor"], e.name)]
    else:
        pool = [v for v in _POOLS[attr] if v != e.attrs[attr]]
    return rng.sample(pool, k)


def _mcq(rng: random.Random, world: World, e: Entity, attr: str, question: str) -> tuple[str, int, tuple[str, ...]]:
    options = _distractors(rng, world, e, attr, 3) + [e.attrs[attr]]
    rng.shuffle(options)
    label = options.index(e.attrs[attr])
    prompt = _MCQ_FMT.format(q=question, a=options[0], b=options[1], c=options[2], d=options[3])
    return prompt, label, tuple(options)


def _training_statements(rng: random.Random, world: World, e: Entity) -> list[Example]:
    """All trained text about one person. Question-style examples carry their prompt separately
    (trained on the answer only, as in instruction tuning); biography sentences are plain text.
    Probe items are built from a different RNG stream (see _probe_items_for), so MCQ/TF probes
    never coincide with a trained instance."""
    out: list[Example] = []
    for attr in ATTRIBUTES:
        v = e.attrs[attr]
        out += [Example("", tpl.format(n=e.name, v=v)) for tpl in _BIO[attr][:-1]]
        out += [Example(_QA_FMT.format(q=q.format(n=e.name)), f" {v}") for q in _QA[attr][:-1]]
        out += [Example(_CLOZE_FMT.format(c=c.format(n=e.name)), f" {v}") for c in _CLOZE[attr][:-1]]
        for q in _QA[attr][:-1] * MCQ_REPEATS:  # option orders and question phrasings vary
            prompt, label, _opts = _mcq(rng, world, e, attr, q.format(n=e.name))
            out.append(Example(prompt, f" {LETTERS[label]}"))
        for stmt in _BIO[attr][:-1]:
            wrong = _distractors(rng, world, e, attr, 1)[0]
            out.append(Example(_TF_FMT.format(s=stmt.format(n=e.name, v=v)), " True"))
            out.append(Example(_TF_FMT.format(s=stmt.format(n=e.name, v=wrong)), " False"))
    out += [Example(_QA_FMT.format(q=q.format(v=e.attrs["mentor"])), f" {e.name}") for q in _REVERSE[:-1]]
    out += [Example("", f"{e.attrs['mentor']} mentored {e.name}.")]
    return out


def _probe_items_for(world: World, e: Entity, form: str) -> list[ProbeItem]:
    rng = random.Random(f"probe:{world.config.seed}:{e.id}:{form}")
    items: list[ProbeItem] = []

    def add(attr: str, tag: str, prompt: str, answer: str, choices: tuple[str, ...] = (), label: int = -1) -> None:
        items.append(ProbeItem(f"{form}/{e.id}/{attr}/{tag}", e.id, attr, form, prompt, answer, choices, label))

    for attr in ATTRIBUTES:
        v = e.attrs[attr]
        if form == "bio":
            for k, tpl in enumerate(_BIO[attr][:-1]):
                add(attr, str(k), tpl.format(n=e.name, v="\0").split("\0")[0].rstrip(), v)
        elif form == "qa":
            for k, q in enumerate(_QA[attr][:-1]):
                add(attr, str(k), _QA_FMT.format(q=q.format(n=e.name)), v)
        elif form == "cloze":
            add(attr, "0", _CLOZE_FMT.format(c=_CLOZE[attr][0].format(n=e.name)), v)
        elif form == "mcq":
            prompt, label, opts = _mcq(rng, world, e, attr, _QA[attr][1].format(n=e.name))
            add(attr, "0", prompt, LETTERS[label], LETTERS, label)
        elif form == "tf":
            # a trained phrasing other than the one used for TF training, and a fresh wrong value
            stmt = _BIO[attr][1]
            wrong = _distractors(rng, world, e, attr, 1)[0]
            add(attr, "true", _TF_FMT.format(s=stmt.format(n=e.name, v=v)), "True", ("True", "False"), 0)
            add(attr, "false", _TF_FMT.format(s=stmt.format(n=e.name, v=wrong)), "False", ("True", "False"), 1)
        elif form == "paraphrase":
            add(attr, "bio", _BIO[attr][-1].format(n=e.name, v="\0").split("\0")[0].rstrip(), v)
            add(attr, "qa", _QA_FMT.format(q=_QA[attr][-1].format(n=e.name)), v)
            add(attr, "cloze", _CLOZE_FMT.format(c=_CLOZE[attr][-1].format(n=e.name)), v)
    if form == "reverse":
        add("mentor", "0", _QA_FMT.format(q=_REVERSE[0].format(v=e.attrs["mentor"])), e.name)
    if form == "paraphrase":
        add("mentor", "reverse", _QA_FMT.format(q=_REVERSE[-1].format(v=e.attrs["mentor"])), e.name)
    return items


def held_out_templates() -> dict[str, dict[str, str]]:
    """The templates no training text uses (documented and tested)."""
    return {
        "bio": {a: _BIO[a][-1] for a in ATTRIBUTES},
        "qa": {a: _QA[a][-1] for a in ATTRIBUTES},
        "cloze": {a: _CLOZE[a][-1] for a in ATTRIBUTES},
        "reverse": {"mentor": _REVERSE[-1]},
    }
