"""Fixtures of the benchmark tests: the tiny checkpoint (tests/conftest.py) exported once per session."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest


def build_tiny_bundle(checkpoint: Path, base: Path) -> Path:
    """Export ``checkpoint`` into ``base/bench-tiny-bundle`` unless an earlier test of the session already did."""
    from ibit_deploy.export.pipeline import ExportOptions, export_checkpoint

    bundle = base / "bench-tiny-bundle"
    if not (bundle / "manifest.json").is_file():
        export_checkpoint(checkpoint, bundle, ExportOptions())
    return bundle


@pytest.fixture(scope="session")
def tiny_bundle(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fp32 ONNX bundle of the untrained ibit_test_patch4_28 checkpoint (read-only: copy it to change it)."""
    return build_tiny_bundle(tiny_checkpoint, tmp_path_factory.getbasetemp())


@pytest.fixture
def bundle_copy(tiny_bundle: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny bundle that a test may alter."""
    return Path(shutil.copytree(tiny_bundle, tmp_path / "bundle"))
