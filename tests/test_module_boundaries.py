"""Stages meet only at their contracts: no module reaches another module's private (_name) helpers,
evaluate/export/benchmark never import the training stage, and the package has no import cycles.

Static (ast), so it is fast and sees lazy imports inside functions too. Every check is a function of a
repository root, so the same code checks the real tree and, in the self-tests at the bottom, a small
fake tree built with deliberate offenders (a check that cannot fail proves nothing).

Walked: the package (edgecifar/) and the scripts in the top-level benchmarks/ and device/ folders.
tests/ are not walked.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WALKED = ("edgecifar", "benchmarks", "device")
LATER_STAGES = ("evaluate", "export", "benchmark")


# ---- the model of a tree: modules, their imports, the names those imports bind ----------------------

def project_modules(root: Path) -> dict[str, Path]:
    """Dotted name -> file for every .py under the walked folders (benchmarks/x.py is `benchmarks.x`)."""
    modules = {}
    for top in WALKED:
        for path in sorted((root / top).rglob("*.py")):
            rel = path.relative_to(root)
            if any(part == "__pycache__" or part.startswith(".") for part in rel.parts):
                continue
            parts = rel.with_suffix("").parts
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _resolve(module: str, level: int, me: str, path: Path, modules: dict[str, Path]) -> str:
    """The absolute dotted name an import statement's module part refers to."""
    in_package = (path.parent / "__init__.py").exists()
    here = me if path.name == "__init__.py" else me.rpartition(".")[0]
    if level:
        parts = here.split(".")
        return ".".join(parts[: len(parts) - (level - 1)] + ([module] if module else []))
    if not in_package and here and f"{here}.{module}" in modules:
        return f"{here}.{module}"  # a script importing a sibling script (its folder is on sys.path)
    return module


def _imports(path: Path, me: str, modules: dict[str, Path]):
    """(node, absolute module, [(name, bound-as)]) for every import in the file, function-level ones too.

    For `import a.b.c` the names list is empty and the module is a.b.c.
    """
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom):
            module = _resolve(node.module or "", node.level, me, path, modules)
            yield node, module, [(a.name, a.asname or a.name) for a in node.names]
        elif isinstance(node, ast.Import):
            for a in node.names:
                yield node, _resolve(a.name, 0, me, path, modules), []


def _targets(module: str, names, modules: dict[str, Path]) -> set[str]:
    """The project modules one import statement executes, for the import graph.

    `from pkg import sub` (sub a submodule) depends on pkg.sub; `from pkg import name` (anything else)
    depends on pkg, i.e. pkg/__init__.py. Parent packages of an absolute import are not added: their
    __init__ runs first, but the edge to them would be on every import and would hide real cycles in noise.
    """
    if not names:
        return {module} if module in modules else set()
    subs = {f"{module}.{n}" for n, _ in names if f"{module}.{n}" in modules}
    face = module in modules and any(f"{module}.{n}" not in modules for n, _ in names)
    return subs | ({module} if face else set())


def _module_bindings(path: Path, me: str, modules: dict[str, Path]) -> dict[str, str]:
    """Local name -> project module, for every name an import in the file binds to a module."""
    bound = {}
    for node, module, names in _imports(path, me, modules):
        if isinstance(node, ast.ImportFrom):
            bound.update({local: f"{module}.{name}" for name, local in names})
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for a in node.names:
                target = _resolve(a.name, 0, me, path, modules)
                if a.asname:
                    bound[a.asname] = target
                else:  # `import edgecifar.zoo` binds `edgecifar` (a sibling script's `import x` binds x)
                    bound[a.name.split(".")[0]] = target.split(".")[0] if target == a.name else target
    return {local: target for local, target in bound.items() if target in modules}


def _module_of(expr: ast.expr, bound: dict[str, str], modules: dict[str, Path]) -> str | None:
    """The project module an expression like `zoo` or `edgecifar.export.pipeline` names, if any."""
    if isinstance(expr, ast.Name):
        return bound.get(expr.id)
    if isinstance(expr, ast.Attribute):
        base = _module_of(expr.value, bound, modules)
        if base and f"{base}.{expr.attr}" in modules:
            return f"{base}.{expr.attr}"
    return None


def _where(root: Path, path: Path, node: ast.AST) -> str:
    return f"{path.relative_to(root)}:{node.lineno}"


# ---- the checks: each returns the offenders found under root --------------------------------------

def private_name_imports(root: Path) -> list[str]:
    """`from edgecifar.zoo import _REGISTRY` (and `from .zoo import _x`) in any module but zoo itself."""
    modules = project_modules(root)
    offenders = []
    for me, path in modules.items():
        for node, module, names in _imports(path, me, modules):
            if module != me and (module in modules or module.split(".")[0] == "edgecifar"):
                offenders += [f"{_where(root, path, node)}: {me} imports {module}.{n}" for n, _ in names if _is_private(n)]
            if not names and module != me and any(_is_private(p) for p in module.split(".")[1:]):
                offenders.append(f"{_where(root, path, node)}: {me} imports private module {module}")
    return offenders


def private_attribute_uses(root: Path) -> list[str]:
    """`zoo._REGISTRY` / `getattr(zoo, "_REGISTRY")` where `zoo` is a name bound to another project module.

    Only names bound by an import of a project module count: `self._x` and `obj._x` are not flagged.
    """
    modules = project_modules(root)
    offenders = []
    for me, path in modules.items():
        bound = _module_bindings(path, me, modules)
        if not bound:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Attribute) and _is_private(node.attr):
                owner, attr = _module_of(node.value, bound, modules), node.attr
            elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("getattr", "hasattr")
                  and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant)
                  and isinstance(node.args[1].value, str) and _is_private(node.args[1].value)):
                owner, attr = _module_of(node.args[0], bound, modules), node.args[1].value
            else:
                continue
            if owner and owner != me:
                offenders.append(f"{_where(root, path, node)}: {me} uses {owner}.{attr}")
    return offenders


def later_stages_importing_train(root: Path) -> list[str]:
    """Any import in edgecifar.{evaluate,export,benchmark}[.*] that executes edgecifar.train."""
    modules = project_modules(root)
    offenders = []
    for me, path in modules.items():
        parts = me.split(".")
        if parts[0] != "edgecifar" or parts[1:2] == [] or parts[1] not in LATER_STAGES:
            continue
        for node, module, names in _imports(path, me, modules):
            hits = {module} | {f"{module}.{n}" for n, _ in names}
            if any(h == "edgecifar.train" or h.startswith("edgecifar.train.") for h in hits):
                offenders.append(f"{_where(root, path, node)}: {me} imports edgecifar.train")
    return offenders


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> project modules it imports, module-level and lazy alike, package __init__ edges included."""
    modules = project_modules(root)
    graph = {}
    for me, path in modules.items():
        deps = set()
        for _, module, names in _imports(path, me, modules):
            deps |= _targets(module, names, modules)
        graph[me] = deps - {me}
    return graph


def import_cycles(root: Path) -> list[str]:
    """One cycle per strongly connected component of the import graph (Tarjan), as `a -> b -> a`."""
    graph = import_graph(root)
    index, low, stack, on_stack, components = {}, {}, [], set(), []

    def connect(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = set()
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.add(w)
                if w == v:
                    break
            if len(component) > 1:
                components.append(component)

    for v in sorted(graph):
        if v not in index:
            connect(v)

    cycles = []
    for component in components:  # shortest way round from the component's first module back to itself
        start = min(component)
        paths, seen = [[start]], {start}
        while paths:
            trail = paths.pop(0)
            nxt = sorted(graph[trail[-1]] & component)
            if start in nxt:
                cycles.append(" -> ".join(trail + [start]))
                break
            for w in nxt:
                if w not in seen:
                    seen.add(w)
                    paths.append(trail + [w])
    return cycles


# ---- the real tree --------------------------------------------------------------------------------

def test_the_walk_covers_the_package_and_the_scripts():
    modules = project_modules(ROOT)
    assert {"edgecifar", "edgecifar.export", "edgecifar.export.pipeline", "edgecifar.zoo"} <= modules.keys()
    assert any(m.startswith("benchmarks.") for m in modules), "benchmarks/ scripts not walked"
    assert any(m.startswith("device.") for m in modules), "device/ scripts not walked"
    assert not any(m.startswith("tests") for m in modules)
    graph = import_graph(ROOT)
    # package __init__ -> own submodule edges are kept (a cycle through a package face must be visible)
    assert "edgecifar.export.pipeline" in graph["edgecifar.export"]


def test_no_module_imports_a_private_name_from_another_module():
    offenders = private_name_imports(ROOT)
    assert not offenders, offenders


def test_no_module_uses_a_private_attribute_of_another_module():
    offenders = private_attribute_uses(ROOT)
    assert not offenders, offenders


def test_evaluate_export_and_benchmark_do_not_import_train():
    offenders = later_stages_importing_train(ROOT)
    assert not offenders, offenders


def test_no_import_cycles_between_modules():
    """Module-level and lazy imports alike: a cycle means two stages that cannot be read apart."""
    cycles = import_cycles(ROOT)
    assert not cycles, cycles


# ---- self-tests: each check fails on a deliberate offender and passes a clean tree -----------------

def _tree(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


CLEAN = {
    "edgecifar/__init__.py": '__version__ = "0"\n',
    "edgecifar/zoo.py": "_REGISTRY = {}\nREGISTRY = _REGISTRY\n\n\ndef names():\n    return sorted(_REGISTRY)\n",
    "edgecifar/train.py": "from . import zoo\n\n\ndef train():\n    return zoo.REGISTRY\n",
    "edgecifar/export/__init__.py": "from .pipeline import export_run\n\n__all__ = ['export_run']\n",
    "edgecifar/export/pipeline.py": (
        "from .. import zoo\nfrom . import formats\n\n\n"
        "class Run:\n    def __init__(self):\n        self._x = formats.NAMES\n\n"
        "    def go(self, obj):\n        from . import formats as f\n        return self._x, obj._y, f.NAMES, zoo.__name__\n\n\n"
        "def export_run():\n    return Run().go(None)\n"),
    "edgecifar/export/formats.py": "from edgecifar import __version__\n\nNAMES = ('tflite', __version__)\n",
    "edgecifar/export/cli.py": "from . import export_run\n\n\ndef main():\n    return export_run()\n",
    "benchmarks/table.py": "import edgecifar.zoo\nfrom edgecifar.export import export_run\n\nprint(edgecifar.zoo.REGISTRY, export_run)\n",
    "device/arm64/compare.py": "import json\n\n_cache = {}\nprint(json.dumps(_cache))\n",
}

CHECKS = {"private_name_imports": private_name_imports, "private_attribute_uses": private_attribute_uses,
          "later_stages_importing_train": later_stages_importing_train, "import_cycles": import_cycles}


@pytest.fixture
def clean_tree(tmp_path):
    return _tree(tmp_path, CLEAN)


def test_self_test_a_clean_fake_tree_reports_nothing(clean_tree):
    assert {name: check(clean_tree) for name, check in CHECKS.items()} == {name: [] for name in CHECKS}
    assert "edgecifar.export.pipeline" in import_graph(clean_tree)["edgecifar.export"]
    assert "edgecifar.export.formats" in import_graph(clean_tree)["edgecifar.export.pipeline"]


def test_self_test_cycle_through_a_package_init_is_found(clean_tree):
    # pipeline -> helper (module level) -> edgecifar.export, the package face (lazily) -> pipeline
    _tree(clean_tree, {
        "edgecifar/helper.py": "def later():\n    from edgecifar.export import export_run\n    return export_run\n",
        "edgecifar/export/pipeline.py": "from .. import helper\n\n\ndef export_run():\n    return helper\n",
    })
    assert import_cycles(clean_tree) == ["edgecifar.export -> edgecifar.export.pipeline -> edgecifar.helper -> edgecifar.export"]


def test_self_test_cycle_between_submodules_via_from_dot_import_is_found(clean_tree):
    # `from . import x` must give an edge to the submodule x, not just to the package
    _tree(clean_tree, {"edgecifar/export/formats.py": "def f():\n    from . import cli\n    return cli\n",
                       "edgecifar/export/cli.py": "from . import formats\n"})
    assert "edgecifar.export.cli -> edgecifar.export.formats -> edgecifar.export.cli" in import_cycles(clean_tree)


@pytest.mark.parametrize("rel, text, expected", [
    ("edgecifar/user.py", "from . import zoo\n\nprint(zoo._REGISTRY)\n", "edgecifar.user uses edgecifar.zoo._REGISTRY"),
    ("edgecifar/user.py", "import edgecifar.zoo as z\n\n\ndef f():\n    return z._REGISTRY\n",
     "edgecifar.user uses edgecifar.zoo._REGISTRY"),
    ("edgecifar/user.py", "import edgecifar.zoo\n\nprint(edgecifar.zoo._REGISTRY)\n", "edgecifar.user uses edgecifar.zoo._REGISTRY"),
    ("edgecifar/export/user.py", "def f():\n    from .. import zoo as registry\n    return getattr(registry, '_REGISTRY')\n",
     "edgecifar.export.user uses edgecifar.zoo._REGISTRY"),
    ("edgecifar/user.py", "from edgecifar import export\n\nprint(export.pipeline._helper)\n",
     "edgecifar.user uses edgecifar.export.pipeline._helper"),
    ("benchmarks/user.py", "from edgecifar import zoo\n\nprint(zoo._REGISTRY)\n", "benchmarks.user uses edgecifar.zoo._REGISTRY"),
    ("device/arm64/user.py", "import compare\n\nprint(compare._cache)\n", "device.arm64.user uses device.arm64.compare._cache"),
])
def test_self_test_private_attribute_of_a_module_is_found(clean_tree, rel, text, expected):
    _tree(clean_tree, {rel: text})
    offenders = private_attribute_uses(clean_tree)
    assert len(offenders) == 1 and offenders[0].endswith(expected), offenders


@pytest.mark.parametrize("rel, text, expected", [
    ("edgecifar/user.py", "from .zoo import _REGISTRY\n", "edgecifar.user imports edgecifar.zoo._REGISTRY"),
    ("edgecifar/export/user.py", "def f():\n    from ..zoo import _REGISTRY as r\n    return r\n",
     "edgecifar.export.user imports edgecifar.zoo._REGISTRY"),
    ("benchmarks/user.py", "from edgecifar.zoo import _REGISTRY\n", "benchmarks.user imports edgecifar.zoo._REGISTRY"),
])
def test_self_test_private_name_import_is_found(clean_tree, rel, text, expected):
    _tree(clean_tree, {rel: text})
    offenders = private_name_imports(clean_tree)
    assert len(offenders) == 1 and offenders[0].endswith(expected), offenders


@pytest.mark.parametrize("text", ["from .. import train\n", "def f():\n    from edgecifar.train import train\n",
                                  "import edgecifar.train\n"])
def test_self_test_later_stage_importing_train_is_found(clean_tree, text):
    _tree(clean_tree, {"edgecifar/export/user.py": text})
    offenders = later_stages_importing_train(clean_tree)
    assert len(offenders) == 1 and "edgecifar.export.user imports edgecifar.train" in offenders[0], offenders
