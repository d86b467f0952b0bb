"""Task-vector analysis of why fine-tuning undoes unlearning (ILU paper, arXiv 2506.01339, sec. 3).

With θ_o the original model, θ_u the unlearned one, θ_ft the original fine-tuned on a task D and
θ_u^ft the unlearned model fine-tuned on D (the attack):

    τ_u      = θ_u − θ_o          (what unlearning changed)
    τ_ft     = θ_ft − θ_o         (what fine-tuning on D does to the original)
    τ_{u→ft} = θ_u^ft − θ_u       (what the attack does to the unlearned model)

We report cos(τ_{u→ft}, τ_u) — negative means the attack moves the weights back along the
unlearning direction, i.e. undoes it — and cos(τ_{u→ft}, τ_ft) — how much the attack on the
unlearned model looks like ordinary fine-tuning. Published figures for Zephyr-7B/WMDP: the seed
poster of the paper shows cos(τ_{NPO→ft}, τ_ft) = 0.16 and cos(τ_{ILU→ft}, τ_ILU) = 0.09. A value
of −0.41 for cos(τ_{NPO→ft}, τ_NPO) is second-hand (notes of the paper, not checked against its
text); no other pair of figures has a source we could verify.

Cosines are over all parameters flattened, computed by streaming: the four safetensors checkpoints
are opened with ``safe_open`` and read one tensor at a time, dot products accumulated in float64,
so memory is four tensors at once, never a flat vector. Tied weights saved once count once.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from .errors import UnlearnbenchError
from .progress import SILENT, Progress

PAIRS = (("u_ft", "u"), ("u_ft", "ft"), ("u", "ft"))


@dataclass
class TaskVectorResult:
    cosine: dict[str, float]  # 'u_ft~u', 'u_ft~ft', 'u~ft'
    norms: dict[str, float]  # 'u', 'ft', 'u_ft'
    per_tensor: dict[str, dict[str, float]] = field(default_factory=dict)  # name -> cosines (largest tensors)
    n_params: int = 0


def _tensor_files(path: Path) -> dict[str, Path]:
    """Tensor name -> safetensors file in a checkpoint directory (sharded or not)."""
    from safetensors import safe_open

    files = sorted(path.glob("*.safetensors")) if path.is_dir() else [path]
    if not files:
        raise UnlearnbenchError(f"no .safetensors files in '{path}'")
    out: dict[str, Path] = {}
    for f in files:
        with safe_open(str(f), framework="pt") as h:
            for k in h.keys():
                out[k] = f
    return out


def same_tensors(paths: dict[str, Path], reference: str, purpose: str) -> tuple[dict[str, dict[str, Path]], list[str]]:
    """(key -> tensor name -> file, the sorted tensor names) of the checkpoints ``paths``, whose key
    ``"o"`` is the reference; a checkpoint holding other tensors is one line naming a few of them
    (``reference``: how the message calls ``paths["o"]``, ``purpose``: what needs one architecture)."""
    index = {k: _tensor_files(p) for k, p in paths.items()}
    names = sorted(index["o"])
    for k, idx in index.items():
        if set(idx) != set(names):
            missing = sorted(set(names) ^ set(idx))[:3]
            raise UnlearnbenchError(
                f"checkpoint '{paths[k]}' holds other tensors than {reference} (e.g. {missing}): "
                f"{purpose} need one architecture"
            )
    return index, names


def cosines(base: Path, unlearned: Path, unlearned_ft: Path, base_ft: Path, per_tensor: int = 12) -> TaskVectorResult:
    """Stream the four checkpoints tensor by tensor; see the module docstring."""
    import torch
    from safetensors import safe_open

    paths = {"o": Path(base), "u": Path(unlearned), "u_ft_model": Path(unlearned_ft), "ft_model": Path(base_ft)}
    index, names = same_tensors(paths, "the base model", "task vectors")
    dots: dict[tuple[str, str], float] = {}
    sq = {"u": 0.0, "ft": 0.0, "u_ft": 0.0}
    per: list[tuple[int, str, dict]] = []
    handles: dict[Path, object] = {}

    def get(which: str, name: str):
        f = index[which][name]
        if f not in handles:
            handles[f] = safe_open(str(f), framework="pt")
        return handles[f].get_tensor(name).to(torch.float64).flatten()

    n = 0
    for name in names:
        o = get("o", name)
        u = get("u", name)
        vec = {"u": u - o, "ft": get("ft_model", name) - o, "u_ft": get("u_ft_model", name) - u}
        del o
        n += vec["u"].numel()
        local = {}
        for a, b in PAIRS:
            d = float(vec[a] @ vec[b])
            dots[(a, b)] = dots.get((a, b), 0.0) + d
            local[(a, b)] = d
        local_sq = {k: float(v @ v) for k, v in vec.items()}
        for k in sq:
            sq[k] += local_sq[k]
        per.append(
            (vec["u"].numel(), name, {f"{a}~{b}": _cos(local[(a, b)], local_sq[a], local_sq[b]) for a, b in PAIRS})
        )
    per.sort(key=lambda t: -t[0])
    return TaskVectorResult(
        cosine={f"{a}~{b}": _cos(dots[(a, b)], sq[a], sq[b]) for a, b in PAIRS},
        norms={k: math.sqrt(v) for k, v in sq.items()},
        per_tensor={name: c for _n, name, c in per[:per_tensor]},
        n_params=n,
    )


def _cos(dot: float, a2: float, b2: float) -> float:
    return dot / math.sqrt(a2 * b2) if a2 > 0 and b2 > 0 else float("nan")


# -- from a results store ------------------------------------------------------------------------


def analyze_store(
    store, benchmark: str, attack: str, method: str | None = None, progress: Progress = SILENT, device: str = "cpu"
) -> list[dict]:
    """Task-vector cosines for every finished unlearning cell of ``benchmark`` in ``store``.

    θ_u is the cell's kept checkpoint. θ_u^ft and θ_ft are made by running ``attack`` (full
    fine-tuning; its options and the benchmark's tuned defaults as in a run, seeded with the cell's
    seed) from θ_u and from θ_o; both are cached as safetensors under the cache folder, keyed by the
    starting weights' hash and the attack's key, so a second analysis costs only the streaming.
    """
    from transformers.utils import logging as hf_logging

    from .data.types import declared
    from .registry import ATTACKS, BENCHMARKS, TASKS
    from .runner import load_unlearned, resolve, unlearned_path
    from .spec import parse_spec

    hf_logging.disable_progress_bar()  # the CLI shows its own progress
    bench = resolve(BENCHMARKS, benchmark)
    key = bench.key()
    cells = [c for c in store.cells(status="finished") if c["kind"] == "unlearn"]
    rows: list[dict] = []
    chosen = []
    for c in cells:
        ckey = c["key"] if isinstance(c["key"], dict) else json.loads(c["key"])
        if ckey.get("benchmark") != key:
            continue
        label = c.get("method") or (c.get("label") or {}).get("method")
        if method and label != method and (label or "").split(",")[0] != method:
            continue
        chosen.append((c, ckey, label))
    if not chosen:
        raise UnlearnbenchError(
            f"no finished unlearning cell for benchmark '{benchmark}'"
            + (f" and method '{method}'" if method else "")
            + " in the store: run or sweep first"
        )
    b = bench.obj
    target = b.load("target", device, progress)
    base_dir = _saved(target.model, target.tokenizer, f"base-{target.weights_sha256[:16]}")
    tasks: dict = {}
    spec = parse_spec(attack)
    for c, ckey, label in chosen:
        seed = ckey.get("seed", 0)
        att = resolve(ATTACKS, spec, b.defaults("attacks", spec.name), {"seed": seed})
        if declared(att.obj, "needs_arg") != "task":
            raise UnlearnbenchError(
                f"taskvec needs a fine-tuning attack on a task (e.g. finetune:arith), not '{attack}'"
            )
        if getattr(att.config, "lora", False):
            raise UnlearnbenchError("taskvec compares full weights: use an attack without lora=true")
        if att.arg not in tasks:  # one task for every cell (the seed changes the attack, not the data)
            tasks[att.arg] = resolve(TASKS, att.arg).obj.load()
        task = tasks[att.arg]
        unlearned = load_unlearned(c["cell_id"], store, device)
        u_dir = unlearned_path(c["cell_id"], store)
        tag = hashlib.sha256(json.dumps(att.key(), sort_keys=True).encode()).hexdigest()[:12]
        ft_dir = _finetuned(
            att.obj, target.model, target.tokenizer, task, f"ft-{target.weights_sha256[:16]}-{tag}", progress, b
        )
        uft_dir = _finetuned(att.obj, unlearned, target.tokenizer, task, f"uft-{c['cell_id'][:16]}-{tag}", progress, b)
        r = cosines(base_dir, u_dir, uft_dir, ft_dir)
        rows.append(
            {
                "method": label,
                "seed": seed,
                "attack": att.label(),
                "cell_id": c["cell_id"],
                "cos_uft_u": r.cosine["u_ft~u"],
                "cos_uft_ft": r.cosine["u_ft~ft"],
                "cos_u_ft": r.cosine["u~ft"],
                "norm_u": r.norms["u"],
                "norm_ft": r.norms["ft"],
                "norm_uft": r.norms["u_ft"],
                "n_params": r.n_params,
                "per_tensor": r.per_tensor,
            }
        )
    return rows


def _analysis_dir() -> Path:
    from .cache import cache_dir

    return cache_dir() / "taskvec"


def _saved(model, tokenizer, name: str) -> Path:
    from .models import save_model_atomically

    out = _analysis_dir() / name
    if not (out / "config.json").exists():
        save_model_atomically(model, tokenizer, out.parent, lambda _sha: name)
    return out


def _finetuned(attack_obj, model, tokenizer, task, name: str, progress: Progress, bench) -> Path:
    out = _analysis_dir() / name
    if (out / "config.json").exists():
        return out
    final: dict = {}

    def keep_last(_checkpoint, _step, m) -> None:
        final["model"] = m

    attack_obj.run(model, tokenizer, task, keep_last, progress, benchmark=bench)
    return _saved(final["model"], tokenizer, name)


def summarize(rows: list[dict]) -> list[dict]:
    """Mean and spread over seeds per (method, attack)."""
    import statistics

    groups: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["method"], r["attack"]), []).append(r)
    out = []
    for (m, a), rs in groups.items():
        row = {"method": m, "attack": a, "seeds": sorted(r["seed"] for r in rs)}
        for k in ("cos_uft_u", "cos_uft_ft", "cos_u_ft"):
            vals = [r[k] for r in rs if not math.isnan(r[k])]
            row[k] = round(statistics.fmean(vals), 4) if vals else None
            row[k + "_std"] = round(statistics.stdev(vals), 4) if len(vals) > 1 else None
        out.append(row)
    return out
