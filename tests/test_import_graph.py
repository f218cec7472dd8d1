"""The package's modules import each other one way: the import graph, read from the source with ``ast``, has no
cycle, and no import hides inside a function to dodge one (only the documented lazy loads below do that)."""

import ast
import pathlib

ROOT = pathlib.Path(__file__).parent.parent
PACKAGE = ROOT / "s4d_hf"

# (importing module, imported module) -> why the import waits until a function runs. "*" = any module.
LAZY_IMPORTS = {
    ("s4d_hf", "*"): "the package's deferred registration with transformers (register_all, see s4d_hf/__init__.py)",
    ("s4d_hf.hub.push", "s4d_hf"): "the checks use the package's lazily imported model classes (PEP 562)",
    # the commands moved from library modules into s4d_hf/cli/ (one module per command, issue 14)
    ("s4d_hf.cli.train", "s4d_hf.training.trainer_backend"): "only the --backend chosen is imported (Trainer)",
    ("s4d_hf.cli.train", "s4d_hf.training.accelerate_backend"): "only the --backend chosen is imported (Accelerate)",
    ("s4d_hf.training.output", "s4d_hf.processing"): "optional: without it the folder is written without a "
                                                     "processor, and its card says so",
}


def package_modules() -> dict[str, tuple[pathlib.Path, bool]]:
    """module name -> (source file, is a package __init__)."""
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        modules[".".join(parts[:-1] if is_package else parts)] = (path, is_package)
    return modules


def imported_modules(node, module: str, is_package: bool, modules) -> list[str]:
    """The s4d_hf modules an Import / ImportFrom node imports (relative imports resolved; ``from pkg import mod``
    names the module, ``from mod import name`` the module)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names if alias.name.split(".")[0] == "s4d_hf"]
    if node.level:
        base = module.split(".") if is_package else module.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    if target.split(".")[0] != "s4d_hf":
        return []
    return [f"{target}.{alias.name}" if f"{target}.{alias.name}" in modules else target for alias in node.names]


def import_graph():
    """(edges: module -> set of imported modules, function-level imports: [(module, imported, line)])."""
    modules = package_modules()
    edges, lazy = {name: set() for name in modules}, []
    for module, (path, is_package) in modules.items():
        def visit(node, in_function):
            for child in ast.iter_child_nodes(node):
                inside = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
                if isinstance(child, (ast.Import, ast.ImportFrom)):
                    for target in imported_modules(child, module, is_package, modules):
                        if target != module:
                            edges[module].add(target)
                            if in_function:
                                lazy.append((module, target, child.lineno))
                visit(child, inside)

        visit(ast.parse(path.read_text(encoding="utf-8"), str(path)), False)
    return edges, lazy


def find_cycle(edges) -> list[str] | None:
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_graph_sees_relative_absolute_and_function_level_imports():
    edges, lazy = import_graph()
    assert "s4d_hf.training.data.core" in edges["s4d_hf.training.data.user_files"]  # from .core import ...
    assert "s4d_hf.staging" in edges["s4d_hf.hub.cards"]  # from ..staging import ...
    assert "s4d_hf.training.tasks" in edges["s4d_hf.cli.train"]  # from s4d_hf.training.tasks import ...
    assert ("s4d_hf.cli.train", "s4d_hf.training.trainer_backend") in {(m, t) for m, t, _ in lazy}
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_the_module_import_graph_is_acyclic():
    edges, _ = import_graph()
    cycle = find_cycle(edges)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_function_level_import_of_the_package_except_documented_lazy_loads():
    _, lazy = import_graph()
    unexplained = [f"{module} -> {target} (line {line})" for module, target, line in lazy
                   if (module, target) not in LAZY_IMPORTS and (module, "*") not in LAZY_IMPORTS]
    assert not unexplained, ("function-level imports of s4d_hf modules (move them to the top of the module, or add "
                             "the reason to LAZY_IMPORTS): " + "; ".join(unexplained))
    used = {(module, target) for module, target, _ in lazy} | {(module, "*") for module, _, _ in lazy}
    assert set(LAZY_IMPORTS) <= used, f"stale LAZY_IMPORTS entries: {sorted(set(LAZY_IMPORTS) - used)}"
