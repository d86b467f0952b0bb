"""The forms of asking a fact that the embedded world (and ORT-style files) provide.

``bio`` is the unlearning form itself; ``paraphrase`` uses only templates held out of training.
``adversarial`` and ``icl`` are ORT's adversarial forms (the embedded world builds them at probe time,
see :mod:`unlearnbench.toy.probes`; ORT files give their own prompts).
"""

from __future__ import annotations

from ..registry import register_probe
from .base import FormProbe


@register_probe()
class BioProbe(FormProbe):
    name, form, scoring = "bio", "bio", "generate"
    description = "complete a trained biography sentence (the unlearning form)"


@register_probe()
class QAProbe(FormProbe):
    name, form, scoring = "qa", "qa", "generate"
    description = "short question, free-text answer"


@register_probe()
class ClozeProbe(FormProbe):
    name, form, scoring = "cloze", "cloze", "generate"
    description = "fill in the blank"


@register_probe()
class MCQProbe(FormProbe):
    name, form, scoring = "mcq", "mcq", "choice"
    description = "4-option multiple choice, answer a letter (option order unseen in training)"


@register_probe()
class TrueFalseProbe(FormProbe):
    name, form, scoring = "tf", "tf", "choice"
    description = "true/false statement (phrasing and wrong value unseen in training)"


@register_probe()
class ReverseProbe(FormProbe):
    name, form, scoring = "reverse", "reverse", "generate"
    description = "the mentor relation asked backwards (answer: the person)"


@register_probe()
class ParaphraseProbe(FormProbe):
    name, form, scoring = "paraphrase", "paraphrase", "generate"
    description = "held-out templates of the bio, QA, cloze and reverse forms"


@register_probe()
class AdversarialProbe(FormProbe):
    name, form, scoring = "adversarial", "adversarial", "generate"
    description = "held-out question in an adversarial wrapper (instruction override + affirmative suffix)"


@register_probe()
class InContextProbe(FormProbe):
    name, form, scoring = "icl", "icl", "generate"
    description = "question after in-context examples of facts the model keeps"
