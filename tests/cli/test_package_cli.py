"""``ibit-deploy package`` and ``ibit-export --package``: exit codes and what they write."""

from __future__ import annotations

import json

import pytest

from ibit_deploy.cli.main import main as deploy_main

from ..conftest import exit_code


def test_package_cli_writes_and_reports(trained_bundle, tmp_path, capsys):
    out = tmp_path / "ds"
    assert deploy_main(["package", str(trained_bundle[0]), "--for", "deepstream", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "nvinfer config" in text and "bash run_pipeline.sh" in text and "parity with the bundle" in text
    assert json.loads((out / "package.json").read_text())["target"] == "deepstream"


@pytest.mark.parametrize("args", [
    ["--for", "jetson-inference", "--precision", "int8"],
    ["--for", "deepstream", "--threshold", "1.5"],
    ["--for", "triton", "--triton-platform", "tensorrt_plan"],
])
def test_package_cli_bad_input_exits_2(trained_bundle, tmp_path, capsys, args):
    assert exit_code(deploy_main, ["package", str(trained_bundle[0]), "--out", str(tmp_path / "p"), *args]) == 2
    assert "error:" in capsys.readouterr().err and not (tmp_path / "p").exists()


def test_package_cli_missing_bundle(tmp_path, capsys):
    assert deploy_main(["package", str(tmp_path / "nope"), "--for", "triton", "--out", str(tmp_path / "p")]) == 2
    assert "bundle directory not found" in capsys.readouterr().err


@pytest.mark.slow
def test_export_then_package(trained_checkpoint, tmp_path):
    from ibit_deploy.cli.export import main as export_main

    out = tmp_path / "bundle"
    code = export_main([str(trained_checkpoint), "--out", str(out), "--package", "jetson-inference",
                        "--package", "triton"])
    assert code == 0
    for target in ("jetson-inference", "triton"):
        manifest = json.loads((out / "packages" / target / "package.json").read_text())
        assert manifest["target"] == target and manifest["precision"] == "fp32"
    assert (out / "packages" / "jetson-inference" / "model.onnx").is_file()
