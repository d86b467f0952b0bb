"""Citations in docstrings and presets are checked facts (issue 11, item 7)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = [*(ROOT / "unlearnbench").rglob("*.py"), *(ROOT / "tasks").rglob("*.yaml")]

# Wrong identifiers that once appeared in the tree, with the right one.
WRONG_IDS = {"2506.02006": "2506.01339 (ILU, Wang et al., ICML 2025)"}


def test_no_known_wrong_arxiv_id():
    for path in SOURCES:
        text = path.read_text(encoding="utf-8")
        for wrong, right in WRONG_IDS.items():
            assert wrong not in text, f"{path.relative_to(ROOT)} cites {wrong}; it is {right}"


def test_ilu_citations_use_the_ilu_id():
    pattern = re.compile(r"ILU[^\n]{0,80}arXiv (\d{4}\.\d{4,5})")
    found = 0
    for path in SOURCES:
        for match in pattern.finditer(path.read_text(encoding="utf-8")):
            found += 1
            assert match.group(1) == "2506.01339", f"{path.relative_to(ROOT)}: {match.group(0)}"
    assert found >= 3  # ilu.py, taskvec.py and the ilu-robustness preset cite it


def test_taskvec_quotes_only_sourced_cosines():
    doc = (ROOT / "unlearnbench" / "taskvec.py").read_text(encoding="utf-8").split('"""')[1]
    assert "0.16" in doc and "0.09" in doc  # the seed poster's figures
    assert "0.36" not in doc  # no verified source
    assert "−0.41" not in doc or "second-hand" in doc


def test_fluency_docstring_says_whose_metric_and_whose_setting():
    """The n-gram entropy is ROME's formula; its generation setting (greedy) is not ROME's (sampled)."""
    doc = (ROOT / "unlearnbench" / "probes" / "fluency.py").read_text(encoding="utf-8").split('"""')[1]
    assert "the *metric*" in doc and "the\n*setting* is not" in doc
    assert "top-k (k = 5) *sampled*, 100 tokens" in doc and "greedy" in doc
