"""The real TensorRT bindings per version, prepared once per session; tests skip with the reason when pip or a C
compiler cannot provide them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ibit_deploy.conformance.bindings import VERSIONS, BindingsUnavailable, prepare, run_conformance

REPO = Path(__file__).resolve().parents[2]
_reports: dict[str, Any] = {}


def bindings_or_skip(version: str) -> None:
    try:
        prepare(version)
    except BindingsUnavailable as exc:
        pytest.skip(f"TensorRT {version} bindings unavailable here: {exc}")


@pytest.fixture(params=sorted(VERSIONS), scope="session")
def trt_version(request: pytest.FixtureRequest) -> str:
    """Each TensorRT version the suite knows, bindings prepared (or the test skipped with the reason)."""
    bindings_or_skip(request.param)
    return request.param


@pytest.fixture(scope="session")
def project_report(trt_version: str) -> dict[str, Any]:
    """Every CONFORMANCE_TARGETS code path plus the static scan of ibit_deploy/, run against ``trt_version``."""
    if trt_version not in _reports:
        _reports[trt_version] = run_conformance(trt_version, scan=[REPO / "ibit_deploy"], root=REPO)
    return _reports[trt_version]
