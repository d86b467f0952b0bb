"""The embedded models shipped with the package (unlearnbench/toy/shipped.py)."""

import json
import shutil

import pytest

from unlearnbench.errors import UnlearnbenchError
from unlearnbench.toy import shipped

FOLDERS = shipped.manifest()


def _torch_version() -> str:
    import torch

    return torch.__version__.split("+")[0]


def test_every_shipped_file_matches_its_manifest_sha256():
    assert FOLDERS, "nothing is shipped: unlearnbench/toy/weights/manifest.json is missing or empty"
    for name, entry in FOLDERS.items():
        assert shipped.verify(name) == shipped.ROOT / name
        assert set(entry["files"]) >= {"model.safetensors", "config.json", "tokenizer.json", "quality.json"}
        on_disk = {f.name for f in (shipped.ROOT / name).iterdir()}
        assert on_disk == set(entry["files"]), f"{name}: files not in the manifest: {on_disk - set(entry['files'])}"


@pytest.mark.parametrize("size", ["micro", "small"])
def test_the_current_recipe_finds_its_shipped_models(size):
    """The folder names carry the cache key (world, recipe, torch version): a recipe or world change
    without a re-ship makes every user train again, so it fails here (re-run `world build --ship`)."""
    from unlearnbench.registry import BENCHMARKS
    from unlearnbench.runner import resolve
    from unlearnbench.toy.model import check_quality, model_dir_name

    shipped_torch = {e["trained_on"]["torch"].split("+")[0] for e in FOLDERS.values()}
    if _torch_version() not in shipped_torch:
        pytest.skip(f"the shipped weights were trained with torch {shipped_torch}, this is {_torch_version()}")
    bench = resolve(BENCHMARKS, f"toy,size={size}").obj
    for role in ("target", "oracle"):
        name = model_dir_name(bench.world, bench.recipe, role, bench.model_name)
        assert name in FOLDERS, f"{name} is not shipped (shipped: {sorted(FOLDERS)})"
        quality = check_quality(shipped.ROOT / name, role=role)  # the gate passes on the shipped copy
        assert quality["role"] == role


def _copy_of_shipped(tmp_path):
    root = tmp_path / "weights"
    name = sorted(FOLDERS)[0]
    root.mkdir()
    shutil.copy(shipped.ROOT / shipped.MANIFEST, root / shipped.MANIFEST)
    shutil.copytree(shipped.ROOT / name, root / name)
    return root, name


def test_install_copies_a_verified_folder_into_the_cache(tmp_path):
    root, name = _copy_of_shipped(tmp_path)
    models = tmp_path / "cache" / "models"
    path = shipped.install(name, models, root=root)
    assert path == models / name
    for fname, sha in FOLDERS[name]["files"].items():
        assert shipped.file_sha256(path / fname) == sha
    assert [p.name for p in models.iterdir()] == [name]  # no temporary folder left behind
    assert shipped.install("toy-micro-s0-target-0000000000000000", models, root=root) is None


def test_a_tampered_or_incomplete_shipped_folder_is_refused(tmp_path):
    root, name = _copy_of_shipped(tmp_path)
    weights = root / name / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    with pytest.raises(UnlearnbenchError, match="model.safetensors sha256 differs"):
        shipped.install(name, tmp_path / "models", root=root)
    (root / name / "config.json").unlink()
    with pytest.raises(UnlearnbenchError, match="config.json missing"):
        shipped.verify(name, root=root)
    assert not (tmp_path / "models" / name).exists()


def test_switched_off_nothing_is_installed(tmp_path, monkeypatch):
    root, name = _copy_of_shipped(tmp_path)
    monkeypatch.setenv("UNLEARNBENCH_SHIPPED", "0")
    assert not shipped.enabled()
    assert shipped.install(name, tmp_path / "models", root=root) is None


def test_an_empty_cache_gets_the_shipped_model_without_training(tmp_path, monkeypatch):
    import unlearnbench.toy.model as model_mod
    from unlearnbench.registry import BENCHMARKS
    from unlearnbench.runner import resolve

    bench = resolve(BENCHMARKS, "toy,size=micro").obj
    name = model_mod.model_dir_name(bench.world, bench.recipe, "target", bench.model_name)
    if name not in FOLDERS:
        pytest.skip(f"{name} is not shipped for this torch ({_torch_version()})")

    def no_training(*args, **kwargs):
        raise AssertionError("trained although a shipped copy exists")

    monkeypatch.setattr(model_mod, "train_model", no_training)
    monkeypatch.setenv("UNLEARNBENCH_CACHE", str(tmp_path / "cache"))
    path = model_mod.get_model_dir(bench.world, bench.recipe, "target", bench.model_name)
    assert path == tmp_path / "cache" / "models" / name
    from unlearnbench.models import weights_sha256

    assert weights_sha256(path) == FOLDERS[name]["files"]["model.safetensors"]
    # switched off, the same lookup trains (the cache folder is removed first)
    shutil.rmtree(path)
    monkeypatch.setenv("UNLEARNBENCH_SHIPPED", "0")
    with pytest.raises(AssertionError, match="trained although"):
        model_mod.get_model_dir(bench.world, bench.recipe, "target", bench.model_name)


def test_ship_writes_files_and_manifest_entry(tmp_path):
    src = tmp_path / "toy-x-target-abc"
    src.mkdir()
    (src / "model.safetensors").write_bytes(b"weights")
    (src / "quality.json").write_text("{}")
    root = tmp_path / "weights"
    entry = shipped.ship(src, trained_on={"torch": "2.13.0"}, root=root)
    doc = json.loads((root / shipped.MANIFEST).read_text())
    assert doc["folders"]["toy-x-target-abc"] == entry
    assert entry["files"]["model.safetensors"] == shipped.file_sha256(src / "model.safetensors")
    assert shipped.verify("toy-x-target-abc", root=root) == root / "toy-x-target-abc"
