"""``toy`` — the embedded world: fictitious people, a tiny Llama trained on them, a retrain oracle.

Sizes and the model recipe are declared in ``tasks/benchmarks/toy.yaml``; so are the tuned
defaults of every method and attack on this benchmark (user options override them).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ..data.world import FORMS, WorldConfig, build_world
from ..data.world_probes import EXTRA_FORMS, extra_probe_items
from ..errors import UnlearnbenchError
from ..progress import SILENT, Progress
from ..registry import register_benchmark
from ..specs import load_yaml


#: A harmless person who is not in the world (names there are built from other syllables).
REPLACEMENT = "John Smith"


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
    eval_tasks = ("arith", "topic", "sentiment")

    def __init__(self, config: ToyConfig | None = None):
        from ..embedded import ModelRecipe

        self.config = config or ToyConfig()
        spec = load_yaml("benchmarks/toy.yaml")
        try:
            preset = spec["sizes"][self.config.size]
            self.world = build_world(WorldConfig(seed=self.config.seed, **preset["world"]))
            recipe = dict(preset["model"])
            recipe["gated_forms"] = tuple(recipe.get("gated_forms", ()))  or ModelRecipe().gated_forms
            self.recipe = ModelRecipe(**recipe)
        except (KeyError, TypeError) as e:
            raise UnlearnbenchError(f"tasks/benchmarks/toy.yaml: bad preset for size {self.config.size!r}: {e}") from None
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

    def unlearn_data(self, tokenizer):
        from ..methods.base import UnlearnData

        w = self.world
        generic = [ex.prompt + ex.target for ex in w.training_examples(exclude=set(w.forget_ids))]
        return UnlearnData(forget=w.unlearning_examples(w.forget_ids),
                           retain=w.unlearning_examples(w.method_retain_ids()), tokenizer=tokenizer,
                           concepts=[w.by_id(i).name for i in w.forget_ids],
                           replacement=REPLACEMENT, generic_text=generic)

    def defaults(self, kind: str, name: str) -> dict:
        """Tuned options for a method or attack on this benchmark (``tasks/benchmarks/toy.yaml``)."""
        return dict(self._defaults.get(kind, {}).get(name, {}) or {})

    # -- models ---------------------------------------------------------------------------
    def load(self, role: Literal["target", "oracle"], device: str = "cpu", progress: Progress = SILENT):
        from ..embedded import check_quality, get_model_dir
        from ..models import load_model

        path = get_model_dir(self.world, self.recipe, role, self.model_name, progress)
        check_quality(path, role=role)
        return load_model(path, device=device, dtype="auto")  # float32 on CPU, bf16 where supported

    def describe(self) -> dict:
        w = self.world
        return {"benchmark": self.name, "size": self.config.size, "seed": self.config.seed,
                "people": len(w.entities), "forget": len(w.forget_ids), "neighbour": len(w.neighbour_ids),
                "retain_probed": len(w.retain_probe_ids)}
