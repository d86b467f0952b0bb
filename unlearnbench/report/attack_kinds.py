"""What kind of attack a stored attack cell is, told from the store alone (the report imports no
plugin): the attack's name, argument and the task it trained on (:func:`attack_identity`), the
label of its row in a table (:func:`post_attack_label`) and the x-axis of its curve
(:func:`curve_axis`).

The task comes from the cell's key: the runner keys an attack (or control) cell by the task it
loaded for it, and it loads one only for attacks whose plugin declares ``needs_arg = "task"``
(``finetune:<task>``). Any other attack's argument is not a task: ``relearn:forget`` names where
its samples come from, ``quantize:4`` the bits.

The x-axis comes from the checkpoint names the attack stored with each step: ``epoch=N``
(finetune's default budget: N passes over the task), ``step=N`` (relearn, and finetune with
``steps=`` or ``eval_every=``: N optimiser steps) or names of their own (quantize: ``before`` at
step 0, ``quantized`` at step 1), which become the axis's tick labels.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass

from ..errors import SpecError
from ..spec import parse_spec

#: What the argument of each in-tree attack is, by attack name: the word its plugin declares as
#: ``needs_arg`` (tests/test_reports.py checks these against the registry). Only for stores whose cell
#: keys do not say (keys the runner writes name the task, or None).
ARG_WORDS = {"finetune": "task", "relearn": "source", "quantize": "bits"}
#: How a row label reads an argument, by that word.
ARG_PHRASES = {"task": "on {arg}", "source": "on {arg}", "bits": "to {arg} bits"}

_NUMBERED = {"epoch": "attack epoch", "step": "optimiser step"}


@dataclass(frozen=True)
class AttackIdentity:
    name: str
    arg: str | None
    task: str | None  # the task the attack trained on (needs_arg "task"), else None


def attack_identity(key_json, attack_text) -> AttackIdentity:
    """The attack of a cell from its key (``key_json``: the stored text, or the decoded dict):
    ``attack.name``, ``attack.arg`` and ``task.name``. A key without those entries (a store not
    written by the runner) falls back to the attack's stored spec text (``name[:arg][,k=v]``); its
    argument is a task when :data:`ARG_WORDS` says the attack's argument is one."""
    key = key_json
    if isinstance(key_json, str):
        try:
            key = json.loads(key_json)
        except ValueError:
            key = {}
    key = key if isinstance(key, dict) else {}
    attack, task = key.get("attack"), key.get("task")
    if isinstance(attack, dict) and isinstance(attack.get("name"), str):
        task_name = task.get("name") if isinstance(task, dict) else None
        return AttackIdentity(attack["name"], attack.get("arg"), task_name)
    if attack_text is None or (isinstance(attack_text, float) and math.isnan(attack_text)):
        return AttackIdentity("", None, None)
    try:
        spec = parse_spec(str(attack_text))
    except SpecError:
        return AttackIdentity(str(attack_text), None, None)
    return AttackIdentity(spec.name, spec.arg, spec.arg if ARG_WORDS.get(spec.name) == "task" else None)


def post_attack_label(identity: AttackIdentity) -> str:
    """'Post-finetune on arith', 'Post-relearn on forget', 'Post-quantize to 4 bits'; another attack:
    'Post-<name>' with its argument in brackets ('Post-quantize to q4_0' for a deployment format)."""
    name, arg = identity.name, identity.arg
    if identity.task:
        return f"Post-{name} " + ARG_PHRASES["task"].format(arg=identity.task)
    word = ARG_WORDS.get(name)
    if word == "bits" and arg and not arg.isdigit():  # a deployment format (quantize:q4_0): no bit count
        return f"Post-{name} to {arg}"
    if word in ARG_PHRASES and word != "task" and arg:
        return f"Post-{name} " + ARG_PHRASES[word].format(arg=arg)
    return f"Post-{name}" + (f" ({arg})" if arg else "")


def curve_axis(points) -> tuple[str, dict[int, str] | None]:
    """The x-axis of one attack's curve from its ``points`` ((step, checkpoint name) pairs): the axis
    label and, for named checkpoints, {step: name} as tick labels (None: numbered steps)."""
    by_step = {int(step): str(name) for step, name in points}
    kinds = {m.group(1) if (m := re.fullmatch(r"(epoch|step)=\d+", name)) else None for name in by_step.values()}
    if len(kinds) == 1 and None not in kinds:
        return f"{_NUMBERED[kinds.pop()]} (0 = unlearned)", None
    if None in kinds:
        return "checkpoint", dict(sorted(by_step.items()))
    return "attack step (epochs and optimiser steps mixed)", None
