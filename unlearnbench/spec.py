"""Spec strings and plugin configs.

Every plugin (method, attack, probe, benchmark, task) is chosen on the command line by a *spec*:

    npo,beta=0.1
    finetune:arith,epochs=3,lr=1e-4,lora=true
    ilu,base=rmu,envs=arith+topic

A spec is a plugin name, an optional argument after ':' and comma-separated ``key=value`` options.
The options are raw strings until :func:`build_config` coerces them into the plugin's ``Config``
dataclass, using the field annotations as the schema. That keeps one source of truth for what a
plugin accepts: the dataclass (with ``field(metadata={'help': ...})``) drives parsing, validation,
``--help`` output (:func:`config_help`) and the canonical JSON that results are keyed by
(:func:`config_to_dict`, :func:`canonical_json`).

Errors are :class:`~unlearnbench.errors.SpecError` with one line that quotes what the user typed,
because the CLI shows them without a traceback.

This module must stay light: no torch, nothing heavy (the CLI's ``--help`` imports it).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import pathlib
import re
import types
import typing
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Literal, Mapping, Union

from unlearnbench.errors import SpecError, UnlearnbenchError

# Plugin names: kept to characters that survive shells, file names and result keys unquoted.
NAME_RE = re.compile(r"[A-Za-z0-9_.-]+")

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}
_NONE = {"none", "null"}


# ----------------------------------------------------------------------------------------------
# parsing


@dataclass(frozen=True)
class Spec:
    """A parsed spec string. ``options`` are still raw strings; see :func:`build_config`."""

    name: str
    arg: str | None = None
    # hash=False: a dict is unhashable, and equal specs still hash equal by (name, arg).
    options: dict[str, str] = field(default_factory=dict, hash=False)

    def __str__(self) -> str:
        """Canonical form (options sorted by key), so equal specs print identically."""
        head = self.name if self.arg is None else f"{self.name}:{self.arg}"
        return ",".join([head] + [f"{k}={self.options[k]}" for k in sorted(self.options)])


def parse_spec(text: str) -> Spec:
    """Parse ``name[:arg][,key=value...]``; whitespace around every part is ignored."""
    if not isinstance(text, str):
        raise SpecError(f"spec must be a string, got {text!r}")
    if not text.strip():
        raise SpecError(f"empty spec {text!r}: expected name[:arg][,key=value...]")
    head, *parts = text.split(",")

    name, sep, arg = head.partition(":")
    name = name.strip()
    arg = arg.strip() if sep else None
    if not name:
        raise SpecError(f"spec {text!r} has an empty name: expected name[:arg][,key=value...]")
    if not NAME_RE.fullmatch(name):
        raise SpecError(
            f"spec {text!r}: name {name!r} may only use letters, digits, '_', '.' and '-'"
            + (" (options come after the name: name,key=value)" if "=" in name else "")
        )
    if arg == "":
        raise SpecError(f"spec {text!r} has an empty argument after ':'")

    options: dict[str, str] = {}
    for part in parts:
        key, sep, value = part.partition("=")
        key = key.strip()
        if not sep:
            what = f"option {key!r}" if key else "an empty option (stray ',')"
            raise SpecError(f"spec {text!r}: {what} has no '=' (expected key=value)")
        if not key:
            raise SpecError(f"spec {text!r}: option {part.strip()!r} has an empty key")
        if key in options:
            raise SpecError(f"spec {text!r}: option {key!r} is given twice")
        options[key] = value.strip()
    return Spec(name=name, arg=arg, options=options)


# ----------------------------------------------------------------------------------------------
# coercion of option strings into config fields


class _Bad(Exception):
    """Internal: a value does not fit a type. Turned into a SpecError that names the option."""


def _is_union(tp: Any) -> bool:
    return typing.get_origin(tp) in (Union, types.UnionType)


def _describe(tp: Any) -> str:
    """What a type expects, in words, for error messages ("expects an integer")."""
    if tp is bool:
        return "a boolean (true/false)"
    if tp is int:
        return "an integer"
    if tp is float:
        return "a number"
    if tp is str:
        return "a string"
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if _is_union(tp):
        rest = [a for a in args if a is not type(None)]
        words = " or ".join(_describe(a) for a in rest)
        return words + " or none" if len(rest) < len(args) else words
    if origin in (tuple, list) or tp in (tuple, list):
        elems = [a for a in args if a is not Ellipsis] or [str]
        plural = {int: "integers", float: "numbers", str: "strings", bool: "booleans"}
        kinds = "/".join(plural.get(e, _type_name(e)) for e in dict.fromkeys(elems))
        return f"a '+'-separated list of {kinds}"
    return f"a value of type {_type_name(tp)}"


def _type_name(tp: Any) -> str:
    """Short type name for ``--help`` tables, in the spelling a spec uses."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Literal:
        return "{" + ",".join(str(a) for a in args) + "}"
    if _is_union(tp):
        return " | ".join("none" if a is type(None) else _type_name(a) for a in args)
    if origin in (tuple, list) or tp in (tuple, list):
        elems = [a for a in args if a is not Ellipsis] or [str]
        if Ellipsis in args or not args or origin is list or tp is list:
            return f"{_type_name(elems[0])}+..."
        return "+".join(_type_name(e) for e in elems)
    return getattr(tp, "__name__", str(tp))


def _split_list(value: str, elem_types: list[Any]) -> list[str]:
    """Split on '+', but not the '+' inside a number's exponent (``1e+3``) for numeric lists."""
    if not value.strip():
        return []
    numeric = all(e in (int, float) for e in elem_types)
    pattern = r"(?<![0-9.][eE])\+" if numeric else r"\+"
    return [p.strip() for p in re.split(pattern, value)]


def _coerce(value: Any, tp: Any) -> Any:
    """Turn ``value`` into ``tp``; strings are parsed, other values must already fit."""
    if tp is Any or tp is object:
        return value
    origin, args = typing.get_origin(tp), typing.get_args(tp)

    if _is_union(tp):
        if type(None) in args and (value is None or (isinstance(value, str) and value.lower() in _NONE)):
            return None
        for alt in args:
            if alt is not type(None):
                try:
                    return _coerce(value, alt)
                except _Bad:
                    pass
        raise _Bad

    if origin is Literal:
        for choice in args:
            if value == choice and type(value) is type(choice):
                return choice
            if isinstance(value, str) and not isinstance(choice, str):
                try:
                    if _coerce(value, type(choice)) == choice:
                        return choice
                except _Bad:
                    pass
        raise _Bad

    if origin in (tuple, list) or tp in (tuple, list):
        want_list = origin is list or tp is list
        homogeneous = want_list or not args or Ellipsis in args
        elem_types = [a for a in args if a is not Ellipsis] or [Any]  # bare `tuple`: anything
        if isinstance(value, str):
            items = _split_list(value, elem_types)
        elif isinstance(value, (list, tuple)):
            items = list(value)
        else:
            raise _Bad
        if homogeneous:
            out = [_coerce(v, elem_types[0]) for v in items]
        else:
            if len(items) != len(elem_types):
                raise _Bad
            out = [_coerce(v, t) for v, t in zip(items, elem_types)]
        return out if want_list else tuple(out)

    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in _TRUE | _FALSE:
            return value.lower() in _TRUE
        raise _Bad

    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
            try:  # '1e3' is a fine way to write 1000; Decimal keeps big values exact
                d = Decimal(value)
            except InvalidOperation:
                raise _Bad from None
            if d.is_finite() and d == d.to_integral_value():
                return int(d)
        raise _Bad

    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise _Bad

    if tp is str:
        if isinstance(value, str):
            return value
        raise _Bad

    if isinstance(tp, type) and issubclass(tp, pathlib.PurePath):
        if isinstance(value, (str, pathlib.PurePath)):
            return tp(value)
        raise _Bad

    # Anything else (dicts, custom classes): only ready-made values, never parsed from a string.
    check = origin or tp
    if isinstance(check, type) and not isinstance(value, str) and isinstance(value, check):
        return value
    raise _Bad


def _init_fields(config_cls: type) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(config_cls) if f.init}


def _hints(config_cls: type) -> dict[str, Any]:
    """Resolved annotations, so ``from __future__ import annotations`` configs work."""
    try:
        return typing.get_type_hints(config_cls)
    except Exception as e:  # a config that cannot be introspected is a programming error
        raise TypeError(f"cannot resolve the annotations of {config_cls.__qualname__}: {e}") from e


def build_config(config_cls: type, options: Mapping[str, str | object], *, plugin: str = "") -> Any:
    """Build ``config_cls(**options)`` with values coerced by the field annotations.

    ``plugin`` names the plugin in error messages ("unknown option 'bta' for npo").
    """
    if not (isinstance(config_cls, type) and dataclasses.is_dataclass(config_cls)):
        raise TypeError(f"build_config needs a dataclass type, got {config_cls!r}")
    label = plugin or config_cls.__qualname__
    fields = _init_fields(config_cls)
    hints = _hints(config_cls)

    kwargs: dict[str, Any] = {}
    for key, value in options.items():
        if key not in fields:
            names = sorted(fields)
            close = difflib.get_close_matches(key, names, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            listing = ", ".join(names) if names else "none"
            raise SpecError(f"unknown option {key!r} for {label}{hint} (options: {listing})")
        tp = hints.get(key, Any)
        try:
            kwargs[key] = _coerce(value, tp)
        except _Bad:
            raise SpecError(f"option {key!r} of {label} expects {_describe(tp)}, got {value!r}") from None

    missing = [
        name
        for name, f in fields.items()
        if name not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise SpecError(
            f"{label} needs option(s) {', '.join(repr(m) for m in missing)} (e.g. {label},{missing[0]}=...)"
        )

    try:
        return config_cls(**kwargs)
    except ValueError as e:  # __post_init__ validation: the user's combination of options is wrong
        msg = " ".join(str(e).split())
        raise SpecError(f"invalid options for {label}: {msg}") from e


# ----------------------------------------------------------------------------------------------
# serialisation and help


def _jsonable(obj: Any, where: str) -> Any:
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v, where) for v in obj]
    if isinstance(obj, Mapping):
        out = {}
        for k, v in obj.items():
            if not isinstance(k, str):
                raise TypeError(f"{where}: dict key {k!r} is not a string")
            out[k] = _jsonable(v, f"{where}.{k}")
        return out
    if isinstance(obj, pathlib.PurePath):
        return str(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return _jsonable(dataclasses.asdict(obj), where)
    raise TypeError(f"{where}: {type(obj).__name__} value {obj!r} is not JSON-serialisable")


def config_to_dict(cfg: Any) -> dict:
    """A plain, JSON-ready dict of a config (tuples become lists, paths become strings).

    This is what gets hashed and stored with every result, so it must not depend on Python types.
    """
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        return _jsonable(dataclasses.asdict(cfg), type(cfg).__qualname__)
    if isinstance(cfg, Mapping):
        return _jsonable(cfg, "config")
    raise TypeError(f"config_to_dict needs a dataclass instance or a mapping, got {cfg!r}")


def canonical_json(obj: Any) -> str:
    """One stable text per value (sorted keys, no spaces, ASCII), fit for hashing.

    Floats are written with ``repr`` (what ``json`` does), which round-trips exactly: 1e-4 is
    written as 0.0001 and reads back as the same float. Dataclass instances are converted first;
    any other value JSON has no type for is written as its ``str``. Cell ids hash this text.
    """
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        obj = config_to_dict(obj)
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)


def canonical_spec(text: str) -> str:
    """A spec string with its options sorted, the form results label it by:
    ``'npo,lr=1e-3,beta=0.1'`` -> ``'npo,beta=0.1,lr=1e-3'``."""
    return str(parse_spec(text))


def config_help(config_cls: type) -> list[tuple[str, str, str, str]]:
    """Rows of (option, type, default, help) for ``unlearnbench list``/``--help`` output.

    Fields without a default show ``required``; help text is ``field(metadata={'help': ...})``.
    """
    hints = _hints(config_cls)
    rows = []
    for name, f in _init_fields(config_cls).items():
        if f.default is not dataclasses.MISSING:
            default = repr(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            default = repr(f.default_factory())
        else:
            default = "required"
        rows.append((name, _type_name(hints.get(name, Any)), default, f.metadata.get("help", "")))
    return rows


__all__ = [
    "NAME_RE",
    "Spec",
    "parse_spec",
    "build_config",
    "config_to_dict",
    "canonical_json",
    "canonical_spec",
    "config_help",
    "shipped_dir",
    "tasks_dir",
    "load_yaml",
    "read_yaml",
]


# ----------------------------------------------------------------------------------------------
# the declarative YAML specs under tasks/


def shipped_dir(installed: str, checkout: str) -> Path:
    """A folder of data files that ships with unlearnbench: ``unlearnbench/<installed>`` in an
    installed wheel (see setup.py), else ``<checkout>`` beside the package in a source checkout."""
    package = Path(__file__).resolve().parent
    inside = package / installed
    return inside if inside.is_dir() else package.parent / checkout


def tasks_dir() -> Path:
    """``$UNLEARNBENCH_TASKS``, else the specs shipped with the package (``tasks/`` in a checkout)."""
    env = os.environ.get("UNLEARNBENCH_TASKS")
    path = Path(env) if env else shipped_dir("_specs", "tasks")
    if not path.is_dir():
        raise UnlearnbenchError(
            f"task specs folder not found at {path}; reinstall unlearnbench "
            "(pip install unlearnbench, or pip install -e . in a checkout) or set UNLEARNBENCH_TASKS"
        )
    return path


def load_yaml(relative: str) -> dict:
    """A spec under ``tasks/`` (a mapping at top level)."""
    path = tasks_dir() / relative
    if not path.is_file():
        raise UnlearnbenchError(f"spec file not found: {path}")
    return read_yaml(path)


def read_yaml(path: Path) -> dict:
    """A YAML file that must hold a mapping; errors are one line naming the file."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise UnlearnbenchError(f"{path} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise UnlearnbenchError(f"{path} must hold a mapping at top level")
    return data
