"""The package's import graph flows one way: no cycles among lagrad's modules
(imports under TYPE_CHECKING and inside functions count too), and no import
inside a function except of an optional extra, or in the CLI."""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx
import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "lagrad"
OPTIONAL = {"matplotlib", "jax", "jaxlib", "jaxopt", "autograd", "torch", "casadi",
            "threadpoolctl", "mkdocs", "sklearn", "petsc4py", "mpi4py"}
"""Packages that are not run-time dependencies: imported where they are used."""
LAYERS = ["errors", "numeric", "options", "tree", "ir", "compile", "solve", "api", "check",
          "vectorize", "examples", "optimize", "study", "methods", "bench", "cli"]
"""lagrad's packages and top-level modules, lowest first."""


def _module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(module: str, node: ast.ImportFrom | ast.Import, is_package: bool) -> list[str]:
    """The lagrad modules an import statement names (a module or a package)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.split(".")[0] == "lagrad"]
    base = node.module or ""
    if node.level:
        anchor = module.split(".")
        anchor = anchor if is_package else anchor[:-1]
        anchor = anchor[:len(anchor) - (node.level - 1)]
        base = ".".join(anchor + ([base] if base else []))
    if base.split(".")[0] != "lagrad":
        return []
    # ``from lagrad.ir import ops`` names the module lagrad.ir.ops
    return [f"{base}.{a.name}" if _exists(f"{base}.{a.name}") else base for a in node.names]


def _exists(module: str) -> bool:
    path = SRC.joinpath(*module.split("."))
    return path.with_suffix(".py").exists() or (path / "__init__.py").exists()


def _modules() -> dict[str, tuple[Path, ast.Module]]:
    return {_module_name(p): (p, ast.parse(p.read_text(), str(p)))
            for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(tree: ast.Module) -> list[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import with whether it sits inside a function."""
    out = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                out.append((child, in_function))
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                       ast.Lambda))
            visit(child, inner)
    visit(tree, False)
    return out


def import_graph() -> nx.DiGraph:
    graph = nx.DiGraph()
    for name, (path, tree) in _modules().items():
        graph.add_node(name)
        for node, _ in _imports(tree):
            for target in _resolve(name, node, path.name == "__init__.py"):
                if target != name and target != "lagrad":
                    graph.add_edge(name, target)
    return graph


def test_the_import_graph_has_no_cycle() -> None:
    cycles = list(nx.simple_cycles(import_graph()))
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c + c[:1]) for c in cycles[:5])


def _layer(module: str) -> int:
    parts = module.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 else len(LAYERS)


def test_imports_flow_down_the_layers() -> None:
    upward = [f"{a} -> {b}" for a, b in import_graph().edges if _layer(b) > _layer(a)]
    assert not upward, "imports that run up the layers: " + ", ".join(upward)


def test_every_module_belongs_to_a_layer() -> None:
    tops = {m.split(".")[1] for m in _modules() if "." in m}
    assert tops <= set(LAYERS), f"modules outside the layers: {sorted(tops - set(LAYERS))}"


def test_no_function_level_imports_but_extras_and_the_cli() -> None:
    bad = []
    for name, (_, tree) in _modules().items():
        if name == "lagrad.cli":
            continue
        for node, in_function in _imports(tree):
            if not in_function:
                continue
            roots = [a.name.split(".")[0] for a in node.names] if isinstance(node, ast.Import) \
                else [(node.module or "").split(".")[0] if not node.level else "lagrad"]
            if any(r not in OPTIONAL for r in roots):
                bad.append(f"{name}:{node.lineno}")
    assert not bad, "imports inside functions: " + ", ".join(bad)


def test_no_type_checking_imports() -> None:
    """Type-only imports would hide a cycle from the interpreter: use Protocols."""
    hits = [name for name, (_, tree) in _modules().items()
            for node in ast.walk(tree)
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)]
    assert not hits, f"TYPE_CHECKING blocks in {hits}"


@pytest.mark.parametrize("module", ["lagrad.ir.program", "lagrad.solve.solution"])
def test_the_checker_sees_real_edges(module: str) -> None:
    """The graph is not empty by mistake: known imports show up as edges."""
    graph = import_graph()
    assert graph.out_degree(module) > 0
    assert nx.has_path(graph, "lagrad.solve.solution", "lagrad.ir.program")


def _private_names_defined(tree: ast.Module) -> set[str]:
    """Private names a module defines: functions, classes, methods, attributes
    it assigns (``self._x = ...``) and slots."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            names.add(node.value)  # __slots__ entries, dataclass field names
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return names


def test_no_module_reaches_into_another_modules_private_attributes():
    bad = []
    for name, (_, tree) in _modules().items():
        own = _private_names_defined(tree)
        for node in ast.walk(tree):
            if not isinstance(node, ast.Attribute) or not node.attr.startswith("_") \
                    or node.attr.startswith("__"):
                continue
            if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                continue
            if isinstance(node.value, ast.Name) and node.value.id in ("np", "sys", "os"):
                continue  # numpy's and the standard library's own (np._core is not used)
            if node.attr not in own:
                bad.append(f"{name}:{node.lineno} .{node.attr}")
    assert not bad, "private attributes of other modules: " + ", ".join(bad)
