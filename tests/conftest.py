"""Test-wide settings: never touch the network, never write to the user's cache."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# before torch is imported: OpenMP threads that busy-wait crawl when the machine is shared
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
