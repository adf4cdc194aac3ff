"""The package layout shows the architecture, and these tests keep it that way.

``quill_env`` (environment, scoring, backends, suites; task authoring in ``quill_env.authoring``)
sees nothing of ``quill_agents`` (agents, data loop, trainers, leaderboard); ``quill_cli`` (the
``quill`` command) is the only package that sees both; ``quill_verifiers`` (the verifiers taskset)
sees only ``quill_env``. No module imports a first-party module
inside a function (the way a cycle is usually hidden), the module-level import graph has no
cycle, and no two modules share a name.
"""

from __future__ import annotations

import ast
import json
from collections import Counter
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parent.parent / "src"
PACKAGES = ("quill_env", "quill_agents", "quill_cli", "quill_verifiers")


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(SRC.rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__main__":
            continue
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _first_party(name: str | None) -> bool:
    return bool(name) and name.split(".")[0] in PACKAGES


def _imported(node: ast.Import | ast.ImportFrom) -> set[str]:
    """The first-party modules an import statement loads (``from pkg import mod`` names ``pkg.mod``)."""
    if isinstance(node, ast.Import):
        return {a.name for a in node.names if _first_party(a.name)}
    if not _first_party(node.module):
        return set()
    return {
        f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in MODULES else node.module for a in node.names
    }


def _module_level_imports(tree: ast.Module) -> set[str]:
    """Imports run when the module loads (``if TYPE_CHECKING:`` blocks excluded)."""
    out: set[str] = set()
    for node in tree.body:
        body = node.body if isinstance(node, ast.Try) else [node]
        for stmt in body:
            if isinstance(stmt, (ast.Import, ast.ImportFrom)):
                out |= _imported(stmt)
    return out


def _nested_imports(tree: ast.Module) -> list[tuple[int, str]]:
    """First-party imports inside a function or class body."""
    out = []
    for scope in ast.walk(tree):
        if isinstance(scope, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            for node in ast.walk(scope):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    out.extend((node.lineno, name) for name in sorted(_imported(node)))
    return out


GRAPH = {
    name: _module_level_imports(ast.parse(path.read_text())) & MODULES.keys() - {name}
    for name, path in MODULES.items()
}


def test_the_scan_sees_the_packages():
    # a broken scan would pass every test below vacuously
    assert {
        "quill_env.env",
        "quill_env.authoring.querygen",
        "quill_agents.generate",
        "quill_cli.main",
    } <= MODULES.keys()
    assert "quill_env.tasks" in GRAPH["quill_env.env"]
    assert "quill_agents.generate" in GRAPH["quill_cli.cmd_generate"]


def test_no_two_modules_share_a_name():
    names = Counter(name.rsplit(".", 1)[-1] for name, path in MODULES.items() if path.name != "__init__.py")
    assert [name for name, count in names.items() if count > 1] == []


def test_no_first_party_import_inside_a_function():
    found = [
        f"{path.relative_to(SRC)}:{line}: {name}"
        for path in MODULES.values()
        for line, name in _nested_imports(ast.parse(path.read_text()))
    ]
    assert found == []


def test_module_import_graph_has_no_cycle():
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        path.append(node)
        for dep in sorted(GRAPH[node]):
            if state.get(dep) == 1:
                cycles.append(" -> ".join([*path[path.index(dep) :], dep]))
            elif dep not in state:
                visit(dep, path)
        path.pop()
        state[node] = 2

    for node in sorted(GRAPH):
        if node not in state:
            visit(node, [])
    assert cycles == []


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [
        ("quill_env", ("quill_agents", "quill_cli", "quill_verifiers")),
        ("quill_agents", ("quill_cli", "quill_verifiers")),
        ("quill_verifiers", ("quill_agents", "quill_cli")),  # a taskset over the environment alone
    ],
)
def test_packages_only_import_downward(package, forbidden):
    bad = sorted(
        f"{name} imports {dep}"
        for name, deps in GRAPH.items()
        if name.split(".")[0] == package
        for dep in deps
        if dep.split(".")[0] in forbidden
    )
    assert bad == []


def test_the_environment_does_not_import_authoring():
    """Scoring, backends and suites run without the code that wrote the suites."""
    bad = sorted(
        f"{name} imports {dep}"
        for name, deps in GRAPH.items()
        if name.startswith("quill_env") and not name.startswith("quill_env.authoring")
        for dep in deps
        if dep.startswith("quill_env.authoring")
    )
    assert bad == []


def test_name_pools_are_a_data_file():
    from quill_env.authoring import augment

    pools = json.loads((SRC / "quill_env" / "authoring" / "name_pools.json").read_text())
    assert augment.NAME_POOLS["common"]["tables"]["users"] == tuple(
        pools["domains"]["common"]["tables"]["users"]
    )
    assert '"customers"' not in (SRC / "quill_env" / "authoring" / "augment.py").read_text()
