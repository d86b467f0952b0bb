"""Shared tiny fixtures for the fast unit tests (a plain module, not a conftest).

A byte-level BPE tokenizer trained on a micro world (8 people, vocab 300) and a random 2-layer
Llama (hidden 32). Everything is CPU-only, single-threaded and takes well under a second to build.
"""

from __future__ import annotations

import copy
import functools

import torch

torch.set_num_threads(1)

from unlearnbench.data.types import Example  # noqa: E402
from unlearnbench.toy.model import ModelRecipe, train_tokenizer  # noqa: E402
from unlearnbench.toy.world import WorldConfig, build_world  # noqa: E402


@functools.lru_cache(maxsize=None)
def tiny_world():
    return build_world(WorldConfig(n_entities=8, n_neighbours=2, n_retain_probe=2))


@functools.lru_cache(maxsize=None)
def _cached_tokenizer():
    return train_tokenizer(tiny_world(), ModelRecipe(vocab_size=300))


def tiny_tokenizer():
    """The shared tokenizer (pad <pad>=0, bos <s>=1, eos </s>=2). Do not mutate it."""
    return _cached_tokenizer()


def eos_pad_tokenizer():
    """A copy of the tokenizer that pads with EOS (as many real tokenizers do)."""
    tok = copy.deepcopy(_cached_tokenizer())
    tok.pad_token = tok.eos_token
    assert tok.pad_token_id == tok.eos_token_id
    return tok


def tiny_model(tokenizer=None, seed: int = 0, init_std: float = 0.2):
    """A random tiny Llama; ``init_std`` well above the usual 0.02 so that its next-token
    distributions are far from uniform (per-token NLLs differ, argmaxes are meaningful)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = tokenizer or tiny_tokenizer()
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=256,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        initializer_range=init_std,
        attn_implementation="eager",
    )
    model = LlamaForCausalLM(cfg).eval()
    model.generation_config.pad_token_id = tok.pad_token_id
    return model


def forget_examples() -> list[Example]:
    w = tiny_world()
    return w.unlearning_examples(w.forget_ids)


def retain_examples() -> list[Example]:
    w = tiny_world()
    return w.unlearning_examples(w.method_retain_ids())


def perturb_(model, scale: float = 0.05, seed: int = 1) -> None:
    """Add Gaussian noise to every weight in place."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * scale)


def state_copy(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def states_equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def encode_all(examples):
    """Encode examples with the tiny tokenizer (max length 256)."""
    from unlearnbench.batching import encode_example

    tok = tiny_tokenizer()
    return [encode_example(tok, e.prompt, e.target, max_length=256) for e in examples]


def make_batch(enc, idx):
    """A method Batch of the encoded examples at ``idx``."""
    from unlearnbench.batching import collate, pad_id_of
    from unlearnbench.methods.base import Batch

    return Batch(collate([enc[i] for i in idx], pad_id_of(tiny_tokenizer())), torch.tensor(idx))


def unlearn_data():
    from unlearnbench.data.types import UnlearnData

    return UnlearnData(forget_examples(), retain_examples(), tiny_tokenizer())


@torch.no_grad()
def seq_nll(model, e):
    """Summed target NLL and token count of one encoded example, one unbatched forward pass."""
    import torch.nn.functional as F

    ids = torch.tensor([e.ids])
    logits = model(input_ids=ids).logits[0].float()
    nll = F.cross_entropy(logits[e.n_prompt - 1 : -1], ids[0, e.n_prompt :], reduction="sum")
    return nll.item(), len(e.ids) - e.n_prompt
