"""The project's TensorRT code paths against the real bindings of every version in the matrix (10.3, 10.13, 10.14,
10.16, 11.4), and planted misuses that the suite must report with file and line under each."""

from __future__ import annotations

import textwrap

import pytest

from ibit_deploy.conformance.bindings import run_conformance
from ibit_deploy.conformance.paths import CONFORMANCE_TARGETS

pytestmark = pytest.mark.slow

PLANTED = textwrap.dedent("""\
    def removed_flag(trt, work):
        config = trt.Builder(trt.Logger()).create_builder_config()
        config.set_flag(trt.BuilderFlag.FP16)  # PLANT removed_flag


    def misspelled(trt, work):
        trt.Builder(trt.Logger()).create_netwrok(0)  # PLANT misspelled


    def wrong_count(trt, work):
        config = trt.Builder(trt.Logger()).create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE)  # PLANT wrong_count


    def wrong_type(trt, work):
        config = trt.Builder(trt.Logger()).create_builder_config()
        config.set_memory_pool_limit("workspace", 1 << 20)  # PLANT wrong_type


    def wrong_property_type(trt, work):
        config = trt.Builder(trt.Logger()).create_builder_config()
        config.profiling_verbosity = "detailed"  # PLANT wrong_property_type


    def conforming(trt, work):
        config = trt.Builder(trt.Logger(trt.Logger.WARNING)).create_builder_config()
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, 1 << 20)
""")
# (kind, TensorRT name) each plant must be reported as, per TensorRT major; None: must pass on that major
EXPECTED = {
    "removed_flag": {10: None, 11: ("missing", "BuilderFlag.FP16")},
    "misspelled": {m: ("missing", "Builder.create_netwrok") for m in (10, 11)},
    "wrong_count": {m: ("bad_arguments", "IBuilderConfig.set_memory_pool_limit") for m in (10, 11)},
    "wrong_type": {m: ("bad_type", "IBuilderConfig.set_memory_pool_limit") for m in (10, 11)},
    "wrong_property_type": {m: ("bad_type", "IBuilderConfig.profiling_verbosity") for m in (10, 11)},
    "conforming": {10: None, 11: None},
}


def test_every_code_path_conforms(project_report):
    statuses = {t["target"]: (t["status"], t.get("error"), t["findings"]) for t in project_report["targets"]}
    assert set(statuses) == {t.name for t in CONFORMANCE_TARGETS}
    bad = {name: s for name, s in statuses.items() if s[0] not in ("ok", "expected")}
    assert not bad, f"TensorRT {project_report['tensorrt']}: {bad}"
    assert project_report["findings"] == []
    # --precision auto ran to its verdict (stand-in engines compute nothing, so the acceptance table rejects them:
    # exit 1), not to a missing-TensorRT/trtexec exit 3 before touching TensorRT
    auto = next(t for t in project_report["targets"] if t["target"] == "kit.main.precision_auto")
    assert auto["returned"] == "1", auto


def test_the_attention_op_form_is_tried_where_the_parser_takes_it(project_report):
    from ibit_deploy.devicekit.versions import has

    target = next(t for t in project_report["targets"] if t["target"] == "kit.main.attention_op")
    tried = has("onnx_attention_op", project_report["tensorrt"])  # 10.14, 10.16, 11.4: rejected, then model.onnx
    assert target["returned"] == repr({"exit": 0, "built_from": "model.onnx", "fell_back": tried}), target
    export = next(t for t in project_report["targets"] if t["target"] == "trt.build_engine.attention_op")
    assert export["returned"] == repr({"built_from": "model.onnx", "form": "matmul", "fell_back": tried}), export


def test_uses_are_recorded_with_sites(project_report):
    uses = project_report["uses"]
    for name in ("Builder.create_network", "NetworkDefinitionCreationFlag.STRONGLY_TYPED", "OnnxParser.parse_from_file",
                 "IBuilderConfig.set_memory_pool_limit", "Builder.build_serialized_network",
                 "Runtime.deserialize_cuda_engine", "IExecutionContext.execute_async_v3",
                 "ICudaEngine.get_tensor_profile_shape"):
        assert name in uses, name
    assert any(site.startswith("ibit_deploy/devicekit/build.py:") for site in uses["Builder.create_network"])
    # One engine-execution core (devicekit.session.EngineSession): the kit's and TrtRunner's engine runs both deserialize and
    # execute there, nowhere else.
    for name in ("Runtime.deserialize_cuda_engine", "IExecutionContext.execute_async_v3"):
        assert {site.rsplit(":", 1)[0] for site in uses[name]} == {"ibit_deploy/devicekit/session.py"}, (name, uses[name])
    legacy = "BuilderFlag.FP16" in uses
    assert legacy == (project_report["major"] == 10)  # the legacy flag path runs on 10.x only


def test_static_scan_finds_no_missing_names(project_report):
    scan = project_report["static_scan"]
    assert any(s["name"] == "__version__" and "torch_tensorrt.py" in s["site"] for s in scan)
    assert [s for s in scan if s["status"] == "missing"] == []


def test_planted_misuses_are_reported_with_file_and_line(trt_version, tmp_path):
    planted = tmp_path / "planted.py"
    planted.write_text(PLANTED)
    lines = {line.split("# PLANT ")[1]: i for i, line in enumerate(PLANTED.splitlines(), 1) if "# PLANT " in line}
    report = run_conformance(trt_version, planted=[f"{planted}:{fn}" for fn in EXPECTED], root=tmp_path)
    by_fn = {t["target"].rsplit(":", 1)[1]: t for t in report["targets"]}
    for fn, per_version in EXPECTED.items():
        expected, result = per_version[int(trt_version.split(".")[0])], by_fn[fn]
        if expected is None:
            assert result["status"] == "ok" and result["findings"] == [], (fn, result)
            continue
        assert [(f["kind"], f["name"], f["site"]) for f in result["findings"]] == \
            [(*expected, f"planted.py:{lines[fn]}")], (fn, result)


def test_scenario_values_must_follow_the_real_return_types(trt_version, tmp_path):
    planted = tmp_path / "scenario.py"
    planted.write_text(textwrap.dedent("""\
        def wrong_type(trt, work):
            trt.set_scenario({"ICudaEngine.num_io_tensors": "two"})
            engine = trt.Runtime(trt.Logger()).deserialize_cuda_engine(b"plan")
            return engine.num_io_tensors


        def default_values(trt, work):
            engine = trt.Runtime(trt.Logger()).deserialize_cuda_engine(b"plan")
            shape = engine.get_tensor_profile_shape("images", 0)
            assert isinstance(engine.num_io_tensors, int) and len(shape) == 1 and len(tuple(shape[0])) == 1
            assert type(engine.get_tensor_dtype("images")).__name__ == "DataType"
    """))
    report = run_conformance(trt_version, planted=[f"{planted}:wrong_type", f"{planted}:default_values"],
                             root=tmp_path)
    wrong, default = report["targets"]
    assert wrong["status"] == "harness_error" and "real return type int" in wrong["error"]
    assert default["status"] == "ok", default
