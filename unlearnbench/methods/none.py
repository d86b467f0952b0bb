"""``none`` — no unlearning here: the "unlearned" model is the target itself, or a checkpoint
unlearned elsewhere (``checkpoint=DIR``, what ``unlearnbench run --unlearned DIR`` sets).

This is how a model unlearned with another tool (open-unlearning, the WMDP code, your own loop) is
stress-tested: the runner evaluates the original model (``base``), the retrain oracle where the
benchmark has one, then this method's ``unlearn`` replaces the original's weights with the
checkpoint's, and every attack starts from them, exactly as it would from a checkpoint made here.

Formula: θ_u := θ_checkpoint (no training; without ``checkpoint``, θ_u := θ_target, which makes
the unlearn cell a second base cell and each attack cell a base control).

Rules and deviations:

* The checkpoint loads through :func:`unlearnbench.models.load_model` (safetensors or GGUF only,
  never pickle; ``trust_remote_code`` is not needed because only its tensors are used), in the
  target's dtype, then its state dict is copied into the target's architecture. Every tensor name
  and shape must match the target's; a checkpoint of another model (or one saved with another
  vocabulary) is an error naming the first differences, never a partial load.
* The tokenizer is the original model's (``--model``): a checkpoint's own tokenizer files are not
  read. A tool that changed the vocabulary changes the embedding's shape, which the check catches.
* The weights' sha256 (:func:`unlearnbench.models.weights_sha256`) is part of the cell key, so a
  checkpoint overwritten in place is never mistaken for the results stored for its old bytes.

Paper: none (a harness utility); the evaluation it enables is the one every method gets.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from ..errors import UnlearnbenchError
from ..progress import SILENT, Progress
from ..registry import register_method


@dataclass(frozen=True)
class NoneConfig:
    checkpoint: str = field(
        default="",
        metadata={"help": "an unlearned model (directory with config.json + *.safetensors, or .gguf) to attack"},
    )
    gguf_file: str = field(default="", metadata={"help": "GGUF file name inside the checkpoint directory"})


@register_method()
class NoUnlearning:
    name = "none"
    version = "1"
    Config = NoneConfig
    description = "no unlearning: attack the target itself, or a checkpoint unlearned elsewhere (checkpoint=DIR)"

    def __init__(self, config: NoneConfig | None = None):
        from ..models import check_source

        self.config = config or NoneConfig()
        self._sha256: str | None = None
        if self.config.checkpoint:
            try:  # a typo, a pickled-only folder, a folder without config.json: one line, at plan time
                check_source(self.config.checkpoint, gguf_file=self.config.gguf_file or None)
            except UnlearnbenchError as e:
                raise UnlearnbenchError(f"--unlearned {self.config.checkpoint}: {e}") from None

    def key_extra(self) -> dict:
        return {"checkpoint_sha256": self.checkpoint_sha256()} if self.config.checkpoint else {}

    def checkpoint_sha256(self) -> str:
        """sha256 of the checkpoint's weight files (computed once per run)."""
        from ..models import weights_sha256

        if self._sha256 is None:
            path = self.config.checkpoint
            if self.config.gguf_file:
                path = os.path.join(path, self.config.gguf_file)
            self._sha256 = weights_sha256(path)
        return self._sha256

    def unlearn(self, model, data, progress: Progress = SILENT) -> dict:
        if not self.config.checkpoint:
            return {"history": [], "checkpoint": None}
        import torch

        from ..models import load_model

        dtype = str(next(model.parameters()).dtype).removeprefix("torch.")
        lm = load_model(self.config.checkpoint, device="cpu", dtype=dtype, gguf_file=self.config.gguf_file or None)
        theirs = lm.model.state_dict()
        ours = model.state_dict()
        _check_same_tensors(ours, theirs, self.config.checkpoint)
        with torch.no_grad():
            model.load_state_dict(theirs, strict=True)
        del lm, theirs
        return {"history": [], "checkpoint": self.config.checkpoint, "checkpoint_sha256": self.checkpoint_sha256()}


def _check_same_tensors(ours: dict, theirs: dict, where: str) -> None:
    """One line naming the first differences when the checkpoint's tensors do not fit the target."""
    missing = sorted(set(ours) - set(theirs))
    extra = sorted(set(theirs) - set(ours))
    shapes = sorted(k for k in set(ours) & set(theirs) if tuple(ours[k].shape) != tuple(theirs[k].shape))
    if not (missing or extra or shapes):
        return
    parts = []
    if shapes:
        k = shapes[0]
        parts.append(
            f"{len(shapes)} tensor(s) differ in shape (e.g. {k}: {tuple(theirs[k].shape)} here, "
            f"{tuple(ours[k].shape)} in the original)"
        )
    if missing:
        parts.append(f"{len(missing)} of the original's tensors are missing (e.g. {missing[0]})")
    if extra:
        parts.append(f"{len(extra)} tensor(s) the original does not have (e.g. {extra[0]})")
    raise UnlearnbenchError(
        f"--unlearned {where} does not fit the original model: "
        + "; ".join(parts)
        + " (is it unlearned from this --model?)"
    )
