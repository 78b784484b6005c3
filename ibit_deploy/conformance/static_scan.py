"""A static complement to the run-time check: every ``trt.X`` / ``tensorrt.X`` (and ``trt.X.Y``) written in the
package's source must exist in the real bindings. It reaches code the drivers do not run (the torch-tensorrt
export reads ``tensorrt.__version__`` only after CUDA and torch_tensorrt are found), but sees only module-level
names and their direct attributes, not methods called on returned objects: the run-time check covers those.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

MODULE_ALIASES = ("trt", "tensorrt")


def module_names(source: str) -> list[tuple[tuple[str, ...], int]]:
    """(attribute chain after the module alias, line) for every ``trt.A`` / ``trt.A.B`` in ``source``."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Attribute):
            continue
        chain, inner = [node.attr], node.value
        while isinstance(inner, ast.Attribute):
            chain.append(inner.attr)
            inner = inner.value
        if isinstance(inner, ast.Name) and inner.id in MODULE_ALIASES and len(chain) <= 2:
            found.append((tuple(reversed(chain)), node.lineno))
    # keep the longest chain per line and head (trt.A.B also yields trt.A)
    longest = {}
    for chain, line in found:
        key = (chain[0], line)
        if len(chain) > len(longest.get(key, ())):
            longest[key] = chain
    return sorted(((chain, line) for (_, line), chain in longest.items()), key=lambda x: (x[1], x[0]))


def scan_names(package: Path, real: Any, root: Path) -> list[dict[str, str]]:
    """One entry per ``trt.X[.Y]`` in ``package``'s .py files: name, site, and and ``status``: exists, missing, or
    unresolved (a lower-case name the module lacks, probably another object bound to ``trt``)."""
    out = []
    for path in sorted(Path(package).rglob("*.py")):
        if "conformance" in path.parts:
            continue
        for chain, line in module_names(path.read_text(encoding="utf-8")):
            obj, ok = real, True
            for part in chain:
                if not hasattr(obj, part):
                    ok = False
                    break
                obj = getattr(obj, part)
            try:
                site = f"{path.resolve().relative_to(root).as_posix()}:{line}"
            except ValueError:
                site = f"{path}:{line}"
            # ``trt`` is sometimes another object (``with TrtRunner(...) as trt``): a missing lower-case name is
            # reported as unresolved, not as a finding; TensorRT's classes and enums are CamelCase.
            status = "exists" if ok else ("missing" if chain[0][:1].isupper() else "unresolved")
            out.append({"name": ".".join(chain), "site": site, "status": status})
    return out
