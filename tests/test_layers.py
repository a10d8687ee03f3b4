"""The layers of the code, enforced: runtimes (device, bottom) <- core <- tools <- CLI.

Every import of a project module counts, whether at the top of a file or inside a function, so a
function-local import cannot hide a dependency that runs upwards or closes a cycle. The packages
the wheel installs are checked against the folders, so nothing is left out of a release and
nothing lands in site-packages under a generic top-level name.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]
# Repository folder -> the package name the wheel installs it as.
FOLDERS = {"edgesal": "edgesal", "converters": "edgesal.converters", "runtimes": "edgesal.runtimes"}

RUNTIME, CORE, TOOLS, CLI = 0, 1, 2, 3
LAYER_NAMES = ("runtime", "core", "tools", "cli")
# Longest prefix wins. A module that matches none fails test_every_module_has_a_layer.
LAYERS = {
    "edgesal": CORE,
    "edgesal.runtimes": RUNTIME,
    "edgesal.runtimes.cli": RUNTIME,  # the device's own CLI: still nothing but the runtime
    "edgesal.runtimes.__main__": RUNTIME,
    "edgesal.converters": TOOLS,
    "edgesal.quant": TOOLS,
    "edgesal.eval": TOOLS,
    "edgesal.zoo": TOOLS,
    "edgesal.tools": TOOLS,
    "edgesal.cli": CLI,
    "edgesal.eval.cli": CLI,
    "edgesal.eval.__main__": CLI,
    "edgesal.quant.cli": CLI,
}
# What the device layer may import from the rest of edgesal: the namespace package itself only.
RUNTIME_MAY_IMPORT = {"edgesal"}
# Third-party modules the device layer never imports (the isolation test also runs it blocked).
NOT_ON_DEVICE = {"onnx", "torch", "tensorflow", "tf2onnx", "tflite", "jax", "onnxscript"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    parts[0] = FOLDERS[parts[0]]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def project_modules() -> dict[str, Path]:
    return {
        module_name(path): path
        for folder in FOLDERS
        for path in sorted((ROOT / folder).rglob("*.py"))
        if "__pycache__" not in path.parts
    }


MODULES = project_modules()


def layer_of(module: str) -> int | None:
    prefixes = [p for p in LAYERS if module == p or module.startswith(p + ".")]
    return LAYERS[max(prefixes, key=len)] if prefixes else None


def resolve(name: str) -> str | None:
    """The project module an imported name lives in (``edgesal.x.y.func`` -> ``edgesal.x.y``)."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def imported_names(module: str, path: Path) -> Iterator[tuple[str, int]]:
    """Every (absolute name, line) the module imports, top level and inside functions alike."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package
                for _ in range(node.level - 1):
                    anchor = anchor.rpartition(".")[0]
                base = f"{anchor}.{base}" if base else anchor
            names = [f"{base}.{alias.name}" for alias in node.names]
            # ``from package import submodule`` needs the submodule, not the package's own code.
            if not all(name in MODULES for name in names):
                yield base, node.lineno
            for name in names:
                yield name, node.lineno


def project_imports(module: str) -> dict[str, int]:
    found: dict[str, int] = {}
    for name, line in imported_names(module, MODULES[module]):
        target = resolve(name) if name.split(".")[0] == "edgesal" else None
        if target and target != module:
            found.setdefault(target, line)
    return found


GRAPH = {module: project_imports(module) for module in MODULES}


def test_every_module_has_a_layer():
    unplaced = [m for m in MODULES if layer_of(m) is None]
    assert not unplaced, f"place these modules in LAYERS of tests/test_layers.py: {unplaced}"


def test_every_layer_entry_names_modules():
    """A LAYERS prefix that matches no module is left over from a move: the table says where
    modules are, so it lists only what exists."""
    stale = [p for p in LAYERS if not any(m == p or m.startswith(p + ".") for m in MODULES)]
    assert not stale, f"remove or rename these LAYERS entries: {stale}"


def test_no_import_runs_up_a_layer():
    wrong = []
    for module, targets in GRAPH.items():
        for target, line in targets.items():
            if layer_of(target) > layer_of(module):
                wrong.append(
                    f"{MODULES[module].relative_to(ROOT)}:{line}: {module} "
                    f"({LAYER_NAMES[layer_of(module)]}) imports {target} "
                    f"({LAYER_NAMES[layer_of(target)]})"
                )
    assert not wrong, "\n".join(wrong)


def test_the_device_layer_imports_only_itself():
    wrong = []
    for module, path in MODULES.items():
        if layer_of(module) != RUNTIME:
            continue
        for name, line in imported_names(module, path):
            top = name.split(".")[0]
            outside = top == "edgesal" and not (
                name in RUNTIME_MAY_IMPORT or name.startswith("edgesal.runtimes")
            )
            if outside or top in NOT_ON_DEVICE:
                wrong.append(f"{path.relative_to(ROOT)}:{line}: {name}")
    assert not wrong, "\n".join(wrong)


def test_converters_do_not_import_the_gradient_rules():
    wrong = [
        f"{module} imports {target}"
        for module, targets in GRAPH.items()
        if module.startswith("edgesal.converters")
        for target in targets
        if target.startswith("edgesal.autodiff")
    ]
    assert not wrong, "\n".join(wrong)


def strongly_connected(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative: the cycles of the import graph (components of size > 1)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
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
                    cycles.append(sorted(component))
    return cycles


def test_strongly_connected_finds_a_planted_cycle():
    graph = {"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1}, "d": {"a": 1}}
    assert strongly_connected(graph) == [["a", "b", "c"]]
    assert strongly_connected({"a": {"b": 1}, "b": {}}) == []


def test_no_import_cycles():
    cycles = strongly_connected(GRAPH)
    assert not cycles, "import cycles (a module is in the wrong place):\n" + "\n".join(
        " <-> ".join(c) for c in cycles
    )


def test_the_wheel_lists_every_package_under_edgesal():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    packages = {m for m, path in MODULES.items() if path.name == "__init__.py"}
    assert set(config["packages"]) == packages
    assert all(p == "edgesal" or p.startswith("edgesal.") for p in config["packages"])
    assert config["package-dir"] == {name: folder for folder, name in FOLDERS.items()}


def test_installed_names_are_under_edgesal_only(tmp_path):
    """Outside the repository (where its folders are not on sys.path) only edgesal.* imports."""
    probe = (
        "import importlib.util as u\n"
        "print([u.find_spec(n) is None for n in ('runtimes', 'converters')],"
        " [u.find_spec(n) is not None for n in ('edgesal.runtimes', 'edgesal.converters')])"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert done.stdout.split() == ["[True,", "True]", "[True,", "True]"], done.stdout
