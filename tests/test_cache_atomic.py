"""AtomicDir and atomic_file: a cache entry under its real name is always whole.

A kill is simulated by an exception at the worst instant (inside the deletion of the folder being
replaced); a second process by publishing the same name between our look and our move.
"""

import os
import shutil

import pytest

from unlearnbench import cache
from unlearnbench.cache import AtomicDir, atomic_file


def _stage(root, name: str, files: dict[str, str], **kw):
    with AtomicDir(root) as stage:
        for rel, text in files.items():
            (stage.path / rel).write_text(text)
        return stage.publish(name, **kw)


def _contents(folder) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(folder.iterdir())}


def _names(root) -> list[str]:
    return sorted(p.name for p in root.iterdir())


OLD = {"a.txt": "old a", "b.txt": "old b", "c.txt": "old c"}
NEW = {"a.txt": "new a", "b.txt": "new b", "c.txt": "new c"}


def test_publish_and_replace_leave_only_the_real_name(tmp_path):
    _stage(tmp_path, "m", OLD)
    assert _names(tmp_path) == ["m"] and _contents(tmp_path / "m") == OLD
    _stage(tmp_path, "m", NEW, replace=False)  # content-addressed: what is there stays
    assert _names(tmp_path) == ["m"] and _contents(tmp_path / "m") == OLD
    _stage(tmp_path, "m", NEW, replace=True)
    assert _names(tmp_path) == ["m"] and _contents(tmp_path / "m") == NEW


def test_unpublished_stage_is_removed(tmp_path):
    with pytest.raises(RuntimeError):
        with AtomicDir(tmp_path) as stage:
            (stage.path / "half").write_text("x")
            raise RuntimeError("killed while writing")
    assert _names(tmp_path) == []


def test_killed_while_the_replaced_folder_is_deleted_never_leaves_a_mix(tmp_path, monkeypatch):
    _stage(tmp_path, "m", OLD)
    real_rmtree = shutil.rmtree

    def dies_half_way(path, *args, **kwargs):
        if any(p.name == "a.txt" for p in os.scandir(path)) and str(path) != str(tmp_path):
            os.remove(os.path.join(path, "a.txt"))  # deleted one file of the folder, then the kill
            raise KeyboardInterrupt
        return real_rmtree(path, *args, **kwargs)

    monkeypatch.setattr(cache.shutil, "rmtree", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        _stage(tmp_path, "m", NEW, replace=True)
    assert _contents(tmp_path / "m") == NEW  # whole: the new folder, not the old one half deleted
    assert all(name.startswith(".tmp-") for name in _names(tmp_path) if name != "m")


@pytest.mark.parametrize("replace", [True, False])
def test_a_rival_publishing_the_same_name_meanwhile_is_kept(tmp_path, monkeypatch, replace):
    real_replace = os.replace
    rival = {"a.txt": "rival"}

    def rival_first(src, dst):
        if os.fspath(dst) == os.fspath(tmp_path / "m") and not (tmp_path / "m").exists():
            (tmp_path / "m").mkdir()  # the other process's publish lands between our look and our move
            (tmp_path / "m" / "a.txt").write_text("rival")
        return real_replace(src, dst)

    monkeypatch.setattr(cache.os, "replace", rival_first)
    assert _stage(tmp_path, "m", NEW, replace=replace) == tmp_path / "m"
    assert _names(tmp_path) == ["m"] and _contents(tmp_path / "m") == rival


def test_atomic_file_keeps_the_old_file_when_the_write_fails(tmp_path):
    target = tmp_path / "t.json"
    with atomic_file(target) as tmp:
        tmp.write_text("one")
    with pytest.raises(RuntimeError):
        with atomic_file(target) as tmp:
            tmp.write_text("tw")
            raise RuntimeError("killed while writing")
    assert target.read_text() == "one" and _names(tmp_path) == ["t.json"]
