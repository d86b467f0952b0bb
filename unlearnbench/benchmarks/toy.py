"""``toy`` — the embedded world: fictitious people, a tiny Llama trained on them, a retrain oracle.

Sizes and the model recipe are declared in ``tasks/benchmarks/toy.yaml``; so are the tuned
defaults of every method and attack on this benchmark (user options override them). The world,
its forms and its models live in :mod:`unlearnbench.toy`; this file is the benchmark plugin.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ..progress import SILENT, Progress
from ..registry import register_benchmark
from ..spec import load_yaml
from ..toy.probes import EXTRA_FORMS, extra_probe_items
from ..toy.world import FORMS


@dataclass(frozen=True)
class ToyConfig:
    size: Literal["micro", "small"] = field(default="small", metadata={"help": "world and model size"})
    seed: int = field(default=0, metadata={"help": "world generator seed"})


@register_benchmark()
class ToyBenchmark:
    name = "toy"
    version = "1"
    Config = ToyConfig
    description = "embedded synthetic world of fictitious people (no downloads)"
    splits = ("forget", "neighbour", "retain")
    forms = FORMS
    has_oracle = True
    eval_tasks = ("arith", "topic", "sentiment")
    benign_tasks = ("retain", "syntax", "filler")

    def __init__(self, config: ToyConfig | None = None):
        from ..toy import preset

        self.config = config or ToyConfig()
        spec = load_yaml("benchmarks/toy.yaml")
        self.world, self.recipe = preset.from_spec(spec, self.config.size, self.config.seed)
        self._defaults = spec.get("defaults", {})
        self.default_probes = tuple(spec.get("probes", FORMS))
        self.model_name = f"toy-{self.config.size}-s{self.config.seed}"

    # -- data -----------------------------------------------------------------------------
    def probe_items(self, form: str, split: str):
        if form in EXTRA_FORMS:  # adversarial, icl: built from the world's items, not trained
            return extra_probe_items(self.world, form, self.world.split_ids(split))
        return self.world.probe_items(form, self.world.split_ids(split))

    def text_items(self, split: str):
        """The QA items of ``split`` (question -> attribute value), for generic probes (fluency,
        distance to the oracle)."""
        return self.world.probe_items("qa", self.world.split_ids(split))

    def training_items(self, form: str):
        """Items of ``form`` about every person the models keep (all non-forget people, the probed
        neighbour and retain people included), for probes that learn from hidden states (``linear``
        trains on them, leaving out whichever people it is scoring). The probed retain split alone
        has too few people: most forget values never occur among them."""
        if form in EXTRA_FORMS:
            return extra_probe_items(self.world, form, self.world.retain_ids)
        return self.world.probe_items(form, self.world.retain_ids)

    def unlearn_data(self, tokenizer):
        from ..toy import preset

        return preset.unlearn_data(self.world, tokenizer)

    def benign_task(self, name: str, n_train: int, n_test: int, seed: int):
        """The ``retain``, ``syntax`` or ``filler`` task on this world (:mod:`unlearnbench.toy.benign`)."""
        from ..toy.benign import build_benign_task

        return build_benign_task(self.world, name, n_train, n_test, seed)

    def defaults(self, kind: str, name: str) -> dict:
        """Tuned options for a method or attack on this benchmark (``tasks/benchmarks/toy.yaml``)."""
        return dict(self._defaults.get(kind, {}).get(name, {}) or {})

    def n_layers(self) -> int:
        """Decoder blocks of this size's models (the recipe says so before any model is trained)."""
        return self.recipe.num_layers

    # -- models ---------------------------------------------------------------------------
    def load(self, role: Literal["target", "oracle"], device: str = "cpu", progress: Progress = SILENT):
        from ..toy import preset

        return preset.load(self.world, self.recipe, role, self.model_name, device, progress)

    def describe(self) -> dict:
        w = self.world
        return {
            "benchmark": self.name,
            "size": self.config.size,
            "seed": self.config.seed,
            "people": len(w.entities),
            "forget": len(w.forget_ids),
            "neighbour": len(w.neighbour_ids),
            "retain_probed": len(w.retain_probe_ids),
        }
