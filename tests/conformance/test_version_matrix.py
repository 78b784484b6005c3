"""The version matrix (devicekit/versions.py) against NVIDIA's real bindings: every feature the matrix says a
version has is carried by names that version's bindings define, and every feature it says a version lacks is not."""

from __future__ import annotations

import pytest

from ibit_deploy.conformance.bindings import VERSIONS
from ibit_deploy.devicekit.versions import FEATURES, PLATFORMS, parse_trt_version

pytestmark = pytest.mark.slow


def test_every_jetpack_row_and_the_attention_boundary_are_conformance_versions():
    jetpack = {row.tensorrt for row in PLATFORMS if row.jetson}
    assert jetpack <= set(VERSIONS), jetpack - set(VERSIONS)
    assert "10.14" in VERSIONS  # the first TensorRT with IAttention and the parser's Attention op


def test_features_match_the_real_bindings(project_report, trt_version):
    names = project_report["feature_names"]
    version = parse_trt_version(project_report["tensorrt"])
    assert version == parse_trt_version(trt_version)
    wrong = {}
    for f in FEATURES:
        if not f.bindings:
            continue
        there = {name: names[name] for name in f.bindings}
        # present: every name there; absent: none there (a name already there would mean "since" is too late)
        if f.available(version) != all(there.values()) or (f.until is None and not f.available(version)
                                                           and any(there.values())):
            wrong[f.key] = (f.available(version), there)
    assert not wrong, f"TensorRT {project_report['tensorrt']}: matrix vs bindings {wrong}"
