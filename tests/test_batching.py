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
