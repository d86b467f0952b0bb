"""Integration tests share one cache of micro-world models per test session (trained once)."""

import os

import pytest


def pytest_collection_modifyitems(items):
    for item in items:
        if "integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def micro_cache(tmp_path_factory):
    """A model cache for the session. UNLEARNBENCH_TEST_CACHE reuses one across sessions (local dev)."""
    path = os.environ.get("UNLEARNBENCH_TEST_CACHE") or str(tmp_path_factory.mktemp("cache"))
    old = os.environ.get("UNLEARNBENCH_CACHE")
    os.environ["UNLEARNBENCH_CACHE"] = path
    yield path
    if old is None:
        os.environ.pop("UNLEARNBENCH_CACHE", None)
    else:
        os.environ["UNLEARNBENCH_CACHE"] = old
