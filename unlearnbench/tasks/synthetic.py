"""The embedded world's stand-ins for GSM8K, AGNews and SST-2 (built in unlearnbench.toy.tasks)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..data.types import TaskData
from ..registry import register_task
from ..toy.tasks import build_task


@dataclass(frozen=True)
class SyntheticTaskConfig:
    n_train: int = field(default=400, metadata={"help": "training examples"})
    n_test: int = field(default=100, metadata={"help": "test examples (FA is measured on them)"})
    seed: int = field(default=0, metadata={"help": "generator seed"})

    def __post_init__(self):
        if self.n_train < 1 or self.n_test < 1:
            raise ValueError("n_train and n_test must be positive")


class _SyntheticTask:
    version = "1"
    Config = SyntheticTaskConfig
    description = ""

    def __init__(self, config: SyntheticTaskConfig | None = None):
        self.config = config or SyntheticTaskConfig()

    def load(self) -> TaskData:
        c = self.config
        return build_task(self.name, c.seed, c.n_train, c.n_test)


@register_task()
class ArithTask(_SyntheticTask):
    name = "arith"
    description = "GSM8K-style word arithmetic, scored by the number after '####'"


@register_task()
class TopicTask(_SyntheticTask):
    name = "topic"
    description = "AGNews-style 4-class topic, scored by likelihood of the label word"


@register_task()
class SentimentTask(_SyntheticTask):
    name = "sentiment"
    description = "SST-2-style 2-class sentiment, scored by likelihood of the label word"
