"""Bad input is refused when the run is planned, before any model is built, loaded or trained.

Every case goes through the command line: exit 2, one line on stderr, no model-loading or training
function called (they are replaced by functions that fail the test), and the results store that
already holds a finished cell byte for byte as it was. Plus the plan-time parts themselves: the
device check with its "did you mean", range checks of configs, and tasks that are only trained on
(ILU environments, ``relearn:<task>``) reading their train file alone.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import pytest

from unlearnbench import runner
from unlearnbench.cli import main
from unlearnbench.errors import UnlearnbenchError
from unlearnbench.models import resolve_device

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "data" / "samples"
GSM8K_SAMPLE = SAMPLES / "gsm8k" / "test.sample.jsonl"
needs_gsm8k_sample = pytest.mark.skipif(not GSM8K_SAMPLE.is_file(), reason=f"sample absent: {GSM8K_SAMPLE}")
MICRO = "toy,size=micro"


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    """No network: a hub dataset that is not cached is unreachable (env vars and module constants)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    import datasets.config
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True)


@pytest.fixture
def no_models(monkeypatch):
    """Every way a run gets a model fails the test: loading, the embedded world's cache lookup and
    training, and an unlearned checkpoint."""
    import unlearnbench.cache
    import unlearnbench.models
    import unlearnbench.toy.model
    import unlearnbench.toy.preset

    touched: list[str] = []

    def forbidden(name):
        def fail(*args, **kwargs):
            touched.append(name)
            raise AssertionError(f"{name} was called: a model was touched before the input was validated")

        return fail

    for module, name in [
        (unlearnbench.models, "load_model"),
        (unlearnbench.toy.model, "train_model"),
        (unlearnbench.toy.model, "get_model_dir"),
        (unlearnbench.toy.preset, "get_model_dir"),
        (unlearnbench.cache, "load_checkpoint"),
    ]:
        monkeypatch.setattr(module, name, forbidden(f"{module.__name__}.{name}"))
    return touched


@pytest.fixture
def store(tmp_path) -> Path:
    """A store that already holds one finished cell (what bad input must never touch)."""
    from unlearnbench.store import ResultStore, ScoreRow

    path = tmp_path / "results.sqlite"
    with ResultStore(path) as s:
        run_id = s.start_run(["earlier"], {})
        rows = [ScoreRow("base", -1, "forget", "qa", "item-1", "correct", 1.0)]
        s.commit_cell(run_id, "c" * 20, {"kind": "base"}, "base", {"method": "base"}, rows, {})
        s.finish_run(run_id)
    return path


def _files(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def _refused(capsys, store: Path, touched: list[str], argv: list[str], needle: str) -> str:
    """Run the CLI; assert exit 2, one stderr line containing ``needle``, no model, store unchanged."""
    before = _files(store.parent)
    t0 = time.time()
    code = main(argv)
    elapsed = time.time() - t0
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and err.startswith("unlearnbench: error: "), err
    assert needle in err, err
    assert touched == []
    assert _files(store.parent) == before  # the store file (and nothing beside it) is as it was
    assert elapsed < 60, f"refused only after {elapsed:.0f} s"
    return err


def _run(store: Path, *args: str) -> list[str]:
    return ["run", "--benchmark", MICRO, "--store", str(store), "--quiet", *args]


def _gsm8k(path: Path, n: int = 4) -> Path:
    rows = [{"question": f"What is {i} plus 2?", "answer": f"{i} + 2 = {i + 2}\n#### {i + 2}"} for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------ the device


@pytest.mark.parametrize(
    "device, needle",
    [
        ("cpuu", "unknown device 'cpuu'; did you mean 'cpu'?"),
        ("cuda0", "did you mean 'cuda:0'?"),
        ("gpu", "did you mean 'cuda'?"),
        ("tpu:x", "unknown device 'tpu:x'"),
    ],
)
def test_bad_device_is_refused_at_plan_time(capsys, store, no_models, device, needle):
    err = _refused(capsys, store, no_models, _run(store, "--method", "npo", "--device", device), needle)
    assert "(devices: cpu, cuda, cuda:N, mps or auto)" in err


def test_missing_accelerator_is_refused_at_plan_time(capsys, store, no_models):
    import torch

    if not torch.cuda.is_available():
        _refused(capsys, store, no_models, _run(store, "--method", "npo", "--device", "cuda"), "CUDA is not available")
    mps = getattr(torch.backends, "mps", None)
    if mps is None or not mps.is_available():
        _refused(capsys, store, no_models, _run(store, "--method", "npo", "--device", "mps"), "MPS")


def test_sweep_and_study_refuse_a_bad_device_before_writing_anything(tmp_path, capsys, store, no_models):
    sweep = ["sweep", "--methods", "npo", "--attacks", "finetune:arith", "--benchmark", MICRO]
    _refused(capsys, store, no_models, [*sweep, "--device", "cpuu", "--store", str(store), "--quiet"], "'cpu'?")
    exp = tmp_path / "exp.yaml"
    exp.write_text(
        "methods: [npo]\nattacks: [finetune:arith]\nbenchmark: toy,size=micro\n"
        "expected: [{claim: x, check: {kind: drop, method: npo}}]\n"
    )
    out = tmp_path / "study-out"
    argv = ["study", str(exp), "--out", str(out), "--store", str(store), "--device", "cpuu", "--quiet"]
    _refused(capsys, store, no_models, argv, "did you mean 'cpu'?")
    assert not out.exists()  # the study's folder is made only once the plan is valid


def test_resolve_device_accepts_what_load_model_accepts():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device(" CPU ").type == "cpu"
    assert resolve_device("auto").type in ("cpu", "cuda")
    with pytest.raises(UnlearnbenchError, match="did you mean 'auto'"):
        resolve_device("atuo")


# ------------------------------------------------------------------- names and option values


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--method", "npoo"], "unknown method 'npoo'; did you mean 'npo'?"),
        (["--method", "npo", "--attack", "finetun:arith"], "unknown attack 'finetun'; did you mean 'finetune'?"),
        (["--method", "npo", "--attack", "finetune:arithh"], "unknown task 'arithh'; did you mean 'arith'?"),
        (["--method", "ilu,envs=arithh"], "unknown task 'arithh'"),
        (["--method", "npo", "--attack", "relearn:arithh"], "relearn: unknown source 'arithh'"),
        (["--method", "npo", "--probes", "qa,clozee"], "unknown probe 'clozee'; did you mean 'cloze'?"),
        (["--method", "npo", "--probes", "bio,qa,batch_size=0"], "batch_size must be positive"),  # option of qa
        (["--method", "npo,beta=high"], "option 'beta' of npo expects a number, got 'high'"),
        (["--method", "npo,bta=0.1"], "unknown option 'bta' for npo; did you mean 'beta'?"),
        (["--method", "npo", "--attack", "finetune:arith,lora=maybe"], "option 'lora' of finetune expects a boolean"),
        (["--method", "npo", "--attack", "quantize:12"], "quantize needs a number of bits from 2 to 8"),
        (["--method", "ilu,base=rocr"], "ilu needs a gradient-trained base method"),
    ],
)
def test_unknown_names_and_bad_values_of_every_kind(capsys, store, no_models, args, needle):
    _refused(capsys, store, no_models, _run(store, *args), needle)


def test_bad_benchmark_and_probe_options(capsys, store, no_models):
    argv = ["run", "--benchmark", "toy,size=big", "--method", "npo", "--store", str(store), "--quiet"]
    _refused(capsys, store, no_models, argv, "option 'size' of toy expects one of 'micro', 'small', got 'big'")
    argv[2] = "toyy"
    _refused(capsys, store, no_models, argv, "unknown benchmark 'toyy'; did you mean 'toy'?")


@pytest.mark.parametrize(
    "probe, needle",
    [
        ("qa,batch_size=x", "option 'batch_size' of qa expects an integer, got 'x'"),
        ("qa,batch_size=0", "batch_size must be positive"),
        ("fluency,max_new_tokens=0", "max_new_tokens, batch_size and rep_n must be positive"),
        ("knowmem,max_new_tokens=0", "max_new_tokens must be positive"),
        ("privleak,k=0", "k must be in (0, 1]"),
        ("tofu,gen_batch_size=-1", "gen_batch_size must be >= 0"),
    ],
)
def test_bad_probe_options(no_models, probe, needle):
    """Probe options through the library (``--probes`` passes them too: an option follows its probe)."""
    with pytest.raises(UnlearnbenchError) as info:
        runner.plan(runner.RunRequest(method="npo", benchmark=MICRO, probes=["bio", probe]))
    assert needle in str(info.value) and no_models == []


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--method", "npo,warmup=2"], "warmup must be in [0, 1)"),
        (["--method", "npo,lr=-1"], "lr, epochs, batch_size and grad_accum must be positive"),
        (["--method", "npo,max_steps=0"], "max_steps must be positive (or -1 for no limit)"),
        (["--method", "graddiff,alpha=-1"], "alpha and gamma must be >= 0"),
        (["--method", "npo,weight_decay=-0.1"], "weight_decay must be >= 0"),
        (["--method", "ilu,lr=-1"], "invalid options for npo"),
        (["--method", "ilu,lam=-1"], "lam must be >= 0"),
        (["--method", "rmu,steering_coeff=0"], "steering_coeff must be positive"),
        (["--method", "rocr,l2=0"], "l2 must be positive"),
        (["--method", "npo", "--attack", "relearn:forget,steps=0"], "steps, eval_every, lr and batch_size"),
        (["--method", "npo", "--attack", "relearn:forget,lora_r=0"], "lora_r and lora_alpha positive"),
        (["--method", "npo", "--attack", "finetune:arith,lr=-1"], "epochs, lr and batch_size must be positive"),
        (["--method", "npo", "--attack", "finetune:arith,warmup=2"], "warmup must be in [0, 1)"),
        (["--method", "npo", "--attack", "finetune:arith,max_steps=0"], "max_steps and n_train must be positive"),
        (["--method", "npo", "--attack", "finetune:arith,n_train=0"], "max_steps and n_train must be positive"),
        (["--method", "npo", "--attack", "quantize:4,group_size=0"], "group_size must be positive"),
    ],
)
def test_out_of_range_values(capsys, store, no_models, args, needle):
    _refused(capsys, store, no_models, _run(store, *args), needle)


# ---------------------------------------------------------------------------------- --data files


def test_unused_data_key(tmp_path, capsys, store, no_models):
    f = str(_gsm8k(tmp_path / "train.jsonl"))
    args = ["--method", "npo", "--attack", "finetune:arith", "--data", f"gsm8k={f}"]
    _refused(capsys, store, no_models, _run(store, *args), "--data gsm8k: no attack or ILU environment")


@pytest.mark.parametrize("kind", ["missing", "directory"])
@pytest.mark.parametrize("user", ["finetune:gsm8k", "relearn:gsm8k", "ilu"])
def test_data_to_a_missing_file_or_a_directory(tmp_path, capsys, store, no_models, kind, user):
    path = str(tmp_path / "nope.jsonl") if kind == "missing" else str(tmp_path)
    args = ["--method", "ilu,envs=gsm8k"] if user == "ilu" else ["--method", "npo", "--attack", user]
    needle = "no such data file" if kind == "missing" else "is a directory"
    _refused(capsys, store, no_models, _run(store, *args, "--data", f"gsm8k={path}"), needle)


@pytest.mark.parametrize("user", ["finetune:gsm8k", "relearn:gsm8k", "ilu"])
def test_malformed_data_file_is_refused_at_plan_time(tmp_path, capsys, store, no_models, user):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"question": "q", "answer": "no final number"}) + "\n", encoding="utf-8")
    test = str(_gsm8k(tmp_path / "test.jsonl"))
    args = ["--method", "ilu,envs=gsm8k"] if user == "ilu" else ["--method", "npo", "--attack", user]
    args += ["--data", f"gsm8k={bad}"] + (["--data", f"gsm8k:test={test}"] if user.startswith("finetune") else [])
    _refused(capsys, store, no_models, _run(store, *args), "the answer has no final number")


def test_a_split_the_run_cannot_get_is_refused_at_plan_time(tmp_path, capsys, store, no_models):
    """finetune:<task> measures accuracy on the test split: without a test file (and the hub offline)
    that is exit 2 now, not a failed attack cell after the unlearning."""
    f = str(_gsm8k(tmp_path / "train.jsonl"))
    args = ["--method", "npo", "--attack", "finetune:gsm8k", "--data", f"gsm8k={f}"]
    _refused(capsys, store, no_models, _run(store, *args), "no local test file given")
    # an environment without any file: the hub's train split is not cached either
    err = _refused(capsys, store, no_models, _run(store, "--method", "ilu,envs=gsm8k"), "no local train file given")
    assert "gsm8k:test" not in err  # an environment only trains: the message asks for the train file alone


# ------------------------------------------------------------ tasks that are only trained on


def test_ilu_environment_and_relearn_source_need_no_test_file(tmp_path, no_models):
    f = str(_gsm8k(tmp_path / "train.jsonl", n=5))
    p = runner.plan(
        runner.RunRequest(
            method="ilu,envs=gsm8k+arith", attacks=["relearn:gsm8k,n=3"], benchmark=MICRO, data={"gsm8k": f}
        )
    )
    ilu, relearn = p.method.obj, p.attacks[0][0].obj
    assert len(ilu._env_examples("gsm8k")) == 5 and ilu._env_examples("gsm8k")[0].target.endswith("#### 2")
    assert len(relearn._source_train) == 5
    assert ilu.env_tasks["gsm8k"]._read.keys() == {"train"}  # the test split was never read
    assert no_models == []


@needs_gsm8k_sample
def test_real_gsm8k_file_as_an_ilu_environment_plans(no_models):
    p = runner.plan(runner.RunRequest(method="ilu,envs=gsm8k", benchmark=MICRO, data={"gsm8k": str(GSM8K_SAMPLE)}))
    examples = p.method.obj._env_examples("gsm8k")
    assert len(examples) == sum(1 for line in GSM8K_SAMPLE.read_text().splitlines() if line.strip())
    assert all("####" in ex.target for ex in examples)


def test_dataset_task_reads_each_split_once(tmp_path, monkeypatch):
    """The plan reads the data; the run uses what was read (no second parse of a large file)."""
    from unlearnbench.registry import TASKS
    from unlearnbench.tasks import datasets

    f = str(_gsm8k(tmp_path / "t.jsonl"))
    t = TASKS.get("gsm8k")(datasets.DatasetTaskConfig(train=f, test=f))
    calls = []
    real = datasets.DatasetTask._read_local
    monkeypatch.setattr(datasets.DatasetTask, "_read_local", lambda self, path: calls.append(path) or real(self, path))
    t.load_train()
    assert len(calls) == 1
    data = t.load()
    t.load()
    assert len(calls) == 2 and len(data.train) == len(data.test) == 4


# ------------------------------------------------------------------- what the model decides


@pytest.mark.parametrize(
    "method, needle",
    [
        ("rmu,layer=5", "rmu: layer 5 does not exist (the model has 2 blocks)"),
        ("rmu,layer=1,trainable_layers=0+2", "include blocks after L=1"),
        ("rocr,layers=0+2", "rocr: layer 2 does not exist (the model has 2 layers)"),
    ],
)
def test_layer_options_are_checked_against_the_recipe(capsys, store, no_models, method, needle):
    """The micro world's models have 2 blocks, which its recipe says before any model is trained."""
    _refused(capsys, store, no_models, _run(store, "--method", method), needle)


def test_ilu_checks_its_base_at_plan_time(no_models):
    from unlearnbench.data.types import PlanContext
    from unlearnbench.methods.ilu import ILU, ILUConfig

    class TwoBlocks:
        def n_layers(self):
            return 2

    ilu = ILU(ILUConfig(base="rmu"))
    ctx = PlanContext(defaults_for=lambda name: {"layer": 3}, data_tasks={}, benchmark=TwoBlocks())
    with pytest.raises(UnlearnbenchError, match="rmu: layer 3 does not exist"):
        ilu.bind(ctx)


def _model_dir(path: Path, config: dict | None) -> Path:
    path.mkdir()
    (path / "model.safetensors").write_bytes(b"not read by these checks")
    if config is not None:
        (path / "config.json").write_text(json.dumps(config))
    return path


def test_count_layers_reads_the_config_alone(tmp_path):
    from unlearnbench.models import count_layers

    assert count_layers(_model_dir(tmp_path / "llama", {"num_hidden_layers": 3})) == 3
    assert count_layers(_model_dir(tmp_path / "gpt2", {"n_layer": 12})) == 12
    assert count_layers(_model_dir(tmp_path / "vlm", {"text_config": {"num_hidden_layers": 5}})) == 5
    assert count_layers(_model_dir(tmp_path / "odd", {"hidden_size": 8})) is None
    assert count_layers(tmp_path / "absent") is None
    assert count_layers("some-org/not-in-the-cache") is None


@pytest.mark.parametrize(
    "source, needle",
    [
        ("/nope/model", "model=/nope/model: no such file or directory"),
        ("PICKLED", "only pickled weights"),
        ("NOCONFIG", "has *.safetensors but no config.json"),
    ],
)
def test_real_benchmark_model_path_is_checked_before_the_store_opens(
    tmp_path, capsys, store, no_models, source, needle
):
    if source == "PICKLED":
        (tmp_path / "pk").mkdir()
        (tmp_path / "pk" / "pytorch_model.bin").write_bytes(b"")
        source = str(tmp_path / "pk")
    elif source == "NOCONFIG":
        source = str(_model_dir(tmp_path / "nc", None))
    argv = ["run", "--benchmark", f"tofu,model={source}", "--method", "npo", "--store", str(store), "--quiet"]
    _refused(capsys, store, no_models, argv, needle)


def test_real_benchmark_limit_must_not_be_negative(capsys, store, no_models):
    argv = ["run", "--benchmark", "tofu,model=org/name,limit=-1", "--method", "npo", "--store", str(store)]
    _refused(capsys, store, no_models, argv, "limit must be >= 0")


# ------------------------------------------------------------------ --model, --oracle, --unlearned


def test_model_flag_on_the_embedded_world_says_why_not(capsys, store, no_models):
    err = _refused(capsys, store, no_models, _run(store, "--model", "org/name", "--method", "npo"), "--model does not")
    assert "fictitious" in err and "--unlearned" in err


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--benchmark", "ort", "--unlearned", "DIR"], "--unlearned needs --model"),
        (["--benchmark", "toy,size=micro", "--unlearned", "DIR", "--method", "npo"], "use it with --method none"),
        (["--benchmark", "toy,size=micro", "--unlearned", "PICKLED"], "only pickled weights"),
        (["--benchmark", "toy,size=micro", "--unlearned", "/nope/x"], "--unlearned /nope/x: no such file"),
        (["--benchmark", "tofu,model=org/a", "--model", "org/b", "--method", "npo"], "give it once"),
        (["--benchmark", "tofu", "--model", "org/a", "--dtype", "fp8", "--method", "npo"], "unknown dtype 'fp8'"),
        (["--benchmark", "tofu", "--model", "PICKLED", "--method", "npo"], "only pickled weights"),
        (["--benchmark", "toy"], "give --method SPEC"),
    ],
)
def test_model_and_unlearned_flags_refused_in_one_line(tmp_path, capsys, store, no_models, args, needle):
    pickled = tmp_path / "pk"
    pickled.mkdir()
    (pickled / "pytorch_model.bin").write_bytes(b"")
    (pickled / "config.json").write_text("{}")
    good = _model_dir(tmp_path / "good", {"model_type": "llama"})
    args = [{"PICKLED": str(pickled), "DIR": str(good)}.get(a, a) for a in args]
    argv = ["run", *args, "--store", str(store), "--quiet"]
    _refused(capsys, store, no_models, argv, needle)


def test_model_flags_become_the_benchmark_options(tmp_path, no_models):
    from unlearnbench.runner import RunRequest, plan

    target = _model_dir(tmp_path / "t", {"model_type": "llama"})
    oracle = _model_dir(tmp_path / "o", {"model_type": "llama"})
    model = {
        "model": str(target),
        "oracle": str(oracle),
        "dtype": "bf16",
        "revision": "main",
        "trust_remote_code": True,
    }
    p = plan(RunRequest(method="npo", benchmark="tofu", model=model))
    cfg = p.benchmark.config
    assert (cfg.model, cfg.oracle, cfg.dtype, cfg.revision, cfg.trust_remote_code) == (
        str(target),
        str(oracle),
        "bf16",
        "main",
        True,
    )
    assert p.benchmark.obj.has_oracle
    # the same run written with benchmark options has the same cell ids
    spelled = f"tofu,model={target},oracle={oracle},dtype=bf16,revision=main,trust_remote_code=true"
    from unlearnbench.runner import cell_ids

    assert cell_ids(p, "a" * 64) == cell_ids(plan(RunRequest(method="npo", benchmark=spelled)), "a" * 64)


def test_unlearned_makes_method_none_with_the_checkpoint(tmp_path, no_models):
    from unlearnbench.runner import RunRequest, plan

    target = _model_dir(tmp_path / "t", {"model_type": "llama"})
    ckpt = _model_dir(tmp_path / "u", {"model_type": "llama"})
    p = plan(RunRequest(method="none", benchmark="tofu", model={"model": str(target)}, unlearned=str(ckpt)))
    assert p.method.name == "none" and p.method.config.checkpoint == str(ckpt)
    assert p.method.key()["checkpoint_sha256"] == p.method.obj.checkpoint_sha256() != ""
