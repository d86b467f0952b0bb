"""MUSE benchmarks: Min-K%, AUC and PrivLeak, the data layouts (flat/nested/hub snapshot/hub id and
the real-format samples), missing-data errors, corpus chunking and the three probes on a tiny model."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)

from helpers_tiny import tiny_model, tiny_tokenizer  # noqa: E402

from unlearnbench import metrics  # noqa: E402
from unlearnbench.benchmarks.muse import MuseBooks, MuseConfig, MuseNews, icl_prefix  # noqa: E402
from unlearnbench.errors import UnlearnbenchError  # noqa: E402

SAMPLES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "samples" / "muse_news"
ARTICLE = "The council said the bridge over the river would reopen in May after repairs. "


def _qa(tag: str, n: int) -> list[dict]:
    return [{"question": f"{tag} question {i}?", "answer": f"{tag} answer {i}"} for i in range(n)]


def write_flat(root: Path, *, skip: tuple[str, ...] = (), retain_icl: bool = False) -> Path:
    """The older MUSE file set (as in the samples), plus raw text files."""
    root.mkdir(parents=True, exist_ok=True)
    files = {
        "knowmem_forget_qa.json": _qa("forget", 4),
        "knowmem_forget_qa_icl.json": _qa("icl", 12),
        "knowmem_retain2_qa.json": _qa("retain", 3),
        "verbmem_forget.json": [{"prompt": ARTICLE * 2, "gt": ARTICLE} for _ in range(2)],
        "privleak_forget.json": [ARTICLE + str(i) for i in range(3)],
        "privleak_holdout.json": ["Apples grew in the valley. " + str(i) for i in range(3)],
    }
    if retain_icl:
        files["knowmem_retain2_qa_icl.json"] = _qa("ricl", 2)
    for name, value in files.items():
        if name not in skip:
            (root / name).write_text(json.dumps(value))
    if "raw_forget.txt" not in skip:
        (root / "raw_forget.txt").write_text(ARTICLE * 30 + "\n\n" + ARTICLE * 10)
    if "raw_retain1.txt" not in skip:
        (root / "raw_retain1.txt").write_text("The team won the match on Saturday. " * 20)
    return root


def bench(root, cls=MuseNews, **kw):
    return cls(MuseConfig(model="unused-model", data=str(root), **kw))


# -- metrics --------------------------------------------------------------------------------------


def test_min_k_percent_takes_the_lowest_fraction():
    lp = [-1.0, -2.0, -3.0, -4.0, -5.0]
    assert metrics.min_k_percent(lp, 0.4) == pytest.approx(4.5)  # int(5 * 0.4) = 2 lowest: -5, -4
    # MUSE: int(5 * 0.1) = 0 tokens -> NaN (the old rule took the one lowest token: 5.0)
    assert math.isnan(metrics.min_k_percent(lp, 0.1))
    assert math.isnan(metrics.min_k_percent([-1.0, -2.0], 0.4))  # under 3 tokens at K = 40 %
    assert metrics.min_k_percent([-1.0, -2.0, -3.0], 0.4) == pytest.approx(3.0)
    assert metrics.min_k_percent(lp, 1.0) == pytest.approx(3.0)  # all: the mean NLL
    assert math.isnan(metrics.min_k_percent([], 0.4))
    with pytest.raises(ValueError):
        metrics.min_k_percent(lp, 0.0)


def test_mia_auc_direction_ties_and_sklearn_agreement():
    assert metrics.mia_auc([1.0, 2.0], [3.0, 4.0]) == 0.0  # forget far more familiar: the target model
    assert metrics.mia_auc([3.0, 4.0], [1.0, 2.0]) == 1.0
    assert metrics.mia_auc([1.0, 1.0], [1.0, 1.0]) == 0.5
    assert math.isnan(metrics.mia_auc([], [1.0]))
    sk = pytest.importorskip("sklearn.metrics")
    g = torch.Generator().manual_seed(0)
    f, h = torch.rand(13, generator=g).tolist(), (torch.rand(9, generator=g) + 0.2).tolist()
    h[0] = f[0]  # one tie
    # MUSE: labels forget 0 / holdout 1, ranked by minus the Min-K% score
    expected = sk.roc_auc_score([0] * len(f) + [1] * len(h), [-x for x in f + h])
    assert metrics.mia_auc(f, h) == pytest.approx(expected)


def test_privleak_formula():
    assert metrics.privleak(0.4772, 0.4772) == pytest.approx(0.0)
    assert metrics.privleak(0.0, 0.4772) == pytest.approx(-100.0)
    assert metrics.privleak(0.25, 0.5) == pytest.approx(-50.0)
    assert math.isnan(metrics.privleak(float("nan"), 0.5))


def test_summary_privleak_uses_the_oracle_else_the_constant():
    from unlearnbench.report.summary import _privleak

    with_oracle = _privleak(
        {"oracle": {"auc": 0.5, "auc_retrain": 0.4772}, "unlearned": {"auc": 0.25, "auc_retrain": 0.4772}}
    )
    assert with_oracle["unlearned"] == {"auc": 0.25, "auc_retrain": 0.5, "reference": "oracle", "privleak": -50.0}
    alone = _privleak({"base": {"auc": 0.0, "auc_retrain": 0.4772}})
    assert alone["base"]["reference"] == "constant" and alone["base"]["privleak"] == -100.0


# -- config and models ----------------------------------------------------------------------------


def test_yaml_models_constants_and_oracle_pairing(tmp_path):
    news = MuseNews()
    assert news.model_source == "muse-bench/MUSE-News_target" and news.oracle_source == "muse-bench/MUSE-News_retrain"
    assert news.auc_retrain == pytest.approx(0.4772) and MuseBooks().auc_retrain == pytest.approx(0.5393)
    assert news.default_probes == ("verbmem", "knowmem", "privleak")
    assert news.defaults("methods", "npo")["lr"] == pytest.approx(1e-5)
    # a user model is not paired with the YAML's retrain model
    root = write_flat(tmp_path / "d")
    assert not bench(root).has_oracle
    assert bench(root, oracle="some/oracle").oracle_source == "some/oracle"


# -- layouts --------------------------------------------------------------------------------------


def test_flat_layout_items_and_icl_prefix(tmp_path):
    b = bench(write_flat(tmp_path / "d"))
    verb = b.probe_items("verbmem", "forget")
    assert [it.item_id for it in verb] == ["verbmem-0", "verbmem-1"] and verb[0].answer == ARTICLE
    assert b.probe_items("verbmem", "retain") == [] and b.probe_items("verbmem", "holdout") == []
    know = b.probe_items("knowmem", "forget")
    assert len(know) == 4
    prefix = icl_prefix((f"icl question {i}?", f"icl answer {i}") for i in range(10))  # 10 shots of 12
    # MUSE's knowmem prompt ends "Answer: " (trailing space); version 1 had none
    assert know[1].prompt == prefix + "Question: forget question 1?\nAnswer: "
    old = bench(write_flat(tmp_path / "d2"), knowmem_answer_space=False).probe_items("knowmem", "forget")
    assert old[1].prompt == prefix + "Question: forget question 1?\nAnswer:"
    assert know[1].prompt.count("Question:") == 11 and know[1].answer == "forget answer 1"
    # no retain ICL file in the older layout: the forget ICL examples stand in
    retain = b.probe_items("knowmem", "retain")
    assert len(retain) == 3 and retain[0].prompt.startswith(prefix)
    assert b.probe_items("knowmem", "holdout") == []
    assert [len(b.probe_items("privleak", s)) for s in ("forget", "retain", "holdout")] == [3, 0, 3]
    assert b.probe_items("privleak", "holdout")[0].answer.startswith("Apples")
    with pytest.raises(UnlearnbenchError, match="no probe form 'bio'"):
        b.probe_items("bio", "forget")


def test_text_items_have_no_icl_prefix(tmp_path):
    b = bench(write_flat(tmp_path / "d", retain_icl=True), icl_shots=2, limit=2)
    items = b.text_items("forget")
    assert [(it.item_id, it.prompt, it.answer) for it in items] == [
        ("qa-forget-0", "Question: forget question 0?\nAnswer:", "forget answer 0"),
        ("qa-forget-1", "Question: forget question 1?\nAnswer:", "forget answer 1"),
    ]
    assert len(b.text_items("retain")) == 2 and b.text_items("holdout") == []
    # the retain ICL file is used where present, with icl_shots examples
    assert b.probe_items("knowmem", "retain")[0].prompt.startswith(
        icl_prefix([("ricl question 0?", "ricl answer 0"), ("ricl question 1?", "ricl answer 1")])
    )


def test_nested_layout_with_jsonl_raw(tmp_path):
    root = tmp_path / "news"
    for sub in ("knowmem", "verbmem", "privleak", "raw"):
        (root / sub).mkdir(parents=True)
    (root / "knowmem/forget_qa.json").write_text(json.dumps(_qa("f", 2)))
    (root / "knowmem/forget_qa_icl.json").write_text(json.dumps(_qa("i", 2)))
    (root / "knowmem/retain_qa.json").write_text(json.dumps(_qa("r", 2)))
    (root / "verbmem/forget.json").write_text(json.dumps([{"prompt": "a b", "gt": "c d"}]))
    (root / "privleak/forget.json").write_text(json.dumps(["x"]))
    (root / "privleak/holdout.json").write_text(json.dumps(["y", "z"]))
    (root / "raw/forget.jsonl").write_text("\n".join(json.dumps({"text": ARTICLE * 5}) for _ in range(2)))
    (root / "raw/retain1.txt").write_text(ARTICLE * 5)
    b = bench(root)
    assert len(b.probe_items("knowmem", "retain")) == 2
    assert [len(b.probe_items("privleak", s)) for s in ("forget", "holdout")] == [1, 2]
    assert len(b.part("raw_forget")) == 2 and len(b.part("raw_retain")) == 1


def test_hub_snapshot_parquet_layout(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    root = tmp_path / "snapshot"
    tables = {
        "raw/forget": {"text": [ARTICLE * 8, ARTICLE * 3]},
        "raw/retain1": {"text": [ARTICLE * 4]},
        "verbmem/forget": {"prompt": ["p0", "p1"], "gt": ["g0", "g1"]},
        "knowmem/forget_qa": {"question": ["q0"], "answer": ["a0"]},
        "knowmem/forget_qa_icl": {"question": ["iq"], "answer": ["ia"]},
        "knowmem/retain_qa": {"question": ["rq"], "answer": ["ra"]},
        "knowmem/retain_qa_icl": {"question": ["riq"], "answer": ["ria"]},
        "privleak/forget": {"text": ["f0", "f1"]},
        "privleak/holdout": {"text": ["h0"]},
    }
    for stem, cols in tables.items():
        (root / stem).parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table(cols), root / f"{stem}-00000-of-00001.parquet")
    b = bench(root)
    assert [it.answer for it in b.probe_items("verbmem", "forget")] == ["g0", "g1"]
    assert b.probe_items("knowmem", "retain")[0].prompt == "Question: riq\nAnswer: ria\n\nQuestion: rq\nAnswer: "
    assert [it.answer for it in b.probe_items("privleak", "forget")] == ["f0", "f1"]


def test_hub_ids_per_part(monkeypatch):
    """Without data= every part is read from the YAML's hub dataset, config and split."""
    import unlearnbench.data.loading as loading

    calls = []

    def fake(source, *, config=None, split=None, columns=None, **_):
        calls.append((source, config, split))
        return [{c: f"{c}-{split}" for c in columns}]

    monkeypatch.setattr(loading, "load_records", fake)
    b = MuseBooks()
    b.probe_items("knowmem", "retain")
    b.probe_items("verbmem", "forget")
    b.probe_items("privleak", "holdout")
    b.part("raw_retain")
    assert calls == [
        ("muse-bench/MUSE-Books", "knowmem", "retain_qa"),
        ("muse-bench/MUSE-Books", "knowmem", "retain_qa_icl"),
        ("muse-bench/MUSE-Books", "verbmem", "forget"),
        ("muse-bench/MUSE-Books", "privleak", "holdout"),
        ("muse-bench/MUSE-Books", "raw", "retain1"),
    ]


@pytest.mark.skipif(not SAMPLES.is_dir(), reason=f"samples folder absent: {SAMPLES}")
def test_real_format_samples(tmp_path):
    """The real MUSE-News rows (older 'bbc' file names), linked under their plain names."""
    root = tmp_path / "samples"
    root.mkdir()
    for f in SAMPLES.glob("*.sample.json"):
        (root / f.name.replace(".sample", "")).symlink_to(f)
    with pytest.raises(UnlearnbenchError, match=r"'raw_forget'.*raw_forget\.txt.*muse-bench/MUSE-News"):
        bench(root)
    (root / "raw_forget.txt").write_text(ARTICLE * 20)
    (root / "raw_retain1.txt").write_text(ARTICLE * 20)
    b = bench(root)
    know = b.probe_items("knowmem", "forget")
    assert len(know) == 10 and know[0].question == "What year did the Orkney Islands become part of Scotland?"
    assert (
        know[0].answer == "1472" and know[0].prompt.count("\nAnswer: ") == 11 and know[0].prompt.endswith("\nAnswer: ")
    )
    assert len(b.probe_items("knowmem", "retain")) == 10
    verb = b.probe_items("verbmem", "forget")
    assert verb and all(it.prompt and it.answer for it in verb)
    assert all(len(it.answer) > 100 for it in b.probe_items("privleak", "holdout"))


# -- errors ---------------------------------------------------------------------------------------


def test_missing_probe_part_names_the_file_and_both_sources(tmp_path):
    b = bench(write_flat(tmp_path / "d", skip=("privleak_holdout.json",)))
    with pytest.raises(UnlearnbenchError) as e:
        b.probe_items("privleak", "holdout")
    msg = str(e.value)
    assert "\n" not in msg and "'privleak_holdout'" in msg and "privleak_holdout.json" in msg
    assert "muse-bench/MUSE-News config privleak split holdout" in msg


def test_missing_raw_corpus_and_bad_folder_fail_at_construction(tmp_path):
    with pytest.raises(UnlearnbenchError, match=r"'raw_retain'.*raw_retain1\.txt"):
        bench(write_flat(tmp_path / "d", skip=("raw_retain1.txt",)))
    with pytest.raises(UnlearnbenchError, match="is not a folder"):
        bench(tmp_path / "nowhere")


def test_missing_column_is_one_line(tmp_path):
    root = write_flat(tmp_path / "d")
    (root / "verbmem_forget.json").write_text(json.dumps([{"prompt": "p"}]))
    with pytest.raises(UnlearnbenchError, match="gt"):
        bench(root).probe_items("verbmem", "forget")


# -- unlearning data ------------------------------------------------------------------------------


def test_unlearn_data_chunks_raw_text(tmp_path):
    tok = tiny_tokenizer()
    b = bench(write_flat(tmp_path / "d"), max_length=32)
    data = b.unlearn_data(tok)
    raw = (tmp_path / "d" / "raw_forget.txt").read_text().strip()
    n_tokens = len(tok(raw, add_special_tokens=False)["input_ids"])
    lengths = [len(tok(ex.target, add_special_tokens=False)["input_ids"]) for ex in data.forget]
    assert all(ex.prompt == "" for ex in data.forget + data.retain)
    assert max(lengths) <= 32 and len(data.forget) >= n_tokens // 31
    # the .txt file is one document: windows run across its blank lines, nothing is lost but a short tail
    assert n_tokens - sum(lengths) < 8
    assert data.retain and all("team won" in ex.target or "match" in ex.target for ex in data.retain[:1])


# -- probes on a tiny model -----------------------------------------------------------------------


def test_probes_score_ranges_and_privleak_aggregate(tmp_path):
    from unlearnbench.probes.knowmem import KnowMemConfig, KnowMemProbe
    from unlearnbench.probes.privleak import PrivLeakProbe
    from unlearnbench.probes.verbmem import VerbMemConfig, VerbMemProbe

    tok, model = tiny_tokenizer(), tiny_model()
    b = bench(write_flat(tmp_path / "d"), verbmem_prefix_tokens=40)
    verb = VerbMemProbe(VerbMemConfig(max_new_tokens=16))
    rows = verb.score(model, tok, verb.items(b, "forget"))
    assert len(rows) == 2 and all(0 <= r["rougeL_f1"] <= 1 and r["correct"] == r["rougeL_f1"] for r in rows)
    know = KnowMemProbe(KnowMemConfig(max_new_tokens=8))
    items = know.items(b, "forget")
    assert len(tok(items[0].prompt)["input_ids"]) > 256 - 8  # longer than the model's context: cut
    rows = know.score(model, tok, items)
    assert len(rows) == 4 and all(0 <= r["correct"] <= 1 for r in rows)
    leak = PrivLeakProbe()
    by_split = {s: leak.score(model, tok, leak.items(b, s)) for s in ("forget", "holdout")}
    assert all(r["mink"] > 0 and r["mean_nll"] > 0 for rows in by_split.values() for r in rows)
    agg = dict(((s, m), v) for s, m, v in leak.aggregate(by_split))
    assert 0 <= agg["forget", "auc"] <= 1 and agg["forget", "auc_retrain"] == pytest.approx(0.4772)
    assert agg["forget", "privleak"] == pytest.approx(metrics.privleak(agg["forget", "auc"], 0.4772))
    assert leak.aggregate({"forget": by_split["forget"]}) == []


def test_privleak_token_logprobs_match_an_unbatched_pass():
    import torch.nn.functional as F

    from unlearnbench.probes.privleak import token_logprobs

    tok, model = tiny_tokenizer(), tiny_model()
    texts = ["a short one", ARTICLE]
    got = token_logprobs(model, tok, texts, batch_size=2)
    for text, lp in zip(texts, got):
        ids = torch.tensor([tok(text)["input_ids"]])
        with torch.no_grad():
            logits = model(input_ids=ids).logits[0].float()
        want = -F.cross_entropy(logits[:-1], ids[0, 1:], reduction="none")
        assert lp == pytest.approx(want.tolist(), abs=1e-4)


def _muse_cut(text: str) -> str:
    """MUSE's knowmem post-processing (metrics/knowmem.py ``get_prefix_before_words_occur``)."""
    for word in ["\n\n", "\nQuestion", "Question:"]:
        text = text.split(word)[0]
    return text


@pytest.mark.parametrize(
    "gen",
    [
        "Paris\n\nQuestion: who?",
        "Paris\nQuestion: who?",
        "The Question is open",  # v1 cut this at "Question"; MUSE keeps it
        "a Question: b",
        "Paris is the capital. The questioner",
        "no stop at all",
        "Questions remain\n\nmore",
    ],
)
def test_knowmem_cuts_where_muse_cuts(gen):
    from unlearnbench.generation import cut_at_stop
    from unlearnbench.probes.knowmem import STOPS, KnowMemConfig

    assert KnowMemConfig().stops == "muse"
    assert cut_at_stop(gen, STOPS["muse"]) == _muse_cut(gen)


def test_knowmem_v1_stops_differ_from_muse():
    from unlearnbench.generation import cut_at_stop
    from unlearnbench.probes.knowmem import STOPS

    gen = "The Question is open"
    assert cut_at_stop(gen, STOPS["v1"]) == "The " != _muse_cut(gen)


def test_verbmem_truth_cut_counts_the_bos_as_muse():
    """MUSE: tokenizer(gt).input_ids[:, :128] with the BOS, decoded: 127 content tokens."""
    from helpers_tiny import tiny_tokenizer

    from unlearnbench.probes.verbmem import VerbMemConfig, truncate_tokens

    tok = tiny_tokenizer()
    text = "the quick brown fox jumps over the lazy dog " * 8
    ids = tok(text)["input_ids"]
    assert ids[0] == tok.bos_token_id and len(ids) > 20
    n = 12
    muse = tok.batch_decode([ids[:n]], skip_special_tokens=True)[0]
    assert VerbMemConfig().truth_counts_bos
    assert truncate_tokens(tok, text, n, with_special=True) == muse
    content = tok(truncate_tokens(tok, text, n, with_special=True), add_special_tokens=False)["input_ids"]
    assert len(content) == n - 1
    old = truncate_tokens(tok, text, n)  # version 1: n content tokens
    assert len(tok(old, add_special_tokens=False)["input_ids"]) == n and old != muse
