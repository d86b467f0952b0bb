"""Real fine-tuning datasets (unlearnbench/tasks/datasets.py, tasks/finetune/*.yaml): specs, local
files in the real formats (../shared/data/samples when present, synthetic files in the hub's
column layouts otherwise), error messages, subsampling, result keys and the runner's --data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from unlearnbench import runner
from unlearnbench.cli import main
from unlearnbench.data.types import Example
from unlearnbench.errors import SpecError, UnlearnbenchError
from unlearnbench.registry import TASKS
from unlearnbench.spec import build_config, tasks_dir
from unlearnbench.tasks.datasets import DATASET_TASKS, DatasetTask, DatasetTaskConfig

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "data" / "samples"
needs_samples = pytest.mark.skipif(not SAMPLES.is_dir(), reason=f"samples folder absent: {SAMPLES}")
SIX = {"gsm8k", "agnews", "sst2", "winogrande", "mnli", "qqp"}


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    """No network: env vars for later imports, module constants for earlier ones."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    import datasets.config

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True)


def task(name: str, **options):
    cls = TASKS.get(name)
    return cls(build_config(cls.Config, options, plugin=name))


def jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def sst2_rows(n: int) -> list[dict]:
    return [{"sentence": f"review number {i} ", "label": i % 2, "idx": i} for i in range(n)]


# ---------------------------------------------------------------------------------- specs


def test_every_yaml_registers_a_task():
    files = sorted(p.stem for p in (tasks_dir() / "finetune").glob("*.yaml"))
    assert set(files) == SIX == set(DATASET_TASKS)
    assert SIX <= set(TASKS.names())
    for name in SIX:
        cls = TASKS.get(name)
        assert issubclass(cls, DatasetTask) and cls.Config is DatasetTaskConfig
        assert cls.name == name and cls.version and cls.description
        s = cls.spec
        assert s.hub_id and s.splits["train"] == "train"
        if s.scoring == "choice":
            assert len(s.choices) >= 2 and s.label_field in s.columns
    assert TASKS.get("gsm8k").spec.scoring == "number"
    assert TASKS.get("sst2").spec.splits["test"] == "validation"  # GLUE hides test labels
    assert TASKS.get("mnli").spec.splits["test"] == "validation_matched"
    assert TASKS.get("qqp").spec.choices == ("no", "yes")  # not YAML booleans
    assert TASKS.get("winogrande").spec.choices == ("1", "2")
    assert TASKS.get("agnews").spec.choices == ("World", "Sports", "Business", "Sci/Tech")


def test_config_defaults_and_validation():
    c = DatasetTaskConfig()
    assert (c.train, c.test, c.n_train, c.n_test, c.seed) == (None, None, 1000, 200, 0)
    with pytest.raises(SpecError, match="n_train and n_test must be positive"):
        build_config(DatasetTaskConfig, {"n_train": "0"}, plugin="sst2")
    assert build_config(DatasetTaskConfig, {"n_test": "-1"}).n_test == -1


# ---------------------------------------------------------------------------------- real samples


@needs_samples
def test_gsm8k_sample_jsonl():
    f = SAMPLES / "gsm8k" / "test.sample.jsonl"
    data = task("gsm8k", train=str(f), test=str(f), n_train=-1, n_test=-1).load()
    assert data.scoring == "number" and data.choices == () and data.max_new_tokens == 256
    assert len(data.train) == len(data.test) == 20
    first = data.train[0]
    assert first.prompt.startswith("Question: Janet") and first.prompt.endswith("\nAnswer:")
    assert first.target.startswith(" Janet sells") and first.target.endswith("#### 18")
    assert all("####" in ex.target and "\n" not in ex.target for ex in data.train)  # one line: generation stops at \n


@needs_samples
def test_sst2_sample_tsv_with_header():
    f = SAMPLES / "sst2" / "dev.sample.tsv"
    data = task("sst2", train=str(f), test=str(f), n_train=-1, n_test=-1).load()
    assert data.scoring == "choice" and data.choices == ("negative", "positive")
    assert len(data.train) == 40
    assert data.train[0] == Example("Review: the expressive power of the camera\nSentiment:", " positive")
    assert {ex.target for ex in data.train} == {" negative", " positive"}
    assert sum(ex.target == " positive" for ex in data.train) == 22


@needs_samples
def test_agnews_sample_tsv_without_header():
    f = SAMPLES / "agnews" / "test.sample.tsv"
    data = task("agnews", train=str(f), test=str(f), n_train=-1, n_test=-1).load()
    assert len(data.train) == 40
    assert data.train[0].prompt.startswith("Text: Unions representing workers")
    assert data.train[0].target == " Business"
    assert {ex.target.strip() for ex in data.train} <= set(data.choices)
    assert sum(ex.target == " Sci/Tech" for ex in data.train) == 25


# ---------------------------------------------------------------------------------- hub layouts


def test_winogrande_hub_layout(tmp_path):
    f = jsonl(
        tmp_path / "wg.jsonl",
        [
            {
                "sentence": "The trophy did not fit in the case because _ was too big.",
                "option1": "trophy",
                "option2": "case",
                "answer": "1",
            },
            {
                "sentence": "The trophy did not fit in the case because _ was too small.",
                "option1": "trophy",
                "option2": "case",
                "answer": "2",
            },
        ],
    )
    data = task("winogrande", train=str(f), test=str(f)).load()
    assert data.train[0].prompt == (
        "Sentence: The trophy did not fit in the case because _ was too big.\nOption 1: trophy\nOption 2: case\nAnswer:"
    )
    assert [ex.target for ex in data.train] == [" 1", " 2"]


def test_mnli_hub_layout_and_glue_tsv(tmp_path):
    hub = jsonl(
        tmp_path / "mnli.jsonl",
        [
            {"premise": "A man sleeps.", "hypothesis": "A person rests.", "label": 0, "idx": 0},
            {"premise": "A man sleeps.", "hypothesis": "He dreams.", "label": 1, "idx": 1},
            {"premise": "A man sleeps.", "hypothesis": "He runs.", "label": 2, "idx": 2},
        ],
    )
    data = task("mnli", train=str(hub), test=str(hub)).load()
    assert data.choices == ("entailment", "neutral", "contradiction")
    assert [ex.target for ex in data.train] == [" entailment", " neutral", " contradiction"]
    assert data.train[0].prompt == "Premise: A man sleeps.\nHypothesis: A person rests.\nRelation:"
    glue = tmp_path / "dev_matched.tsv"  # GLUE's own layout: sentence1, sentence2, gold_label
    glue.write_text(
        "index\tgenre\tsentence1\tsentence2\tgold_label\n"
        "0\tfiction\tA man sleeps.\tHe runs.\tcontradiction\n"
        "1\tfiction\tA man sleeps.\tA person rests.\tentailment\n",
        encoding="utf-8",
    )
    data = task("mnli", train=str(glue), test=str(glue)).load()
    assert [ex.target for ex in data.test] == [" contradiction", " entailment"]


def test_qqp_hub_layout_csv_and_glue_tsv(tmp_path):
    hub = tmp_path / "qqp.csv"
    hub.write_text(
        'question1,question2,label,idx\n"How do I cook rice?","What is the way to cook rice?",1,0\n'
        '"Why is the sky blue?","How tall is Everest?",0,1\n',
        encoding="utf-8",
    )
    data = task("qqp", train=str(hub), test=str(hub)).load()
    assert data.choices == ("no", "yes")
    assert [ex.target for ex in data.train] == [" yes", " no"]
    assert data.train[0].prompt == (
        "Question 1: How do I cook rice?\nQuestion 2: What is the way to cook rice?\nDuplicate?"
    )
    glue = tmp_path / "dev.tsv"
    glue.write_text(
        "id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n"
        "0\t1\t2\tWhy is the sky blue?\tWhy is the sky not green?\t0\n",
        encoding="utf-8",
    )
    assert task("qqp", train=str(glue), test=str(glue)).load().train[0].target == " no"


def test_agnews_hub_ints_and_sst2_parquet(tmp_path):
    f = jsonl(tmp_path / "ag.jsonl", [{"text": f"news {i}", "label": i} for i in range(4)])
    assert [ex.target for ex in task("agnews", train=str(f), test=str(f)).load().train] == [
        " World",
        " Sports",
        " Business",
        " Sci/Tech",
    ]
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(sst2_rows(4)), tmp_path / "s.parquet")
    p = str(tmp_path / "s.parquet")
    assert [ex.target for ex in task("sst2", train=p, test=p).load().test] == [" negative", " positive"] * 2


# ---------------------------------------------------------------------------------- errors


def test_missing_column_names_the_file_and_expected_columns(tmp_path):
    f = jsonl(tmp_path / "bad.jsonl", [{"sentence": "fine", "score": 1}])
    with pytest.raises(UnlearnbenchError) as info:
        task("sst2", train=str(f), test=str(f)).load()
    msg = str(info.value)
    assert "\n" not in msg and f"'{f}'" in msg
    assert "lacks column(s) 'label'" in msg and "expects columns sentence (or text), label" in msg
    assert "found: sentence, score" in msg


def test_headerless_csv_with_wrong_width_and_bad_label(tmp_path):
    f = tmp_path / "m.tsv"
    f.write_text("A man sleeps.\tHe runs.\n", encoding="utf-8")
    with pytest.raises(UnlearnbenchError, match=r"no header row naming mnli's columns .*premise \(or sentence1\)"):
        task("mnli", train=str(f), test=str(f)).load()
    g = jsonl(tmp_path / "l.jsonl", [{"sentence": "x", "label": 7}])
    with pytest.raises(UnlearnbenchError, match=r"record 1: label 7 in column 'label' is not one of 0, 1, "):
        task("sst2", train=str(g), test=str(g)).load()
    h = jsonl(tmp_path / "g.jsonl", [{"question": "How many?", "answer": "several"}])
    with pytest.raises(UnlearnbenchError, match="has no final number"):
        task("gsm8k", train=str(h), test=str(h)).load()


def test_missing_file_fails_when_the_task_is_built(tmp_path):
    with pytest.raises(UnlearnbenchError, match=r"^no such data file: '.*nope.jsonl' \(expected jsonl"):
        task("sst2", train=str(tmp_path / "nope.jsonl"))
    with pytest.raises(UnlearnbenchError, match="is a directory"):
        task("sst2", test=str(tmp_path))


def test_no_file_and_offline_gives_one_line(tmp_path):
    with pytest.raises(UnlearnbenchError) as info:
        task("gsm8k").load()
    assert str(info.value) == (
        "gsm8k: no local train file given and dataset 'openai/gsm8k' (config 'main', split 'train') is not in "
        "the local cache (the hub is unreachable); pass one with --data gsm8k=path/to/train.jsonl "
        "(and --data gsm8k:test=path/to/test.jsonl)"
    )
    f = jsonl(tmp_path / "t.jsonl", sst2_rows(3))
    with pytest.raises(
        UnlearnbenchError,
        match=r"^sst2: no local test file given and dataset 'nyu-mll/glue' "
        r"\(config 'sst2', split 'validation'\).*--data sst2:test=",
    ):
        task("sst2", train=str(f)).load()


# ---------------------------------------------------------------------------------- draws and keys


def test_subsampling_is_deterministic(tmp_path):
    f = str(jsonl(tmp_path / "s.jsonl", sst2_rows(50)))
    a = task("sst2", train=f, test=f, n_train=10, n_test=5).load()
    b = task("sst2", train=f, test=f, n_train=10, n_test=5).load()
    c = task("sst2", train=f, test=f, n_train=10, n_test=5, seed=1).load()
    assert a == b and a.train != c.train
    assert len(a.train) == 10 and len(a.test) == 5 and a.train != a.test[:10]
    numbers = [int(ex.prompt.split()[3]) for ex in a.train]
    assert numbers == sorted(numbers)  # file order kept
    assert len(task("sst2", train=f, test=f, n_train=-1).load().train) == 50
    assert len(task("sst2", train=f, test=f, n_train=500).load().train) == 50


def test_key_extra_follows_file_content(tmp_path):
    f = jsonl(tmp_path / "a.jsonl", sst2_rows(4))
    k1 = task("sst2", train=str(f), test=str(f)).key_extra()
    assert set(k1) == {"spec_sha256", "data_sha256"} and set(k1["data_sha256"]) == {"train", "test"}
    jsonl(f, sst2_rows(5))
    k2 = task("sst2", train=str(f), test=str(f)).key_extra()
    assert k2["data_sha256"] != k1["data_sha256"] and k2["spec_sha256"] == k1["spec_sha256"]
    copy = tmp_path / "b.jsonl"
    copy.write_bytes(f.read_bytes())
    assert task("sst2", train=str(copy), test=str(f)).key_extra() == k2
    assert set(task("sst2").key_extra()) == {"spec_sha256"}
    assert task("qqp").key_extra()["spec_sha256"] != k1["spec_sha256"]


# ---------------------------------------------------------------------------------- runner and CLI


def _plan(tmp_path, **kw):
    args = {"method": "npo", "benchmark": "toy,size=micro", **kw}
    return runner.plan(runner.RunRequest(**args))


def test_plan_passes_data_files_to_the_attacked_task(tmp_path):
    tr = str(jsonl(tmp_path / "tr.jsonl", sst2_rows(6)))
    te = str(jsonl(tmp_path / "te.jsonl", sst2_rows(3)))
    p = _plan(
        tmp_path, attacks=["finetune:sst2,epochs=1", "finetune:arith,epochs=1"], data={"sst2": tr, "sst2:test": te}
    )
    (_, sst2), (_, arith) = p.attacks
    assert (sst2.config.train, sst2.config.test) == (tr, te)
    assert sst2.key()["data_sha256"]["test"] != sst2.key()["data_sha256"]["train"]
    assert sst2.key()["config"]["train"] == tr and len(sst2.obj.load().test) == 3
    assert arith.name == "arith" and "data_sha256" not in arith.key()


def test_plan_threads_data_into_ilu_and_relearn(tmp_path):
    f = str(jsonl(tmp_path / "s.jsonl", sst2_rows(6)))
    p = _plan(
        tmp_path, method="ilu,envs=sst2+arith", attacks=["relearn:sst2,steps=1"], data={"sst2": f, "sst2:test": f}
    )
    ilu = p.method.obj
    assert set(ilu.env_tasks) == {"sst2"} and len(ilu._env_examples("sst2")) == 6
    assert set(p.method.key()["env_data"]) == {"sst2"}
    assert p.method.key()["env_data"]["sst2"]["config"]["train"] == f
    relearn = p.attacks[0][0]
    assert (
        relearn.key()["source_task"]["data_sha256"]["train"]
        == p.method.key()["env_data"]["sst2"]["data_sha256"]["train"]
    )
    assert "env_data" not in _plan(tmp_path, method="ilu,envs=arith").method.key()


@pytest.mark.parametrize(
    "data, message",
    [
        ({"gsm8": "x.jsonl"}, "--data gsm8: unknown dataset 'gsm8'; did you mean 'gsm8k'?"),
        ({"arith": "x.jsonl"}, "--data arith: task 'arith' reads no data files"),
        ({"sst2:dev": "x.jsonl"}, "the split after ':' must be train or test"),
        ({"sst2": "missing/x.jsonl"}, "no such data file: 'missing/x.jsonl'"),
    ],
)
def test_plan_rejects_bad_data(tmp_path, data, message):
    with pytest.raises(UnlearnbenchError) as info:
        _plan(tmp_path, attacks=["finetune:sst2"], data=data)
    assert message in str(info.value)


def test_plan_rejects_data_no_attack_uses(tmp_path):
    f = str(jsonl(tmp_path / "s.jsonl", sst2_rows(3)))
    with pytest.raises(UnlearnbenchError, match="no attack or ILU environment of this run uses task 'sst2'"):
        _plan(tmp_path, attacks=["finetune:arith"], data={"sst2": f})


@pytest.mark.parametrize(
    "data, message",
    [
        (["qqq=x.jsonl"], "did you mean 'qqp'?"),
        (["sst2=missing.jsonl"], "no such data file: 'missing.jsonl'"),
        (["sst2"], "expected NAME=PATH or NAME:test=PATH"),
        (["sst2=a.jsonl", "sst2:train=b.jsonl"], "--data sst2 is given twice"),
    ],
)
def test_cli_bad_data_exits_2(tmp_path, capsys, data, message):
    args = [
        "run",
        "--benchmark",
        "toy,size=micro",
        "--method",
        "npo",
        "--attack",
        "finetune:sst2",
        "--store",
        str(tmp_path / "r.sqlite"),
        "--quiet",
    ]
    for d in data:
        args += ["--data", d]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "r.sqlite").exists()
