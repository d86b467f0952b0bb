"""Spec parsing, option coercion into config dataclasses, and canonical serialisation.

The config dataclasses here use ``from __future__ import annotations`` on purpose: their field
types are strings until ``typing.get_type_hints`` resolves them, as in real plugin modules.
"""

from __future__ import annotations

import json
import pathlib
from dataclasses import dataclass, field
from typing import Literal, Optional

import pytest

from unlearnbench.errors import SpecError, UnlearnbenchError
from unlearnbench.spec import (
    Spec,
    build_config,
    canonical_json,
    config_help,
    config_to_dict,
    parse_spec,
)


@dataclass
class FinetuneConfig:
    epochs: int = 1
    lr: float = 1e-5
    lora: bool = False
    optimizer: Literal["adamw", "sgd"] = "adamw"
    seed: Optional[int] = 0
    max_steps: int | None = None
    envs: tuple[str, ...] = ("arith",)
    layers: tuple[int, ...] = ()
    weights: tuple[float, ...] = (1.0,)
    note: str = field(default="", metadata={"help": "free text"})


@dataclass
class NpoConfig:
    alpha: float = 1.0
    beta: float = 0.1
    gamma: float = 0.0

    def __post_init__(self):
        if self.beta <= 0:
            raise ValueError("beta must be > 0")


@dataclass
class Required:
    target: str
    k: int = 1
    hidden: int = field(default=0, init=False)


@dataclass
class Inner:
    path: pathlib.Path = pathlib.Path("a/b")
    pair: tuple[int, str] = (1, "x")


@dataclass
class Outer:
    inner: Inner = field(default_factory=Inner)
    names: tuple[str, ...] = ("a", "b")
    lr: float = 1e-4


# ---------------------------------------------------------------------------------------------
# parse_spec


@pytest.mark.parametrize(
    "text, name, arg, options",
    [
        ("npo", "npo", None, {}),
        ("finetune:arith", "finetune", "arith", {}),
        (
            "finetune:arith,epochs=3,lr=1e-4,lora=true",
            "finetune",
            "arith",
            {"epochs": "3", "lr": "1e-4", "lora": "true"},
        ),
        ("npo,beta=0.1", "npo", None, {"beta": "0.1"}),
        ("ilu,base=rmu,envs=arith+topic", "ilu", None, {"base": "rmu", "envs": "arith+topic"}),
        ("  npo , beta = 0.1 ,alpha= 2 ", "npo", None, {"beta": "0.1", "alpha": "2"}),
        ("hf: org/model:rev ,x=a=b", "hf", "org/model:rev", {"x": "a=b"}),
        ("p.v-2_x,prompt=", "p.v-2_x", None, {"prompt": ""}),
    ],
)
def test_parse_spec(text, name, arg, options):
    spec = parse_spec(text)
    assert spec == Spec(name, arg, options)
    assert list(spec.options) == list(options)  # insertion order kept


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("", "empty spec ''"),
        ("   ", "empty spec '   '"),
        (",beta=1", "empty name"),
        (":arith", "empty name"),
        ("npo,beta", "option 'beta' has no '='"),
        ("npo,", "stray ','"),
        ("npo,=1", "empty key"),
        ("npo,beta=1, beta=2", "option 'beta' is given twice"),
        ("n po", "name 'n po' may only use"),
        ("npo!", "name 'npo!' may only use"),
        ("beta=0.1", "options come after the name"),
        ("finetune:", "empty argument"),
    ],
)
def test_parse_spec_errors(text, fragment):
    with pytest.raises(SpecError) as info:
        parse_spec(text)
    msg = str(info.value)
    assert fragment in msg
    assert repr(text) in msg  # quotes what the user typed
    assert "\n" not in msg


def test_spec_error_is_user_error():
    assert issubclass(SpecError, UnlearnbenchError)


@pytest.mark.parametrize(
    "text, canonical",
    [
        ("npo", "npo"),
        ("finetune:arith,lr=1e-4,epochs=3", "finetune:arith,epochs=3,lr=1e-4"),
        (" ilu , envs=arith+topic, base=rmu ", "ilu,base=rmu,envs=arith+topic"),
        ("hf:org/model:rev,x=a=b", "hf:org/model:rev,x=a=b"),
    ],
)
def test_spec_canonical_str_round_trip(text, canonical):
    spec = parse_spec(text)
    assert str(spec) == canonical
    assert parse_spec(str(spec)) == spec
    assert str(parse_spec(str(spec))) == canonical


def test_spec_equality_and_hash_ignore_option_order():
    a, b = parse_spec("npo,alpha=1,beta=2"), parse_spec("npo,beta=2,alpha=1")
    assert a == b and hash(a) == hash(b)
    assert a != parse_spec("npo,alpha=1,beta=3")
    assert len({a, b}) == 1


# ---------------------------------------------------------------------------------------------
# build_config: coercion


def ft(**options):
    return build_config(FinetuneConfig, options, plugin="finetune")


@pytest.mark.parametrize("value, expected", [("3", 3), ("-2", -2), ("1e3", 1000), ("3.0", 3), ("1e20", 10**20)])
def test_int(value, expected):
    got = ft(epochs=value).epochs
    assert got == expected and type(got) is int


@pytest.mark.parametrize("value", ["3.5", "three", "", "1e-3", "inf", "nan", "true"])
def test_int_rejects(value):
    with pytest.raises(SpecError, match="option 'epochs' of finetune expects an integer"):
        ft(epochs=value)


def test_int_error_message_exact():
    with pytest.raises(SpecError) as info:
        ft(epochs="three")
    assert str(info.value) == "option 'epochs' of finetune expects an integer, got 'three'"


@pytest.mark.parametrize("value, expected", [("1e-4", 1e-4), ("3", 3.0), ("-0.5", -0.5), (".25", 0.25)])
def test_float(value, expected):
    got = ft(lr=value).lr
    assert got == expected and type(got) is float


def test_float_rejects():
    with pytest.raises(SpecError, match="option 'lr' of finetune expects a number, got 'fast'"):
        ft(lr="fast")


@pytest.mark.parametrize("value", ["true", "TRUE", "True", "1", "yes", "On"])
def test_bool_true(value):
    assert ft(lora=value).lora is True


@pytest.mark.parametrize("value", ["false", "False", "0", "no", "OFF"])
def test_bool_false(value):
    assert ft(lora=value).lora is False


def test_bool_rejects():
    with pytest.raises(SpecError, match=r"option 'lora' of finetune expects a boolean \(true/false\), got 'maybe'"):
        ft(lora="maybe")


def test_str():
    assert ft(note="hello world").note == "hello world"
    assert ft(note="").note == ""


def test_literal():
    assert ft(optimizer="sgd").optimizer == "sgd"
    with pytest.raises(SpecError) as info:
        ft(optimizer="adam")
    assert "option 'optimizer' of finetune expects one of 'adamw', 'sgd', got 'adam'" in str(info.value)


def test_literal_of_ints():
    @dataclass
    class C:
        bits: Literal[4, 8] = 8

    assert build_config(C, {"bits": "4"}).bits == 4
    with pytest.raises(SpecError, match="one of 4, 8"):
        build_config(C, {"bits": "5"})


@pytest.mark.parametrize("field_name", ["seed", "max_steps"])  # Optional[int] and int | None
def test_optional(field_name):
    assert getattr(ft(**{field_name: "none"}), field_name) is None
    assert getattr(ft(**{field_name: "NULL"}), field_name) is None
    assert getattr(ft(**{field_name: "5"}), field_name) == 5
    assert getattr(ft(**{field_name: None}), field_name) is None
    with pytest.raises(SpecError, match=f"option '{field_name}' of finetune expects an integer or none"):
        ft(**{field_name: "x"})


def test_optional_str_none():
    @dataclass
    class C:
        base: Optional[str] = "rmu"

    assert build_config(C, {"base": "none"}).base is None
    assert build_config(C, {"base": "npo"}).base == "npo"


def test_tuple_of_str():
    assert ft(envs="arith+topic").envs == ("arith", "topic")
    assert ft(envs="arith").envs == ("arith",)
    assert ft(envs=" arith + topic ").envs == ("arith", "topic")
    assert ft(envs="").envs == ()


def test_tuple_of_numbers():
    assert ft(layers="4+8+12").layers == (4, 8, 12)
    assert ft(weights="1e-4+0.5").weights == (1e-4, 0.5)
    assert ft(weights="1e+3+2").weights == (1000.0, 2.0)  # exponent '+' is not a separator
    with pytest.raises(
        SpecError, match=r"option 'layers' of finetune expects a '\+'-separated list of integers, got '4\+x'"
    ):
        ft(layers="4+x")


def test_fixed_length_tuple():
    cfg = build_config(Inner, {"pair": "3+y"})
    assert cfg.pair == (3, "y")
    with pytest.raises(SpecError, match="pair"):
        build_config(Inner, {"pair": "3"})


def test_non_string_values():
    cfg = ft(epochs=2, lr=1, lora=True, envs=["a", "b"], layers=(1, "2"), seed=None)
    assert (cfg.epochs, cfg.lr, cfg.lora, cfg.envs, cfg.layers, cfg.seed) == (2, 1.0, True, ("a", "b"), (1, 2), None)
    assert type(cfg.lr) is float


@pytest.mark.parametrize(
    "key, value", [("epochs", 3.5), ("epochs", True), ("lr", True), ("lora", 1), ("note", 3), ("envs", 5)]
)
def test_non_string_wrong_type(key, value):
    with pytest.raises(SpecError, match=f"option '{key}' of finetune expects .*, got {value!r}"):
        ft(**{key: value})


def test_path_field():
    assert build_config(Inner, {"path": "x/y"}).path == pathlib.Path("x/y")


def test_defaults_kept():
    assert build_config(FinetuneConfig, {}) == FinetuneConfig()


# ---------------------------------------------------------------------------------------------
# build_config: errors


def test_unknown_option_suggests():
    with pytest.raises(SpecError) as info:
        build_config(NpoConfig, {"bta": "0.1"}, plugin="npo")
    assert str(info.value) == "unknown option 'bta' for npo; did you mean 'beta'? (options: alpha, beta, gamma)"


def test_unknown_option_without_suggestion():
    with pytest.raises(SpecError) as info:
        build_config(NpoConfig, {"zzzz": "1"}, plugin="npo")
    assert "did you mean" not in str(info.value)
    assert "(options: alpha, beta, gamma)" in str(info.value)


def test_init_false_field_is_not_an_option():
    with pytest.raises(SpecError, match="unknown option 'hidden'"):
        build_config(Required, {"target": "x", "hidden": "1"}, plugin="r")


def test_missing_required_option():
    with pytest.raises(SpecError, match="r needs option\\(s\\) 'target'"):
        build_config(Required, {"k": "2"}, plugin="r")
    assert build_config(Required, {"target": "t"}).target == "t"


def test_post_init_value_error_becomes_spec_error():
    with pytest.raises(SpecError) as info:
        build_config(NpoConfig, {"beta": "-1"}, plugin="npo")
    assert str(info.value) == "invalid options for npo: beta must be > 0"
    assert isinstance(info.value.__cause__, ValueError)


def test_plugin_label_defaults_to_class_name():
    with pytest.raises(SpecError, match="for NpoConfig"):
        build_config(NpoConfig, {"x": "1"})


def test_not_a_dataclass():
    with pytest.raises(TypeError):
        build_config(dict, {})
    with pytest.raises(TypeError):
        build_config(NpoConfig(), {})


def test_parse_then_build():
    spec = parse_spec("finetune:arith,epochs=3,lr=1e-4,lora=true,envs=arith+topic")
    cfg = build_config(FinetuneConfig, spec.options, plugin=spec.name)
    assert cfg == FinetuneConfig(epochs=3, lr=1e-4, lora=True, envs=("arith", "topic"))


# ---------------------------------------------------------------------------------------------
# serialisation and help


def test_config_to_dict():
    d = config_to_dict(Outer())
    assert d == {"inner": {"path": "a/b", "pair": [1, "x"]}, "names": ["a", "b"], "lr": 1e-4}
    assert json.loads(json.dumps(d)) == d
    assert config_to_dict({"a": (1, 2)}) == {"a": [1, 2]}
    with pytest.raises(TypeError):
        config_to_dict({"a": object()})
    with pytest.raises(TypeError):
        config_to_dict(Outer)  # the class, not an instance


def test_canonical_json_exact_and_stable():
    text = canonical_json(Outer())
    assert text == '{"inner":{"pair":[1,"x"],"path":"a/b"},"lr":0.0001,"names":["a","b"]}'
    assert canonical_json({"b": 1, "a": 2}) == canonical_json({"a": 2, "b": 1}) == '{"a":2,"b":1}'
    assert canonical_json({"s": "é"}) == '{"s":"\\u00e9"}'
    assert canonical_json(config_to_dict(Outer())) == text
    for x in (1e-4, 0.1, 1 / 3, 1e300, 5e-324):
        assert json.loads(canonical_json({"x": x}))["x"] == x  # floats round-trip exactly


def test_same_options_same_json():
    a = build_config(FinetuneConfig, parse_spec("f,lr=1e-4,epochs=3").options)
    b = build_config(FinetuneConfig, {"epochs": 3, "lr": 0.0001})
    assert canonical_json(a) == canonical_json(b)
    assert canonical_json(a) != canonical_json(FinetuneConfig())


def test_config_help():
    rows = {r[0]: r for r in config_help(FinetuneConfig)}
    assert list(rows)[:3] == ["epochs", "lr", "lora"]  # declaration order
    assert rows["epochs"] == ("epochs", "int", "1", "")
    assert rows["lr"] == ("lr", "float", "1e-05", "")
    assert rows["optimizer"][1:3] == ("{adamw,sgd}", "'adamw'")
    assert rows["seed"][1] == "int | none"
    assert rows["envs"][1:3] == ("str+...", "('arith',)")
    assert rows["note"][3] == "free text"
    help_rows = {r[0]: r for r in config_help(Required)}
    assert help_rows["target"][2] == "required"
    assert "hidden" not in help_rows
    assert {r[0]: r for r in config_help(Outer)}["inner"][2].startswith("Inner(")
