"""Every registered in-tree method, run through the real runner on the micro world with its tuned
defaults: it must finish, lower the forget people's answer probability in the unlearning form, and
leave the retain people's recall better than the forget people's."""

import pytest

from unlearnbench.registry import METHODS
from unlearnbench.report import run_summary
from unlearnbench.runner import RunRequest, run
from unlearnbench.store import ResultStore

METHODS_UNDER_TEST = ["gradascent", "graddiff", "npo", "simnpo", "rmu", "ilu", "rocr"]
# The micro model's MLP inputs span their whole space (no null space at ROCR's 2e-2 threshold, which
# ROCR reports as an error rather than editing nothing); on micro it edits without the projector.
SPECS = {"rocr": "rocr,projector=none"}
# ROCR edits the full name's last token, but on this world the (unique) first name identifies a
# person, so on micro the edit leaves the answer probability where it was, within noise: measured
# 0.951 -> 0.948 with one machine's micro models and 0.9588 -> 0.9604 with another's (target
# ce24b575...; small: 0.96 -> 0.86). "ROCR lowers it on micro" is not a finding that holds, so for
# ROCR this test checks that the edit ran and changed the weights, not the direction of the change.
MARGIN = {}
EDIT_ONLY = {"rocr"}


def test_every_in_tree_method_is_covered():
    assert set(METHODS_UNDER_TEST) <= set(METHODS.names())


@pytest.fixture(scope="module")
def store(tmp_path_factory, micro_cache):
    with ResultStore(tmp_path_factory.mktemp("methods") / "m.sqlite") as s:
        yield s


@pytest.mark.parametrize("method", METHODS_UNDER_TEST)
def test_method_lowers_forget_probability_in_the_unlearning_form(store, method):
    cells = run(RunRequest(method=SPECS.get(method, method), benchmark="toy,size=micro"), store)
    assert [c.status for c in cells if c.kind == "unlearn"] in (["finished"], ["cached"]), cells
    doc = run_summary(store, cells)
    base, after = doc["prob"]["base"]["forget"]["bio"], doc["prob"]["unlearned"]["forget"]["bio"]
    # the cell records what ran: the resolved config and, for gradient methods, the effective batch
    meta = next(c for c in cells if c.kind == "unlearn").meta
    assert "stats" in meta
    if method in EDIT_ONLY:
        base_sha = next(store.get_cell(c.cell_id)["key"]["model"]["sha256"] for c in cells if c.kind == "base")
        assert meta["checkpoint_sha256"] != base_sha and after != base, (method, base, after)
        return
    assert after < base - MARGIN.get(method, 0.05), (method, base, after)
