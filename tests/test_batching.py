"""unlearnbench.batching: the prompt/target split, padding, labels and attention masks."""

from __future__ import annotations

import pytest
import torch

torch.set_num_threads(1)

from helpers_tiny import eos_pad_tokenizer, tiny_tokenizer  # noqa: E402

from unlearnbench.batching import Encoded, collate, encode_example, pad_id_of  # noqa: E402

PAIRS = [
    ("Question: Where was Pelton Valemere born?\nAnswer:", " Quessa"),
    ("The birthplace of Alric Ashwood is", " Varnholm."),
    ("Text: The striker won the final.\nTopic:", " Sports"),
    ("x", "yz 123"),  # target with no leading space, may merge with the prompt
    ("Hello", " world, hello tokens!"),
]


@pytest.mark.parametrize("prompt,target", PAIRS)
def test_target_tokens_decode_to_target(prompt, target):
    tok = tiny_tokenizer()
    e = encode_example(tok, prompt, target)
    assert e.ids == tok(prompt + target)["input_ids"]
    assert e.ids[0] == tok.bos_token_id
    assert 1 <= e.n_prompt < len(e.ids)
    assert tok.decode(e.ids[e.n_prompt :]) == target
    assert tok.decode(e.ids[1 : e.n_prompt]) == prompt


def test_promptless_example_has_only_bos_as_prompt():
    tok = tiny_tokenizer()
    e = encode_example(tok, "", "Pelton Valemere was born in Quessa.")
    assert e.n_prompt == 1
    assert e.ids[0] == tok.bos_token_id
    assert tok.decode(e.ids[1:]) == "Pelton Valemere was born in Quessa."


def test_add_eos_appends_once():
    tok = tiny_tokenizer()
    plain = encode_example(tok, "Q:", " A")
    with_eos = encode_example(tok, "Q:", " A", add_eos=True)
    assert tok.eos_token_id not in plain.ids
    assert with_eos.ids == plain.ids + [tok.eos_token_id]
    assert with_eos.n_prompt == plain.n_prompt
    # a target that already ends in EOS text gets no second EOS
    again = encode_example(tok, "Q:", " A</s>", add_eos=True)
    assert again.ids[-1] == tok.eos_token_id and again.ids[-2] != tok.eos_token_id


def test_max_length_truncates_and_keeps_a_target_token():
    tok = tiny_tokenizer()
    prompt, target = "Question: Where was Pelton Valemere born?\nAnswer:", " Quessa and then more words"
    full = encode_example(tok, prompt, target)
    cut = encode_example(tok, prompt, target, max_length=full.n_prompt + 2)
    assert cut.ids == full.ids[: full.n_prompt + 2]
    assert cut.n_prompt == full.n_prompt
    # prompt longer than max_length: BOS + the prompt's end + the target's start (never a prompt
    # token labelled as target)
    short = encode_example(tok, prompt, target, max_length=9)
    tail = full.ids[full.n_prompt :]
    assert len(short.ids) == 9 and short.ids[0] == full.ids[0]
    assert short.ids[short.n_prompt :] == tail[: len(short.ids) - short.n_prompt]
    assert short.ids[1 : short.n_prompt] == full.ids[full.n_prompt - (short.n_prompt - 1) : full.n_prompt]


def test_collate_labels_and_mask_right_padding():
    a = Encoded([1, 10, 11, 12, 13], 3)
    b = Encoded([1, 20, 21], 1)
    out = collate([a, b], pad_id=0)
    assert out["input_ids"].tolist() == [[1, 10, 11, 12, 13], [1, 20, 21, 0, 0]]
    assert out["attention_mask"].tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]
    assert out["labels"].tolist() == [[-100, -100, -100, 12, 13], [-100, 20, 21, -100, -100]]


def test_collate_pad_equal_to_eos_keeps_real_eos():
    tok = eos_pad_tokenizer()
    eos = tok.eos_token_id
    pad = pad_id_of(tok)
    assert pad == eos
    a = encode_example(tok, "Q:", " A", add_eos=True)
    b = encode_example(tok, "Question: who?", " A much longer answer here", add_eos=True)
    assert a.ids[-1] == eos and len(a.ids) < len(b.ids)
    out = collate([a, b], pad)
    n = len(a.ids)
    row_ids, row_mask, row_lab = out["input_ids"][0], out["attention_mask"][0], out["labels"][0]
    assert row_mask[:n].tolist() == [1] * n  # the real EOS stays attended
    assert row_mask[n:].eq(0).all()
    assert row_lab[n - 1].item() == eos  # ... and labelled
    assert row_lab[n:].eq(-100).all()
    assert row_ids[n:].eq(eos).all()
    assert out["attention_mask"][1].eq(1).all() and out["labels"][1, -1].item() == eos


def test_collate_left_padding_puts_tokens_right():
    a = Encoded([1, 10, 11, 12], 2)
    b = Encoded([1, 20], 1)
    out = collate([a, b], pad_id=7, left_pad=True)
    assert out["input_ids"].tolist() == [[1, 10, 11, 12], [7, 7, 1, 20]]
    assert out["attention_mask"].tolist() == [[1, 1, 1, 1], [0, 0, 1, 1]]
    assert out["labels"].tolist() == [[-100, -100, 11, 12], [-100, -100, -100, 20]]


def test_pad_id_of_falls_back_to_eos():
    tok = tiny_tokenizer()
    assert pad_id_of(tok) == tok.pad_token_id == 0

    class NoPad:
        pad_token_id = None
        eos_token_id = 5

    assert pad_id_of(NoPad()) == 5


def test_fit_to_length_keeps_prompt_end_and_target_start():
    from unlearnbench.batching import fit_to_length

    ids = [1, 10, 11, 12, 13, 14, 20, 21, 22]  # BOS, 5 prompt tokens, 3 target tokens
    assert fit_to_length(ids, 6, 9, 1) == (ids, 6)  # fits: unchanged
    assert fit_to_length(ids, 6, 8, 1) == ([1, 10, 11, 12, 13, 14, 20, 21], 6)  # the target's tail goes
    # the prompt alone is too long: BOS + its last tokens + the target's start (at most half the room)
    assert fit_to_length(ids, 6, 5, 1) == ([1, 13, 14, 20, 21], 3)
    assert fit_to_length(ids, 6, 4, 1) == ([1, 13, 14, 20], 3)  # half of 3 rounds down
    assert fit_to_length(ids, 6, 5, None) == ([12, 13, 14, 20, 21], 3)  # no BOS to keep
    assert fit_to_length([1, 10, 11, 12, 20], 4, 3, 1) == ([1, 12, 20], 2)  # a one-token target stays


def test_encode_example_flags_cuts_without_transformers_warning():
    import copy
    import logging

    tok = copy.deepcopy(tiny_tokenizer())
    tok.deprecation_warnings.clear()  # transformers warns once per tokenizer
    long_prompt = " ".join(f"Pelton Valemere was born in Quessa ({i})." for i in range(60))
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    handler = Keep()
    logger = logging.getLogger("transformers.tokenization_utils_base")
    logger.addHandler(handler)
    try:
        e = encode_example(tok, long_prompt + "\nAnswer:", " Quessa", max_length=64)
        assert not records  # the harness cuts, so transformers is not asked to warn
        tok(long_prompt)  # ... which it would do otherwise (the check above can fail)
        assert any("Token indices sequence length" in m for m in records)
    finally:
        logger.removeHandler(handler)
    assert e.truncated and len(e.ids) == 64 and e.ids[0] == tok.bos_token_id
    assert tok.decode(e.ids[e.n_prompt :]) == " Quessa"
    assert tok.decode(e.ids[1 : e.n_prompt]).endswith("\nAnswer:")
    assert not encode_example(tok, "Q:", " A", max_length=64).truncated


def test_encode_all_says_once_how_many_were_cut(caplog):
    import logging

    from unlearnbench.batching import encode_all

    tok = tiny_tokenizer()
    pairs = [("Q:", " A"), ("Question: " + "where was he born? " * 20, " Quessa"), ("Q2:", " B")]
    with caplog.at_level(logging.WARNING, logger="unlearnbench.batching"):
        enc = encode_all(tok, pairs, what="probe x", max_length=32)
    assert [e.truncated for e in enc] == [False, True, False]
    assert [e.ids for e in enc] == [encode_example(tok, p, t, max_length=32).ids for p, t in pairs]
    assert [r.getMessage() for r in caplog.records] == [
        "probe x: 1 of 3 examples longer than 32 tokens were cut (prompts from the left, targets keep their start)"
    ]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="unlearnbench.batching"):
        encode_all(tok, pairs[:1], what="probe x", max_length=32)
    assert not caplog.records
