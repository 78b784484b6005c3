"""Docstring signature parsing and type checks (no bindings needed; docstrings in pybind11's format)."""

from __future__ import annotations

import pytest

from ibit_deploy.conformance.bindings import check_version
from ibit_deploy.conformance.signatures import check_value, parse_signatures

OVERLOADED = """__init__(*args, **kwargs)
Overloaded function.

1. __init__(self: tensorrt_bindings.tensorrt.Dims) -> None

2. __init__(self: tensorrt_bindings.tensorrt.Dims, shape: List[int]) -> None
"""
POOL = ("set_memory_pool_limit(self: tensorrt_bindings.tensorrt.IBuilderConfig, pool: "
        "tensorrt_bindings.tensorrt.MemoryPoolType, pool_size: typing.SupportsInt) -> None\n\n    Set the pool.\n")
LOGGER = ("__init__(self: tensorrt_bindings.tensorrt.Logger, min_severity: tensorrt_bindings.tensorrt.ILogger.Severity"
          " = <Severity.WARNING: 2>) -> None")


class _Pool:  # a class standing for a resolved TensorRT type
    pass


def _check(value, type_text):
    return check_value(value, type_text.replace("tensorrt_bindings.tensorrt.", ""),
                       lambda name: _Pool if name == "MemoryPoolType" else None, isinstance)


def test_overloads_are_parsed_without_the_header_line():
    sigs = parse_signatures(OVERLOADED, "__init__")
    assert [len(s.params) for s in sigs] == [1, 2]
    assert sigs[1].params[1].type == "List[int]" and sigs[1].returns == "None"


def test_bind_counts_and_keywords():
    (sig,) = parse_signatures(POOL, "set_memory_pool_limit")
    assert isinstance(sig.bind(("self", "pool", 1), {}), dict)
    assert "missing required argument(s) pool_size" in sig.bind(("self", "pool"), {})
    assert "at most 3 positional" in sig.bind(("self", 1, 2, 3), {})
    assert "no keyword argument 'size'" in sig.bind(("self", "pool"), {"size": 1})


def test_default_with_angle_brackets_and_commas():
    (sig,) = parse_signatures(LOGGER, "__init__")
    assert [p.name for p in sig.params] == ["self", "min_severity"] and sig.params[1].has_default
    assert sig.params[1].type.endswith("ILogger.Severity")


def test_type_checks():
    assert _check(3, "typing.SupportsInt") is None and _check(3.0, "int") is not None
    assert _check("x", "str") is None and _check(b"x", "str") is not None
    assert _check(_Pool(), "MemoryPoolType") is None and "expected MemoryPoolType" in _check("workspace",
                                                                                              "MemoryPoolType")
    assert _check(None, "Optional[str]") is None and _check([1, 2], "List[int]") is None
    assert _check(b"\0", "buffer") is None and _check(True, "bool") is None and _check(1, "bool") is not None


def test_unknown_version_names_the_supported_ones():
    with pytest.raises(ValueError, match=r"'9\.0'.*supported: 10\.3, 10\.13, 10\.14, 10\.16, 11\.4"):
        check_version("9.0")
    with pytest.raises(ValueError, match="12.1"):
        check_version("12.1")
