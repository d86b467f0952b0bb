"""The wheel is complete: built from the source, installed into a fresh virtual environment, it
finds its YAML specs and runs the micro world from a folder that is not the checkout.

The new venv gets the test environment's packages (torch, transformers, ...) through a ``.pth``
path entry, so nothing is downloaded; a path entry does not run that environment's ``.pth`` files,
so the editable install of the checkout is invisible there and only the wheel can be imported.
"""

import json
import os
import shutil
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel_venv(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"  # build from a copy: the build leaves build/ and *.egg-info behind
    for part in ("unlearnbench", "tasks", "leaderboard/schema"):
        shutil.copytree(ROOT / part, src / part, ignore=shutil.ignore_patterns("__pycache__"))
    for f in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(ROOT / f, src / f)
    dist = tmp / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(dist), str(src)],
        check=True,
    )
    (wheel,) = dist.glob("unlearnbench-*.whl")
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    py = venv / "bin" / "python"
    purelib = Path(
        subprocess.run(
            [str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    ours = sysconfig.get_paths()["purelib"]
    (purelib / "test-deps.pth").write_text("\n".join([ours, *site.getsitepackages()]) + "\n")
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel)], check=True)
    return venv, purelib


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "UNLEARNBENCH_TASKS", "UNLEARNBENCH_SHIPPED")}
    return {**env, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", **extra}


def test_wheel_ships_specs_and_imports_from_the_venv(wheel_venv, tmp_path):
    venv, purelib = wheel_venv
    assert (purelib / "unlearnbench" / "_specs" / "benchmarks" / "toy.yaml").is_file()
    assert (purelib / "unlearnbench" / "_schema" / "submission-1.json").is_file()
    weights = purelib / "unlearnbench" / "toy" / "weights"  # the shipped embedded models
    folders = json.loads((weights / "manifest.json").read_text())["folders"]
    assert folders and all((weights / name / f).is_file() for name, e in folders.items() for f in e["files"])
    where = subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-c",
            "import unlearnbench, unlearnbench.spec as s; print(unlearnbench.__file__); print(s.tasks_dir())",
        ],
        cwd=tmp_path,
        env=_env(),
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    assert where[0].startswith(str(purelib)) and where[1].startswith(str(purelib))
    out = subprocess.run(
        [str(venv / "bin" / "unlearnbench"), "list", "benchmarks"],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    for name in ("toy", "tofu", "muse-news", "wmdp", "ort"):
        assert name in out.stdout


def test_wheel_runs_the_micro_world_from_another_folder(wheel_venv, tmp_path):
    """From an empty cache: the models come from the weights shipped in the wheel, not trained."""
    venv, _ = wheel_venv
    cmd = [
        str(venv / "bin" / "unlearnbench"),
        "run",
        "--benchmark",
        "toy,size=micro",
        "--method",
        "npo",
        "--attack",
        "finetune:arith,epochs=1",
        "--store",
        str(tmp_path / "r.sqlite"),
        "--json",
        "--quiet",
    ]
    out = subprocess.run(
        cmd,
        cwd=tmp_path,
        env=_env(UNLEARNBENCH_CACHE=str(tmp_path / "cache"), OMP_WAIT_POLICY="PASSIVE"),
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    doc = json.loads(out.stdout)
    assert [c["status"] for c in doc["cells"]] == ["finished"] * 5  # base, oracle, control, unlearn, attack
    assert doc["forget_quality"]
    assert not any((tmp_path / "cache" / "models").glob("*-tokenizer-*"))  # no tokenizer trained: copied
