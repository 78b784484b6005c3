"""The one place the packagers read their source bundle: :func:`read_bundle` opens it through
:func:`ibit_deploy.devicekit.bundle.open_bundle`
(manifest checks, sha256 of every file, v1 migration) and adds what only packaging needs: finite batch profiles
(:class:`~ibit_deploy.devicekit.profile.EngineProfile`), the output tensor of the ONNX graph, and PackageError messages that
say how to produce a missing artifact.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

from ..devicekit.bundle import Artifact, Bundle, open_bundle
from ..devicekit.layout import MANIFEST_FILE
from ..devicekit.manifest import onnx_for
from ..devicekit.profile import EngineProfile, InputSpec
from .graph_edit import graph_outputs


class PackageError(ValueError):
    """The bundle or the options cannot make this package; the message names the file or value and the fix."""


@dataclass(frozen=True)
class BundleView:
    """A verified :class:`Bundle` plus the output tensor name of its ONNX graph (the name every target refers to)."""

    bundle: Bundle
    output_name: str

    @property
    def path(self) -> Path:
        return self.bundle.path

    @property
    def manifest_path(self) -> Path:
        return self.bundle.path / MANIFEST_FILE

    @property
    def input(self) -> InputSpec:
        return self.bundle.input

    @property
    def input_name(self) -> str:
        return self.bundle.input.name

    @property
    def model_name(self) -> str:
        return self.bundle.model_name or "model"

    @property
    def classes(self) -> list[str]:
        return list(self.bundle.classes)

    def artifact(self, kind: str, precision: str) -> Artifact | None:
        """The first artifact of ``kind`` ("onnx", "engine") and ``precision``, or None."""
        return self.bundle.find(kind, precision)

    def require_onnx(self, precision: str) -> Path:
        """The ONNX file of ``precision`` (:func:`~ibit_deploy.devicekit.manifest.onnx_for`), or a PackageError
        saying how to produce it."""
        try:
            return self.bundle.path / onnx_for(self.bundle.manifest, precision, where=self.manifest_path)
        except ValueError as exc:
            raise PackageError(f"{exc}: `ibit-export CHECKPOINT --precision {precision} --out {self.path}`") from None

    def profile(self, engine: Artifact | None = None) -> EngineProfile:
        """The batch profile of ``engine`` (the one it was built with) or, without one, of the bundle's input."""
        try:
            return self.input.profile(None if engine is None else engine.entry)
        except (TypeError, ValueError) as exc:
            where = f"{engine.path}'s entry" if engine is not None else "input.batch_range"
            raise PackageError(f"{self.manifest_path} {where}: {exc}; re-export with --min-batch/--opt-batch/"
                               f"--max-batch") from exc


def read_bundle(bundle: str | os.PathLike) -> BundleView:
    """Open and verify the bundle (sha256 of every artifact), checking what every package needs: per-channel
    mean and std of the input, and an fp32 ONNX with one output."""
    try:
        opened = open_bundle(bundle, verify=True)
    except (FileNotFoundError, ValueError) as exc:
        raise PackageError(str(exc)) from exc
    spec = opened.input
    manifest_path = opened.path / MANIFEST_FILE
    if len(spec.mean) != spec.channels or len(spec.std) != spec.channels or min(spec.std, default=0.0) <= 0:
        raise PackageError(f"{manifest_path}: input mean {list(spec.mean)} / std {list(spec.std)} must have "
                           f"{spec.channels} entries and positive std")
    view = BundleView(opened, "")
    onnx_path = view.require_onnx("fp32")
    outputs = graph_outputs(onnx_path)
    if len(outputs) != 1:
        raise PackageError(f"{onnx_path}: a classifier package needs exactly one output tensor, found {outputs}")
    return dataclasses.replace(view, output_name=outputs[0])
