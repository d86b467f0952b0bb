"""Plugin registry: in-tree registration, builtin discovery, lazy entry points, error messages.

Each test builds a throwaway package under tmp_path (a real package on sys.path) so the
builtin-import path runs for real, and fakes entry points by monkeypatching
``unlearnbench.registry._entry_points``.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import itertools
import sys
import textwrap

import pytest

import unlearnbench.registry as registry_mod
from unlearnbench.errors import UnknownPluginError, UnlearnbenchError
from unlearnbench.registry import Registry, plugin_version

_ids = itertools.count()


@pytest.fixture
def make_pkg(tmp_path, monkeypatch):
    """make_pkg({'a.py': src, 'sub/b.py': src}) -> (registry, package name).

    The registry lives in a sibling module ``<pkg>_reg`` so plugin modules can import it as
    ``from <pkg>_reg import REG``; ``{pkg}`` in sources is replaced by the package name.
    """
    created: list[str] = []

    def make(files: dict[str, str], group: str | None = None):
        pkg = f"ubtestpkg{next(_ids)}_{abs(hash(str(tmp_path))) % 10**6}"
        created.append(pkg)
        (tmp_path / f"{pkg}_reg.py").write_text(
            f"from unlearnbench.registry import Registry\nREG = Registry('method', {pkg!r}, {group!r})\n"
        )
        (tmp_path / pkg).mkdir()
        (tmp_path / pkg / "__init__.py").write_text("")
        for rel, src in files.items():
            path = tmp_path / pkg / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.parent != tmp_path / pkg and not (path.parent / "__init__.py").exists():
                (path.parent / "__init__.py").write_text("")
            path.write_text(textwrap.dedent(src).replace("{pkg}", pkg))
        monkeypatch.syspath_prepend(str(tmp_path))
        return importlib.import_module(f"{pkg}_reg").REG, pkg

    yield make
    for name in list(sys.modules):
        if any(name == p or name.startswith((p + ".", p + "_")) for p in created):
            del sys.modules[name]


PLUGINS = {
    "npo.py": """
        from {pkg}_reg import REG

        @REG.register(aliases=("npo-kl",))
        class NPO:
            name = "npo"
            version = "1"
    """,
    "rmu.py": """
        from {pkg}_reg import REG

        @REG.register("rmu")
        class RMU:
            version = "2"
    """,
    "family/ga.py": """
        from {pkg}_reg import REG

        @REG.register("grad_ascent", aliases=("ga",))
        class GradAscent:
            version = "1"
    """,
}


def plugin(name=None, version="1", **attrs):
    """A fresh plugin class (distinct object each call)."""
    body = {"version": version, **attrs}
    if name is not None:
        body["name"] = name
    return type(f"Plugin_{name or 'anon'}_{next(_ids)}", (), body)


class FakeDist:
    name = "fake-plugins"
    version = "0.3"


class FakeEntryPoint:
    """Quacks like importlib.metadata.EntryPoint; counts how often it is imported."""

    def __init__(self, name, target=None, error=None, value=None):
        self.name, self.target, self.error = name, target, error
        self.value = value or f"fake_mod:{name}"
        self.group = "g"
        self.dist = FakeDist()
        self.loads = 0

    def load(self):
        self.loads += 1
        if self.error is not None:
            raise self.error
        return self.target


@pytest.fixture
def fake_eps(monkeypatch):
    """fake_eps(*entry_points) -> Registry('method', None, 'g') seeing exactly those."""

    def install(*eps):
        monkeypatch.setattr(registry_mod, "_entry_points", lambda group: tuple(eps) if group == "g" else ())
        return Registry("method", None, "g")

    return install


# ---------------------------------------------------------------------------------------------
# builtins


def test_builtins_discovered_on_first_use(make_pkg):
    reg, pkg = make_pkg(PLUGINS)
    assert f"{pkg}.npo" not in sys.modules  # nothing imported before the first question
    assert reg.names() == ["grad_ascent", "npo", "rmu"]
    assert f"{pkg}.family.ga" in sys.modules  # subpackages are walked too
    assert reg.get("npo").__name__ == "NPO"
    assert reg.get("npo-kl") is reg.get("npo")
    assert reg.get("ga") is reg.get("grad_ascent")
    assert reg.get("rmu").name == "rmu"  # name given to register() is set on the class
    assert [n for n, _ in reg.items()] == ["grad_ascent", "npo", "rmu"]
    assert "npo" in reg and "ga" in reg and "nop" not in reg and 3 not in reg


def test_missing_builtin_package_is_empty():
    for pkg in ("no_such_pkg_ub", "no_such_pkg_ub.sub", "unlearnbench.no_such_subpackage_ub"):
        reg = Registry("probe", pkg, None)
        assert reg.names() == []
        with pytest.raises(UnknownPluginError, match=r"unknown probe 'x' \(available: none\)"):
            reg.get("x")


def test_import_error_inside_builtin_module_propagates(make_pkg):
    reg, pkg = make_pkg({**PLUGINS, "broken.py": "import no_such_dependency_ub\n"})
    with pytest.raises(ModuleNotFoundError) as info:
        reg.names()
    assert info.value.name == "no_such_dependency_ub"
    with pytest.raises(ModuleNotFoundError):  # and again: never silently half-loaded
        reg.get("npo")


def test_plain_import_error_inside_builtin_module_propagates(make_pkg):
    reg, _ = make_pkg({"broken.py": "raise ImportError('cannot import name x from y')\n"})
    with pytest.raises(ImportError, match="cannot import name x"):
        reg.get("anything")


def test_import_error_in_package_init_propagates(make_pkg, tmp_path):
    reg, pkg = make_pkg({})
    (tmp_path / pkg / "__init__.py").write_text("import no_such_dependency_ub2\n")
    with pytest.raises(ModuleNotFoundError, match="no_such_dependency_ub2"):
        reg.names()


# ---------------------------------------------------------------------------------------------
# register()


def test_duplicate_name_raises():
    reg = Registry("method", None, None)
    first = reg.register()(plugin("npo"))
    with pytest.raises(UnlearnbenchError) as info:
        reg.register()(plugin("npo"))
    assert str(info.value) == f"duplicate method 'npo': already registered by {first.__module__}.{first.__qualname__}"
    assert reg.get("npo") is first


@pytest.mark.parametrize(
    "second_name, second_aliases",
    [("kl", ("ga",)), ("kl", ("npo",)), ("ga", ()), ("kl", ("x", "ga"))],
)
def test_alias_clash_raises(second_name, second_aliases):
    reg = Registry("method", None, None)
    reg.register("npo", aliases=("ga",))(plugin())
    with pytest.raises(UnlearnbenchError, match="duplicate method"):
        reg.register(second_name, aliases=second_aliases)(plugin())
    # a failed registration leaves nothing behind
    assert reg.names() == ["npo"] and "kl" not in reg and "x" not in reg


def test_reregistering_same_object_is_fine():
    reg = Registry("method", None, None)
    cls = plugin("npo")
    reg.register(aliases=("n",))(cls)
    reg.register(aliases=("n",))(cls)
    assert reg.get("npo") is cls and reg.get("n") is cls


def test_module_reload_is_not_a_duplicate(make_pkg):
    reg, pkg = make_pkg(PLUGINS)
    old = reg.get("npo")
    importlib.reload(sys.modules[f"{pkg}.npo"])
    new = reg.get("npo")
    assert new is not old and new.__qualname__ == "NPO"


def test_name_rules():
    reg = Registry("attack", None, None)
    with pytest.raises(UnlearnbenchError, match="has no name"):
        reg.register()(plugin())
    with pytest.raises(UnlearnbenchError, match="registered as 'b' but its name attribute is 'a'"):
        reg.register("b")(plugin("a"))
    with pytest.raises(UnlearnbenchError, match="invalid attack name 'a b'"):
        reg.register("a b")(plugin())
    with pytest.raises(UnlearnbenchError, match="invalid attack name 'x,y'"):
        reg.register("ok", aliases=("x,y",))(plugin())
    with pytest.raises(TypeError, match="as a call"):
        reg.register(plugin("bare"))
    with pytest.raises(TypeError, match="tuple of names"):
        reg.register("ok", aliases="ga")
    assert reg.names() == []


def test_subclass_gets_its_own_name():
    reg = Registry("method", None, None)
    base = reg.register()(plugin("npo"))
    sub = reg.register("simnpo")(type("SimNPO", (base,), {}))
    assert sub.name == "simnpo" and base.name == "npo"
    with pytest.raises(UnlearnbenchError, match="duplicate method 'npo'"):
        reg.register()(type("Other", (base,), {}))  # inherits 'npo' without saying so


@pytest.mark.parametrize("version", [None, "", "  ", 1])
def test_version_required(version):
    reg = Registry("method", None, None)
    cls = type("NoVersion", (), {"name": "nv"} if version is None else {"name": "nv", "version": version})
    with pytest.raises(UnlearnbenchError, match="has no version.*keyed by plugin version"):
        reg.register()(cls)
    assert "nv" not in reg


def test_plugin_version():
    cls = plugin("x", version="3.1")
    assert plugin_version(cls) == "3.1"
    assert plugin_version(cls()) == "3.1"
    with pytest.raises(UnlearnbenchError, match="no version"):
        plugin_version(object())


# ---------------------------------------------------------------------------------------------
# unknown names


def test_unknown_suggests_close_name():
    reg = Registry("method", None, None)
    for n in ("npo", "rmu", "grad_ascent"):
        reg.register(n)(plugin())
    with pytest.raises(UnknownPluginError) as info:
        reg.get("nop")
    assert str(info.value) == "unknown method 'nop'; did you mean 'npo'? (available: grad_ascent, npo, rmu)"
    with pytest.raises(UnknownPluginError, match="did you mean 'grad_ascent'"):
        reg.get("gradascent")


def test_unknown_without_close_match():
    reg = Registry("method", None, None)
    reg.register("npo")(plugin())
    with pytest.raises(UnknownPluginError) as info:
        reg.get("zzzzzz")
    assert "did you mean" not in str(info.value)
    assert isinstance(info.value, UnlearnbenchError)


def test_unknown_suggests_entry_point_names_without_importing(fake_eps):
    ep = FakeEntryPoint("fancy_unlearn", plugin())
    reg = fake_eps(ep)
    reg.register("npo")(plugin())
    with pytest.raises(UnknownPluginError) as info:
        reg.get("fancy_unlern")
    assert "did you mean 'fancy_unlearn'?" in str(info.value)
    assert "(available: fancy_unlearn, npo)" in str(info.value)
    assert ep.loads == 0


# ---------------------------------------------------------------------------------------------
# entry points


def test_entry_points_are_lazy(fake_eps):
    target = plugin()
    ep, other = FakeEntryPoint("ext", target), FakeEntryPoint("other", plugin())
    reg = fake_eps(ep, other)
    assert reg.names() == ["ext", "other"]
    assert "ext" in reg
    assert ep.loads == 0 and other.loads == 0
    assert reg.get("ext") is target
    assert target.name == "ext"  # registered under its entry-point name
    assert reg.get("ext") is target
    assert ep.loads == 1 and other.loads == 0  # only the requested one, only once
    assert [n for n, _ in reg.items()] == ["ext", "other"]
    assert other.loads == 1


def test_real_entry_point_imports_module_only_on_get(make_pkg, monkeypatch):
    reg_unused, pkg = make_pkg({"ext.py": "class Ext:\n    name = 'ext'\n    version = '1'\n"})
    ep = importlib.metadata.EntryPoint(name="ext", value=f"{pkg}.ext:Ext", group="g")
    monkeypatch.setattr(registry_mod, "_entry_points", lambda group: (ep,))
    reg = Registry("method", None, "g")
    assert reg.names() == ["ext"]
    assert f"{pkg}.ext" not in sys.modules
    assert reg.get("ext").__name__ == "Ext"
    assert f"{pkg}.ext" in sys.modules


def test_broken_entry_point(fake_eps):
    reg = fake_eps(FakeEntryPoint("shiny", error=ModuleNotFoundError("No module named 'torchx'\n(extra line)")))
    with pytest.raises(UnlearnbenchError) as info:
        reg.get("shiny")
    msg = str(info.value)
    assert "'shiny'" in msg and "fake_mod:shiny" in msg and "fake-plugins 0.3" in msg
    assert "ModuleNotFoundError: No module named 'torchx' (extra line)" in msg
    assert "\n" not in msg
    assert isinstance(info.value.__cause__, ModuleNotFoundError)


def test_broken_real_entry_point(monkeypatch):
    ep = importlib.metadata.EntryPoint(name="gone", value="no_such_module_ub:Thing", group="g")
    monkeypatch.setattr(registry_mod, "_entry_points", lambda group: (ep,))
    reg = Registry("attack", None, "g")
    assert reg.names() == ["gone"]  # listing does not import
    with pytest.raises(
        UnlearnbenchError, match=r"cannot load attack entry point 'gone' \(no_such_module_ub:Thing\).*No module named"
    ):
        reg.get("gone")


def test_entry_point_without_version(fake_eps):
    reg = fake_eps(FakeEntryPoint("nov", type("NoV", (), {})))
    with pytest.raises(UnlearnbenchError, match="entry point 'nov'.*no version"):
        reg.get("nov")
    assert "nov" not in reg._plugins


def test_entry_point_clashing_with_builtin(make_pkg, monkeypatch):
    reg, _ = make_pkg(PLUGINS, group="g")
    ep = FakeEntryPoint("npo", plugin())
    monkeypatch.setattr(registry_mod, "_entry_points", lambda group: (ep,))
    with pytest.raises(
        UnlearnbenchError, match=r"duplicate method 'npo': entry point 'npo'.*already registered by .*NPO"
    ):
        reg.get("npo")
    with pytest.raises(UnlearnbenchError, match="duplicate method 'npo'"):
        reg.items()


def test_entry_point_clashing_with_builtin_alias(make_pkg, monkeypatch):
    reg, _ = make_pkg(PLUGINS, group="g")
    monkeypatch.setattr(registry_mod, "_entry_points", lambda group: (FakeEntryPoint("ga", plugin()),))
    with pytest.raises(UnlearnbenchError, match="duplicate method 'ga'"):
        reg.get("ga")


def test_entry_point_pointing_at_the_builtin_itself_is_fine(make_pkg, monkeypatch):
    reg, pkg = make_pkg(PLUGINS, group="g")
    ep = importlib.metadata.EntryPoint(name="npo", value=f"{pkg}.npo:NPO", group="g")
    monkeypatch.setattr(registry_mod, "_entry_points", lambda group: (ep,))
    assert reg.get("npo").__name__ == "NPO"
    assert reg.names() == ["grad_ascent", "npo", "rmu"]


def test_entry_point_module_that_registers_itself(make_pkg, tmp_path, monkeypatch):
    # A third-party module may also use the decorator on the same registry while it is imported
    # by ep.load(); that is the same object, not a clash.
    reg, pkg = make_pkg({}, group="g")
    (tmp_path / f"{pkg}_ext.py").write_text(
        f"from {pkg}_reg import REG\n\n@REG.register('mine')\nclass Mine:\n    version = '1'\n"
    )
    ep = importlib.metadata.EntryPoint(name="mine", value=f"{pkg}_ext:Mine", group="g")
    monkeypatch.setattr(registry_mod, "_entry_points", lambda group: (ep,))
    assert reg.names() == ["mine"] and f"{pkg}_ext" not in sys.modules
    assert reg.get("mine").__name__ == "Mine"
    assert reg.get("mine") is sys.modules[f"{pkg}_ext"].Mine


def test_entry_point_name_must_match_class_name(fake_eps):
    reg = fake_eps(FakeEntryPoint("alias_ep", plugin("real_name")))
    with pytest.raises(
        UnlearnbenchError,
        match="entry point 'alias_ep'.*registered as 'alias_ep' but its name attribute is 'real_name'",
    ):
        reg.get("alias_ep")


def test_two_distributions_same_entry_point_name(fake_eps):
    a, b = FakeEntryPoint("dup", plugin(), value="a:X"), FakeEntryPoint("dup", plugin(), value="b:Y")
    reg = fake_eps(a, b)
    assert reg.names() == ["dup"]
    with pytest.raises(UnlearnbenchError, match=r"duplicate method 'dup': offered by .*a:X.*b:Y"):
        reg.get("dup")
    same = FakeEntryPoint("twice", plugin(), value="m:Z")
    reg = fake_eps(same, FakeEntryPoint("twice", same.target, value="m:Z"))
    assert reg.get("twice") is same.target


def test_entry_point_lookup_is_patchable_and_default_reads_metadata():
    assert isinstance(registry_mod._entry_points("unlearnbench.no_such_group_ub"), tuple)


# ---------------------------------------------------------------------------------------------
# module-level registries


def test_module_level_registries():
    expected = {
        "METHODS": ("method", "unlearnbench.methods"),
        "ATTACKS": ("attack", "unlearnbench.attacks"),
        "PROBES": ("probe", "unlearnbench.probes"),
        "BENCHMARKS": ("benchmark", "unlearnbench.benchmarks"),
        "TASKS": ("task", "unlearnbench.tasks"),
    }
    for attr, (kind, pkg) in expected.items():
        reg = getattr(registry_mod, attr)
        assert (reg.kind, reg.builtin_package, reg.entry_point_group) == (kind, pkg, pkg)
        decorator = getattr(registry_mod, f"register_{kind}")
        assert decorator.__self__ is reg
