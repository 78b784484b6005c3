"""Plain-data configs that round-trip through JSON: one check that a dict only holds fields the dataclass knows."""

from __future__ import annotations

import dataclasses
from typing import Any


def checked_fields(cls: type, data: Any, source: str) -> dict[str, Any]:
    """Return ``data`` as a dict after checking it is a JSON object whose keys are all fields of dataclass ``cls``.

    A typo in a config file must be an error naming the file and the known fields, never a silent default.
    """
    if not isinstance(data, dict):
        raise ValueError(f"{source}: expected a JSON object of {cls.__name__} fields, got {type(data).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"{source}: unknown {cls.__name__} field(s) {unknown}; known fields: {sorted(known)}")
    return dict(data)
