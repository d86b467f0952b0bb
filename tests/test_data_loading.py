"""Tests for unlearnbench.data.loading.load_records: every local format, header handling, and the
one-line errors users see; plus the real-format samples in ../shared/data/samples when present."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from unlearnbench.data.loading import load_records
from unlearnbench.errors import UnlearnbenchError

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "data" / "samples"
needs_samples = pytest.mark.skipif(not SAMPLES.is_dir(), reason=f"samples folder absent: {SAMPLES}")


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    """No network in tests: env vars for later imports, module constants for earlier ones."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    try:
        import datasets.config
    except ImportError:
        return
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True)


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# ---------------------------------------------------------------------------- json lines


def test_jsonl_keeps_types_and_skips_blank_lines(tmp_path):
    f = _write(tmp_path / "d.jsonl", '{"q": "a", "n": 1, "xs": [1, 2]}\n\n{"q": "b", "n": 2.5, "xs": null}\n')
    assert load_records(f) == [{"q": "a", "n": 1, "xs": [1, 2]}, {"q": "b", "n": 2.5, "xs": None}]


def test_jsonl_bad_line_names_the_line(tmp_path):
    f = _write(tmp_path / "d.jsonl", '{"q": "a"}\n{"q": "b"}\n{"q": oops}\n')
    with pytest.raises(UnlearnbenchError, match=r"^'.*d\.jsonl' line 3 is not valid JSON: "):
        load_records(f)


def test_jsonl_line_must_be_an_object(tmp_path):
    f = _write(tmp_path / "d.jsonl", '{"q": "a"}\n[1, 2]\n')
    with pytest.raises(UnlearnbenchError, match="line 2: expected a JSON object, got list"):
        load_records(f)


# ---------------------------------------------------------------------------- json


@pytest.mark.parametrize(
    "payload",
    [
        [{"q": "a", "n": 1}, {"q": "b", "n": 2}],
        {"data": [{"q": "a", "n": 1}, {"q": "b", "n": 2}]},
        {"version": "1.0", "data": [{"q": "a", "n": 1}, {"q": "b", "n": 2}]},
        {"q": ["a", "b"], "n": [1, 2]},
    ],
    ids=["list", "wrapped", "wrapped-with-metadata", "columns"],
)
def test_json_shapes(tmp_path, payload):
    f = _write(tmp_path / "d.json", json.dumps(payload))
    assert load_records(f) == [{"q": "a", "n": 1}, {"q": "b", "n": 2}]


def test_json_list_of_strings_becomes_text_records(tmp_path):
    f = _write(tmp_path / "d.json", '["first passage", "second passage"]')
    assert load_records(f) == [{"text": "first passage"}, {"text": "second passage"}]


def test_json_errors(tmp_path):
    with pytest.raises(UnlearnbenchError, match="expected a list of objects"):
        load_records(_write(tmp_path / "scalar.json", "42"))
    with pytest.raises(UnlearnbenchError, match="item 1 is a int"):
        load_records(_write(tmp_path / "mixed.json", '[{"a": 1}, 2]'))
    with pytest.raises(UnlearnbenchError, match="looks like JSON Lines"):
        load_records(_write(tmp_path / "lines.json", '{"a": 1}\n{"a": 2}\n'))
    with pytest.raises(UnlearnbenchError, match="holds no records"):
        load_records(_write(tmp_path / "empty-list.json", "[]"))


# ---------------------------------------------------------------------------- csv / tsv


def test_csv_values_stay_strings(tmp_path):
    f = _write(tmp_path / "d.csv", 'question,answer,note\n"What, exactly?",007,NA\nWhy,1.50,\n')
    assert load_records(f) == [
        {"question": "What, exactly?", "answer": "007", "note": "NA"},
        {"question": "Why", "answer": "1.50", "note": ""},
    ]


def test_tsv_with_header_is_detected(tmp_path):
    f = _write(tmp_path / "d.tsv", "sentence\tlabel\na fine film \t1\nawful\t0\n")
    assert load_records(f) == [{"sentence": "a fine film ", "label": "1"}, {"sentence": "awful", "label": "0"}]


def test_tsv_without_header_uses_names(tmp_path):
    f = _write(tmp_path / "d.tsv", "Stocks fell sharply today.\tBusiness\nThe team won.\tSports\n")
    expected = [
        {"text": "Stocks fell sharply today.", "label": "Business"},
        {"text": "The team won.", "label": "Sports"},
    ]
    assert load_records(f, names=["text", "label"]) == expected
    assert load_records(f, names=["text", "label"], header=False) == expected
    with pytest.raises(UnlearnbenchError, match="seems to have no header row; pass names="):
        load_records(f)
    with pytest.raises(UnlearnbenchError, match="has no header row; pass names="):
        load_records(f, header=False)


def test_tsv_first_row_equal_to_names_is_the_header(tmp_path):
    f = _write(tmp_path / "d.tsv", "text\tlabel\nhello\tWorld\n")
    assert load_records(f, names=["text", "label"]) == [{"text": "hello", "label": "World"}]


def test_tsv_header_true_with_names_renames(tmp_path):
    f = _write(tmp_path / "d.tsv", "sentence\tlabel\nhello\t1\n")
    assert load_records(f, header=True, names=["text", "y"]) == [{"text": "hello", "y": "1"}]


def test_tsv_other_header_than_names_is_an_error_not_a_data_row(tmp_path):
    f = _write(tmp_path / "d.tsv", "sentence\tlabel\nhello\t1\n")
    with pytest.raises(UnlearnbenchError, match="looks like a header .*header=True.*header=False"):
        load_records(f, names=["text", "y"])


def test_tsv_csv_style_quotes(tmp_path):
    f = _write(tmp_path / "d.tsv", 'text\tlabel\n"He said ""hi"" twice"\tWorld\n')
    assert load_records(f) == [{"text": 'He said "hi" twice', "label": "World"}]


def test_names_of_wrong_length(tmp_path):
    f = _write(tmp_path / "d.tsv", "a\t1\n")
    with pytest.raises(UnlearnbenchError, match="has 2 columns but names gives 3"):
        load_records(f, names=["x", "y", "z"])


# ---------------------------------------------------------------------------- parquet


def test_parquet_keeps_types(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    table = pa.table({"q": ["a", "b"], "n": [1, 2], "choices": [["x", "y"], ["z"]]})
    pq.write_table(table, tmp_path / "d.parquet")
    records = load_records(tmp_path / "d.parquet", columns=["q", "choices"])
    assert records == [{"q": "a", "n": 1, "choices": ["x", "y"]}, {"q": "b", "n": 2, "choices": ["z"]}]
    assert type(records[0]["n"]) is int


def test_bad_parquet(tmp_path):
    with pytest.raises(UnlearnbenchError, match="not a readable parquet file"):
        load_records(_write(tmp_path / "d.parquet", "not parquet"))


# ---------------------------------------------------------------------------- directories


def test_directory_with_split(tmp_path):
    _write(tmp_path / "train.jsonl", '{"q": "t"}\n')
    _write(tmp_path / "test.csv", "q\nx\n")
    assert load_records(tmp_path, split="train") == [{"q": "t"}]
    assert load_records(tmp_path, split="test") == [{"q": "x"}]
    with pytest.raises(UnlearnbenchError, match="no data file for split 'dev'.*found: test.csv, train.jsonl"):
        load_records(tmp_path, split="dev")
    with pytest.raises(UnlearnbenchError, match="is a directory; pass a split"):
        load_records(tmp_path)
    _write(tmp_path / "train.json", '[{"q": "t"}]')
    with pytest.raises(UnlearnbenchError, match="several files for split 'train'"):
        load_records(tmp_path, split="train")


# ---------------------------------------------------------------------------- errors


def test_missing_column_message(tmp_path):
    f = _write(tmp_path / "file.tsv", "a\tb\nx\ty\n")
    with pytest.raises(UnlearnbenchError) as info:
        load_records(f, columns=["sentence", "label"])
    assert str(info.value) == (
        f"'{f}' lacks column(s) 'sentence', 'label'; expected columns: sentence, label (found: a, b)"
    )


def test_missing_column_in_a_later_record(tmp_path):
    f = _write(tmp_path / "d.jsonl", '{"sentence": "s", "label": 1}\n{"sentence": "t"}\n')
    with pytest.raises(UnlearnbenchError, match=r"record 2 lacks column\(s\) 'label'"):
        load_records(f, columns=["sentence", "label"])


def test_missing_file_message(tmp_path):
    missing = tmp_path / "nope.jsonl"
    with pytest.raises(UnlearnbenchError) as info:
        load_records(missing)
    assert str(info.value) == f"no such data file: '{missing}' (expected jsonl, json, csv, tsv or parquet)"
    with pytest.raises(UnlearnbenchError, match="^no such data file: 'data/train.jsonl'"):
        load_records("data/train.jsonl")


def test_unknown_extension(tmp_path):
    with pytest.raises(UnlearnbenchError, match=r"unsupported data file .*d\.txt.*expected jsonl"):
        load_records(_write(tmp_path / "d.txt", "hello\n"))


@pytest.mark.parametrize("ext", ["jsonl", "json", "csv", "tsv", "parquet"])
def test_empty_file(tmp_path, ext):
    with pytest.raises(UnlearnbenchError, match=r"is empty$"):
        load_records(_write(tmp_path / f"d.{ext}", ""))


def test_blank_jsonl_and_header_only_csv_hold_no_records(tmp_path):
    with pytest.raises(UnlearnbenchError, match="holds no records"):
        load_records(_write(tmp_path / "d.jsonl", "\n\n"))
    with pytest.raises(UnlearnbenchError, match="holds no records"):
        load_records(_write(tmp_path / "d.csv", "question,answer\n"), header=True)


def test_hub_dataset_offline_message():
    with pytest.raises(UnlearnbenchError) as info:
        load_records("openai/gsm8k", config="main", split="train")
    assert str(info.value) == (
        "dataset 'openai/gsm8k' (config 'main', split 'train') is not in the local cache and the hub is "
        "unreachable — pass a local file, e.g. --data gsm8k=path/to/train.jsonl"
    )


def test_hub_dataset_offline_without_config():
    with pytest.raises(UnlearnbenchError, match=r"^dataset 'unlearnbench-test/none' \(split 'test'\) is not in"):
        load_records("unlearnbench-test/none", split="test")


def test_module_import_does_not_import_torch():
    code = (
        "import sys, unlearnbench.data.loading; "
        "sys.exit(any(m in sys.modules for m in ('torch', 'datasets', 'pandas')))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


# ---------------------------------------------------------------------------- real samples


@needs_samples
def test_sample_gsm8k_jsonl():
    records = load_records(SAMPLES / "gsm8k" / "test.sample.jsonl", columns=["question", "answer"])
    assert len(records) == 20
    assert "####" in records[0]["answer"]


@needs_samples
def test_sample_sst2_tsv_with_header():
    records = load_records(SAMPLES / "sst2" / "dev.sample.tsv", columns=["sentence", "label"])
    assert len(records) == 40
    assert {r["label"] for r in records} <= {"0", "1"}


@needs_samples
def test_sample_agnews_tsv_without_header():
    path = SAMPLES / "agnews" / "test.sample.tsv"
    records = load_records(path, names=["text", "label"], columns=["text", "label"])
    assert len(records) == 40
    assert {r["label"] for r in records} <= {"World", "Sports", "Business", "Sci/Tech"}
    assert records[0]["text"].startswith("Unions representing workers")
    with pytest.raises(UnlearnbenchError, match="no header row"):
        load_records(path)


@needs_samples
@pytest.mark.parametrize("name", ["forget01", "retain90"])
def test_sample_tofu_json_lists(name):
    records = load_records(SAMPLES / "tofu" / f"{name}.sample.json", columns=["question", "answer"])
    assert len(records) == 10


@needs_samples
def test_sample_muse_news_json():
    folder = SAMPLES / "muse_news"
    for name in ("knowmem_forget_qa", "knowmem_forget_qa_icl", "knowmem_retain2_qa"):
        assert load_records(folder / f"{name}.sample.json", columns=["question", "answer"])
    assert load_records(folder / "verbmem_forget.sample.json", columns=["prompt", "gt"])
    for name in ("privleak_forget", "privleak_holdout"):
        records = load_records(folder / f"{name}.sample.json", columns=["text"])
        assert all(isinstance(r["text"], str) and r["text"] for r in records)
