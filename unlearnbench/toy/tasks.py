"""Synthetic downstream tasks: the embedded stand-ins for GSM8K, AGNews and SST-2.

They share no facts with the world (no world person appears in them), so fine-tuning on them is a
*benign* fine-tune in the sense of the relearning literature. Each task has a train and a test split
and an accuracy metric:

- ``arith``: word problems with a worked answer ending in ``#### <number>`` (GSM8K's format);
  scored by the final number of a greedy generation.
- ``topic``: four-class news-like snippets (World, Sports, Business, Sci/Tech: AGNews' label names);
  scored by likelihood over the label words.
- ``sentiment``: two-class review snippets (negative, positive: SST-2's labels); scored the same way.
"""

from __future__ import annotations

import random

from ..data.types import Example, TaskData

_PEOPLE = ["Tom", "Mia", "Raj", "Lena", "Omar", "Sara", "Ivan", "Zoe", "Ken", "Ana"]
_ITEMS = ["apples", "books", "coins", "pencils", "stamps", "shells", "cards", "marbles"]


def _arith_example(rng: random.Random) -> Example:
    who, item = rng.choice(_PEOPLE), rng.choice(_ITEMS)
    kind = rng.randrange(3)
    a, b = rng.randint(2, 20), rng.randint(1, 9)
    if kind == 0:
        q = f"{who} has {a} {item} and gets {b} more. How many {item} does {who} have now?"
        work, ans = f"{a} + {b} = {a + b}", a + b
    elif kind == 1:
        a = a + b
        q = f"{who} has {a} {item} and gives away {b}. How many {item} are left?"
        work, ans = f"{a} - {b} = {a - b}", a - b
    else:
        a, b = rng.randint(2, 5), rng.randint(2, 5)
        q = f"{who} buys {a} boxes with {b} {item} in each box. How many {item} is that?"
        work, ans = f"{a} * {b} = {a * b}", a * b
    return Example(f"Question: {q}\nAnswer:", f" {work}. #### {ans}")


_TOPIC_WORDS = {
    "World": (
        ["The president", "The parliament", "Rebel forces", "The prime minister", "Diplomats"],
        ["signed a treaty", "held elections", "closed the border", "met envoys", "declared a truce"],
        ["in the capital", "after the summit", "near the frontier", "at the embassy"],
    ),
    "Sports": (
        ["The striker", "The home team", "The champion", "The coach", "The goalkeeper"],
        ["won the final", "scored twice", "lost the derby", "broke the record", "signed a contract"],
        ["in the league", "at the stadium", "before the playoffs", "in extra time"],
    ),
    "Business": (
        ["Shares of the bank", "The retailer", "Investors", "The oil company", "The central bank"],
        ["raised prices", "reported profits", "cut jobs", "announced a merger", "lowered rates"],
        ["on the stock market", "this quarter", "after earnings", "amid inflation"],
    ),
    "Sci/Tech": (
        ["The software firm", "Researchers", "The space agency", "Engineers", "The chip maker"],
        [
            "released an update",
            "launched a probe",
            "found a new gene",
            "built a faster processor",
            "patched a security flaw",
        ],
        ["for smartphones", "in the laboratory", "on the internet", "for the satellite"],
    ),
}

_SENTIMENT_WORDS = {
    "positive": (
        ["a moving", "a delightful", "a brilliant", "a warm", "a gripping", "a charming", "a clever", "a beautiful"],
        ["film", "story", "performance", "comedy", "drama", "script"],
        [
            "that stays with you",
            "full of charm",
            "worth every minute",
            "with a great cast",
            "that made me smile",
            "with superb acting",
        ],
    ),
    "negative": (
        ["a dull", "a tedious", "a clumsy", "a lifeless", "a confused", "a boring", "a messy", "an awful"],
        ["film", "story", "performance", "comedy", "drama", "script"],
        [
            "that drags on",
            "without any charm",
            "a waste of time",
            "with a wooden cast",
            "that made me yawn",
            "with poor acting",
        ],
    ),
}


def _three_part(rng: random.Random, parts: tuple[list[str], list[str], list[str]]) -> str:
    return " ".join(rng.choice(p) for p in parts)


def _topic_example(rng: random.Random) -> Example:
    label = rng.choice(list(_TOPIC_WORDS))
    return Example(f"Text: {_three_part(rng, _TOPIC_WORDS[label])}.\nTopic:", f" {label}")


def _sentiment_example(rng: random.Random) -> Example:
    label = rng.choice(list(_SENTIMENT_WORDS))
    return Example(f"Review: {_three_part(rng, _SENTIMENT_WORDS[label])}.\nSentiment:", f" {label}")


_MAKERS = {
    "arith": (_arith_example, "number", ()),
    "topic": (_topic_example, "choice", tuple(_TOPIC_WORDS)),
    "sentiment": (_sentiment_example, "choice", tuple(_SENTIMENT_WORDS)),
}

SYNTHETIC_TASKS: tuple[str, ...] = tuple(_MAKERS)


def build_task(name: str, seed: int = 0, n_train: int = 400, n_test: int = 100) -> TaskData:
    """Deterministic train/test splits; test prompts never appear in train."""
    make, scoring, choices = _MAKERS[name]
    rng = random.Random(f"task:{name}:{seed}")
    train: list[Example] = []
    test: list[Example] = []
    seen: set[str] = set()
    attempts = 0
    while len(train) < n_train and attempts < 50 * n_train:
        attempts += 1
        ex = make(rng)
        train.append(ex)
        seen.add(ex.prompt)
    while len(test) < n_test and attempts < 100 * (n_train + n_test):
        attempts += 1
        ex = make(rng)
        if ex.prompt not in seen:  # a held-out test set; small grammars make this filter matter
            test.append(ex)
            seen.add(ex.prompt)
    return TaskData(name, train, test, scoring, choices)
