"""runtime.load refuses a TensorRT engine the installed TensorRT cannot run, naming both versions, by what the
manifest records (devicekit/engine_compat.py), and opens a version-compatible one as TensorRT requires.

No GPU or TensorRT here: a stand-in ``tensorrt`` module (its version, and a Runtime that records how it was set up
and deserializes nothing) and the conformance suite's cuda-python stand-in take their place; the same path runs
under the real bindings of every version in tests/conformance (runtime.load.version_compat)."""

from __future__ import annotations

import json
import sys
import types

import pytest

from ibit_deploy.conformance import cudart_double
from ibit_deploy.conformance.paths import tiny_bundle
from ibit_deploy.devicekit import engine_compat as ec
from ibit_deploy.devicekit.fileio import sha256_file
from ibit_deploy.devicekit.session import EngineBuildError
from ibit_deploy.errors import BackendUnavailable
from ibit_deploy.runtime.load import load


def _fake_tensorrt(version):
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    seen = {"host_code_allowed": [], "lean_runtime": []}
    trt.seen = seen

    class ILogger:
        def __init__(self):
            pass

    class Runtime:
        def __init__(self, logger):
            self.logger = logger

        def __setattr__(self, name, value):
            if name == "engine_host_code_allowed":
                seen["host_code_allowed"].append(value)
            object.__setattr__(self, name, value)

        def load_runtime(self, path):
            seen["lean_runtime"].append(path)
            return Runtime(self.logger)

        def deserialize_cuda_engine(self, data):
            return None  # no GPU here: what TensorRT answers for a plan it cannot load

    trt.ILogger, trt.Runtime = ILogger, Runtime
    return trt


@pytest.fixture
def installed(monkeypatch):
    """``installed(version, compute_capability=None)``: that TensorRT and a one-GPU cuda-python stand-in."""
    def install(version, compute_capability=None):
        cudart = cudart_double._module()
        if compute_capability is not None:
            name = b"stand-in GPU\0"
            cudart.cudaGetDeviceProperties = lambda device: (cudart_double._Success(), types.SimpleNamespace(
                name=name, major=compute_capability[0], minor=compute_capability[1]))
        cuda, bindings = types.ModuleType("cuda"), types.ModuleType("cuda.bindings")
        bindings.runtime, cuda.bindings = cudart, bindings
        trt = _fake_tensorrt(version)
        for name, module in {"tensorrt": trt, "cuda": cuda, "cuda.bindings": bindings,
                             "cuda.bindings.runtime": cudart}.items():
            monkeypatch.setitem(sys.modules, name, module)
        monkeypatch.setattr(ec.versions, "read_l4t_release", lambda path=None: None)
        return trt
    return install


def _bundle(tmp_path, built, compat=None):
    bundle = tmp_path / "bundle"
    manifest = tiny_bundle(bundle)
    (bundle / "engine.plan").write_bytes(b"plan")
    entry = {"path": "engine.plan", "sha256": sha256_file(bundle / "engine.plan"), "kind": "engine",
             "precision": "fp32", "tensorrt": built}
    if compat is not None:
        entry["engine_compat"] = compat.record()
    manifest["artifacts"].append(entry)
    (bundle / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return bundle


def test_an_engine_of_another_tensorrt_is_refused_naming_both_versions(tmp_path, installed):
    installed("10.16.1.11")
    bundle = _bundle(tmp_path, "10.3.0.30")  # recorded before --engine-compat existed: exact version
    with pytest.raises(BackendUnavailable) as err:
        load(bundle, "tensorrt")
    assert "built with TensorRT 10.3.0.30; the installed TensorRT is 10.16.1.11" in str(err.value)
    with load(bundle) as runner:  # auto moves on to ONNX Runtime, as for any engine that cannot run here
        assert runner.backend == "ort-cpu"


def test_a_version_compatible_engine_of_a_newer_tensorrt_is_refused(tmp_path, installed):
    installed("10.3.0.30")
    bundle = _bundle(tmp_path, "10.16.1.11", ec.EngineCompat("version"))
    with pytest.raises(BackendUnavailable, match="built with TensorRT 10.16.1.11; the installed TensorRT 10.3.0.30 is "
                                                 "older"):
        load(bundle, "tensorrt")


def test_a_version_compatible_engine_opens_with_host_code_allowed(tmp_path, installed):
    trt = installed("11.4.0.106")
    bundle = _bundle(tmp_path, "10.3.0.30", ec.EngineCompat("version"))
    with pytest.raises(EngineBuildError, match="could not deserialize"):  # the rule let it through to TensorRT
        load(bundle, "tensorrt")
    assert trt.seen == {"host_code_allowed": [True], "lean_runtime": []}


def test_an_exact_version_engine_does_not_allow_host_code(tmp_path, installed):
    trt = installed("10.3.0.30")
    with pytest.raises(EngineBuildError, match="could not deserialize"):
        load(_bundle(tmp_path, "10.3.0.30"), "tensorrt")
    assert trt.seen == {"host_code_allowed": [], "lean_runtime": []}


def test_an_engine_without_its_lean_runtime_needs_the_library(tmp_path, installed):
    trt = installed("10.16.1.11")
    bundle = _bundle(tmp_path, "10.3.0.30", ec.EngineCompat("version", exclude_lean_runtime=True))
    with pytest.raises(BackendUnavailable, match="lean runtime library of TensorRT 10.3.0.30"):
        load(bundle, "tensorrt")
    with pytest.raises(EngineBuildError, match="could not deserialize"):
        load(bundle, "tensorrt", lean_runtime="/opt/trt-10.3/libnvinfer_lean.so.10")
    assert trt.seen == {"host_code_allowed": [], "lean_runtime": ["/opt/trt-10.3/libnvinfer_lean.so.10"]}


def test_hardware_compatible_engines_need_ampere_and_no_jetson(tmp_path, installed, monkeypatch):
    installed("10.16.1.11", compute_capability=(7, 5))
    bundle = _bundle(tmp_path, "10.16.1.11", ec.EngineCompat("hardware"))
    with pytest.raises(BackendUnavailable, match="compute capability 7.5"):
        load(bundle, "tensorrt")
    installed("10.16.1.11", compute_capability=(8, 7))
    monkeypatch.setattr(ec.versions, "read_l4t_release", lambda path=None: "R39.2.1")
    with pytest.raises(BackendUnavailable, match="on a Jetson does not run hardware-compatible engines"):
        load(bundle, "tensorrt")


def test_a_bad_engine_compat_record_names_the_manifest(tmp_path, installed):
    installed("10.3.0.30")
    bundle = _bundle(tmp_path, "10.3.0.30")
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["artifacts"][-1]["engine_compat"] = {"choice": "sometimes"}
    (bundle / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(ValueError, match="manifest.json: engine.plan: engine_compat must be an object"):
        load(bundle, "tensorrt")


@pytest.mark.parametrize("record", [{"choice": "none", "lean_runtime": "excluded"},
                                    {"choice": "hardware", "lean_runtime": "excluded"}])
def test_a_contradictory_engine_compat_record_names_the_manifest_not_a_flag(tmp_path, installed, record):
    """A hand-edited record whose parts contradict each other is the manifest's fault: the message names the file
    and the record, not command-line flags the user never passed."""
    installed("10.3.0.30")
    bundle = _bundle(tmp_path, "10.3.0.30")
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["artifacts"][-1]["engine_compat"] = record
    (bundle / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(ValueError, match="manifest.json: engine.plan: engine_compat") as err:
        load(bundle, "tensorrt")
    assert "--exclude-lean-runtime" not in str(err.value) and "lean_runtime" in str(err.value)


@pytest.mark.parametrize("built", ["abc", 10, [10, 3], {"v": 1}])
def test_a_hostile_recorded_tensorrt_version_names_the_manifest(tmp_path, installed, built):
    installed("10.3.0.30")
    bundle = _bundle(tmp_path, built)
    with pytest.raises(ValueError, match=r"manifest.json: engine.plan: tensorrt must be .*MAJOR.MINOR"):
        load(bundle, "tensorrt")
    with pytest.raises(ValueError, match=r"manifest.json: engine.plan: tensorrt must be"):
        load(bundle)  # auto: a hostile manifest is bad input, not a backend that is missing here
