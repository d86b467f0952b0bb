"""The embedded model: a tiny Llama trained on the embedded world, and its retrain oracle.

``LlamaForCausalLM`` (RMSNorm, SwiGLU, ``mlp.down_proj``) so that RMU and rank-one edits find the
same modules as on Llama/Zephyr; a byte-level BPE tokenizer trained on the world and task text (no
unknown tokens: real datasets can be fed to it). The *target* model is trained on every person; the
*oracle* on everyone but the forget people, with the same tokenizer and recipe — the gold standard
unlearning should approach.

Models are cached under ``cache_dir()/models/<name>-<key>/`` as ordinary Hugging Face directories
(safetensors); the key hashes everything that determines the weights (world config, recipe, which
people were left out, torch version, :data:`RECIPE_VERSION`). A quality gate measures recall per
trained form after training and refuses a model that has not learned its world.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..cache import AtomicDir, cache_dir
from ..errors import UnlearnbenchError
from ..progress import SILENT, Progress
from .tasks import SYNTHETIC_TASKS, build_task
from .world import FORMS, WORLD_VERSION, World

#: Bump when anything about training changes that the recipe fields do not capture.
RECIPE_VERSION = "1"
#: Recall the base model must reach in each gated form, on every probed split.
QUALITY_GATE = 0.90
#: The forms a model of this size learns to >= 90 %. MCQ (pick the letter of the right option) and
#: true/false are trained too, but a ~1M-parameter model stays far below 90 % on them with option
#: orders and phrasings it has not seen (measured: MCQ 0.25-0.46, TF 0.79-0.83 after 60 epochs on
#: 24 people); they are probed and reported, not gated.
GATED_FORMS = ("bio", "qa", "cloze", "reverse")


@dataclass(frozen=True)
class ModelRecipe:
    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 4
    intermediate_size: int = 384
    vocab_size: int = 1024
    max_positions: int = 256
    epochs: int = 30
    lr: float = 3e-3
    batch_size: int = 64
    weight_decay: float = 0.01
    seed: int = 0
    task_examples: int = 200  # per synthetic task, from a sample disjoint from the attack's data
    # CPU threads used for training: float sums are ordered by thread count, so pinning it makes
    # the same recipe give the same weights on a machine whatever threads the caller has set
    train_threads: int = 2
    gated_forms: tuple[str, ...] = field(default=GATED_FORMS)


def _pretraining_tasks(recipe: ModelRecipe):
    # seed 10_000+: never the sample that finetune:<task> attacks train or test on
    return [build_task(name, seed=10_000, n_train=recipe.task_examples, n_test=1) for name in SYNTHETIC_TASKS]


def train_tokenizer(world: World, recipe: ModelRecipe):
    """Byte-level BPE over the whole world (all people, so target and oracle share it) and tasks."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    texts = [ex.prompt + ex.target for ex in world.training_examples()]
    texts += [ex.prompt + ex.target for t in _pretraining_tasks(recipe) for ex in t.train]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=recipe.vocab_size,
        special_tokens=["<pad>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        pad_token="<pad>",
        padding_side="right",
        model_max_length=recipe.max_positions,
    )


def _model_config(recipe: ModelRecipe, tokenizer):
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=recipe.hidden_size,
        intermediate_size=recipe.intermediate_size,
        num_hidden_layers=recipe.num_layers,
        num_attention_heads=recipe.num_heads,
        num_key_value_heads=recipe.num_heads,
        max_position_embeddings=recipe.max_positions,
        rms_norm_eps=1e-5,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=True,
        attn_implementation="eager",
    )  # ILU's penalty needs double backward


def model_key(world: World, recipe: ModelRecipe, role: str) -> str:
    import hashlib

    import torch

    exclude = sorted(world.forget_ids) if role == "oracle" else []
    blob = json.dumps(
        {
            "world": asdict(world.config),
            "world_version": WORLD_VERSION,
            "recipe": asdict(recipe),
            "exclude": exclude,
            "recipe_version": RECIPE_VERSION,
            "torch": torch.__version__.split("+")[0],
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def model_dir_name(world: World, recipe: ModelRecipe, role: str, name: str) -> str:
    return f"{name}-{role}-{model_key(world, recipe, role)}"


def get_model_dir(
    world: World,
    recipe: ModelRecipe,
    role: str,
    name: str,
    progress: Progress = SILENT,
    root: Path | None = None,
    use_shipped: bool = True,
) -> Path:
    """The cached model directory for ``role`` ('target' or 'oracle'): from the cache, else the
    shipped copy (:mod:`.shipped`, verified by sha256), else trained from the recipe."""
    from . import shipped

    if role not in ("target", "oracle"):
        raise ValueError(role)
    root = root or cache_dir() / "models"
    path = root / model_dir_name(world, recipe, role, name)
    if (path / "model.safetensors").exists() and (path / "quality.json").exists():
        return path
    if use_shipped and shipped.install(path.name, root) is not None:
        return path
    root.mkdir(parents=True, exist_ok=True)
    tokenizer = _shared_tokenizer(world, recipe, root / f"{name}-tokenizer-{model_key(world, recipe, 'target')}")
    exclude = set(world.forget_ids) if role == "oracle" else set()
    t0 = time.time()
    model = train_model(world, recipe, tokenizer, exclude, progress, f"train {role} model ({name})")
    seconds = time.time() - t0
    recall = measure_recall(model, tokenizer, world, FORMS, progress)
    with AtomicDir(root) as stage:  # a killed build never leaves a half-written model behind
        model.generation_config.pad_token_id = tokenizer.pad_token_id
        model.save_pretrained(stage.path)
        tokenizer.save_pretrained(stage.path)
        quality = {
            "role": role,
            "recall": recall,
            "train_seconds": round(seconds, 1),
            "recipe": asdict(recipe),
            "world": asdict(world.config),
        }
        (stage.path / "quality.json").write_text(json.dumps(quality, indent=1))
        stage.publish(path.name, replace=True)
    return path


def _shared_tokenizer(world: World, recipe: ModelRecipe, path: Path):
    from transformers import PreTrainedTokenizerFast

    if (path / "tokenizer.json").exists():
        return PreTrainedTokenizerFast.from_pretrained(path)
    tok = train_tokenizer(world, recipe)
    with AtomicDir(path.parent) as stage:
        tok.save_pretrained(stage.path)
        stage.publish(path.name, replace=True)
    return PreTrainedTokenizerFast.from_pretrained(path)


def gated_recall(quality: dict, role: str) -> dict[str, float]:
    """The recalls of a ``quality.json`` the gate applies to, by ``split/form``: the recipe's gated
    forms on every split, except the oracle's forget split (it never saw those people)."""
    gated = set(quality["recipe"]["gated_forms"])
    return {
        f"{split}/{form}": v
        for split, forms in quality["recall"].items()
        for form, v in forms.items()
        if form in gated and not (role == "oracle" and split == "forget")
    }


def check_quality(path: Path, role: str = "target", gate: float = QUALITY_GATE) -> dict:
    """The recall of a cached model per form and split; an error below the gate. The oracle never
    saw the forget people, so its forget split is not gated (it is the floor, not a failure)."""
    quality = json.loads((path / "quality.json").read_text())
    low = [f"{where}={v:.2f}" for where, v in gated_recall(quality, role).items() if v < gate]
    if low:
        raise UnlearnbenchError(
            f"the embedded model at {path} failed its quality gate (recall < {gate:.0%} in a trained form: "
            f"{', '.join(low)}); the benchmark would be meaningless — change the recipe in tasks/benchmarks/toy.yaml"
        )
    return quality


def train_model(
    world: World,
    recipe: ModelRecipe,
    tokenizer,
    exclude: set[int],
    progress: Progress = SILENT,
    description: str = "train model",
):
    import torch

    from ..batching import encode_example

    rng = random.Random(recipe.seed)
    examples = world.training_examples(exclude=exclude)
    examples += [ex for t in _pretraining_tasks(recipe) for ex in t.train]
    enc = [
        encode_example(tokenizer, ex.prompt, ex.target, add_eos=True, max_length=recipe.max_positions)
        for ex in examples
    ]
    threads = torch.get_num_threads()
    torch.set_num_threads(recipe.train_threads)
    try:
        return _train(
            model_config=_model_config(recipe, tokenizer),
            enc=enc,
            recipe=recipe,
            rng=rng,
            pad_id=tokenizer.pad_token_id,
            progress=progress,
            description=description,
        )
    finally:
        torch.set_num_threads(threads)


def _train(
    model_config, enc, recipe: ModelRecipe, rng: random.Random, pad_id: int, progress: Progress, description: str
):
    """The training loop: AdamW, one-cycle cosine schedule, loss on targets (prompts masked)."""
    import torch
    from transformers import LlamaForCausalLM

    from ..batching import collate, length_batches

    torch.manual_seed(recipe.seed)
    model = LlamaForCausalLM(model_config)
    model.train()
    decay = [p for n, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": recipe.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=recipe.lr,
        betas=(0.9, 0.98),
    )
    steps_per_epoch = math.ceil(len(enc) / recipe.batch_size)
    total = recipe.epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=recipe.lr, total_steps=total, pct_start=0.05, anneal_strategy="cos"
    )
    lengths = [len(e.ids) for e in enc]
    with progress.task(description, total) as bar:
        for epoch in range(recipe.epochs):
            running = 0.0
            for idx in length_batches(lengths, recipe.batch_size, rng):
                batch = collate([enc[i] for i in idx], pad_id)
                loss = model(**batch).loss
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                sched.step()
                running += loss.item()
                bar.advance()
            bar.update(epoch=epoch + 1, loss=running / steps_per_epoch)
    model.eval()
    return model


def measure_recall(model, tokenizer, world: World, forms, progress: Progress = SILENT) -> dict:
    """Mean ``correct`` per split and form (the quality gate's input)."""
    from ..registry import PROBES

    out: dict[str, dict[str, float]] = {}
    with progress.task("quality gate", len(forms) * 3) as bar:
        for split in ("forget", "neighbour", "retain"):
            out[split] = {}
            for form in forms:
                probe = PROBES.get(form)()
                items = world.probe_items(form, world.split_ids(split))
                rows = probe.score(model, tokenizer, items)
                out[split][form] = sum(r["correct"] for r in rows) / max(len(rows), 1)
                bar.advance()
    return out
