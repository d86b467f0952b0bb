"""The finetune:<task> relearning attack: trains a copy, evaluates every epoch, never touches
the model it is handed (full fine-tuning and LoRA)."""

from __future__ import annotations

import pytest
import torch

torch.set_num_threads(1)

from helpers_tiny import state_copy, states_equal, tiny_model, tiny_tokenizer  # noqa: E402

from unlearnbench.attacks.finetune import FinetuneAttack, FinetuneConfig  # noqa: E402
from unlearnbench.errors import UnlearnbenchError  # noqa: E402
from unlearnbench.toy.tasks import build_task  # noqa: E402


@pytest.fixture(scope="module")
def task():
    return build_task("topic", n_train=16, n_test=4)


class Recorder:
    """An ``evaluate`` callback that keeps the checkpoint names and a copy of each model's state."""

    def __init__(self):
        self.calls: list[tuple[str, int]] = []
        self.states: list[dict[str, torch.Tensor]] = []
        self.models: list[object] = []
        self.training: list[bool] = []

    def __call__(self, checkpoint, step, model):
        self.calls.append((checkpoint, step))
        self.states.append(state_copy(model))
        self.models.append(model)
        self.training.append(model.training)


def test_full_finetune_leaves_input_untouched_and_evaluates_each_epoch(task):
    model, tok = tiny_model(), tiny_tokenizer()
    before = state_copy(model)
    rec = Recorder()
    out = FinetuneAttack(FinetuneConfig(epochs=3, batch_size=8, lr=1e-2), arg="topic").run(model, tok, task, rec)
    assert states_equal(before, state_copy(model))
    assert rec.calls == [("epoch=0", 0), ("epoch=1", 1), ("epoch=2", 2), ("epoch=3", 3)]
    assert out["steps"] == 3 * 2
    assert len(out["epoch_train_seconds"]) == 3
    assert out["final_loss"] is not None and out["final_loss"] == out["final_loss"]
    assert all(m is not model for m in rec.models)
    assert not any(rec.training)  # evaluated in eval mode
    assert states_equal(rec.states[0], before)  # epoch 0 = the model handed in
    assert not states_equal(rec.states[1], rec.states[0])  # and training did change the copy
    assert not states_equal(rec.states[3], rec.states[1])


def test_max_steps_is_honoured(task):
    model, tok = tiny_model(), tiny_tokenizer()
    rec = Recorder()
    cfg = FinetuneConfig(epochs=3, batch_size=4, max_steps=5, lr=1e-2)  # 4 steps per epoch
    out = FinetuneAttack(cfg, arg="topic").run(model, tok, task, rec)
    assert out["steps"] == 5
    assert [c for c, _ in rec.calls] == ["epoch=0", "epoch=1", "epoch=2"]


def test_n_train_limits_the_data(task):
    model, tok = tiny_model(), tiny_tokenizer()
    out = FinetuneAttack(FinetuneConfig(epochs=2, batch_size=4, n_train=6), arg="topic").run(
        model, tok, task, lambda *a: None
    )
    assert out["steps"] == 2 * 2


def test_lora_trains_only_adapters_and_leaves_input_untouched(task):
    pytest.importorskip("peft")
    model, tok = tiny_model(), tiny_tokenizer()
    before = state_copy(model)
    rec = Recorder()
    out = FinetuneAttack(
        FinetuneConfig(epochs=2, batch_size=8, lr=1e-2, lora=True, lora_r=2, lora_alpha=4), arg="topic"
    ).run(model, tok, task, rec)
    assert states_equal(before, state_copy(model))
    assert [c for c, _ in rec.calls] == ["epoch=0", "epoch=1", "epoch=2"]
    assert out["steps"] == 4
    work = rec.models[-1]
    trainable = [n for n, p in work.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    first, last = rec.states[0], rec.states[-1]
    assert first.keys() == last.keys()
    changed = [k for k in first if not torch.equal(first[k], last[k])]
    assert changed and all("lora_" in k for k in changed)
    # the base weights inside the adapted copy are still the input model's
    base = {
        k.replace("base_model.model.", "").replace(".base_layer", ""): v for k, v in last.items() if "lora_" not in k
    }
    assert all(torch.equal(before[k], base[k]) for k in before if k in base)
    assert sum(k in base for k in before) >= len(before) - 1  # (tied lm_head may be absent)


def test_attack_needs_a_task_and_valid_config():
    with pytest.raises(UnlearnbenchError):
        FinetuneAttack(FinetuneConfig(), arg=None)
    for bad in ({"epochs": 0}, {"lr": 0.0}, {"batch_size": 0}):
        with pytest.raises(ValueError):
            FinetuneConfig(**bad)


def test_full_finetune_trains_weights_frozen_in_the_input(task):
    model, tok = tiny_model(), tiny_tokenizer()
    model.model.embed_tokens.weight.requires_grad_(False)  # e.g. left frozen by an unlearning method
    rec = Recorder()
    FinetuneAttack(FinetuneConfig(epochs=1, batch_size=8, lr=1e-2), arg="topic").run(model, tok, task, rec)
    assert not model.model.embed_tokens.weight.requires_grad  # the input's flags are untouched
    key = "model.embed_tokens.weight"
    assert not torch.equal(rec.states[0][key], rec.states[-1][key])
    assert all(p.requires_grad for p in rec.models[-1].parameters())


def test_lora_finds_the_projections_of_a_gpt2_style_model():
    """GPT-2 names its projections c_attn/c_proj/c_fc (Conv1D): LoRA must adapt them, not fail."""
    from transformers import GPT2Config, GPT2LMHeadModel

    from unlearnbench.attacks.finetune import trainable_copy

    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=64, n_positions=32))
    work = trainable_copy(model, lora=True, lora_r=2, lora_alpha=4)
    adapted = {n.split(".lora_")[0].rsplit(".", 1)[-1] for n, p in work.named_parameters() if p.requires_grad}
    assert adapted == {"c_attn", "c_proj", "c_fc"}
