"""export/cpp/engine_compat.h, the C++ runner's copy of the engine-compatibility rule, against the Python rule
(devicekit/engine_compat.refusal) on the same manifests. The header needs no TensorRT, so a small driver compiled
here reads the manifest's engine record and applies it; trt_runner itself compiles only against TensorRT's headers.
Needs a C++17 compiler (skipped otherwise)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from ibit_deploy.devicekit import engine_compat as ec

CPP_DIR = Path(__file__).resolve().parents[2] / "export" / "cpp"
DRIVER = r"""
#include <cstdlib>
#include "engine_compat.h"
// argv: manifest engine_rel installed jetson cc_major cc_minor have_lean -> "OK" or the refusal; exit 2 bad input
int main(int argc, char** argv) {
    if (argc != 8) return 64;
    try {
        const ibit::json::Value doc = ibit::json::parse(ibit::read_file(argv[1]), argv[1]);
        const ibit::EngineRecord r = ibit::engine_record(doc, argv[2], argv[1]);
        const std::string why = ibit::engine_compat_refusal(r, argv[3], std::atoi(argv[4]) != 0, std::atoi(argv[5]),
                                                            std::atoi(argv[6]), std::atoi(argv[7]) != 0, argv[2]);
        std::cout << (why.empty() ? std::string("OK") : why) << "\n";
    } catch (const ibit::BadInput& e) {
        std::cerr << e.what() << "\n";
        return 2;
    }
    return 0;
}
"""
VERSION, EXCLUDED = ec.EngineCompat("version"), ec.EngineCompat("version", exclude_lean_runtime=True)
CASES = [  # (built, compat or None: not recorded, installed, jetson, compute capability, lean runtime given)
    ("10.3.0.30", None, "10.3.0", False, None, False),
    ("10.3.0.30", None, "10.16.1", False, None, False),
    ("10.3", ec.EngineCompat("none"), "10.3.0", False, None, False),
    ("10.3.0.30", ec.EngineCompat("none"), "10.3.1", False, None, False),
    ("10.3.0.30", VERSION, "10.16.1", False, None, False),
    ("10.16.1.11", VERSION, "11.4.0", False, None, False),
    ("10.16.1.11", VERSION, "10.3.0", False, None, False),
    ("10.16.1.11", VERSION, "10.16.0", False, None, False),
    ("10.3.0.30", EXCLUDED, "10.16.1", False, None, False),
    ("10.3.0.30", EXCLUDED, "10.16.1", False, None, True),
    ("10.16.1.11", ec.EngineCompat("hardware"), "10.16.1", False, (8, 6), False),
    ("10.16.1.11", ec.EngineCompat("hardware"), "10.16.1", False, (7, 5), False),
    ("10.16.1.11", ec.EngineCompat("hardware"), "10.16.1", True, (8, 7), False),
    ("10.16.1.11", ec.EngineCompat("version+hardware"), "11.4.0", False, (9, 0), False),
    ("10.16.1.11", ec.EngineCompat("version+hardware"), "11.4.0", True, None, False),
]


@pytest.fixture(scope="module")
def driver(tmp_path_factory) -> Path:
    cxx = shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")
    if cxx is None:
        pytest.skip("no C++ compiler")
    work = tmp_path_factory.mktemp("engine_compat_cpp")
    (work / "driver.cpp").write_text(DRIVER, encoding="utf-8")
    out = work / "driver"
    proc = subprocess.run([cxx, "-std=c++17", "-Wall", "-Wextra", "-Werror", "-I", str(CPP_DIR),
                           str(work / "driver.cpp"), "-o", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return out


def _manifest(path: Path, built: str, compat: ec.EngineCompat | None) -> Path:
    entry = {"path": "engines/engine.plan", "kind": "engine", "precision": "fp32", "tensorrt": built}
    if compat is not None:
        entry["engine_compat"] = compat.record()
    path.write_text(json.dumps({"artifacts": [{"path": "model.onnx", "kind": "onnx"}, entry]}), encoding="utf-8")
    return path


@pytest.mark.parametrize("case", CASES, ids=lambda c: "-".join(str(x) for x in c))
def test_cpp_rule_agrees_with_python(driver, tmp_path, case):
    built, compat, installed, jetson, cc, lean = case
    manifest = _manifest(tmp_path / "manifest.json", built, compat)
    proc = subprocess.run([str(driver), str(manifest), "engines/engine.plan", installed, str(int(jetson)),
                           str(cc[0] if cc else -1), str(cc[1] if cc else -1), str(int(lean))],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    cpp = proc.stdout.strip()
    python = ec.refusal(built, compat or ec.EngineCompat(), installed, jetson=jetson, compute_capability=cc,
                        lean_runtime="lib" if lean else None, engine="engines/engine.plan")
    assert (cpp == "OK") == (python is None), (cpp, python)
    if python is not None:  # the same reason, naming the engine and both versions
        assert python.split(";")[0] == cpp.split(";")[0]
        assert built in cpp and installed in cpp and "engines/engine.plan" in cpp


def test_cpp_ignores_other_artifacts_and_names_a_bad_record(driver, tmp_path):
    manifest = _manifest(tmp_path / "manifest.json", "10.3.0.30", None)
    proc = subprocess.run([str(driver), str(manifest), "other.plan", "10.16.1", "0", "-1", "-1", "0"],
                          capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "OK"  # an engine the manifest does not list: TensorRT's own check decides
    data = json.loads(manifest.read_text())
    data["artifacts"][1]["engine_compat"] = {"choice": "sometimes"}
    manifest.write_text(json.dumps(data), encoding="utf-8")
    proc = subprocess.run([str(driver), str(manifest), "engines/engine.plan", "10.3.0", "0", "-1", "-1", "0"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "engine_compat.choice must be none, version, hardware or version+hardware" \
        in proc.stderr
