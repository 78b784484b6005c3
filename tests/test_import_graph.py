"""The package's import graph: no cycles, and no import from a lower layer to a higher one.

Every ``import`` / ``from ... import`` inside ibit_deploy counts, at module level or inside a function (a lazy import
is still a dependency; it only hides the cycle until run time). ``from pkg import name`` counts as importing
``pkg.name`` when that is a module, else ``pkg``. Parent packages' ``__init__`` are not implied by importing a
submodule (as import-linter and pydeps do).
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

PACKAGE = "ibit_deploy"
ROOT = Path(__file__).resolve().parent.parent / PACKAGE

# The layers, lowest first. A module may import its own layer and those below it, never one above. The README's
# "Architecture" section explains them; this table is where the rule is enforced.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    # the bundle format and the device kit: copied whole into every bundle, so it imports only itself
    ("bundle format", ("ibit_deploy.devicekit",)),
    ("ground", ("ibit_deploy.version", "ibit_deploy.errors", "ibit_deploy.configs")),
    ("tensorrt", ("ibit_deploy.trt",)),
    ("foundations", ("ibit_deploy.data", "ibit_deploy.models", "ibit_deploy.timm_plugin", "ibit_deploy.fold",
                     "ibit_deploy.checkpoint", "ibit_deploy.checkpoint_contract", "ibit_deploy.viz")),
    ("write policy", ("ibit_deploy.outputs",)),
    ("runtime", ("ibit_deploy.runtime", "ibit_deploy.calibration")),
    ("stages", ("ibit_deploy.quantization", "ibit_deploy.train")),
    ("export", ("ibit_deploy.export",)),
    ("package", ("ibit_deploy.package",)),  # DeepStream / Triton / jetson-inference packages of a bundle
    ("conformance", ("ibit_deploy.conformance",)),  # runs the TensorRT code paths of trt, export and runtime
    ("bench", ("ibit_deploy.bench", "ibit_deploy.quickstart")),
    ("studies", ("ibit_deploy.study",)),  # ibit-deploy compare: trains, exports and times many runs
    ("cli", ("ibit_deploy.cli",)),
    ("package root", ("ibit_deploy",)),  # __init__: the launcher's Ctrl-C hold, timm registration; nothing imports it
]


def module_name(path: Path, root: Path, package: str) -> str:
    rel = path.relative_to(root).with_suffix("")
    parts = [package, *rel.parts]
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def import_graph(root: Path, package: str) -> dict[str, set[str]]:
    """module -> the package modules it imports (see the module docstring for what counts)."""
    files = {module_name(p, root, package): p for p in root.rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in files}
    for name, path in files.items():
        is_pkg = path.name == "__init__.py"
        base = name.split(".") if is_pkg else name.split(".")[:-1]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    anchor = base[: len(base) - node.level + 1]
                    if not anchor:
                        continue  # beyond the package: the standalone kit's sibling fallback is not ours
                    mod = ".".join([*anchor, *(node.module.split(".") if node.module else [])])
                else:
                    mod = node.module or ""
                targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in files else mod for a in node.names]
            for target in targets:
                while target and target not in files and "." in target:
                    target = target.rsplit(".", 1)[0]  # `import a.b.c` of a name inside a module
                if target in files and target != name:
                    graph[name].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def layer_of(module: str) -> int:
    best, rank = -1, None
    for i, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            inside = module.startswith(prefix + ".") and prefix != PACKAGE  # the root holds only itself
            if (module == prefix or inside) and len(prefix) > best:
                best, rank = len(prefix), i
    if rank is None:
        raise AssertionError(f"{module} belongs to no layer: add it to LAYERS in {__file__}")
    return rank


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    return sorted(f"{a} ({LAYERS[layer_of(a)][0]}) imports {b} ({LAYERS[layer_of(b)][0]})"
                  for a, targets in graph.items() for b in targets if layer_of(b) > layer_of(a))


def test_the_package_has_no_import_cycles():
    found = cycles(import_graph(ROOT, PACKAGE))
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def package_graph(graph: dict[str, set[str]]) -> dict[str, set[str]]:
    """The graph between top-level parts (``ibit_deploy.runtime``, ``ibit_deploy.devicekit``, ...)."""
    top = {m: ".".join(m.split(".")[:2]) for m in graph}
    out: dict[str, set[str]] = {t: set() for t in top.values()}
    for a, targets in graph.items():
        out[top[a]] |= {top[b] for b in targets if top[b] != top[a]}
    return out


def test_subpackages_have_no_import_cycles():
    """runtime -> export -> runtime through different modules is a cycle between the two packages."""
    found = cycles(package_graph(import_graph(ROOT, PACKAGE)))
    assert not found, "import cycles between parts of the package: " + "; ".join(" <-> ".join(c) for c in found)


def test_no_module_imports_a_higher_layer():
    bad = upward_imports(import_graph(ROOT, PACKAGE))
    assert not bad, "imports from a lower layer to a higher one:\n" + "\n".join(bad)


# What the device kit may import besides itself: the standard library, numpy, and the runtimes a device has.
KIT_THIRD_PARTY = {"numpy", "onnxruntime", "tensorrt", "cuda"}


def kit_foreign_imports(kit_dir: Path) -> list[str]:
    """Every import in ``kit_dir``'s files (module level or in a function) of anything but the kit itself (relative,
    one level), the standard library and KIT_THIRD_PARTY."""
    found = []
    for path in sorted(kit_dir.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.ImportFrom) and node.level:
                if node.level != 1:
                    found.append(f"{path.name}:{node.lineno} imports from outside the kit (level {node.level})")
                continue
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in KIT_THIRD_PARTY:
                    found.append(f"{path.name}:{node.lineno} imports {name}")
    return found


def test_the_device_kit_imports_only_itself():
    """The bundle carries ibit_deploy/devicekit/ whole and runs it with no ibit_deploy installed."""
    assert not kit_foreign_imports(ROOT / "devicekit")
    graph = import_graph(ROOT, PACKAGE)
    outside = {f"{a} -> {b}" for a, targets in graph.items() if a.startswith("ibit_deploy.devicekit")
               for b in targets if not b.startswith("ibit_deploy.devicekit")}
    assert not outside


def test_the_kit_check_finds_a_foreign_import(tmp_path):
    _write(tmp_path, {"ok.py": "import json\nfrom .layout import X\nimport numpy as np\n",
                      "bad.py": "def f():\n    from ..errors import CheckFailed\n    import torch\n"})
    assert kit_foreign_imports(tmp_path) == ["bad.py:2 imports from outside the kit (level 2)", "bad.py:3 imports torch"]


def _write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


def test_the_checker_finds_lazy_and_relative_cycles(tmp_path):
    """The detector itself can fail: a cycle through a function-level relative import is found."""
    pkg = _write(tmp_path / "pkg", {
        "__init__.py": "", "a/__init__.py": "", "a/pipeline.py": "from .targets import f\n",
        "a/targets.py": "def g():\n    from .pipeline import h\n", "b.py": "from pkg.a import pipeline\n",
    })
    graph = import_graph(pkg, "pkg")
    assert graph["pkg.b"] == {"pkg.a.pipeline"}
    assert cycles(graph) == [["pkg.a.pipeline", "pkg.a.targets"]]


@pytest.mark.parametrize("module", ["ibit_deploy.runtime.tensorrt_runner", "ibit_deploy.runtime.load"])
def test_runtime_does_not_import_export(module):
    assert not {m for m in import_graph(ROOT, PACKAGE)[module] if m.startswith("ibit_deploy.export")}
