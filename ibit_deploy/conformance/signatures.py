"""Parse pybind11 docstring signatures (``name(self: T, a: int = 0) -> R``, overloads included) and check values
against the types they name. Pure Python: used inside the conformance subprocess on the real bindings' ``__doc__``.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from typing import Any

_OVERLOAD_RE = re.compile(r"^\s*(?:\d+\.\s+)?([A-Za-z_][A-Za-z0-9_]*)?\((.*)\)\s*->\s*(.+?)\s*$")


@dataclasses.dataclass(frozen=True)
class Param:
    """One parameter: name, type text ('' when none), whether it has a default, and its kind."""

    name: str
    type: str
    has_default: bool
    kind: str = "positional_or_keyword"  # or "var_positional", "var_keyword", "keyword_only", "positional_only"


@dataclasses.dataclass(frozen=True)
class Signature:
    """One overload: parameters (``self`` included for methods) and the return type text."""

    params: tuple[Param, ...]
    returns: str
    text: str

    def bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any] | str:
        """Map arguments to parameters like Python would; the bound dict, or a message saying why they do not bind."""
        bound: dict[str, Any] = {}
        positional = [p for p in self.params if p.kind in ("positional_only", "positional_or_keyword")]
        var_pos = any(p.kind == "var_positional" for p in self.params)
        var_kw = any(p.kind == "var_keyword" for p in self.params)
        if len(args) > len(positional) and not var_pos:
            return f"takes at most {len(positional)} positional argument(s), {len(args)} given"
        for param, value in zip(positional, args, strict=False):
            bound[param.name] = value
        for key, value in kwargs.items():
            param = next((p for p in self.params if p.name == key), None)
            if param is None or param.kind in ("positional_only", "var_positional", "var_keyword"):
                if var_kw:
                    continue
                return f"has no keyword argument {key!r}"
            if key in bound:
                return f"got multiple values for argument {key!r}"
            bound[key] = value
        missing = [p.name for p in self.params if p.kind in ("positional_only", "positional_or_keyword",
                                                              "keyword_only")
                   and not p.has_default and p.name not in bound]
        if missing:
            return f"missing required argument(s) {', '.join(missing)}"
        return bound


def parse_signatures(doc: str | None, name: str | None = None) -> list[Signature]:
    """Every signature line of a pybind11 docstring (one, or the numbered overloads); [] when there is none.

    ``name`` restricts lines to that function name (property getters/setters have no name: pass None).
    """
    out: list[Signature] = []
    for line in (doc or "").splitlines():
        match = _OVERLOAD_RE.match(line)
        if not match or (name is not None and match.group(1) not in (name, None)):
            continue
        params = _parse_params(match.group(2))
        if params is None or any(p.kind == "var_positional" for p in params) and "Overloaded" in (doc or ""):
            continue  # the "name(*args, **kwargs)" header line above numbered overloads
        out.append(Signature(tuple(params), match.group(3).strip(), line.strip()))
    return out


def _split_top_level(text: str) -> list[str]:
    """Split on commas outside (), [], <> and quotes."""
    parts, depth, quote, current = [], 0, "", []
    for ch in text:
        if quote:
            current.append(ch)
            if ch == quote:
                quote = ""
            continue
        if ch in "'\"":
            quote = ch
        elif ch in "([<{":
            depth += 1
        elif ch in ")]>}":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
            continue
        current.append(ch)
    if "".join(current).strip():
        parts.append("".join(current).strip())
    return parts


def _parse_params(text: str) -> list[Param] | None:
    params: list[Param] = []
    keyword_only = False
    for part in _split_top_level(text):
        if part == "*":
            keyword_only = True
            continue
        if part == "/":
            params = [dataclasses.replace(p, kind="positional_only") for p in params]
            continue
        if part.startswith("**"):
            params.append(Param(part[2:].split(":")[0].strip(), "", True, "var_keyword"))
            continue
        if part.startswith("*"):
            params.append(Param(part[1:].split(":")[0].strip(), "", True, "var_positional"))
            keyword_only = True
            continue
        head, _, default = part.partition(" = ")
        pname, _, ptype = head.partition(":")
        if not pname.strip().isidentifier():
            return None
        params.append(Param(pname.strip(), ptype.strip(), bool(default),
                            "keyword_only" if keyword_only else "positional_or_keyword"))
    return params


# ------------------------------------------------------------------------------------------------------- types

def strip_module(type_text: str, prefixes: tuple[str, ...]) -> str:
    """``tensorrt_bindings.tensorrt.ILogger.Severity`` -> ``ILogger.Severity`` for the given module prefixes."""
    for prefix in prefixes:
        type_text = type_text.replace(prefix + ".", "")
    return type_text


def split_generic(type_text: str) -> tuple[str, list[str]]:
    """``Optional[X]`` -> ("Optional", ["X"]); ``list[int]`` -> ("list", ["int"]); ``int`` -> ("int", [])."""
    type_text = type_text.strip()
    if type_text.endswith("]") and "[" in type_text:
        head, _, inner = type_text.partition("[")
        return head.strip().removeprefix("typing."), _split_top_level(inner[:-1])
    return type_text.removeprefix("typing."), []


def check_value(value: Any, type_text: str, resolve: Callable[[str], Any], is_instance: Callable[[Any, Any], bool]
                ) -> str | None:
    """None when ``value`` fits ``type_text`` as pybind11 would convert it, else a message; unknown types pass.

    ``resolve`` turns a TensorRT type name into the real class (or None); ``is_instance(value, cls)`` answers for
    real objects and stand-ins alike.
    """
    head, inner = split_generic(type_text)
    if not head or head in ("object", "Any", "capsule", "function", "Callable"):
        return None
    if head in ("Optional",):
        return None if value is None else check_value(value, inner[0], resolve, is_instance)
    if head == "Union":
        errors = [check_value(value, t, resolve, is_instance) for t in inner]
        return None if any(e is None for e in errors) else f"expected {type_text}, got {type(value).__name__}"
    if head in ("List", "list", "Sequence", "Tuple", "tuple", "Set", "set"):
        if not isinstance(value, (list, tuple, set, frozenset)):
            return f"expected {type_text}, got {type(value).__name__}"
        if inner and head not in ("Tuple", "tuple"):
            for item in value:
                if (err := check_value(item, inner[0], resolve, is_instance)) is not None:
                    return f"element: {err}"
        return None
    if head in ("Dict", "dict"):
        return None if isinstance(value, dict) else f"expected {type_text}, got {type(value).__name__}"
    if head in ("int", "SupportsInt", "SupportsIndex"):
        ok = not isinstance(value, float) and (isinstance(value, int) or hasattr(value, "__index__"))
        return None if ok else f"expected int, got {type(value).__name__} {value!r:.60}"
    if head in ("float", "SupportsFloat"):
        ok = isinstance(value, (int, float)) or hasattr(value, "__float__")
        return None if ok else f"expected float, got {type(value).__name__}"
    if head == "bool":
        return None if isinstance(value, bool) else f"expected bool, got {type(value).__name__} {value!r:.60}"
    if head == "str":
        return None if isinstance(value, str) else f"expected str, got {type(value).__name__} {value!r:.60}"
    if head in ("bytes", "buffer", "Buffer"):
        ok = isinstance(value, (bytes, bytearray, memoryview)) or hasattr(value, "__buffer__")
        return None if ok else f"expected a buffer, got {type(value).__name__}"
    cls = resolve(head)
    if cls is None:
        return None  # a type this checker does not model (numpy.ndarray, os.PathLike, ...): not checked
    if is_instance(value, cls):
        return None
    if head.startswith("Dims") and isinstance(value, (list, tuple)) and all(
            isinstance(v, int) or hasattr(v, "__index__") for v in value):
        return None  # pybind11 converts a sequence of ints to Dims implicitly
    return f"expected {head}, got {type(value).__name__} {value!r:.60}"

