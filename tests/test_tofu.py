"""TOFU benchmark and probe: formulas on hand-made NLLs, KS and model-utility wiring, data layouts."""

import json
import math
from pathlib import Path

import pytest

from unlearnbench.errors import UnlearnbenchError
from unlearnbench.probes import tofu as tp

SAMPLES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "samples" / "tofu"


# -- synthetic data in TOFU's schema --------------------------------------------------------------
def qa(i: int, author: str, perturbed: bool = True) -> dict:
    r = {"question": f"Where was {author} born? ({i})", "answer": f"{author} was born in City {i}."}
    if perturbed:
        r.update(
            paraphrased_answer=f"City {i} is the birthplace of {author}.",
            perturbed_answer=[
                f"City {i + 1} is the birthplace of {author}.",
                f"Town {i} is the birthplace of {author}.",
            ],
            paraphrased_question=f"In which city was {author} born? ({i})",
        )
    return r


def write_tofu(
    root: Path,
    *,
    forget_n: int = 4,
    retain_n: int = 12,
    perturbed_forget: bool = True,
    optional: bool = True,
    jsonl: bool = False,
) -> Path:
    root.mkdir(parents=True, exist_ok=True)

    def dump(name, records):
        if jsonl:
            (root / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
        else:
            (root / f"{name}.json").write_text(json.dumps(records))

    dump(
        "forget01_perturbed" if perturbed_forget else "forget01",
        [qa(i, "Ada Quill", perturbed_forget) for i in range(forget_n)],
    )
    dump("retain99", [qa(i, "Bo Lintel", False) for i in range(retain_n)])
    if optional:
        dump("retain_perturbed", [qa(i, "Bo Lintel") for i in range(5)])
        dump("holdout01", [qa(i, "Cy Fennel", False) for i in range(3)])
        ra = [
            {
                "question": f"Who wrote book {i}?",
                "answer": f"Author {i}",
                "perturbed_answer": [f"Author {i + 10}", f"Author {i + 20}", f"Author {i + 30}"],
            }
            for i in range(3)
        ]
        dump("real_authors_perturbed", ra)
        dump("world_facts_perturbed", ra)
    return root


def bench(data, **options):
    from unlearnbench.benchmarks.tofu import TofuBenchmark, TofuConfig

    return TofuBenchmark(
        TofuConfig(
            model="unused-model",
            oracle="unused-oracle",
            data=str(data),
            forget=options.pop("forget", "forget01"),
            template=options.pop("template", "qa"),
            **options,
        )
    )


# -- formulas --------------------------------------------------------------------------------------
def test_truth_ratio_on_hand_made_nlls():
    # true answer: P^(1/n) = e^-1; perturbed: e^-2 and e^-3 -> geometric mean e^-2.5
    r = tp.truth_ratio([2.0, 3.0], 1.0)
    assert r == pytest.approx(math.exp(-1.5))
    arithmetic = tp.truth_ratio([2.0, 3.0], 1.0, mean="arithmetic")
    assert arithmetic == pytest.approx((math.exp(-2) + math.exp(-3)) / 2 / math.exp(-1))
    assert arithmetic > r  # AM >= GM
    assert tp.truth_ratio([1.0], 1.0) == pytest.approx(1.0)
    # extreme NLLs do not overflow
    assert tp.truth_ratio([1e6], 0.0) > 0.0 and math.isfinite(tp.truth_ratio([0.0], 1e6))
    with pytest.raises(ValueError):
        tp.truth_ratio([], 1.0)


def test_truth_ratio_stat_per_split():
    assert tp.truth_ratio_stat(0.25, "forget") == pytest.approx(0.25)
    assert tp.truth_ratio_stat(4.0, "forget") == pytest.approx(0.25)  # min(R, 1/R)
    assert tp.truth_ratio_stat(4.0, "holdout") == pytest.approx(0.25)
    assert tp.truth_ratio_stat(0.25, "retain") == pytest.approx(0.75)  # max(0, 1 - R)
    assert tp.truth_ratio_stat(4.0, "world_facts") == 0.0
    assert tp.truth_ratio_stat(0.0, "forget") == 0.0


def test_option_prob_normalises_over_answer_and_perturbed():
    assert tp.option_prob(1.0, [1.0, 1.0, 1.0]) == pytest.approx(0.25)
    p = tp.option_prob(0.5, [2.0])
    assert p == pytest.approx(math.exp(-0.5) / (math.exp(-0.5) + math.exp(-2.0)))
    assert tp.option_prob(1000.0, [0.0]) == pytest.approx(0.0)


def test_harmonic_mean_and_model_utility():
    assert tp.harmonic_mean([0.5, 0.5]) == pytest.approx(0.5)
    assert tp.harmonic_mean([1.0, 0.25]) == pytest.approx(0.4)
    assert tp.harmonic_mean([0.9, 0.0]) == 0.0
    full = {(s, m): 0.5 for s in tp.UTILITY_SPLITS for m in tp.UTILITY_METRICS}
    full[("retain", "prob")] = 0.2
    mu, missing = tp.model_utility(full)
    assert missing == []
    assert mu == pytest.approx(9 / (8 / 0.5 + 1 / 0.2))
    del full[("world_facts", "rougeL_recall")]
    mu, missing = tp.model_utility(full)
    assert missing == ["world_facts/rougeL_recall"]
    assert mu == pytest.approx(8 / (7 / 0.5 + 1 / 0.2))


def test_ks_same_vs_shifted_distributions():
    a = [0.1 * i for i in range(1, 30)]
    assert tp.forget_quality_ks(a, a) == pytest.approx(1.0)
    shifted = [x + 10 for x in a]
    assert tp.forget_quality_ks(a, shifted) < 1e-6
    assert math.isnan(tp.forget_quality_ks([], a))


def test_aggregate_wires_reference_ratios_and_utility():
    probe = tp.TofuProbe()
    probe._reference_forget = [0.5, 0.6, 0.7, None]

    def rows(xs):
        return [{"prob": 0.5, "rougeL_recall": 0.5, "truth_ratio": x, "truth_ratio_stat": 0.5} for x in xs]

    scores = {
        "forget": rows([0.5, 0.6, 0.7]),
        "retain": rows([0.2]),
        "real_authors": rows([0.2]),
        "world_facts": rows([0.2]),
    }
    out = {(s, m): v for s, m, v in probe.aggregate(scores)}
    assert out[("forget", "forget_quality_ks")] == pytest.approx(1.0)
    assert out[("utility", "model_utility")] == pytest.approx(0.5)
    # far from the reference: low p-value; no world facts: partial utility with a warning
    probe._reference_forget = [50.0, 60.0, 70.0]
    del scores["world_facts"]
    with pytest.warns(UserWarning, match="missing: world_facts/prob"):
        out = {(s, m): v for s, m, v in probe.aggregate(scores)}
    assert out[("forget", "forget_quality_ks")] < 0.2
    assert out[("utility", "model_utility_parts")] == 6.0
    assert ("utility", "model_utility") not in out
    # without an oracle: no KS row, a warning instead
    probe._reference_forget = None
    with pytest.warns(UserWarning, match="no oracle"):
        out = {(s, m) for s, m, _ in probe.aggregate(scores)}
    assert ("forget", "forget_quality_ks") not in out


# -- data layouts ----------------------------------------------------------------------------------
def test_local_layout_items_and_unlearn_data(tmp_path):
    b = bench(write_tofu(tmp_path / "d"))
    forget = b.tofu_items("forget")
    assert [it.item_id for it in forget] == ["0", "1", "2", "3"]
    it = forget[0]
    assert it.prompt == "Question: Where was Ada Quill born? (0)\nAnswer:" and it.answer_prefix == " "
    assert it.perturbed_answers and it.paraphrased_answer and it.paraphrased_prompt
    assert len(b.tofu_items("retain")) == 5  # retain_perturbed wins over a retain sample
    assert len(b.tofu_items("holdout")) == 3
    assert len(b.tofu_items("real_authors")) == 3 and len(b.tofu_items("world_facts")) == 3
    assert b.text_items("forget") is forget
    data = b.unlearn_data(tokenizer=None)
    assert len(data.forget) == 4 and len(data.retain) == 12
    assert data.forget[0].target == " Ada Quill was born in City 0."
    assert data.forget[0].prompt == it.prompt
    assert b.oracle_source == "unused-oracle" and b.retain_part == "retain99"
    key = b.key_extra()["data_sha256"]
    assert set(key) >= {"forget01", "retain99", "retain_perturbed"}


def test_optional_parts_absent_and_retain_sample(tmp_path):
    b = bench(write_tofu(tmp_path / "d", optional=False, jsonl=True), n_retain_eval=7, limit=0)
    assert b.tofu_items("holdout") == [] and b.tofu_items("real_authors") == [] and b.tofu_items("world_facts") == []
    retain = b.tofu_items("retain")
    assert len(retain) == 7 and not retain[0].perturbed_answers  # sampled from retain99, no truth ratio
    assert {"real_authors", "world_facts", "holdout01", "retain_perturbed"} <= set(b.describe()["missing"])
    again = bench(tmp_path / "d", n_retain_eval=7).tofu_items("retain")
    assert [i.item_id for i in again] == [i.item_id for i in retain]  # seeded


def test_chat_template_and_default_oracle(tmp_path):
    from unlearnbench.benchmarks.tofu import TofuBenchmark, TofuConfig

    b = TofuBenchmark(TofuConfig(data=str(write_tofu(tmp_path / "d")), forget="forget01"))
    it = b.tofu_items("forget")[0]
    assert it.prompt.endswith("<|start_header_id|>assistant<|end_header_id|>\n\n") and it.answer_prefix == ""
    assert b.oracle_source.endswith("_retain99") and b.model_source.endswith("_full")


def test_missing_data_errors(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UnlearnbenchError, match=r"forget01_perturbed.json or forget01.json not found"):
        bench(empty).tofu_items("forget")
    d = write_tofu(tmp_path / "d", perturbed_forget=False)
    with pytest.raises(UnlearnbenchError, match="no paraphrased_answer/perturbed_answer"):
        bench(d).tofu_items("forget")
    (d / "retain99.json").unlink()
    with pytest.raises(UnlearnbenchError, match=r"retain99.json not found"):
        bench(d)  # refused when built, before any model is loaded
    with pytest.raises(UnlearnbenchError, match="unknown template"):
        bench(d, template="nope")
    with pytest.raises(UnlearnbenchError, match="not a folder"):
        bench(d / "forget01.json")
    with pytest.raises(UnlearnbenchError, match="needs the tofu benchmark"):
        tp.TofuProbe().items(object(), "forget")


def test_missing_files_are_listed_in_one_line_up_front(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UnlearnbenchError) as e:
        bench(empty)
    msg = str(e.value)
    assert "\n" not in msg
    # every file the run reads, first
    needs, missing = msg.split("; missing: ")
    assert needs.startswith(
        f"tofu: forget=forget01 needs forget01_perturbed.json (or forget01.json) and retain99.json in {empty}"
    )
    for name in (
        "retain_perturbed.json",
        "holdout01.json",
        "real_authors_perturbed.json",
        "world_facts_perturbed.json",
    ):
        assert name in needs
    # then all that are missing, not only the first
    assert missing.startswith("forget01_perturbed.json or forget01.json not found, retain99.json not found")
    assert "TOFU's forget01_perturbed, retain99" in missing and "locuslab/TOFU" in missing
    # one present: only the other is missing; forget05 needs retain95
    d = write_tofu(tmp_path / "d", optional=False)
    (d / "retain99.json").rename(d / "retain95.json")
    with pytest.raises(
        UnlearnbenchError, match=r"missing: retain99\.json not found \(optional, absent: retain_perturbed"
    ):
        bench(d)
    with pytest.raises(
        UnlearnbenchError, match=r"forget=forget05 needs forget05_perturbed.json .*missing: forget05_perturbed"
    ):
        bench(d, forget="forget05")


def test_hub_snapshot_parquet_shards(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    d = tmp_path / "snapshot"
    for config, records in (
        ("forget01_perturbed", [qa(i, "Ada Quill") for i in range(3)]),
        ("retain99", [qa(i, "Bo Lintel", False) for i in range(4)]),
    ):
        (d / config).mkdir(parents=True)
        pq.write_table(pa.Table.from_pylist(records[:2]), d / config / "train-00000-of-00002.parquet")
        pq.write_table(pa.Table.from_pylist(records[2:]), d / config / "train-00001-of-00002.parquet")
    b = bench(d, n_retain_eval=4)
    forget = b.tofu_items("forget")
    assert [it.question for it in forget] == [f"Where was Ada Quill born? ({i})" for i in range(3)]
    assert forget[2].perturbed_answers == (
        "City 3 is the birthplace of Ada Quill.",
        "Town 2 is the birthplace of Ada Quill.",
    )
    assert len(b.unlearn_data(None).retain) == 4
    assert set(b.key_extra()["data_sha256"]) == {"forget01", "retain99"}


@pytest.mark.skipif(not SAMPLES.is_dir(), reason=f"samples folder absent: {SAMPLES}")
def test_real_sample_files(tmp_path):
    # the samples are named *.sample.json: link them under the names the benchmark looks for
    d = tmp_path / "d"
    d.mkdir()
    (d / "forget01.json").symlink_to(SAMPLES / "forget01.sample.json")
    (d / "retain99.json").symlink_to(SAMPLES / "retain90.sample.json")
    b = bench(d)
    forget = b.tofu_items("forget")
    assert len(forget) == 10 and all(len(it.perturbed_answers) == 5 for it in forget)
    assert "Basil Mahfouz Al-Kuwaiti" in forget[0].answer
    assert len(b.tofu_items("retain")) == 10
    assert len(b.unlearn_data(None).retain) == 10


# -- scoring with a tiny model ---------------------------------------------------------------------
def test_score_tiny_model_ranges_and_reference_cache(tmp_path):
    from helpers_tiny import tiny_model, tiny_tokenizer

    from unlearnbench.models import LoadedModel

    b = bench(write_tofu(tmp_path / "d"))
    tok, model = tiny_tokenizer(), tiny_model()
    oracle = LoadedModel(tiny_model(seed=1), tok, "oracle", "sha-oracle")
    probe = tp.TofuProbe(tp.TofuProbeConfig(max_new_tokens=4))
    forget = probe.score(model, tok, b.tofu_items("forget"), reference=oracle)
    for row in forget:
        assert 0 < row["prob"] <= 1 and 0 <= row["rougeL_recall"] <= 1
        assert row["truth_ratio"] > 0 and 0 <= row["truth_ratio_stat"] <= 1
    ra = probe.score(model, tok, b.tofu_items("real_authors"))
    assert all(0 < r["prob"] < 1 and 0 < r["answer_prob"] <= 1 for r in ra)
    assert len(probe._reference_cache) == 1
    probe.score(model, tok, b.tofu_items("forget"), reference=oracle)
    assert len(probe._reference_cache) == 1  # the oracle is scored once per item set
    p = {m: v for s, m, v in probe.aggregate({"forget": forget})}["forget_quality_ks"]
    assert 0 <= p <= 1
    # the model against itself: identical distributions
    same = tp.TofuProbe(tp.TofuProbeConfig(max_new_tokens=1))
    rows = same.score(model, tok, b.tofu_items("forget"), reference=LoadedModel(model, tok, "m", "sha-m"))
    assert {m: v for s, m, v in same.aggregate({"forget": rows})}["forget_quality_ks"] == pytest.approx(1.0)


# -- ROUGE as TOFU's and open-unlearning's code compute it -----------------------------------------
def test_rouge_stemming_matches_rouge_score_use_stemmer():
    from unlearnbench import metrics

    # Porter: writes -> write, novels -> novel; wrote stays wrote
    assert metrics.rouge_l("he writes novels", "he wrote novel")[0] == pytest.approx(1 / 3)
    assert metrics.rouge_l("he writes novels", "he wrote novel", stemmer=True)[0] == pytest.approx(2 / 3)


def _probe_recall(tmp_path, monkeypatch, generation: str, **options):
    """The tofu probe's rougeL_recall of one retain item, with the model's generation and NLLs faked."""
    from unlearnbench import generation as gen_module
    from unlearnbench import inference

    items = bench(write_tofu(tmp_path / "d")).tofu_items("retain")[:1]
    seen = {}

    def fake_generate(model, tokenizer, prompts, max_new_tokens=16, batch_size=64, stop=("\n",)):
        seen.update(stop=stop, max_new_tokens=max_new_tokens)
        return [gen_module.cut_at_stop(generation, stop) for _ in prompts]

    monkeypatch.setattr(inference, "greedy_generate", fake_generate)
    monkeypatch.setattr(
        inference, "score_targets", lambda m, t, pairs, bs=64: [inference.TargetScore(1.0, 1.0, 1, 1.0)] * len(pairs)
    )
    probe = tp.TofuProbe(tp.TofuProbeConfig(**options))
    return probe.score(None, None, items)[0]["rougeL_recall"], seen, items[0].answer


def test_tofu_rouge_default_stems_and_does_not_cut_at_newline(tmp_path, monkeypatch):
    """Default = TOFU's code: no newline stop, 200 new tokens, stemming. The version-1 behaviour
    (cut at the first newline, no stemming, 128 tokens) stays as named options."""
    text = " Bo Lintel\nwas born in Cities 0."
    recall, seen, answer = _probe_recall(tmp_path, monkeypatch, text)
    assert answer == "Bo Lintel was born in City 0."
    assert recall == pytest.approx(1.0) and seen == {"stop": None, "max_new_tokens": 200}
    no_stem, _, _ = _probe_recall(tmp_path, monkeypatch, text, rouge_stemmer=False)
    assert no_stem == pytest.approx(6 / 7)  # cities != city unstemmed
    old, seen, _ = _probe_recall(tmp_path, monkeypatch, text, stop="newline", rouge_stemmer=False, max_new_tokens=128)
    assert old == pytest.approx(2 / 7) and seen == {"stop": ("\n",), "max_new_tokens": 128}
    assert tp.TofuProbe.version == "2"
