"""The house's shape: no import circles, small modules, serving apart from training."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("tierwise", "litellm_plugin", "openwebui_pipe", "relay")
MAX_LINES = 400
LONG_MODULE_MARK = "Longer than 400 lines because"


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def import_graph(found: dict[str, Path]) -> dict[str, set[str]]:
    """Imports between our modules, lazy ones inside functions included: a circle through a
    function-level import is still two modules that need each other."""

    def owner(name: str) -> str | None:
        while name and name not in found:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in found.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in _run_imports(ast.parse(path.read_text(encoding="utf-8")).body):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join([*parts, base] if base else parts)
                targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
            for target in targets:
                resolved = owner(target)
                if resolved and resolved != name:
                    graph[name].add(resolved)
                    break
    return graph


def _run_imports(body: list[ast.stmt]) -> list[ast.stmt]:
    """Every import that can run, in functions too; not those under `if TYPE_CHECKING:`."""
    out: list[ast.stmt] = []
    for node in body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            out += _run_imports(node.orelse)
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            out.append(node)
        for field in ("body", "orelse", "finalbody"):
            out += _run_imports(getattr(node, field, []) or [])
        for handler in getattr(node, "handlers", []) or []:
            out += _run_imports(handler.body)
    return out


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in list(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circles() -> None:
    graph = import_graph(modules())
    assert graph["tierwise.router"], "the graph should see the router's imports"
    assert cycles(graph) == []


def test_modules_are_small_or_say_why() -> None:
    long = []
    for name, path in modules().items():
        text = path.read_text(encoding="utf-8")
        if text.count("\n") > MAX_LINES and LONG_MODULE_MARK not in text[:2000]:
            long.append(f"{name} ({text.count(chr(10))} lines)")
    assert long == [], f"split these, or say at the top '{LONG_MODULE_MARK} ...': {long}"


def test_cli_only_assembles_the_commands() -> None:
    assert (REPO / "tierwise" / "cli.py").read_text().count("\n") <= 150


def test_serving_never_imports_hosts_or_training() -> None:
    """The routing core must not pull LiteLLM, Open WebUI or the fitting code into a server."""
    code = (
        "import sys, tierwise.router, tierwise.cli, tierwise.rules, tierwise.request;"
        "import tierwise.cache.semantic, tierwise.scoring.factory, tierwise.telemetry.recorder;"
        "import tierwise.adapt.scorer, tierwise.adapt.outcomes, tierwise.adapt.explore;"
        "import tierwise.adapt.background;"
        "bad=[m for m in sys.modules if m.split('.')[0] in ('litellm','open_webui')"
        " or m.startswith('tierwise.training')];"
        "print(bad); raise SystemExit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
