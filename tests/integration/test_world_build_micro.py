"""`unlearnbench world build`: the micro target retrained from its recipe passes the quality gate."""

import json
import re

from unlearnbench.cli import main
from unlearnbench.toy import shipped
from unlearnbench.toy.model import QUALITY_GATE


def test_rebuilding_the_micro_target_passes_its_gate_and_leaves_the_cache_alone(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("UNLEARNBENCH_CACHE", str(tmp_path / "cache"))
    code = main(["world", "build", "--size", "micro", "--role", "target", "--json", "--quiet"])
    out = capsys.readouterr().out
    assert code == 0
    (record,) = json.loads(out[out.index("[") :])
    assert record["role"] == "target" and re.fullmatch(r"[0-9a-f]{64}", record["sha256"])
    gated = [v for forms in record["recall"].values() for form, v in forms.items() if form in record["gated_forms"]]
    assert gated and min(gated) >= QUALITY_GATE
    entry = shipped.manifest().get(record["folder"])
    if entry is not None:  # same key shipped: the record says whether this machine reproduces its bytes
        assert record["shipped_sha256"] == entry["files"]["model.safetensors"]
        assert record["matches_shipped"] == (record["sha256"] == record["shipped_sha256"])
    assert not (tmp_path / "cache").exists()  # trained in a temporary folder, not into the cache
