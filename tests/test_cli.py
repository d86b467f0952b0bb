"""The command line without running a model: start-up cost, entry points, and the study's
argument errors (one line on stderr, exit 2)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from unlearnbench.cli import main


def test_help_imports_no_torch():
    # nor any experiment tracker (--log): they are imported when a tracker run opens
    code = (
        "import sys\nfrom unlearnbench.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "heavy = ('torch', 'transformers', 'rich', 'wandb', 'mlflow', 'tensorboard')\n"
        "sys.exit(sorted(m for m in heavy if m in sys.modules) != [])"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "usage: unlearnbench" in result.stdout


def test_python_dash_m_runs_the_cli():
    from unlearnbench import __version__

    result = subprocess.run([sys.executable, "-m", "unlearnbench.cli", "--version"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == __version__


def test_no_command_prints_help_and_exits_2(capsys):
    assert main([]) == 2
    assert "COMMAND" in capsys.readouterr().out


@pytest.mark.parametrize(
    "yaml, args, needle",
    [
        ("methods: [npo]\nattacks: [finetune:arith]\n", [], "declares no expected findings"),
        (
            "methods: [npo]\nattacks: [finetune:arith]\nbenchmark: muse-news\n"
            "expected: [{claim: x, check: {kind: drop, method: npo}}]\n",
            ["--size", "micro"],
            "--size applies to the toy",
        ),
        (
            "methods: [npo]\nattacks: [finetune:arith]\nexpected: [{claim: x, check: {kind: drop, method: npo}}]\n",
            ["--seeds", "a-b"],
            "--seeds 'a-b'",
        ),
    ],
)
def test_study_bad_input_is_one_line_exit_2(tmp_path, capsys, yaml, args, needle):
    exp = tmp_path / "exp.yaml"
    exp.write_text(yaml)
    assert main(["study", str(exp), "--out", str(tmp_path / "out"), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err
    assert not (tmp_path / "out").exists()  # nothing is written before the preset is valid


def test_load_study_overrides():
    from unlearnbench.study import load_study

    exp = load_study("ilu-robustness", size="micro", seeds="0-1")
    assert exp.benchmark == "toy,size=micro" and exp.seeds == [0, 1] and exp.expected
    assert load_study("ilu-robustness", seeds=[3]).seeds == [3]


@pytest.mark.parametrize(
    "env, code, expected",
    [
        ({}, "import unlearnbench", "PASSIVE"),
        ({"OMP_WAIT_POLICY": "ACTIVE"}, "import unlearnbench", "ACTIVE"),  # the user's choice stands
        ({}, "import torch, unlearnbench", "unset"),  # too late to matter: not pretended
    ],
)
def test_omp_wait_policy_is_passive_unless_the_user_chose(env, code, expected):
    base = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run(
        [sys.executable, "-c", f"{code}; import os; print(os.environ.get('OMP_WAIT_POLICY', 'unset'))"],
        env={**base, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == expected


@pytest.mark.parametrize("command", ["sweep", "study"])
def test_ray_options_without_the_ray_executor_are_refused(command, tmp_path, capsys):
    store = tmp_path / "never.sqlite"
    args = [command, "--address", "ray://nowhere:10001", "--store", str(store)]
    args += ["--methods", "npo", "--attacks", "finetune:arith"] if command == "sweep" else ["ilu-robustness"]
    assert main(args) == 2
    assert "need --executor ray" in capsys.readouterr().err
    assert not store.exists()
