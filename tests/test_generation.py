"""unlearnbench.generation: the HF reference backend against model.generate, backend selection,
and the vLLM backend's plumbing with a fake ``vllm`` module (no GPU or vllm needed)."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)

from helpers_tiny import eos_pad_tokenizer, perturb_, tiny_model, tiny_tokenizer  # noqa: E402

from unlearnbench import (
    generation,
    inference,  # noqa: E402
)
from unlearnbench.batching import collate, encode_example, pad_id_of  # noqa: E402
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


def _hf_generate_ids(model, tok, prompts, max_new_tokens, eos):
    """Reference: transformers' model.generate greedy on one left-padded batch; new ids per row
    up to (excluding) the first EOS."""
    enc = [encode_example(tok, p, "") for p in prompts]
    batch = collate(enc, pad_id_of(tok), left_pad=True)
    with torch.no_grad():
        gen = model.generate(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=pad_id_of(tok),
            eos_token_id=sorted(eos),
        )
    width = batch["input_ids"].shape[1]
    rows = []
    for r in gen[:, width:].tolist():
        cut = next((i for i, t in enumerate(r) if t in eos), len(r))
        rows.append(r[:cut])
    return rows


@pytest.mark.parametrize("tok_fn", [tiny_tokenizer, eos_pad_tokenizer], ids=["pad", "pad=eos"])
def test_hf_backend_equals_model_generate(tok_fn):
    tok = tok_fn()
    model = tiny_model(tok, seed=3)
    eos = generation.eos_ids(model, tok)
    ref = _hf_generate_ids(model, tok, PROMPTS, 10, eos)
    got = generation.greedy_tokens(model, [encode_example(tok, p, "").ids for p in PROMPTS], 10, pad_id_of(tok), eos)
    assert got == ref
    texts = generation.HFBackend().generate(model, tok, PROMPTS, 10, batch_size=len(PROMPTS))
    assert texts == [tok.decode(r, skip_special_tokens=True) for r in ref]
    assert sum(len(r) for r in ref) > len(PROMPTS)  # something was generated


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
    """Make EOS the greedy choice after the prompt's first generated token: the row must stop there,
    while an EOS pad id does not mask the prompt's own tokens."""
    _, tok = tm
    model = tiny_model(tok, seed=3)
    free = generation.greedy_tokens(model, [encode_example(tok, "Q:", "").ids], 6, pad_id_of(tok), {10**6})[0]
    assert len(free) == 6
    # declare the second generated token to be an EOS: generation must stop after one token
    stopped = generation.greedy_tokens(model, [encode_example(tok, "Q:", "").ids], 6, pad_id_of(tok), {free[1]})[0]
    assert stopped == free[:1]
    model.generation_config.eos_token_id = free[1]
    assert free[1] in generation.eos_ids(model, tok)


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
    generates with the HF backend, honouring max_tokens and stop like vLLM does."""
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
                ids = generation.greedy_tokens(
                    self.lm.model, [r["prompt_token_ids"]], params.kw["max_tokens"], pad_id_of(tok), eos
                )[0]
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


def _first_stop_step(tok, row, stop):
    """Brute force: the number of tokens after which the row's decoded text first holds a stop string."""
    for k in range(1, len(row) + 1):
        if any(s in tok.decode(row[:k], skip_special_tokens=True) for s in stop):
            return k
    return len(row)


def test_stop_check_stops_where_decoding_every_step_does(tm):
    """StopCheck decodes a row only after tokens that can end a stop string; every row must stop
    after the same token as when the whole row is decoded after every token (the old rule)."""
    model, tok = tm
    enc = [encode_example(tok, p, "").ids for p in PROMPTS]
    free = generation.greedy_tokens(model, enc, 24, pad_id_of(tok), {10**6})
    texts = [tok.decode(r, skip_special_tokens=True) for r in free]
    stops = [[t[i : i + n]] for t in texts for i, n in ((3, 1), (5, 2), (8, 3)) if len(t) > i + n]
    stops += [["\n"], [" "], [texts[0][4:6] + " "], [texts[1][2:4], texts[2][6:9]]]
    assert len(stops) > 10
    checked = 0
    for stop in stops:
        got = generation.greedy_tokens(model, enc, 24, pad_id_of(tok), {10**6}, check=generation.StopCheck(tok, stop))
        for row, g in zip(free, got):
            assert g == row[: _first_stop_step(tok, row, stop)], stop
            checked += len(g) < len(row)
    assert checked > 10  # the stops did cut rows short


class _BytesTokenizer:
    """Token i is the bytes ``pieces[i]``; decoding joins them and replaces broken UTF-8; with
    ``strip_first`` the decoded text loses one leading space (as SentencePiece decoders do)."""

    def __init__(self, pieces, strip_first=False):
        self.pieces, self.strip_first = pieces, strip_first

    def decode(self, ids, skip_special_tokens=True):
        text = b"".join(self.pieces[i] for i in ids).decode("utf-8", errors="replace")
        return text[1:] if self.strip_first and text.startswith(" ") else text


def test_stop_check_handles_split_characters_and_stripped_spaces():
    # "。" is three bytes, one token each: the last one alone decodes to U+FFFD, so it is checked
    tok = _BytesTokenizer([b"a", b"\xe3", b"\x80", b"\x82", b" b", b" "])
    check = generation.StopCheck(tok, ["。"])
    assert [check.stopped([0, 1, 2, 3][:k]) for k in range(1, 5)] == [False, False, False, True]
    assert not check.may_end(0) and check.may_end(3)
    # SentencePiece-like: a token's leading space vanishes when it is decoded first; a stop string
    # ending in a space makes every token a candidate
    sp = _BytesTokenizer([b"a", b" b", b" "], strip_first=True)
    assert generation.StopCheck(sp, ["b "]).always
    assert generation.StopCheck(sp, ["b "]).stopped([0, 1, 2])
    assert generation.StopCheck(sp, ["a b"]).stopped([0, 1])  # " b" alone decodes to "b": still a candidate
    assert not generation.StopCheck(sp, ["a b"]).stopped([1, 0])


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
