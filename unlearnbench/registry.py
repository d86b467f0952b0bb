"""Plugin registries: name -> class, for methods, attacks, probes, benchmarks and tasks.

Two ways in:

* In-tree plugins decorate their class with ``@register_method()`` (etc.). The registry imports
  every submodule of its builtin package the first time it is asked anything, so a new file in
  ``unlearnbench/methods/`` is picked up without editing a list.
* Third-party packages declare a Python entry point in the registry's group, e.g. in their
  pyproject::

      [project.entry-points."unlearnbench.methods"]
      mymethod = "my_pkg.method:MyMethod"

  Entry points are *lazy*: listing names reads only package metadata; the module is imported the
  first time that one plugin is requested, so a broken or heavy third-party plugin costs nothing
  until it is used.

Every plugin carries a non-empty ``version`` string, because results are keyed by
(plugin name, plugin version, config): bumping ``version`` is how a plugin says "old results no
longer describe me".

Nothing here imports torch; plugins import it in their own modules.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import pkgutil
from types import ModuleType
from typing import Any, Callable, Generic, TypeVar

from unlearnbench.errors import UnknownPluginError, UnlearnbenchError
from unlearnbench.spec import NAME_RE

T = TypeVar("T")


@functools.lru_cache(maxsize=None)
def _entry_points(group: str) -> tuple[Any, ...]:
    """Installed entry points of ``group`` (reading metadata only, nothing is imported).

    A module-level function so tests can monkeypatch it; cached because scanning every installed
    distribution costs tens of milliseconds and the CLI asks several times per run.
    """
    import importlib.metadata  # here, not at the top: it costs ~15 ms and `--help` never needs it

    return tuple(importlib.metadata.entry_points(group=group))


def _qualname(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


def _describe_entry_point(ep: Any) -> str:
    """'mymethod' (my_pkg.method:MyMethod) from distribution 'my-pkg 1.0'."""
    dist = getattr(ep, "dist", None)
    if dist is None:
        where = "an unknown distribution"
    else:
        name = getattr(dist, "name", None) or dist.metadata["Name"]
        where = f"distribution '{name} {getattr(dist, 'version', '?')}'"
    return f"entry point {ep.name!r} ({ep.value}) from {where}"


def plugin_version(obj: Any) -> str:
    """The plugin's ``version`` (class or instance); results are keyed by it, so it must exist."""
    version = getattr(obj, "version", None)
    if not isinstance(version, str) or not version.strip():
        raise UnlearnbenchError(
            f"plugin {_qualname(obj if isinstance(obj, type) else type(obj))} has no version: "
            f"give it a class attribute like version = '1' (results are keyed by plugin version)"
        )
    return version


class Registry(Generic[T]):
    """Names -> plugins of one kind ("method", "attack", ...), with aliases and entry points."""

    def __init__(self, kind: str, builtin_package: str | None, entry_point_group: str | None):
        self.kind = kind
        self.builtin_package = builtin_package
        self.entry_point_group = entry_point_group
        self._plugins: dict[str, T] = {}  # canonical name -> plugin
        self._aliases: dict[str, str] = {}  # alias -> canonical name
        self._from_entry_points: dict[str, T] = {}  # entry-point name -> loaded plugin
        self._builtins = "pending"  # -> "loading" -> "done"

    def __repr__(self) -> str:
        return f"Registry({self.kind!r}, {self.builtin_package!r}, {self.entry_point_group!r})"

    # -- registration ---------------------------------------------------------------------------

    def register(self, name: str | None = None, *, aliases: tuple[str, ...] = ()) -> Callable[[T], T]:
        """Class decorator for in-tree plugins: ``@register_method()`` or ``@register_method('npo')``.

        The name defaults to the class's own ``name`` attribute; when given here it is also set on
        the class (unless the class defines a different one, which is an error: the name typed on
        the command line and the name stored with results must agree).
        """
        if callable(name) and not isinstance(name, str):
            raise TypeError(f"use @{self.kind} registration as a call: @register_{self.kind}()")
        if isinstance(aliases, str):  # aliases="ga" would silently become ("g", "a")
            raise TypeError(f"aliases must be a tuple of names, got the string {aliases!r}")

        def decorator(obj: T) -> T:
            self._add(obj, name, tuple(aliases))
            return obj

        return decorator

    def _add(self, obj: T, name: str | None, aliases: tuple[str, ...]) -> None:
        own = vars(obj).get("name") if hasattr(obj, "__dict__") else None
        if name is None:
            name = getattr(obj, "name", None)
            if not isinstance(name, str):
                raise UnlearnbenchError(
                    f"{self.kind} {_qualname(obj)} has no name: pass one to register() or set a "
                    f"class attribute name = '...'"
                )
        elif own is not None and own != name:
            raise UnlearnbenchError(
                f"{self.kind} {_qualname(obj)} is registered as {name!r} but its name attribute "
                f"is {own!r}; they must agree"
            )
        for n in (name, *aliases):
            if not isinstance(n, str) or not NAME_RE.fullmatch(n):
                raise UnlearnbenchError(
                    f"invalid {self.kind} name {n!r} for {_qualname(obj)}: use letters, digits, '_', '.' and '-'"
                )
        plugin_version(obj)

        # Check every name before changing anything, so a failed registration leaves no trace.
        for n in (name, *aliases):
            existing = self._lookup(n)
            if existing is not None and not self._same(existing, obj):
                raise UnlearnbenchError(f"duplicate {self.kind} {n!r}: already registered by {_qualname(existing)}")
            if n in self._aliases and self._aliases[n] != name:
                raise UnlearnbenchError(f"duplicate {self.kind} {n!r}: already an alias of {self._aliases[n]!r}")

        if getattr(obj, "name", None) != name:
            obj.name = name  # type: ignore[attr-defined]
        self._plugins[name] = obj
        for alias in aliases:
            if alias != name:
                self._aliases[alias] = name

    @staticmethod
    def _same(a: Any, b: Any) -> bool:
        """Same plugin: the same object, or the same module-level class seen again after a module
        reload (``importlib.reload`` makes a new class object with the same qualified name)."""
        if a is b:
            return True
        qn = getattr(a, "__qualname__", None)
        return (
            qn is not None
            and "<locals>" not in qn
            and qn == getattr(b, "__qualname__", None)
            and getattr(a, "__module__", None) == getattr(b, "__module__", None)
        )

    def _lookup(self, name: str) -> T | None:
        """In-tree (or already loaded) plugin by name or alias, without loading anything."""
        if name in self._plugins:
            return self._plugins[name]
        if name in self._aliases:
            return self._plugins[self._aliases[name]]
        return None

    # -- builtins -------------------------------------------------------------------------------

    def _load_builtins(self) -> None:
        """Import every submodule of the builtin package, once, so their decorators run.

        A package that does not exist yet counts as empty; an import error *inside* a plugin
        module propagates, because a silently missing plugin is worse than a loud failure.
        """
        if self._builtins != "pending" or self.builtin_package is None:
            return
        self._builtins = "loading"  # a plugin module that asks this registry while importing
        try:
            try:
                package = importlib.import_module(self.builtin_package)
            except ModuleNotFoundError as e:
                pkg = self.builtin_package
                if e.name is None or not (pkg == e.name or pkg.startswith(e.name + ".")):
                    raise
                package = None
            if package is not None:
                self._import_submodules(package)
        except BaseException:
            self._builtins = "pending"  # try again (and fail again, loudly) next time
            raise
        self._builtins = "done"

    def _import_submodules(self, package: ModuleType) -> None:
        # Not pkgutil.walk_packages: it silently skips subpackages that fail to import.
        path = getattr(package, "__path__", None)
        if path is None:
            return
        for info in sorted(pkgutil.iter_modules(path), key=lambda m: m.name):
            module = importlib.import_module(f"{package.__name__}.{info.name}")
            if info.ispkg:
                self._import_submodules(module)

    # -- entry points ---------------------------------------------------------------------------

    def _entry_point_map(self) -> tuple[dict[str, Any], dict[str, list[Any]]]:
        """(name -> entry point, name -> conflicting entry points) without importing any."""
        if self.entry_point_group is None:
            return {}, {}
        found: dict[str, Any] = {}
        conflicts: dict[str, list[Any]] = {}
        for ep in _entry_points(self.entry_point_group):
            first = found.setdefault(ep.name, ep)
            # The same entry point seen twice (e.g. an editable install on the path twice) is fine.
            if first is not ep and first.value != ep.value:
                conflicts.setdefault(ep.name, [first]).append(ep)
        return found, conflicts

    def _load_entry_point(self, ep: Any, conflicts: dict[str, list[Any]]) -> T:
        if ep.name in self._from_entry_points:
            return self._from_entry_points[ep.name]
        if ep.name in conflicts:
            offers = "; ".join(_describe_entry_point(e) for e in conflicts[ep.name])
            raise UnlearnbenchError(f"duplicate {self.kind} {ep.name!r}: offered by {offers}")
        existing_before = self._lookup(ep.name)
        try:
            obj = ep.load()
        except Exception as e:
            msg = " ".join(str(e).split())
            raise UnlearnbenchError(
                f"cannot load {self.kind} {_describe_entry_point(ep)}: {type(e).__name__}: {msg}"
            ) from e
        # Its module may have registered it itself while importing (same object: fine).
        existing = existing_before if existing_before is not None else self._lookup(ep.name)
        if existing is not None and not self._same(existing, obj):
            raise UnlearnbenchError(
                f"duplicate {self.kind} {ep.name!r}: {_describe_entry_point(ep)} clashes with "
                f"the one already registered by {_qualname(existing)}"
            )
        if existing is None:
            try:
                self._add(obj, ep.name, ())
            except UnlearnbenchError as e:
                raise UnlearnbenchError(f"{_describe_entry_point(ep)}: {e}") from e
        self._from_entry_points[ep.name] = obj
        return obj

    # -- queries --------------------------------------------------------------------------------

    def get(self, name: str) -> T:
        """The plugin called ``name`` (or an alias of it), importing its entry point if needed."""
        self._load_builtins()
        eps, conflicts = self._entry_point_map()
        if name in eps:
            return self._load_entry_point(eps[name], conflicts)
        found = self._lookup(name)
        if found is not None:
            return found
        raise UnknownPluginError(self._unknown_message(name, eps))

    def _unknown_message(self, name: str, eps: dict[str, Any]) -> str:
        available = sorted(set(self._plugins) | set(eps))
        candidates = available + sorted(self._aliases)
        close = difflib.get_close_matches(str(name), candidates, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return f"unknown {self.kind} {name!r}{hint} (available: {', '.join(available) or 'none'})"

    def names(self) -> list[str]:
        """Sorted canonical names, in-tree and entry points (entry points are not imported)."""
        self._load_builtins()
        eps, _ = self._entry_point_map()
        return sorted(set(self._plugins) | set(eps))

    def items(self) -> list[tuple[str, T]]:
        """Every (name, plugin), sorted; imports all entry points (for ``unlearnbench list``)."""
        self._load_builtins()
        eps, conflicts = self._entry_point_map()
        for ep_name in sorted(eps):
            self._load_entry_point(eps[ep_name], conflicts)
        return sorted(self._plugins.items(), key=lambda kv: kv[0])

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        self._load_builtins()
        eps, _ = self._entry_point_map()
        return name in eps or self._lookup(name) is not None


METHODS: Registry[Any] = Registry("method", "unlearnbench.methods", "unlearnbench.methods")
ATTACKS: Registry[Any] = Registry("attack", "unlearnbench.attacks", "unlearnbench.attacks")
PROBES: Registry[Any] = Registry("probe", "unlearnbench.probes", "unlearnbench.probes")
BENCHMARKS: Registry[Any] = Registry("benchmark", "unlearnbench.benchmarks", "unlearnbench.benchmarks")
TASKS: Registry[Any] = Registry("task", "unlearnbench.tasks", "unlearnbench.tasks")

register_method = METHODS.register
register_attack = ATTACKS.register
register_probe = PROBES.register
register_benchmark = BENCHMARKS.register
register_task = TASKS.register

__all__ = [
    "Registry",
    "plugin_version",
    "METHODS",
    "ATTACKS",
    "PROBES",
    "BENCHMARKS",
    "TASKS",
    "register_method",
    "register_attack",
    "register_probe",
    "register_benchmark",
    "register_task",
]
