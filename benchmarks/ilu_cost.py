"""Cost of ILU against its base method: time per optimiser step and peak memory. Prints figures
and writes JSON.

    python benchmarks/ilu_cost.py [--steps 10] [--batch-size 16] [--out benchmarks/results/ilu_cost.json]

Models (random initialisation, never trained: cost does not depend on what the weights know):
- ``tiny``: the unit tests' Llama (hidden 32, 2 layers, vocab 300);
- ``small``: the embedded ``small`` recipe's size (hidden 128, 4 layers, 4 heads, MLP 384, vocab 1024).
Bases: ``npo``, and ``rmu`` when ``unlearnbench/methods/rmu.py`` exists (else skipped with a note).
ILU runs with its defaults (λ=1, one environment ``arith``, one environment example per forget
example). Forget/retain data come from a 16-person world; batch size is the same for every variant.

How it measures, each variant in a fresh subprocess (so allocations of one cannot hide in another):
- time: wall time between consecutive optimiser steps (a Progress hook on the shared loop), median
  over the steps after the first two (warm-up);
- memory, two ways.
  (a) Activation memory, exact and allocator-independent: the bytes of the tensors autograd saves
  for backward during one step (``saved_tensors_hooks``; unique storages, parameters excluded; the
  penalty's double backward records its own), peak over steps. This is the part of a step's memory
  that ILU multiplies; weights, gradients and AdamW state are the same for both variants.
  (b) Resident memory: the peak RSS during ``unlearn`` (Linux ``VmHWM``, reset through
  ``/proc/self/clear_refs`` just before the call) minus the RSS just before it: everything training
  adds (gradients, AdamW state, activations, graph; NPO's no-grad reference pass). Both variants
  first run one plain and one IRM backward on a throwaway copy and encode the environment data
  once, so torch's first-use initialisation and ILU's one-off data encoding sit in the baseline.
  RSS also counts memory the allocator keeps after freeing: on models this small it is coarse
  (tens of MiB of allocator noise), which is why (a) is the figure to read.
CPU only (no CUDA peak-allocation figures on this machine).
Torch threads follow ``OMP_NUM_THREADS``; a loaded machine inflates times, ratios less so.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODELS = {
    "tiny": dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, vocab_size=300),
    "small": dict(hidden_size=128, intermediate_size=384, num_hidden_layers=4, num_attention_heads=4, vocab_size=1024),
}


def _rss_kib(field: str) -> int:
    return int(re.search(rf"{field}:\s+(\d+)", Path("/proc/self/status").read_text()).group(1))


def measure(model_name: str, method: str, steps: int, batch_size: int) -> dict:
    """One variant, in this process: returns the figures as a dict."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from unlearnbench.data.types import PlanContext, UnlearnData
    from unlearnbench.methods.ilu import ILU, ILUConfig
    from unlearnbench.progress import Progress, TaskHandle
    from unlearnbench.registry import METHODS
    from unlearnbench.spec import build_config
    from unlearnbench.toy.model import ModelRecipe, train_tokenizer
    from unlearnbench.toy.world import WorldConfig, build_world

    spec = MODELS[model_name]
    world = build_world(WorldConfig(n_entities=16, forget_frac=0.125, n_neighbours=3, n_retain_probe=4))
    tok = train_tokenizer(world, ModelRecipe(vocab_size=spec["vocab_size"]))
    torch.manual_seed(0)
    cfg = LlamaConfig(
        **spec,
        num_key_value_heads=spec["num_attention_heads"],
        max_position_embeddings=256,
        pad_token_id=tok.pad_token_id,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        tie_word_embeddings=True,
        attn_implementation="eager",
    )
    model = LlamaForCausalLM(cfg)
    data = UnlearnData(
        world.unlearning_examples(world.forget_ids), world.unlearning_examples(world.method_retain_ids()), tok
    )

    base_name = method.removeprefix("ilu+")
    options = {"lr": 1e-4, "max_steps": steps, "batch_size": batch_size, "epochs": 1000}
    if method.startswith("ilu+"):
        m = ILU(ILUConfig(base=base_name))
        m.bind(PlanContext(lambda name: options, {}))
    else:
        cls = METHODS.get(base_name)
        m = cls(build_config(cls.Config, options, plugin=base_name))

    stamps: list[float] = []

    # tensors autograd keeps for backward (unique storages, parameters excluded), per step
    param_storages = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}
    saved_peak = [0]

    def pack(t):
        st = t.untyped_storage()
        if st.data_ptr() not in param_storages:
            saved[st.data_ptr()] = st.nbytes()
        return t

    class Clock(TaskHandle):
        def advance(self, n: int = 1) -> None:
            stamps.append(time.perf_counter())
            saved_peak[0] = max(saved_peak[0], sum(saved.values()))
            saved.clear()

    class Timed(Progress):
        @contextmanager
        def task(self, description, total):
            stamps.append(time.perf_counter())  # the loop starts: setup (e.g. NPO's reference) is done
            yield Clock()

    # warm-up on a throwaway copy, the same for every variant: first-use initialisation inside
    # torch (kernels, thread pools, allocator arenas) must not be counted as training memory
    import copy

    from unlearnbench.batching import collate, encode_example, pad_id_of
    from unlearnbench.methods.base import Batch, token_mean_nll
    from unlearnbench.methods.ilu import irm_penalty

    scratch = copy.deepcopy(model)
    enc = [encode_example(tok, e.prompt, e.target) for e in data.forget[:batch_size]]
    warm = Batch(collate(enc, pad_id_of(tok)), torch.arange(len(enc)))
    (token_mean_nll(scratch, warm) + irm_penalty(scratch, warm)).backward()
    del scratch, warm
    # ILU encodes its environment's training split (400 short examples) before its loop: a one-off
    # cost of Python objects, not of the step. Doing it once here for every variant lets the pages
    # it needs be counted in the baseline, so the delta below is the training step's memory.
    from unlearnbench.methods.ilu import environment_examples

    _ = [encode_example(tok, e.prompt, e.target) for e in environment_examples("arith")]
    del _

    rss_before = _rss_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        stats = m.unlearn(model, data, Timed())
    peak = _rss_kib("VmHWM")
    per_step = [b - a for a, b in zip(stamps, stamps[1:])]
    return {
        "model": model_name,
        "method": method,
        "steps": stats["steps"],
        "params": sum(p.numel() for p in model.parameters()),
        "step_seconds_median": statistics.median(per_step[2:]),
        "step_seconds_all": [round(s, 4) for s in per_step],
        "rss_before_mib": rss_before / 1024,
        "rss_peak_mib": peak / 1024,
        "train_mib": (peak - rss_before) / 1024,
        "saved_for_backward_mib": saved_peak[0] / 2**20,
        "final_irm_penalty": stats["final"].get("irm_penalty"),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/ilu_cost.json"))
    ap.add_argument("--one", nargs=2, metavar=("MODEL", "METHOD"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(measure(*args.one, args.steps, args.batch_size)))
        return 0

    bases, notes = ["npo"], []
    if (ROOT / "unlearnbench/methods/rmu.py").exists():
        bases.append("rmu")
    else:
        notes.append("rmu skipped: unlearnbench/methods/rmu.py does not exist")
    runs = {}
    for model_name in MODELS:
        for base in bases:
            for method in (base, f"ilu+{base}"):
                cmd = [
                    sys.executable,
                    __file__,
                    "--one",
                    model_name,
                    method,
                    "--steps",
                    str(args.steps),
                    "--batch-size",
                    str(args.batch_size),
                ]
                res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
                if res.returncode != 0:
                    raise SystemExit(f"{model_name}/{method} failed:\n{res.stderr[-3000:]}")
                r = json.loads(res.stdout.strip().splitlines()[-1])
                runs[(model_name, method)] = r
                print(
                    f"{model_name:6s} {method:8s} {r['step_seconds_median'] * 1000:8.1f} ms/step  "
                    f"saved for backward {r['saved_for_backward_mib']:6.2f} MiB  "
                    f"peak RSS {r['rss_peak_mib']:7.1f} MiB (training +{r['train_mib']:6.1f})",
                    flush=True,
                )
    ratios = []
    for model_name in MODELS:
        for base in bases:
            b, i = runs[(model_name, base)], runs[(model_name, f"ilu+{base}")]
            ratios.append(
                {
                    "model": model_name,
                    "base": base,
                    "time_ratio": i["step_seconds_median"] / b["step_seconds_median"],
                    "saved_for_backward_ratio": i["saved_for_backward_mib"] / b["saved_for_backward_mib"],
                    "train_memory_ratio": i["train_mib"] / b["train_mib"] if b["train_mib"] > 0 else None,
                    "peak_rss_ratio": i["rss_peak_mib"] / b["rss_peak_mib"],
                }
            )
    print("\nILU / base    time  saved-for-backward  training RSS  peak RSS")
    for r in ratios:
        mem = f"{r['train_memory_ratio']:.2f}x" if r["train_memory_ratio"] is not None else "n/a"
        print(
            f"{r['model']:6s} {r['base']:4s} {r['time_ratio']:5.2f}x {r['saved_for_backward_ratio']:17.2f}x"
            f" {mem:>13s} {r['peak_rss_ratio']:8.2f}x"
        )
    for n in notes:
        print("note:", n)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "steps": args.steps,
                "batch_size": args.batch_size,
                "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
                "machine": {
                    "cpus": os.cpu_count(),
                    "platform": platform.platform(),
                    "python": platform.python_version(),
                    "load_avg_1m_at_end": os.getloadavg()[0],
                },
                "runs": list(runs.values()),
                "ratios": ratios,
                "notes": notes,
            },
            indent=2,
        )
        + "\n"
    )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
