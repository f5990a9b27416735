"""Stages meet only at their contracts: no module imports another module's private (_name) helpers,
evaluate/export/benchmark never import the training stage, and the package has no import cycles.

Static (ast), so it is fast and sees lazy imports inside functions too.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "edgecifar"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path):
    """(imported module, imported names) for every import in the file, relative ones resolved."""
    tree = ast.parse(path.read_text())
    me = _module_name(path)
    package = me if path.name == "__init__.py" else me.rsplit(".", 1)[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            yield module, [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, []


MODULES = {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def test_no_module_imports_a_private_name_from_another_module():
    offenders = []
    for name, path in MODULES.items():
        for module, names in _imports(path):
            if module.startswith("edgecifar") and module != name:
                offenders += [f"{name} imports {module}.{n}" for n in names if n.startswith("_") and n != "__version__"]
    assert not offenders, offenders


def test_evaluate_export_and_benchmark_do_not_import_train():
    offenders = []
    for name, path in MODULES.items():
        if name.split(".")[1:2] and name.split(".")[1] in ("evaluate", "export", "benchmark"):
            offenders += [f"{name} imports {m}" for m, _ in _imports(path) if m == "edgecifar.train"
                          or (m == "edgecifar" and "train" in _)]
    assert not offenders, offenders


def test_no_import_cycles_between_modules():
    """Module-level and lazy imports alike: a cycle means two stages that cannot be read apart."""
    graph = {}
    for name, path in MODULES.items():
        deps = set()
        for module, names in _imports(path):
            if module in MODULES:
                deps.add(module)
            for n in names:  # `from edgecifar import train` imports the module edgecifar.train
                if f"{module}.{n}" in MODULES:
                    deps.add(f"{module}.{n}")
        # A package's __init__ importing its own submodules is the package face, not a cycle between stages.
        graph[name] = {d for d in deps if d != name and not (d.startswith(name + "."))}
    cycles, state = [], {}

    def visit(node, stack):
        state[node] = "open"
        for dep in graph.get(node, ()):
            if state.get(dep) == "open":
                cycles.append(" -> ".join(stack[stack.index(dep):] + [dep]))
            elif dep not in state:
                visit(dep, stack + [dep])
        state[node] = "done"

    for node in graph:
        if node not in state:
            visit(node, [node])
    assert not cycles, cycles
