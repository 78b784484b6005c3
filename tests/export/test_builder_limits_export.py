"""ibit-export's builder-limit options (--workspace-mib, --builder-optimization-level, --aux-streams,
--tactic-sources, --device-class): checked before anything is written, applied to the engine built here (TensorRT
through the EngineTools seam: the fake module of tests/conftest.py, its real API checked in tests/conformance) and
recorded in the manifest's engine entry."""

from __future__ import annotations

import types
from functools import partial

from ibit_deploy.cli.export import main
from ibit_deploy.devicekit.manifest import load_manifest
from ibit_deploy.export.pipeline import ExportOptions, export_checkpoint
from ibit_deploy.trt.build import EngineTools, build_engine

from ..conftest import exit_code, make_fake_trt


def test_bad_limits_exit_2_before_writing(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "b"
    assert exit_code(main, [str(tiny_checkpoint), "--to", "tensorrt", "--builder-optimization-level", "8", "--out",
                            str(out)]) == 2
    assert "--builder-optimization-level must be an integer in [0, 5]" in capsys.readouterr().err
    assert not out.exists()
    assert main([str(tiny_checkpoint), "--workspace-mib", "256", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "builder limits (--workspace-mib" in err and "need --to tensorrt, got --to onnx" in err
    assert not out.exists()


def test_limits_reach_the_build_and_the_manifest(tiny_checkpoint, tmp_path):
    fake = make_fake_trt("10.16.1.11")
    fake.state["inputs"] = [types.SimpleNamespace(name="images", shape=(-1, 1, 28, 28))]

    def verify(engine, onnx, precision, profile, images, inputs):
        return {"count": len(images), "agreement": 1.0, "max_abs_diff": 0.0, "inputs": inputs, "passed": True}

    tools = EngineTools(build=partial(build_engine, trt=fake, device_count=lambda: 1), verify=verify)
    limits = {"device_class_key": "orin-8gb", "aux_streams": 1, "tactic_sources": ("JIT_CONVOLUTIONS",)}
    out = tmp_path / "trt"
    export_checkpoint(tiny_checkpoint, out, ExportOptions(to="tensorrt", builder_limits=limits), engine_tools=tools)
    engine = next(a for a in load_manifest(out)["artifacts"] if a["kind"] == "engine")
    assert engine["build"]["builder_limits"] == {"workspace_mib": 512, "optimization_level": 2, "aux_streams": 1,
                                                 "tactic_sources": ["JIT_CONVOLUTIONS"], "device_class": "orin-8gb"}
    assert engine["build"]["timing_cache"]["path"] == "timing.cache" and engine["build"]["build_seconds"] >= 0
    assert fake.calls["pools"] == {"WORKSPACE": 512 << 20} and fake.calls["tactic_sources"] == 1 << 4
