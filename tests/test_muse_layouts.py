"""MUSE data as published: every shard of a hub snapshot is read, and a folder missing both raw
corpora is refused in one line that names every accepted file for each."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from test_muse import ARTICLE, bench, write_flat  # noqa: E402

from unlearnbench.errors import UnlearnbenchError  # noqa: E402


def test_every_shard_of_a_hub_snapshot_is_read(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    root = write_flat(tmp_path / "d", skip=("raw_forget.txt", "privleak_forget.json"))
    (root / "raw").mkdir()
    pq.write_table(pa.table({"text": [ARTICLE * 5]}), root / "raw" / "forget-00000-of-00002.parquet")
    pq.write_table(pa.table({"text": [ARTICLE * 6, ARTICLE * 7]}), root / "raw" / "forget-00001-of-00002.parquet")
    (root / "privleak").mkdir()
    for i in range(3):
        pq.write_table(pa.table({"text": [f"text {i}"]}), root / "privleak" / f"forget-0000{i}-of-00003.parquet")
    b = bench(root)
    assert [len(r["text"]) for r in b.part("raw_forget")] == [len(ARTICLE) * n for n in (5, 6, 7)]
    assert [it.answer for it in b.probe_items("privleak", "forget")] == ["text 0", "text 1", "text 2"]


def test_missing_corpora_are_named_together_with_every_accepted_name(tmp_path):
    root = write_flat(tmp_path / "d", skip=("raw_forget.txt", "raw_retain1.txt"))
    with pytest.raises(UnlearnbenchError) as e:
        bench(root)
    msg = str(e.value)
    assert "\n" not in msg and "part 'raw_forget'" in msg and "part 'raw_retain'" in msg
    for name in ("raw_forget.txt", "raw/forget.txt", "forget.txt", "main/forget.txt", "raw/forget-*.parquet"):
        assert name in msg, name
    for name in ("raw_retain1.txt", "raw/retain1.txt", "retain1.txt", "main/retain1.txt", "raw/retain1-*.parquet"):
        assert name in msg, name
    assert "config raw split forget" in msg and "config raw split retain1" in msg
