"""The types every layer shares, and the protocols of the plugins the runner drives.

Data: :class:`Example` (a prompt and its target), :class:`ProbeItem` (one question about one fact),
:class:`TaskData` (a fine-tuning task's splits and how it is scored) and :class:`UnlearnData` (what
a benchmark hands an unlearning method). Plugins (``methods/``, ``attacks/``, ``probes/``,
``benchmarks/``, ``tasks/``) import these from here, never from another plugin package or from the
embedded world.

Protocols: what the runner may call on a benchmark, a method, an attack and a task, written as
:class:`typing.Protocol` classes. The optional hooks are declared here with their default (what
the runner assumes when a plugin does not define one): the runner reads them through
:func:`declared` and calls them through :func:`call_hook`, so the list of hooks lives in one place
instead of being sniffed with ``hasattr`` where each is used. The probe protocol is written in
:mod:`unlearnbench.probes.base`.

No torch here: the CLI's ``--help`` path may import this module.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Protocol, runtime_checkable

# -- data ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Example:
    """A prompt and its target. Loss and scores look at the target tokens only."""

    prompt: str
    target: str


@dataclass(frozen=True)
class ProbeItem:
    """One question to a model about one fact.

    For generative forms the model should continue ``prompt`` with ``answer`` (scored with a
    leading space). For choice forms (``mcq``, ``tf``) ``choices`` lists the candidate answers and
    ``label`` the index of the right one. ``entity_id`` / ``attribute`` name the fact where the
    benchmark has entities (the embedded world; -1 / "" otherwise); ``subject`` is the concept the
    item is about and ``split`` the split it belongs to, where the benchmark's files say so (ORT).
    """

    item_id: str
    entity_id: int
    attribute: str
    form: str
    prompt: str
    answer: str
    choices: tuple[str, ...] = ()
    label: int = -1
    subject: str = ""
    split: str = ""


@dataclass(frozen=True)
class TaskData:
    """A fine-tuning task: train and test examples and how accuracy (FA) is scored.

    ``scoring='text'``: a greedy generation of at most ``max_new_tokens`` tokens is right when,
    normalised, it starts with the normalised target (:func:`unlearnbench.metrics.exact_match`).
    """

    name: str
    train: list[Example]
    test: list[Example]
    scoring: str  # 'number' (final number after ####), 'choice' (label words) or 'text' (see below)
    choices: tuple[str, ...] = ()  # label words for 'choice' tasks, scored with a leading space
    max_new_tokens: int = 32  # 'number' tasks: tokens generated per answer


@dataclass
class UnlearnData:
    """What a method gets from the benchmark.

    ``forget``/``retain``: examples in the unlearning form (prompt, target). ``concepts``: the
    subjects to forget as short strings (entity names; used by editing methods such as ROCR).
    ``replacement``: a harmless subject not in the benchmark that edits may redirect to.
    ``generic_text``: ordinary text for statistics that must not depend on the forget set
    (e.g. ROCR's second moment of MLP inputs).
    ``forget_owners``: where the benchmark knows it, the index into ``concepts`` of whose each
    forget example is (parallel to ``forget``; -1: nobody's), and ``concept_ids`` the benchmark's
    own ids of the concepts (parallel to ``concepts``). Empty: not known (``relearn:forget,people=k``
    then attributes examples by the concept named in them).
    """

    forget: list[Example]
    retain: list[Example]
    tokenizer: object
    concepts: list[str] = field(default_factory=list)
    replacement: str | None = None
    generic_text: list[str] = field(default_factory=list)
    forget_owners: list[int] = field(default_factory=list)
    concept_ids: list[int] = field(default_factory=list)


# -- plan-time context ---------------------------------------------------------------------------


@dataclass
class PlanContext:
    """What a method or attack may learn about its run while it is planned (its ``bind`` hook).

    ``defaults_for(name)``: the benchmark's tuned options for method ``name`` (ILU builds its base
    method from them). ``data_tasks``: task objects configured with the user's ``--data`` files,
    by task name. ``benchmark``: the run's benchmark object (tasks built from a benchmark's own data,
    such as ``retain``/``syntax``/``filler``, ask it for their examples; None where a caller plans
    without one).
    """

    defaults_for: Callable[[str], dict]
    data_tasks: dict[str, Any]
    benchmark: Any = None


# -- protocols -----------------------------------------------------------------------------------


@runtime_checkable
class Benchmark(Protocol):
    """A benchmark: models (target and, optionally, a retrain oracle), data, probe items.

    Optional (defaults in :data:`OPTIONAL`): ``has_oracle`` (True), ``eval_tasks`` (task plugin
    names whose accuracy is measured on base/oracle/unlearned: ()), ``key_extra()`` (what else
    decides the results, e.g. the sha256 of local data files: {}), ``text_items(split)`` (free-text
    items for generic probes such as fluency and the distance to the oracle), ``benign_task(name,
    n_train, n_test, seed) -> TaskData`` with ``benign_tasks`` (the names it builds: ()): fine-tuning
    tasks made from the benchmark's own data that carry no forget information (``retain``: the retain
    set; ``syntax``/``filler``: the forget set's templates about people who do not exist or with
    nonsense in place of names and values; see :mod:`unlearnbench.tasks.benign`). None: the
    benchmark builds none. ``n_layers()``: the target model's number of decoder blocks where it is
    known before the model is loaded (methods check their layer options against it at plan time;
    None: not known).
    """

    name: ClassVar[str]
    version: ClassVar[str]
    splits: tuple[str, ...]
    default_probes: tuple[str, ...]
    model_name: str

    def load(self, role: str, device: str = "cpu", progress: Any = ...) -> Any:
        """``role`` 'target' or 'oracle' -> a :class:`unlearnbench.models.LoadedModel`."""

    def unlearn_data(self, tokenizer) -> UnlearnData: ...

    def probe_items(self, form: str, split: str) -> list: ...

    def defaults(self, kind: str, name: str) -> dict:
        """Tuned options of method/attack ``name`` on this benchmark (``kind``: methods|attacks)."""


@runtime_checkable
class Method(Protocol):
    """An unlearning method: changes ``model`` in place and returns its stats.

    The stats dict holds ``history`` (one dict of loss parts per step; may be empty) and may hold
    ``effective_batch_size``. Optional: ``bind(ctx: PlanContext) -> list[str]`` (called once at plan
    time; returns the names of ``ctx.data_tasks`` it uses), ``key_extra()``.
    """

    name: ClassVar[str]
    version: ClassVar[str]

    def unlearn(self, model, data: UnlearnData, progress: Any = ...) -> dict: ...


@runtime_checkable
class Attack(Protocol):
    """An attack on an unlearned model: a curve of evaluations.

    ``run`` must not change ``model``; it calls ``evaluate(checkpoint, step, model)`` before it
    starts and at every checkpoint it reports (the runner scores every probe there) and returns its
    stats. ``task`` is the loaded :class:`TaskData` when ``needs_arg == "task"`` (the argument names
    a task plugin: ``finetune:arith``), else ``None``. ``benchmark`` is the run's benchmark.

    Optional: ``needs_arg`` (None: takes no ``:arg``; a word naming what the argument is),
    ``bind(ctx: PlanContext) -> list[str]``, ``key_extra()``.
    """

    name: ClassVar[str]
    version: ClassVar[str]

    def run(
        self,
        model,
        tokenizer,
        task: TaskData | None,
        evaluate: Callable[[str, int, Any], None],
        progress: Any = ...,
        benchmark: Any = None,
    ) -> dict: ...


@runtime_checkable
class Task(Protocol):
    """A fine-tuning task (an attack's data, an ILU environment, a utility measure).

    Optional: ``reads_files`` (False: whether ``--data NAME=PATH`` may configure it; its Config then
    has ``train`` and ``test`` fields), ``key_extra()``, ``bind(ctx: PlanContext) -> list[str]``
    (called at plan time by whoever uses the task: the runner for ``finetune:<task>``, ILU for its
    environments, ``relearn:<task>`` for its source), ``load_train() -> list[Example]`` (the train
    split alone, without reading the test split; read through :func:`train_examples`).
    """

    name: ClassVar[str]
    version: ClassVar[str]

    def load(self) -> TaskData: ...


#: Optional plugin members and what they mean when a plugin leaves them out.
OPTIONAL: dict[str, Any] = {
    "has_oracle": True,
    "eval_tasks": (),
    "needs_arg": None,
    "reads_files": False,
    "needs_reference": False,
    "benign_task": None,  # benchmarks: no benign tasks
    "benign_tasks": (),
}

#: Optional plugin hooks and what calling a missing one returns.
HOOKS: dict[str, Callable[[], Any]] = {
    "key_extra": dict,
    "bind": list,
    "aggregate": list,  # probes: numbers that are not means over items (see probes/base.py)
    "n_layers": lambda: None,  # benchmarks: the target's decoder blocks are not known before loading
}


def declared(obj: Any, name: str) -> Any:
    """An optional attribute of a plugin (class or instance), or its declared default."""
    return getattr(obj, name, OPTIONAL[name])


def train_examples(task: Any) -> list[Example]:
    """A task's training examples, for plugins that only train on a task (ILU environments,
    ``relearn:<task>``): its ``load_train()`` where it has one (dataset tasks: the test split is not
    read, so no test file is needed), else ``load().train``."""
    load_train = getattr(task, "load_train", None)
    return list(load_train() if load_train is not None else task.load().train)


def call_hook(obj: Any, name: str, *args: Any) -> Any:
    """Call an optional hook of a plugin, or return its declared default when it has none."""
    fn = getattr(obj, name, None)
    if fn is None:
        return HOOKS[name]()
    return fn(*args)
