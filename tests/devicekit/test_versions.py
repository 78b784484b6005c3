"""The version matrix (devicekit/versions.py): rows detected from TensorRT and Jetson Linux, feature limits, the
unchanged message for versions outside it, the row build_engine.py prints, and the README's copy of the table."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from ibit_deploy.conformance.paths import CHW, tiny_bundle
from ibit_deploy.devicekit import cli, versions

from ..conftest import make_fake_trt

README = Path(__file__).resolve().parents[2] / "README.md"
JP62 = "# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64, DATE: Wed Jan  8 01:49:37 UTC 2025"


@pytest.mark.parametrize("trt, l4t, row", [
    ("10.3.0.30", "R36.4.3", "JetPack 6.1 / 6.2"),
    ("10.13.3.9", "R38.2.1", "JetPack 7.0 / 7.1"),
    ("10.13.3.9", "R38.4.0", "JetPack 7.0 / 7.1"),
    ("10.16.1.11", "R39.2.0", "JetPack 7.2.0 / 7.2.1"),
    ("11.4.1", "R39.2.2", "JetPack 7.2.2 and later"),
    ("10.14.1.48", None, "desktop / server"),
    ("11.4.0.106", None, "desktop / server"),
])
def test_detect_finds_the_row(trt, l4t, row):
    found = versions.detect(trt, l4t)
    assert found.row is not None and found.row.name == row
    assert found.jetson == (l4t is not None)


def test_a_jetson_with_a_tensorrt_of_no_row_keeps_its_version_features():
    found = versions.detect("10.7.0", "R36.4.3")
    assert found.row is None and found.features()["legacy_precision"] and not found.features()["attention_layer"]
    assert "not in the version matrix" in versions.describe(found)


@pytest.mark.parametrize("trt", ["9.2.0", "12.0.1", "8.6.2.3"])
def test_versions_outside_the_table_keep_the_message(trt):
    with pytest.raises(ValueError, match=rf"TensorRT {trt.split('.')[0]}\.x is not supported: this kit knows "
                                         r"TensorRT 10\.x and 11\.x \(JetPack 6 ships 10\.3\)"):
        versions.detect(trt)


def test_feature_limits():
    assert versions.has("attention_layer", "10.14.1") and not versions.has("attention_layer", "10.13.3.9")
    assert versions.has("legacy_precision", "10.16.1") and not versions.has("legacy_precision", "11.4.0")
    assert versions.has("hardware_compatible", "10.16.1") and not versions.has("hardware_compatible", "10.16.1",
                                                                                 jetson=True)
    with pytest.raises(ValueError, match=r"IAttention layer cannot be used with TensorRT 10\.3\.0: .*>= 10\.14"):
        versions.require("attention_layer", "10.3.0")
    with pytest.raises(KeyError, match="unknown TensorRT feature 'nope'"):
        versions.feature("nope")


def test_read_l4t_release(tmp_path):
    path = tmp_path / "nv_tegra_release"
    path.write_text(JP62 + "\n# KERNEL_VARIANT: oot\n")
    assert versions.read_l4t_release(path) == "R36.4.3"
    path.write_text("# R38 (release), REVISION: 2, GCID: 1\n")
    assert versions.read_l4t_release(path) == "R38.2"
    path.write_text("garbage")
    assert versions.read_l4t_release(path) is None
    assert versions.read_l4t_release(tmp_path / "absent") is None


def test_readme_shows_the_matrix():
    assert versions.matrix_markdown() in README.read_text(encoding="utf-8")


@pytest.mark.parametrize("trt, release, expect", [
    ("10.16.1.11", "# R39 (release), REVISION: 2.0, GCID: 1", "JetPack 7.2.0 / 7.2.1 (Orin, Thor; CUDA 13.2)"),
    ("11.4.0.106", None, "desktop / server"),
])
def test_build_engine_prints_the_detected_row(tmp_path, monkeypatch, capsys, trt, release, expect):
    tiny_bundle(tmp_path / "bundle")
    fake = make_fake_trt(trt)
    fake.state["inputs"] = [types.SimpleNamespace(name="images", shape=(-1, *CHW))]
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    tegra = tmp_path / "nv_tegra_release"
    if release:
        tegra.write_text(release)
    monkeypatch.setattr(versions, "TEGRA_RELEASE", tegra)
    assert cli.main(["--bundle", str(tmp_path / "bundle"), "--no-verify", "--no-manifest"]) == 0
    err = capsys.readouterr().err
    assert f"build_engine.py: TensorRT {trt}" in err and expect in err


def test_build_engine_refuses_a_version_outside_the_table(tmp_path, monkeypatch, capsys):
    tiny_bundle(tmp_path / "bundle")
    monkeypatch.setitem(sys.modules, "tensorrt", make_fake_trt("12.0.1"))
    assert cli.main(["--bundle", str(tmp_path / "bundle"), "--no-verify", "--no-manifest"]) == 3
    assert "the installed TensorRT (12.0.1) cannot be used: TensorRT 12.x is not supported" in capsys.readouterr().err
