"""The layers of ARCHITECTURE.md, checked on the source: no import loops, and no import across a
line the architecture draws. Imports inside functions count too (a lazy import that closes a loop
is still a loop). The import graph is read with ``ast``; nothing is imported."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "unlearnbench"


def _module(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module(p): p for p in PACKAGE.rglob("*.py")}


def _targets(module: str, is_package: bool, node) -> list[str]:
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        mod = ".".join(base + ([node.module] if node.module else []))
    else:
        mod = node.module or ""
    # ``from pkg import sub`` depends on the submodule; on ``pkg`` itself only for names that are not
    # submodules (a submodule's parent package is always imported first: that is no loop)
    subs = [f"{mod}.{a.name}" for a in node.names]
    return [t for t in subs if t in MODULES] + ([mod] if any(t not in MODULES for t in subs) else [])


def _graph() -> dict[str, set[str]]:
    graph = {}
    for m, path in MODULES.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                deps |= {t for t in _targets(m, path.name == "__init__.py", node) if t in MODULES and t != m}
        graph[m] = deps
    return graph


GRAPH = _graph()


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def _under(module: str, *prefixes: str) -> bool:
    return any(module == f"unlearnbench.{p}" or module.startswith(f"unlearnbench.{p}.") for p in prefixes)


def _violations(sources: tuple[str, ...], forbidden: tuple[str, ...], allow=lambda src, dst: False) -> list[str]:
    return sorted(
        f"{src} imports {dst}"
        for src, deps in GRAPH.items()
        if _under(src, *sources)
        for dst in deps
        if _under(dst, *forbidden) and not allow(src, dst)
    )


def test_the_graph_is_read():
    assert "unlearnbench.runner" in GRAPH and "unlearnbench.store" in GRAPH["unlearnbench.runner"]
    assert _cycles({"a": {"b"}, "b": {"a"}, "c": set()}) == [["a", "b"]]  # the check can fail


def test_no_import_loops():
    assert _cycles(GRAPH) == []


PLUGINS = ("methods", "attacks", "probes", "benchmarks", "tasks")
HARNESS = (
    "runner",
    "store",
    "cli",
    "report",
    "export",
    "sweep",
    "study",
    "regress",
    "leaderboard",
    "taskvec",
    "weightspace",
    "trackers",
    "tracking",
)


@pytest.mark.parametrize(
    "sources, forbidden, allow",
    [
        # plugins know the shared types and the loaders, never the runner, the store or the screen
        (PLUGINS, HARNESS, None),
        # benchmarks, tasks and probes do not need the methods package (UnlearnData is in data.types)
        (("benchmarks", "tasks", "probes"), ("methods",), None),
        # methods, attacks and probes never see the embedded world; only its two thin plugins wrap it
        (("methods", "attacks", "probes"), ("toy",), None),
        (
            ("benchmarks", "tasks"),
            ("toy",),
            lambda src, dst: src in ("unlearnbench.benchmarks.toy", "unlearnbench.tasks.synthetic"),
        ),
        # the embedded world and the shared types are below the harness
        (("toy", "data"), HARNESS + PLUGINS, None),
        # reports read the store; they never run or load a model
        (("report", "export"), ("runner", "models", "inference", "generation", "methods", "attacks", "probes"), None),
    ],
    ids=["plugins-harness", "no-methods", "no-toy", "thin-toy-plugins", "toy-data-below", "report-reads"],
)
def test_layers(sources, forbidden, allow):
    assert _violations(sources, forbidden, allow or (lambda s, d: False)) == []


def test_only_the_runner_writes_results():
    """commit_cell / record_failure / start_run / finish_run are called in runner.py alone."""
    writers = {"commit_cell", "record_failure", "start_run", "finish_run"}
    calls = sorted(
        m
        for m, path in MODULES.items()
        if m not in ("unlearnbench.runner", "unlearnbench.store")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in writers
    )
    assert calls == []
