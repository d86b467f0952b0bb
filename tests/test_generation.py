"""unlearnbench.generation: the HF reference backend against plain per-prompt ``model.generate``
calls (EOS, stop strings, batch sizes, no warnings), backend selection, and the vLLM backend's
plumbing with a fake ``vllm`` module (no GPU or vllm needed)."""

from __future__ import annotations

import logging
import sys
import types
import warnings
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)

from helpers_tiny import eos_pad_tokenizer, perturb_, tiny_model, tiny_tokenizer  # noqa: E402

from unlearnbench import (
    generation,
    inference,  # noqa: E402
)
from unlearnbench.batching import encode_example, pad_id_of  # noqa: E402
from unlearnbench.errors import UnlearnbenchError  # noqa: E402

PROMPTS = [
    "Q:",
    "Question: Where was Pelton Valemere born?\nAnswer:",
    "The birthplace of Alric is",
    "Text: The striker won the final.\nTopic:",
    "Pelton",
    "Review: a dull film.\nSentiment:",
]


@pytest.fixture(scope="module")
def tm():
    tok = tiny_tokenizer()
    return tiny_model(tok, seed=3), tok


@pytest.fixture(autouse=True)
def _no_backend_env(monkeypatch):
    monkeypatch.delenv(generation.ENV_VAR, raising=False)


def _plain_generate_ids(model, tok, ids, max_new_tokens, eos):
    """Reference: one unpadded prompt through transformers' ``model.generate`` greedy; the new ids
    up to (excluding) the first EOS."""
    with torch.no_grad():
        gen = model.generate(
            input_ids=torch.tensor([list(ids)]),
            attention_mask=torch.ones(1, len(ids), dtype=torch.long),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=pad_id_of(tok),
            eos_token_id=sorted(eos),
        )
    row = gen[0, len(ids) :].tolist()
    return row[: next((i for i, t in enumerate(row) if t in eos), len(row))]


def _reference(model, tok, prompts, max_new_tokens, stop=None, eos=None):
    """Per-prompt ``model.generate`` greedy texts (BOS added as ``encode_example`` does), cut at ``stop``."""
    eos = generation.eos_ids(model, tok) if eos is None else eos
    return [
        generation.cut_at_stop(
            tok.decode(
                _plain_generate_ids(model, tok, encode_example(tok, p, "").ids, max_new_tokens, eos),
                skip_special_tokens=True,
            ),
            stop,
        )
        for p in prompts
    ]


@pytest.mark.parametrize("tok_fn", [tiny_tokenizer, eos_pad_tokenizer], ids=["pad", "pad=eos"])
def test_hf_backend_equals_per_prompt_model_generate(tok_fn):
    tok = tok_fn()
    model = tiny_model(tok, seed=3)
    ref = _reference(model, tok, PROMPTS, 10)
    for bs in (1, 4, len(PROMPTS)):
        assert generation.HFBackend().generate(model, tok, PROMPTS, 10, batch_size=bs) == ref
    assert sum(len(r) for r in ref) > len(PROMPTS)  # something was generated


@pytest.mark.parametrize("tok_fn", [tiny_tokenizer, eos_pad_tokenizer], ids=["pad", "pad=eos"])
def test_hf_backend_stop_strings_equal_model_generate_cut(tok_fn):
    """Stop strings (one or several, MUSE's among them): the text is the plain generation cut at the
    first stop string, at batch 1 and at one batch of all prompts."""
    tok = tok_fn()
    model = tiny_model(tok, seed=3)
    full = _reference(model, tok, PROMPTS, 24)
    stops = [[t[i : i + n]] for t in full for i, n in ((3, 1), (5, 2), (8, 3)) if len(t) > i + n]
    stops += [["\n"], [" "], [full[0][4:6] + " "], [full[1][2:4], full[2][6:9]], ["\n\n", "Question", "Question:"]]
    assert len(stops) > 10
    hf = generation.HFBackend()
    cut_rows = 0
    for stop in stops:
        want = [generation.cut_at_stop(g, stop) for g in full]
        assert hf.generate(model, tok, PROMPTS, 24, batch_size=len(PROMPTS), stop=stop) == want, stop
        assert hf.generate(model, tok, PROMPTS, 24, batch_size=1, stop=stop) == want, stop
        cut_rows += sum(w != g for w, g in zip(want, full))
    assert cut_rows > 10  # the stops did cut rows short


def test_stop_string_spanning_the_prompt_does_not_stop(tm):
    """Only the generated text counts: a stop string made of the prompt's last character and the
    generation's first one must not stop the row (transformers' criterion alone would)."""
    model, tok = tm
    (full,) = _reference(model, tok, [PROMPTS[1]], 12)
    stop = [PROMPTS[1][-1] + full[:1]]
    assert stop[0] not in full and len(full) > 3
    from transformers import StopStringCriteria

    ids = encode_example(tok, PROMPTS[1], "").ids
    first = _plain_generate_ids(model, tok, ids, 1, {10**6})
    assert StopStringCriteria(tok, stop)(torch.tensor([ids + first]), None).item()  # on all the ids it fires
    assert generation.HFBackend().generate(model, tok, [PROMPTS[1]], 12, stop=stop) == [full]


def test_stop_criteria_stops_generation_early(tm):
    """The criterion ends ``model.generate`` itself once every row has its stop string."""
    model, tok = tm
    (full,) = _reference(model, tok, [PROMPTS[0]], 24)
    # an ASCII stop string (the random model also emits broken UTF-8, which token strings do not show)
    stop = [
        next(full[i : i + 2] for i in range(len(full) - 1) if full[i : i + 2].isascii() and full[i : i + 2].strip())
    ]
    ids = torch.tensor([encode_example(tok, PROMPTS[0], "").ids])
    with torch.no_grad():
        gen = model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            generation_config=generation.greedy_config(24, pad_id_of(tok), generation.eos_ids(model, tok)),
            stopping_criteria=[generation.StopInGenerated(tok, stop, ids.shape[1])],
        )
    text = tok.decode(gen[0, ids.shape[1] :].tolist(), skip_special_tokens=True)
    assert stop[0] in text and text.startswith(generation.cut_at_stop(full, stop) + stop[0])
    assert gen.shape[1] - ids.shape[1] < 24


def test_hf_backend_batch_invariant_float32(tm):
    model, tok = tm
    hf = generation.HFBackend()
    one = [hf.generate(model, tok, [p], 12, batch_size=1)[0] for p in PROMPTS]
    for bs in (2, 4, len(PROMPTS)):
        assert hf.generate(model, tok, PROMPTS, 12, batch_size=bs) == one
    assert any(one)


def test_hf_backend_restores_order_and_handles_edges(tm):
    model, tok = tm
    hf = generation.HFBackend()
    fwd = hf.generate(model, tok, PROMPTS, 6, batch_size=2)
    rev = hf.generate(model, tok, PROMPTS[::-1], 6, batch_size=2)
    assert rev == fwd[::-1]
    assert hf.generate(model, tok, [], 6) == []
    assert hf.generate(model, tok, PROMPTS[:2], 0) == ["", ""]


def test_eos_stops_a_row_early(tm):
    """Declare the second greedy token an EOS (in the model's generation config): the row must stop
    after one token, as a plain ``model.generate`` with that EOS does; an EOS pad id does not mask
    the prompt's own tokens."""
    for tok in (tiny_tokenizer(), eos_pad_tokenizer()):
        model = tiny_model(tok, seed=3)
        free = _plain_generate_ids(model, tok, encode_example(tok, "Q:", "").ids, 6, {10**6})
        assert len(free) == 6 and free[1] != free[0]
        model.generation_config.eos_token_id = free[1]
        assert free[1] in generation.eos_ids(model, tok)
        got = generation.HFBackend().generate(model, tok, ["Q:", PROMPTS[1]], 6, batch_size=2)
        assert got[0] == tok.decode(free[:1], skip_special_tokens=True)
        assert got == _reference(model, tok, ["Q:", PROMPTS[1]], 6)


def test_model_generation_config_does_not_leak_and_nothing_is_warned(tm):
    """A model shipped with sampling, a repetition penalty, n-gram blocking, a minimum length and
    suppressed tokens in its generation config still decodes by plain argmax; and a call warns
    nothing (no Python warning such as transformers' "`past_key_values` is deprecated", no log
    record from transformers, e.g. about generation flags or pad_token_id)."""
    import transformers

    model, tok = tm
    want = generation.HFBackend().generate(model, tok, PROMPTS, 10, batch_size=3, stop=["\n"])
    noisy = tiny_model(tok, seed=3)
    gc = noisy.generation_config
    gc.do_sample, gc.temperature, gc.top_p, gc.top_k = True, 0.7, 0.9, 5
    gc.repetition_penalty, gc.no_repeat_ngram_size, gc.min_length = 1.5, 2, 12
    gc.suppress_tokens = [tok.convert_tokens_to_ids(t) for t in tok.tokenize(want[0])[:1]]
    torch.manual_seed(0)  # the model config samples
    with torch.no_grad():  # the model's config matters: with it, generate decodes otherwise
        leaked = [
            tok.decode(noisy.generate(input_ids=torch.tensor([e]), max_new_tokens=10)[0, len(e) :].tolist())
            for e in (encode_example(tok, p, "").ids for p in PROMPTS)
        ]
    assert [generation.cut_at_stop(g, ["\n"]) for g in leaked] != want
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record)

    handler = Keep(level=logging.WARNING)
    logger = logging.getLogger("transformers")
    logger.addHandler(handler)
    transformers.utils.logging.warning_once.cache_clear()  # messages already warned once show again
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            for bs in (1, 3, 0):
                assert generation.HFBackend().generate(noisy, tok, PROMPTS, 10, batch_size=bs, stop=["\n"]) == want
    finally:
        logger.removeHandler(handler)
    assert [str(w.message) for w in caught] == []
    assert [r.getMessage() for r in records] == []


def test_stop_strings_cut_and_equal_full_generation_cut(tm):
    model, tok = tm
    hf = generation.HFBackend()
    full = hf.generate(model, tok, PROMPTS, 12, batch_size=3)
    stop = sorted({g[1:3] for g in full if len(g) >= 3})[:2]
    assert stop
    cut = hf.generate(model, tok, PROMPTS, 12, batch_size=3, stop=stop)
    assert cut == [generation.cut_at_stop(g, stop) for g in full]
    assert any(c != g for c, g in zip(cut, full))
    assert generation.cut_at_stop("a\n\nQuestion: b", ["Question", "\n\n"]) == "a"
    assert generation.cut_at_stop("abc", None) == generation.cut_at_stop("abc", ["", "x"]) == "abc"


def test_scoring_entry_point_dispatches_with_newline_default(tm, monkeypatch):
    model, tok = tm
    seen = {}

    class Spy(generation.HFBackend):
        def generate(self, *args, **kwargs):
            seen["args"] = (args, kwargs)
            return super().generate(*args, **kwargs)

    monkeypatch.setitem(generation._INSTANCES, "hf", Spy())
    out = inference.greedy_generate(model, tok, PROMPTS, max_new_tokens=8, batch_size=2)
    assert seen["args"][0][-1] == ("\n",)
    assert out == generation.HFBackend().generate(model, tok, PROMPTS, 8, 2, stop=("\n",))


# -- selection ---------------------------------------------------------------------------------


def test_resolve_names_and_errors(monkeypatch):
    assert generation.resolve() == "hf"
    assert generation.resolve("HF") == "hf"
    monkeypatch.setenv(generation.ENV_VAR, "bogus")
    with pytest.raises(UnlearnbenchError, match="unknown generation backend 'bogus'"):
        generation.resolve()
    with pytest.raises(UnlearnbenchError, match="choose one of: hf, vllm, auto"):
        generation.resolve("tgi")
    monkeypatch.setattr(generation, "vllm_installed", lambda: False)
    with pytest.raises(UnlearnbenchError, match=r"pip install 'unlearnbench\[vllm\]'"):
        generation.resolve("vllm")
    assert generation.resolve("auto") == "hf"
    monkeypatch.setattr(generation, "vllm_installed", lambda: True)
    monkeypatch.setattr(generation, "_cuda_available", lambda: False)
    with pytest.raises(UnlearnbenchError, match="needs a CUDA GPU") as e:
        generation.resolve("vllm")
    assert "\n" not in str(e.value)
    assert generation.resolve("auto") == "hf"
    monkeypatch.setattr(generation, "_cuda_available", lambda: True)
    assert generation.resolve("auto") == "vllm"
    assert generation.resolve("vllm") == "vllm"


def test_set_backend_validates_and_using_backend_restores(monkeypatch):
    monkeypatch.setattr(generation, "vllm_installed", lambda: False)
    with pytest.raises(UnlearnbenchError):
        generation.set_backend("vllm")
    assert generation.ENV_VAR not in __import__("os").environ
    with generation.using_backend("auto") as concrete:
        assert concrete == "hf"
        assert __import__("os").environ[generation.ENV_VAR] == "auto"
    assert generation.ENV_VAR not in __import__("os").environ


def test_cli_backend_flag_fails_in_one_line(monkeypatch, capsys):
    from unlearnbench import cli

    monkeypatch.setattr(generation, "vllm_installed", lambda: False)
    code = cli.main(["run", "--method", "gradascent", "--backend", "vllm"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and "vllm" in err


def test_vllm_not_imported_when_hf_or_auto_without_gpu(tm, tmp_path, monkeypatch):
    """A findable but poisoned ``vllm`` package: selecting hf (or auto without CUDA) must not import it."""
    pkg = tmp_path / "vllm"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("raise RuntimeError('vllm was imported')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "vllm", raising=False)
    assert generation.vllm_installed()
    model, tok = tm
    monkeypatch.setattr(generation, "_cuda_available", lambda: False)
    for name in ("hf", "auto"):
        monkeypatch.setenv(generation.ENV_VAR, name)
        assert inference.greedy_generate(model, tok, PROMPTS[:2], max_new_tokens=3)
        assert "vllm" not in sys.modules


# -- the vLLM backend with a fake vllm module ---------------------------------------------------


def _fake_vllm(log: dict):
    """A stand-in for vllm: LLM(path) loads the saved checkpoint with unlearnbench's loader and
    generates with plain per-prompt ``model.generate``, honouring max_tokens and stop like vLLM does."""
    from unlearnbench.models import load_model

    mod = types.ModuleType("vllm")

    class SamplingParams:
        def __init__(self, **kw):
            self.kw = kw
            log.setdefault("params", []).append(kw)

    class LLM:
        def __init__(self, path, **kw):
            assert (Path(path) / "model.safetensors").exists() and (Path(path) / "config.json").exists()
            log.setdefault("inits", []).append((path, kw))
            self.lm = load_model(path, device="cpu", dtype="float32")

        def generate(self, requests, params, use_tqdm=True):
            log.setdefault("requests", []).append(requests)
            tok = self.lm.tokenizer
            eos = generation.eos_ids(self.lm.model, tok)
            out = []
            for r in requests:
                ids = _plain_generate_ids(self.lm.model, tok, r["prompt_token_ids"], params.kw["max_tokens"], eos)
                text = generation.cut_at_stop(tok.decode(ids, skip_special_tokens=True), params.kw["stop"])
                out.append(types.SimpleNamespace(outputs=[types.SimpleNamespace(text=text)]))
            return out

    mod.LLM, mod.SamplingParams = LLM, SamplingParams
    return mod


def test_vllm_backend_saves_loads_by_path_and_reuses(tm, monkeypatch):
    model, tok = tiny_model(tiny_tokenizer(), seed=5), tiny_tokenizer()
    log: dict = {}
    monkeypatch.setitem(sys.modules, "vllm", _fake_vllm(log))
    backend = generation.VLLMBackend()
    try:
        stop = ["\n", "Question"]
        got = backend.generate(model, tok, PROMPTS, 9, batch_size=2, stop=stop)
        assert got == generation.HFBackend().generate(model, tok, PROMPTS, 9, stop=stop)
        ((path, kw),) = log["inits"]
        assert kw["dtype"] == "float32" and kw["enforce_eager"] is True and kw["seed"] == 0
        assert log["params"][-1] == {"temperature": 0.0, "max_tokens": 9, "stop": stop}
        assert log["requests"][-1] == [{"prompt_token_ids": encode_example(tok, p, "").ids} for p in PROMPTS]
        backend.generate(model, tok, PROMPTS[:2], 4)  # same weights: engine reused
        assert len(log["inits"]) == 1 and log["params"][-1]["stop"] is None
        perturb_(model, scale=0.05)  # new weights: new directory, new engine, old one removed
        again = backend.generate(model, tok, PROMPTS, 9, stop=stop)
        assert len(log["inits"]) == 2 and log["inits"][1][0] != path
        assert not Path(path).exists() and Path(log["inits"][1][0]).exists()
        assert again == generation.HFBackend().generate(model, tok, PROMPTS, 9, stop=stop)
        assert backend.generate(model, tok, [], 4) == []
    finally:
        backend.close()
    assert not Path(log["inits"][1][0]).exists()


def test_vllm_backend_merges_lora_before_saving(tm, monkeypatch):
    from peft import LoraConfig, get_peft_model

    base = tiny_model(tiny_tokenizer(), seed=6)
    tok = tiny_tokenizer()
    peft_model = get_peft_model(
        base, LoraConfig(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    )
    log: dict = {}
    monkeypatch.setitem(sys.modules, "vllm", _fake_vllm(log))
    backend = generation.VLLMBackend()
    try:
        got = backend.generate(peft_model, tok, PROMPTS, 6)
    finally:
        backend.close()
    assert got == generation.HFBackend().generate(peft_model, tok, PROMPTS, 6)
    assert hasattr(peft_model, "peft_config")  # the caller's model is left as it was


def test_vllm_dispatch_through_scoring(tm, monkeypatch):
    model, tok = tm
    log: dict = {}
    monkeypatch.setitem(sys.modules, "vllm", _fake_vllm(log))
    monkeypatch.setattr(generation, "vllm_installed", lambda: True)
    monkeypatch.setattr(generation, "_cuda_available", lambda: True)
    monkeypatch.setitem(generation._INSTANCES, "vllm", generation.VLLMBackend())
    monkeypatch.setenv(generation.ENV_VAR, "auto")
    try:
        out = inference.greedy_generate(model, tok, PROMPTS, max_new_tokens=5)
    finally:
        generation._INSTANCES["vllm"].close()
    assert len(log["inits"]) == 1 and log["params"][-1]["stop"] == ["\n"]
    assert out == generation.HFBackend().generate(model, tok, PROMPTS, 5, stop=("\n",))


def test_weight_fingerprint_tracks_weights(tm):
    _, tok = tm
    a, b = tiny_model(tok, seed=3), tiny_model(tok, seed=3)
    assert generation.weight_fingerprint(a) == generation.weight_fingerprint(b)
    with torch.no_grad():
        b.model.norm.weight[0] += 1e-3
    assert generation.weight_fingerprint(a) != generation.weight_fingerprint(b)


def test_auto_batch_size_follows_the_kv_cache(tm):
    model, tok = tm
    cfg = model.config
    per_token = generation.kv_bytes_per_token(model)
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    assert per_token == 2 * cfg.num_hidden_layers * cfg.num_key_value_heads * head_dim * 4  # float32
    assert generation.auto_batch_size(model, 10**9) == 1
    assert generation.auto_batch_size(model, 10) == generation.AUTO_MAX_BATCH
    k = generation.AUTO_KV_BYTES // (per_token * 10000)
    assert 1 < k < generation.AUTO_MAX_BATCH and generation.auto_batch_size(model, 10000) == k
    # batch size 0 generates the same text as any fixed batch size (float32)
    hf = generation.HFBackend()
    assert hf.generate(model, tok, PROMPTS, 9, batch_size=0) == hf.generate(model, tok, PROMPTS, 9, batch_size=2)

    class NoConfig(torch.nn.Module):
        pass

    assert generation.kv_bytes_per_token(NoConfig()) is None and generation.auto_batch_size(NoConfig(), 5, 7) == 7
