"""A size of the embedded world (``tasks/benchmarks/toy.yaml``) as a world, a model recipe, the data
unlearning methods get, and the cached, quality-gated models."""

from __future__ import annotations

from ..data.types import UnlearnData
from ..errors import UnlearnbenchError
from ..progress import SILENT, Progress
from .model import ModelRecipe, check_quality, get_model_dir
from .world import World, WorldConfig, build_world

#: A harmless person who is not in the world (names there are built from other syllables).
REPLACEMENT = "John Smith"


def from_spec(spec: dict, size: str, seed: int) -> tuple[World, ModelRecipe]:
    """The world and model recipe of preset ``size`` in the parsed ``toy.yaml`` ``spec``."""
    try:
        preset = spec["sizes"][size]
        world = build_world(WorldConfig(seed=seed, **preset["world"]))
        recipe = dict(preset["model"])
        recipe["gated_forms"] = tuple(recipe.get("gated_forms", ())) or ModelRecipe().gated_forms
        return world, ModelRecipe(**recipe)
    except (KeyError, TypeError) as e:
        raise UnlearnbenchError(f"tasks/benchmarks/toy.yaml: bad preset for size {size!r}: {e}") from None


def unlearn_data(world: World, tokenizer) -> UnlearnData:
    """Forget: the forget people's biography sentences; retain: those of the people methods may
    see (neighbours held out); generic text: everything trained on except the forget people."""
    w = world
    generic = [ex.prompt + ex.target for ex in w.training_examples(exclude=set(w.forget_ids))]
    owners = [k for k, i in enumerate(w.forget_ids) for _ in w.unlearning_examples([i])]
    return UnlearnData(
        forget=w.unlearning_examples(w.forget_ids),
        retain=w.unlearning_examples(w.method_retain_ids()),
        tokenizer=tokenizer,
        concepts=[w.by_id(i).name for i in w.forget_ids],
        replacement=REPLACEMENT,
        generic_text=generic,
        forget_owners=owners,
        concept_ids=list(w.forget_ids),
    )


def load(world: World, recipe: ModelRecipe, role: str, name: str, device: str = "cpu", progress: Progress = SILENT):
    """The cached ``role`` model (trained on first use), after its quality gate."""
    from ..models import load_model

    path = get_model_dir(world, recipe, role, name, progress)
    check_quality(path, role=role)
    return load_model(path, device=device, dtype="auto")  # float32 on CPU, bf16 where supported
