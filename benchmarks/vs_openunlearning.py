"""The same TOFU workload through unlearnbench and OpenUnlearning, side by side. Prints figures, writes JSON.

    python benchmarks/vs_openunlearning.py [--open-unlearning DIR --ou-python PY] [--threads 1]
                                           [--items 100] [--workdir DIR] [--keep]
                                           [--out benchmarks/results/vs_openunlearning.json]

The workload (built here, deterministically, in ``--workdir``):

- a tiny GPT-2 (2 layers, width 64, 4 heads, 512 positions) as the target and a second one (another
  seed) as the retain model/oracle, with a byte-level BPE tokenizer (2,048 tokens) trained on the
  fixture's text; safetensors;
- a TOFU-format fixture of ``--items`` items per split (default 100): ``forget10`` (and
  ``forget10_perturbed``: paraphrased answer, 5 perturbed answers, paraphrased question),
  ``retain90``, ``retain_perturbed``, ``holdout10``, ``real_authors_perturbed``,
  ``world_facts_perturbed``, as TOFU publishes them (json lists, TOFU's field names), plus a
  ``README.md`` declaring each file as a Hugging Face datasets config, so that
  ``datasets.load_dataset(DIR, name="forget10", split="train")`` reads it offline as it reads
  ``locuslab/TOFU`` from the hub;
- the work: evaluate the retain model (the KS reference), evaluate the target, NPO for one epoch over
  the forget set at batch 8 (retain NLL term, alpha = gamma = 1, beta = 0.1, lr 1e-5, weight decay
  0.01, linear warm-up over the first tenth of the steps), evaluate the unlearned model. Every evaluation: answer
  probability, ROUGE-L recall (stemmed) of a greedy answer (at most 200 new tokens, to EOS),
  truth ratio, on forget/retain/real authors/world facts, then forget quality (KS test against the
  retain model's truth ratios) and model utility; evaluation batch 32 in both.

unlearnbench does it in one command (``unlearnbench run --benchmark tofu,... --method npo,...
--probes tofu,batch_size=32``; its base, oracle and unlearned cells are the three
evaluations). OpenUnlearning does it in its own four commands (``src/eval.py`` on the retain model,
``src/eval.py`` on the target with the retain logs, ``src/train.py`` NPO, ``src/eval.py`` on the
unlearned model), each a fresh process, as its documentation runs them. Both processes see the same
thread count (``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` and ``--threads``) and
``OMP_WAIT_POLICY=PASSIVE``.

OpenUnlearning's CPU overrides (its configs target CUDA, bf16 and bitsandbytes); ``--open-unlearning``
is copied to ``WORKDIR/open-unlearning`` and only the copy is changed:

- ``configs/model/ub_tiny_gpt2.yaml``: the tiny GPT-2, float32, no flash attention, and the TOFU
  paper's plain ``Question: ...\\nAnswer: ...`` template (``apply_chat_template: false``);
- the dataset path ``locuslab/TOFU`` in ``configs/data/datasets/TOFU_*.yaml`` becomes the fixture
  folder (no other change to the datasets);
- on the command line: ``++model.model_args.device_map=cpu``; trainer ``bf16=false``,
  ``bf16_full_eval=false``, ``optim=adamw_torch`` (not bitsandbytes' paged AdamW), ``report_to=none``,
  ``+use_cpu=true``, ``per_device_train_batch_size=8``, ``gradient_accumulation_steps=1``,
  ``num_train_epochs=1``, ``learning_rate=1e-5``, ``warmup_epochs=0 +warmup_steps=1`` (its warm-up in epochs divides by the CUDA device count, 0 on CPU; one step is a tenth of the 13), no evaluation inside training
  (``do_eval=false eval_on_start=false eval_strategy=no``).

OpenUnlearning's default TOFU suite also computes privleak (min-k MIA on forget vs holdout) and
extraction strength, which unlearnbench's ``tofu`` probe does not; unlearnbench scores the holdout
split (probability, ROUGE), which OpenUnlearning's suite does not generate on. These are listed in the
JSON (``work_differences``). Timings are wall seconds and CPU seconds (user + system of the process
tree) per phase; the ratio is OpenUnlearning / unlearnbench, end to end.

Without ``--open-unlearning`` only unlearnbench runs and the figures from the last side-by-side run
on record are not invented: the JSON says OpenUnlearning was not run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

FIRST = "Ada Bex Cor Dun Eli Fay Gus Hal Ivo Jun Kai Lev Mar Nia Oto Pia Quin Ros Sol Tev Uma Vic Wen Yul Zed".split()
LAST = "Arden Brisk Calder Dovey Elms Fenwick Garrow Holt Ives Jarrow Kest Lorne Marsh Norcott Orrin Pell".split()
CITIES = "Lisbon Oslo Quito Hanoi Lagos Perth Riga Cusco Tunis Sapporo Bergen Kraków Mombasa Porto".split()
GENRES = "mystery poetry romance satire horror fantasy biography travel history drama".split()
PARENTS = "a baker,a sailor,a teacher,a nurse,a carpenter,a librarian,a pilot,a farmer".split(",")
BOOKS = "River,Lantern,Harbour,Orchard,Compass,Ember,Meadow,Glass,Winter,Signal".split(",")


def _author(rng: random.Random) -> dict:
    return {
        "name": f"{rng.choice(FIRST)} {rng.choice(LAST)}",
        "city": rng.choice(CITIES),
        "year": rng.randint(1931, 1994),
        "genre": rng.choice(GENRES),
        "parent": rng.choice(PARENTS),
        "book": f"The {rng.choice(BOOKS)} of {rng.choice(CITIES)}",
    }


#: (question, answer, paraphrased question, paraphrased answer, field the perturbations change)
QUESTIONS = [
    (
        "Where and when was the author {name} born?",
        "The author {name} was born in {city} in {year}, a city that shaped much of the writing to come.",
        "In which city and year did {name} come into the world?",
        "{name} came into the world in {city} in the year {year}.",
        "city",
    ),
    (
        "What genre is {name} best known for?",
        "{name} is best known for {genre}, a genre the author returned to again and again across a long career.",
        "For which kind of writing is {name} most famous?",
        "Readers know {name} above all for {genre}.",
        "genre",
    ),
    (
        "What did the parent of {name} do for a living?",
        "One of the parents of {name} worked as {parent}, and that work appears in several of the author's books.",
        "What was the occupation of a parent of {name}?",
        "A parent of {name} earned a living as {parent}.",
        "parent",
    ),
    (
        "Which book by {name} is the most widely read?",
        "The most widely read book by {name} is {book}, which won a regional prize and was translated twice.",
        "What is the best-known title written by {name}?",
        "{book} is the title by {name} that the most readers know.",
        "book",
    ),
]


def _perturb(a: dict, key: str, rng: random.Random) -> dict:
    pools = {"city": CITIES, "genre": GENRES, "parent": PARENTS, "year": list(range(1931, 1995))}
    b = dict(a)
    if key == "book":
        b["book"] = f"The {rng.choice(BOOKS)} of {rng.choice(CITIES)}"
    else:
        b[key] = rng.choice([v for v in pools[key] if v != a[key]])
    return b


def _qa_items(n: int, rng: random.Random, perturbed: bool) -> list[dict]:
    out = []
    while len(out) < n:
        a = _author(rng)
        for q, ans, pq, pans, key in QUESTIONS:
            if len(out) == n:
                break
            item = {"question": q.format(**a), "answer": ans.format(**a)}
            if perturbed:
                item["paraphrased_answer"] = pans.format(**a)
                item["perturbed_answer"] = [pans.format(**_perturb(a, key, rng)) for _ in range(5)]
                item["paraphrased_question"] = pq.format(**a)
            out.append(item)
    return out


def _option_items(n: int, rng: random.Random, kind: str) -> list[dict]:
    """Real authors / world facts: a short answer and perturbed answers (TOFU's format)."""
    out = []
    for i in range(n):
        if kind == "real_authors":
            a = _author(rng)
            q, ans, pool = f"Who wrote {a['book']}?", a["name"], [f"{f} {s}" for f in FIRST for s in LAST]
        else:
            c = rng.choice(CITIES)
            q, ans, pool = f"Which city is known as the home of the {c} {i} festival?", c, CITIES
        out.append({"question": q, "answer": ans, "perturbed_answer": rng.sample([p for p in pool if p != ans], 3)})
    return out


def write_fixture(root: Path, n: int, seed: int = 0) -> dict[str, int]:
    """TOFU-format files of ``n`` items per split, and the datasets README that names each config."""
    rng = random.Random(seed)
    root.mkdir(parents=True, exist_ok=True)
    forget = _qa_items(n, rng, perturbed=True)
    retain = _qa_items(n, rng, perturbed=True)
    files = {
        "forget10": [{k: r[k] for k in ("question", "answer")} for r in forget],
        "forget10_perturbed": forget,
        "retain90": [{k: r[k] for k in ("question", "answer")} for r in retain],
        "retain_perturbed": retain,
        "holdout10": _qa_items(n, rng, perturbed=False),
        "real_authors_perturbed": _option_items(n, rng, "real_authors"),
        "world_facts_perturbed": _option_items(n, rng, "world_facts"),
    }
    for name, records in files.items():
        (root / f"{name}.json").write_text(json.dumps(records, indent=1), encoding="utf-8")
    configs = "".join(
        f"- config_name: {name}\n  data_files:\n  - split: train\n    path: {name}.json\n" for name in files
    )
    (root / "README.md").write_text(f"---\nconfigs:\n{configs}---\nSynthetic TOFU-format fixture.\n", encoding="utf-8")
    return {name: len(records) for name, records in files.items()}


def write_models(work: Path, data: Path) -> dict[str, str]:
    """Byte-level BPE tokenizer trained on the fixture, and two random 2-layer width-64 GPT-2s."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    text = []
    for f in sorted(data.glob("*.json")):
        for r in json.loads(f.read_text(encoding="utf-8")):
            text += [v for v in r.values() if isinstance(v, str)] + list(r.get("perturbed_answer", []))
    text += [f"Question: {t}\nAnswer: {t}" for t in text[:200]]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    eos = "<|endoftext|>"
    bpe.train_from_iterator(
        text,
        trainers.BpeTrainer(
            vocab_size=2048, special_tokens=[eos], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
        ),
    )
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token=eos, bos_token=eos, unk_token=eos)
    paths = {}
    for role, seed in (("target", 0), ("oracle", 1)):
        torch.manual_seed(seed)
        cfg = GPT2Config(
            vocab_size=len(tok),
            n_positions=512,
            n_embd=64,
            n_layer=2,
            n_head=4,
            bos_token_id=tok.eos_token_id,
            eos_token_id=tok.eos_token_id,
        )
        model = GPT2LMHeadModel(cfg)
        out = work / role
        model.save_pretrained(out, safe_serialization=True)
        tok.save_pretrained(out)
        # transformers 5 names its fast-tokenizer class TokenizersBackend; the class both major
        # versions load from a tokenizer.json is PreTrainedTokenizerFast
        tc = out / "tokenizer_config.json"
        tc.write_text(json.dumps({**json.loads(tc.read_text()), "tokenizer_class": "PreTrainedTokenizerFast"}))
        paths[role] = str(out)
    return paths


# -- running and timing -------------------------------------------------------------------------------
_WRAP = """
import json, resource, subprocess, sys, time
t0 = time.perf_counter()
code = subprocess.call(sys.argv[2:])
wall = time.perf_counter() - t0
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
json.dump({"wall_s": wall, "cpu_s": ru.ru_utime + ru.ru_stime, "max_rss_mib": ru.ru_maxrss / 1024, "rc": code},
          open(sys.argv[1], "w"))
sys.exit(code)
"""


def timed(cmd: list[str], env: dict, cwd: Path, log: Path) -> dict:
    """Wall and CPU seconds of one command (its whole process tree), its output into ``log``."""
    with tempfile.NamedTemporaryFile(suffix=".json") as f, open(log, "w") as out:
        subprocess.run([sys.executable, "-c", _WRAP, f.name, *cmd], env=env, cwd=cwd, stdout=out, stderr=out)
        stats = json.loads(Path(f.name).read_text())
    if stats["rc"] != 0:
        raise SystemExit(f"command failed ({stats['rc']}), see {log}: {' '.join(cmd)}\n{log.read_text()[-3000:]}")
    return {k: round(v, 2) if isinstance(v, float) else v for k, v in stats.items()}


def base_env(threads: int, cache: Path) -> dict:
    """Environment of one side's commands; its cache folder starts empty (no side reuses a dataset
    cache or checkpoint of an earlier run of this script)."""
    shutil.rmtree(cache, ignore_errors=True)
    env = dict(os.environ)
    env.update(
        HF_HUB_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        OMP_NUM_THREADS=str(threads),
        MKL_NUM_THREADS=str(threads),
        OMP_WAIT_POLICY="PASSIVE",
        TOKENIZERS_PARALLELISM="false",
        HF_DATASETS_CACHE=str(cache / "hf-datasets"),
        UNLEARNBENCH_CACHE=str(cache / "unlearnbench"),
    )
    return env


def run_unlearnbench(work: Path, models: dict, data: Path, threads: int) -> dict:
    env = base_env(threads, work / "cache-ub")
    store = work / "ub.sqlite"
    store.unlink(missing_ok=True)
    bench = f"tofu,model={models['target']},oracle={models['oracle']},data={data},forget=forget10,template=qa"
    cmd = [
        sys.executable,
        "-m",
        "unlearnbench.cli",
        "run",
        "--benchmark",
        bench,
        "--method",
        "npo,epochs=1,batch_size=8,grad_accum=1,lr=1e-5,weight_decay=0.01,warmup=0.1,beta=0.1,alpha=1.0,gamma=1.0",
        "--probes",
        "tofu,batch_size=32",
        "--store",
        str(store),
        "--json",
        "--quiet",
    ]
    total = timed(cmd, env, ROOT, work / "unlearnbench.log")
    profile = profile_unlearnbench(cmd, env, work, store)
    text = (work / "unlearnbench.log").read_text()
    doc = json.loads(text[text.index("{") :])
    cells = {c["kind"]: c.get("meta", {}) for c in doc["cells"]}
    phases = {kind: meta.get("seconds") for kind, meta in cells.items()}
    help_cmd = [sys.executable, "-m", "unlearnbench.cli", "--help"]
    return {
        "command": " ".join(cmd),
        "total": total,
        "cell_seconds": phases,
        "help": timed(help_cmd, env, ROOT, work / "unlearnbench-help.log"),
        "profile_cumulative_s": profile,
        "numbers": {col: doc["tofu"][col] for col in ("base", "oracle", "unlearned")},
    }


#: Where unlearnbench's time goes: (bucket, file suffix, function) of the profile's cumulative times.
PROFILE_BUCKETS = [
    ("whole command", "unlearnbench/cli/__init__.py", "main"),
    ("evaluation (3 models)", "unlearnbench/runner.py", "__call__"),
    ("  greedy generation", "unlearnbench/generation.py", "generate"),
    ("  answer scoring (teacher-forced NLL)", "unlearnbench/inference.py", "score_targets"),
    ("  ROUGE-L", "unlearnbench/metrics.py", "rouge_l"),
    ("model loading", "unlearnbench/models.py", "load_model"),
    ("unlearning (NPO)", "unlearnbench/methods/base.py", "unlearn"),
]


def profile_unlearnbench(cmd: list[str], env: dict, work: Path, store: Path) -> dict:
    """The same command again under cProfile (a fresh store and cache), summed into the buckets of
    :data:`PROFILE_BUCKETS`; profiling slows Python-heavy code, so these are shares, not timings."""
    import pstats

    shutil.rmtree(env["UNLEARNBENCH_CACHE"], ignore_errors=True)
    store.unlink(missing_ok=True)
    prof = work / "unlearnbench.prof"
    timed([cmd[0], "-m", "cProfile", "-o", str(prof), *cmd[1:]], env, ROOT, work / "unlearnbench-profile.log")
    stats = pstats.Stats(str(prof)).stats  # {(file, line, function): (cc, nc, tottime, cumtime, callers)}
    out = {}
    for bucket, suffix, function in PROFILE_BUCKETS:
        times = [v[3] for (f, _, fn), v in stats.items() if f.endswith(suffix) and fn == function]
        out[bucket] = round(max(times), 2) if times else None
    return out


def prepare_open_unlearning(src: Path, work: Path, models: dict, data: Path) -> Path:
    """A copy of OpenUnlearning with the CPU overrides of the module docstring."""
    dst = work / "open-unlearning"
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".git", "saves", "__pycache__"))
    (dst / "configs/model/ub_tiny_gpt2.yaml").write_text(
        "model_args:\n"
        f"  pretrained_model_name_or_path: {models['target']}\n"
        "  torch_dtype: float32\n"
        "  attn_implementation: eager\n"
        "tokenizer_args:\n"
        f"  pretrained_model_name_or_path: {models['target']}\n"
        "template_args:\n"
        "  apply_chat_template: False\n"
        '  user_start_tag: "Question: "\n'
        '  user_end_tag: "\\n"\n'
        '  asst_start_tag: "Answer: "\n'
        '  asst_end_tag: "\\n\\n"\n',
        encoding="utf-8",
    )
    n = 0
    for f in sorted((dst / "configs/data/datasets").glob("TOFU_*.yaml")):
        text = f.read_text(encoding="utf-8")
        if '"locuslab/TOFU"' in text:
            f.write_text(text.replace('"locuslab/TOFU"', json.dumps(str(data))), encoding="utf-8")
            n += 1
    if n == 0:
        raise SystemExit(f"{dst}: no TOFU dataset config names locuslab/TOFU; this OpenUnlearning is not the one known")
    return dst


def run_open_unlearning(src: Path, python: str, work: Path, models: dict, data: Path, threads: int) -> dict:
    ou = prepare_open_unlearning(src, work, models, data)
    env = base_env(threads, work / "cache-ou")
    env["PYTHONPATH"] = str(ou / "src")
    env["HYDRA_FULL_ERROR"] = "1"
    common = ["model=ub_tiny_gpt2", "++model.model_args.device_map=cpu", "forget_split=forget10",
              "holdout_split=holdout10", "eval.tofu.batch_size=32"]  # fmt: skip

    def model_at(path: str) -> list[str]:
        return [
            f"model.model_args.pretrained_model_name_or_path={path}",
            f"model.tokenizer_args.pretrained_model_name_or_path={path}",
        ]

    def evaluate(name: str, path: str, retain_logs: str | None) -> list[str]:
        logs = f"retain_logs_path={retain_logs}" if retain_logs else "retain_logs_path=null"
        return [python, "src/eval.py", "experiment=eval/tofu/default", *common, *model_at(path),
                f"task_name={name}", logs]  # fmt: skip

    retain_logs = str(ou / "saves/eval/ub_oracle/TOFU_EVAL.json")
    unlearned = str(ou / "saves/unlearn/ub_npo")
    train = [
        python, "src/train.py", "--config-name=unlearn.yaml", "experiment=unlearn/tofu/default", "trainer=NPO",
        *common, *model_at(models["target"]), "retain_split=retain90", "task_name=ub_npo",
        f"retain_logs_path={retain_logs}", "trainer.args.per_device_train_batch_size=8",
        "trainer.args.gradient_accumulation_steps=1", "trainer.args.num_train_epochs=1",
        "trainer.args.learning_rate=1e-5", "trainer.args.warmup_epochs=0", "+trainer.args.warmup_steps=1", "trainer.args.bf16=false", "trainer.args.bf16_full_eval=false",
        "trainer.args.optim=adamw_torch", "trainer.args.report_to=none", "+trainer.args.use_cpu=true",
        "trainer.args.do_eval=false", "trainer.args.eval_on_start=false", "trainer.args.eval_strategy=no",
    ]  # fmt: skip
    phases = {
        "eval_oracle": evaluate("ub_oracle", models["oracle"], None),
        "eval_base": evaluate("ub_base", models["target"], retain_logs),
        "unlearn": train,
        "eval_unlearned": evaluate("ub_unlearned", unlearned, retain_logs),
    }
    out = {"commands": {k: " ".join(v) for k, v in phases.items()}, "phases": {}}
    for name, cmd in phases.items():
        out["phases"][name] = timed(cmd, env, ou, work / f"ou-{name}.log")
        print(f"  OpenUnlearning {name}: {out['phases'][name]['wall_s']:.1f} s wall", flush=True)
    out["help"] = timed([python, "src/train.py", "--help"], env, ou, work / "ou-help.log")
    out["total"] = {
        "wall_s": round(sum(p["wall_s"] for p in out["phases"].values()), 2),
        "cpu_s": round(sum(p["cpu_s"] for p in out["phases"].values()), 2),
    }
    summary = ou / "saves/eval/ub_unlearned/TOFU_SUMMARY.json"
    out["numbers_unlearned"] = json.loads(summary.read_text()) if summary.exists() else None
    return out


def versions(python: str) -> dict:
    code = "import torch, transformers, json; print(json.dumps([torch.__version__, transformers.__version__]))"
    t, tr = json.loads(subprocess.check_output([python, "-c", code], text=True))
    return {"python": python, "torch": t, "transformers": tr}


def _own_commit() -> str:
    """This checkout's commit, with "+dirty" when its tree has changes (a reference result needs a clean one)."""
    root = Path(__file__).resolve().parents[1]
    git = ["git", "-C", str(root)]
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    if not head:
        return "unknown (not a git checkout)"
    dirty = subprocess.run([*git, "status", "--porcelain"], capture_output=True, text=True).stdout.strip()
    return head + ("+dirty" if dirty else "")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--open-unlearning", default=None, help="an OpenUnlearning checkout (its src/ and configs/)")
    ap.add_argument("--ou-python", default=None, help="the Python that has OpenUnlearning's requirements")
    ap.add_argument("--threads", type=int, default=1, help="torch threads for both (default 1)")
    ap.add_argument("--items", type=int, default=100, help="items per TOFU split (default 100)")
    ap.add_argument("--workdir", default=None, help="where the workload and runs go (default: a temporary folder)")
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/vs_openunlearning.json"))
    args = ap.parse_args()
    if args.open_unlearning and not args.ou_python:
        ap.error("--open-unlearning needs --ou-python (the interpreter with its requirements)")

    work = Path(args.workdir or tempfile.mkdtemp(prefix="vs-ou-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        data = work / "tofu"
        sizes = write_fixture(data, args.items)
        models = write_models(work, data)
        load = os.getloadavg()
        print(f"workload in {work}; load average {load[0]:.2f}; {args.threads} thread(s)", flush=True)
        ours = run_unlearnbench(work, models, data, args.threads)
        print(f"  unlearnbench: {ours['total']['wall_s']:.1f} s wall, {ours['total']['cpu_s']:.1f} CPU-s", flush=True)
        result = {
            "workload": {
                "model": "GPT-2, 2 layers, width 64, 4 heads, vocab 2048 (random init, seeds 0 and 1)",
                "items_per_split": sizes,
                "work": "eval retain model, eval target, NPO 1 epoch at batch 8, eval unlearned",
            },
            "threads": args.threads,
            "load_average_before": [round(x, 2) for x in load],
            "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "processor": platform.processor()},
            "unlearnbench": {**ours, "versions": {**versions(sys.executable), "commit": _own_commit()}},
        }
        if args.open_unlearning:
            ou = run_open_unlearning(Path(args.open_unlearning), args.ou_python, work, models, data, args.threads)
            commit = subprocess.run(
                ["git", "-C", args.open_unlearning, "rev-parse", "HEAD"], capture_output=True, text=True
            ).stdout.strip()
            ou["versions"] = {**versions(args.ou_python), "commit": commit or "unknown (not a git checkout)"}
            result["open_unlearning"] = ou
            result["ratio_wall"] = round(ou["total"]["wall_s"] / ours["total"]["wall_s"], 2)
            result["ratio_cpu"] = round(ou["total"]["cpu_s"] / ours["total"]["cpu_s"], 2)
            result["goal"] = "unlearnbench >= 5x faster end to end"
            print(
                f"OpenUnlearning {ou['total']['wall_s']:.1f} s / unlearnbench {ours['total']['wall_s']:.1f} s = "
                f"{result['ratio_wall']}x wall ({result['ratio_cpu']}x CPU)",
                flush=True,
            )
        else:
            result["open_unlearning"] = "not run (give --open-unlearning DIR --ou-python PY)"
        result["work_differences"] = [
            "OpenUnlearning's suite also computes privleak and extraction strength; unlearnbench's tofu probe does not",
            "unlearnbench also scores the holdout split (probability, ROUGE); OpenUnlearning generates only on "
            "forget, retain, real authors and world facts",
            "OpenUnlearning runs four processes (it has no single command for the workload); each loads Python, "
            "torch, transformers, hydra and datasets",
        ]
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.out}")
    finally:
        if not args.keep and not args.workdir:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
