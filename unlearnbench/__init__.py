"""unlearnbench: does knowledge removed from an LLM stay removed?

Importing the package is cheap: nothing here imports torch. Heavy modules (runner, methods,
attacks, probes) are imported only when they are used.

Thread policy: unless the user set it, ``OMP_WAIT_POLICY=PASSIVE`` is put into the environment here,
before anything imports torch (OpenMP reads it once, when torch's thread pool starts). With the
default policy OpenMP threads spin while they wait for work; on a shared or loaded CPU that spinning
starves the threads doing the work (a 2-thread matmul loop: 150 it/s by default, 6,275 it/s with
PASSIVE at load 15 on 2 cores). The policy only changes how idle threads wait, not what they
compute: ``benchmarks/thread_drift.py --setting wait=active`` compares every stored score. When
torch was imported before unlearnbench, the policy can no longer change and nothing is set.
"""

import os as _os
import sys as _sys

if "torch" not in _sys.modules:
    _os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"
