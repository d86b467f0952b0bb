"""``retain``, ``syntax``, ``filler`` — benign fine-tuning tasks that control how much a fine-tune
looks like the forget set while teaching nothing about it.

Why: Yoon et al., "Rethinking Benign Relearning: Syntax as the Hidden Driver of Unlearning Failures"
(ICLR 2026, arXiv 2602.03379) find that *syntactic* similarity to the forget data, not its topic,
drives benign relearning; "From Dormant to Deleted" (arXiv 2505.22310) finds that fine-tuning on the
retain set alone brings forgotten examples back in small controlled models. The stand-ins for
GSM8K/AGNews/SST-2 (``arith``, ``topic``, ``sentiment``) share no syntax with the forget set, so
they cannot show either effect. These three tasks can:

- ``retain``: the benchmark's retain data in the trained forms (embedded world: every trained
  statement about the people unlearning methods keep, neither forget people nor neighbours; TOFU:
  the retain set's QA; MUSE: the raw retain corpus);
- ``syntax``: people who do not exist, stated in the forget set's own templates with real values
  (embedded world only): no information about any forget person, maximal syntactic overlap;
- ``filler``: the same templates with random letter strings in place of names and values.

They are built from the run's benchmark (its world, size and seed decide the data): the task asks
it through the optional benchmark hook ``benign_task(name, n_train, n_test, seed)`` once the run has
bound it (``bind(ctx)``: the runner for ``finetune:<task>``, ILU for ``envs=<task>``, relearn for
``relearn:<task>``). FA is ``text`` scoring: the greedy answer to a held-out test item starts with
its target. How far each task is from the forget set: ``unlearnbench.similarity`` and
``benchmarks/task_similarity.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..data.types import PlanContext, TaskData, declared
from ..errors import UnlearnbenchError
from ..registry import register_task


@dataclass(frozen=True)
class BenignTaskConfig:
    n_train: int = field(default=400, metadata={"help": "training examples"})
    n_test: int = field(default=100, metadata={"help": "test examples (FA is measured on them; disjoint from train)"})
    seed: int = field(default=0, metadata={"help": "draw and generator seed"})

    def __post_init__(self):
        if self.n_train < 1 or self.n_test < 1:
            raise ValueError("n_train and n_test must be positive")


class _BenignTask:
    version = "1"
    Config = BenignTaskConfig
    description = ""

    def __init__(self, config: BenignTaskConfig | None = None):
        self.config = config or BenignTaskConfig()
        self._benchmark = None

    def bind(self, ctx: PlanContext) -> list[str]:
        """Keep the run's benchmark; refuse (one line, at plan time) one that cannot build this task."""
        b = ctx.benchmark
        if b is None:
            raise UnlearnbenchError(f"task {self.name!r} is built from the run's benchmark, and none was given")
        if declared(b, "benign_task") is None or self.name not in declared(b, "benign_tasks"):
            has = ", ".join(declared(b, "benign_tasks")) or "none"
            raise UnlearnbenchError(
                f"benchmark {b.name!r} cannot build task {self.name!r} (its benign tasks: {has}); "
                "use a task of its own data or a synthetic one (e.g. arith)"
            )
        self._benchmark = b
        return []

    def load(self) -> TaskData:
        if self._benchmark is None:
            raise UnlearnbenchError(
                f"task {self.name!r} is built from the run's benchmark but was loaded without one: "
                "bind(PlanContext(benchmark=...)) first (the runner, ILU and relearn do)"
            )
        c = self.config
        return self._benchmark.benign_task(self.name, c.n_train, c.n_test, c.seed)


@register_task()
class RetainTask(_BenignTask):
    name = "retain"
    description = "the benchmark's retain data in its trained forms (no forget person, no neighbour)"


@register_task()
class SyntaxTask(_BenignTask):
    name = "syntax"
    description = "people not in the world, stated in the forget set's own templates (zero forget information)"


@register_task()
class FillerTask(_BenignTask):
    name = "filler"
    description = "the forget set's templates with random letter strings in place of names and values"
