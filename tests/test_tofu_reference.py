"""TOFU's aggregation checked against TOFU's own numbers (issue 11, item 9).

locuslab/tofu commits the evaluation logs of Phi-1.5 fine-tuned on all of TOFU (``full``) and on
``retain90`` (``data/ft_epoch5_lr2e-05_phi_{full,retain90}_wd0.01/eval_results/ds_size300/``), with
per-item losses and ROUGE. ``tests/fixtures/tofu_phi_reference.json`` holds only the four keys
TOFU's ``aggregate_eval_stat.py`` reads (avg_gt_loss, rougeL_recall, avg_paraphrased_loss,
average_perturb_loss), rounded to 7 significant digits; it was made from a ``fetch`` of the
repository (its commit is in the fixture) by reading those keys out of each log in item order.

The expected aggregates below are what TOFU's own ``get_model_utility`` / ``get_forget_quality``
print when run on the *unrounded* committed logs (``eval_log_aggregated.json`` of each model):
Model Utility of ``full`` 0.5220737132035151, Forget Quality (KS p-value, forget10, full against
retain90) 2.1942743021891237e-16, KS statistic 0.3466666666666667, and the nine parts. Here the
per-item values go through unlearnbench's per-item formulas (``truth_ratio``, ``truth_ratio_stat``,
``option_prob``) into ``TofuProbe.aggregate``, as a run's rows do.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from unlearnbench.probes.tofu import TofuProbe, option_prob, truth_ratio, truth_ratio_stat

FIXTURE = Path(__file__).parent / "fixtures" / "tofu_phi_reference.json"
SPLITS = {
    "eval_log.json": "retain",
    "eval_real_author_wo_options.json": "real_authors",
    "eval_real_world_wo_options.json": "world_facts",
    "eval_log_forget.json": "forget",
}
# TOFU's aggregate_eval_stat.py on the unrounded logs of Phi-1.5 "full" (and retain90 for the KS test)
TOFU = {
    ("real_authors", "rougeL_recall"): 0.4156666666666667,
    ("real_authors", "prob"): 0.3773603259680648,
    ("real_authors", "truth_ratio_stat"): 0.4560090213398623,
    ("world_facts", "rougeL_recall"): 0.7773504273504274,
    ("world_facts", "prob"): 0.40899845221380016,
    ("world_facts", "truth_ratio_stat"): 0.4923369138766094,
    ("retain", "rougeL_recall"): 0.9292525097192792,
    ("retain", "prob"): 0.9260884160508499,
    ("retain", "truth_ratio_stat"): 0.482683008320846,
}
TOFU_MODEL_UTILITY = 0.5220737132035151
TOFU_FORGET_QUALITY = 2.1942743021891237e-16
TOFU_KS_STATISTIC = 0.3466666666666667


def _rows(log: dict, split: str) -> list[dict]:
    """The per-item rows the tofu probe stores, from the logged mean token NLLs and ROUGE."""
    rows = []
    for i, para in enumerate(log["avg_paraphrased_loss"]):
        pert = log["average_perturb_loss"][i]
        r = truth_ratio(pert, para)  # geometric mean over perturbed answers, as TOFU's code
        row = {"truth_ratio": r, "truth_ratio_stat": truth_ratio_stat(r, split)}
        if "avg_gt_loss" in log:
            gt = log["avg_gt_loss"][i]
            row["prob"] = option_prob(gt, pert) if split in ("real_authors", "world_facts") else math.exp(-gt)
            row["rougeL_recall"] = log["rougeL_recall"][i]
        rows.append(row)
    return rows


@pytest.fixture(scope="module")
def logs():
    return json.loads(FIXTURE.read_text())["models"]


def test_model_utility_and_its_parts_match_tofus(logs):
    rows = {SPLITS[f]: _rows(log, SPLITS[f]) for f, log in logs["full"].items()}
    for (split, metric), want in TOFU.items():
        got = sum(r[metric] for r in rows[split]) / len(rows[split])
        assert got == pytest.approx(want, rel=1e-6, abs=1e-7), (split, metric)
    probe = TofuProbe()
    probe._reference_forget = None
    agg = {(s, m): v for s, m, v in probe.aggregate({k: v for k, v in rows.items() if k != "forget"})}
    assert agg[("utility", "model_utility")] == pytest.approx(TOFU_MODEL_UTILITY, rel=1e-6)


def test_forget_quality_matches_tofus_ks_test(logs):
    from scipy.stats import ks_2samp

    full = _rows(logs["full"]["eval_log_forget.json"], "forget")
    retain = _rows(logs["retain90"]["eval_log_forget.json"], "forget")
    assert len(full) == len(retain) == 300
    probe = TofuProbe()
    probe._reference_forget = [r["truth_ratio"] for r in retain]  # the oracle's ratios, as a run sets them
    agg = {(s, m): v for s, m, v in probe.aggregate({"forget": full})}
    assert agg[("forget", "forget_quality_ks")] == pytest.approx(TOFU_FORGET_QUALITY, rel=1e-6)
    # TOFU tests 1/R; the KS statistic and p-value do not change under that monotone map
    stat = ks_2samp([r["truth_ratio"] for r in full], probe._reference_forget).statistic
    assert stat == pytest.approx(TOFU_KS_STATISTIC, rel=1e-9)


def test_a_changed_definition_would_fail(logs):
    """The check can fail: the arithmetic mean over perturbed answers (the paper's equation as
    written) moves the retain truth-ratio part away from TOFU's number."""
    log = logs["full"]["eval_log.json"]
    stats = [
        truth_ratio_stat(truth_ratio(p, t, mean="arithmetic"), "retain")
        for p, t in zip(log["average_perturb_loss"], log["avg_paraphrased_loss"])
    ]
    assert abs(sum(stats) / len(stats) - TOFU[("retain", "truth_ratio_stat")]) > 1e-3
