"""Typed access to a bundle: the manifest's ``input``, ``artifacts`` and ``classes`` read into objects every stage
uses (runtime, export, quantization, bench, package). The held-out split a bundle is judged on is
:class:`ibit_deploy.data.eval_split.EvalSet` (it reads datasets, which the device kit does not).

    b = open_bundle("bundle/")            # manifest checked (sha256 of every file), version 1 migrated
    b.input.max_batch, b.input.profile()  # InputSpec, EngineProfile
    b.find("onnx", "fp16").path           # Artifact

The manifest stays a JSON dict on disk (``b.manifest``) and writers still extend it; these objects are read-only
views built from it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .acceptance import Verdict, artifact_verdict
from .manifest import load_manifest
from .profile import InputSpec


@dataclass(frozen=True)
class Artifact:
    """One file of the bundle as the manifest lists it; ``entry`` is the full manifest record."""

    path: str
    sha256: str
    kind: str
    precision: str
    entry: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_entry(cls, entry: dict[str, Any]) -> Artifact:
        return cls(entry["path"], entry["sha256"], str(entry.get("kind", "")), str(entry.get("precision", "fp32")),
                   entry)


@dataclass(frozen=True)
class Bundle:
    """A loaded bundle: its directory, the manifest dict, and typed views of it."""

    path: Path
    manifest: dict[str, Any] = field(repr=False)
    input: InputSpec
    artifacts: tuple[Artifact, ...]
    classes: tuple[str, ...]

    @classmethod
    def from_manifest(cls, path: str | os.PathLike, manifest: dict[str, Any]) -> Bundle:
        return cls(Path(path), manifest, InputSpec.from_manifest(manifest),
                   tuple(Artifact.from_entry(a) for a in manifest.get("artifacts", [])),
                   tuple(str(c) for c in manifest.get("classes", [])))

    def find(self, kind: str | None = None, precision: str | None = None, path: str | None = None) -> Artifact | None:
        """The first artifact matching every given field, or None."""
        return next((a for a in self.artifacts if (kind is None or a.kind == kind)
                     and (precision is None or a.precision == precision) and (path is None or a.path == path)), None)

    def verdict(self, artifact: Artifact) -> Verdict:
        """The verdict recorded for ``artifact`` when it was checked (:func:`.acceptance.artifact_verdict`)."""
        return artifact_verdict(artifact.entry, self.manifest)

    def file(self, artifact: Artifact | str) -> Path:
        return self.path / (artifact.path if isinstance(artifact, Artifact) else artifact)

    @property
    def model_name(self) -> str | None:
        """The model the bundle was exported from (manifest ``model.name``), or None when not recorded."""
        name = (self.manifest.get("model") or {}).get("name")
        return None if name is None else str(name)


def open_bundle(path: str | os.PathLike, verify: bool = True) -> Bundle:
    """Read ``path``'s manifest (checking every file's sha256 with ``verify``; v1 migrated) into a :class:`Bundle`."""
    return Bundle.from_manifest(path, load_manifest(path, verify=verify))
