"""The project's TensorRT code paths that the conformance suite runs against each TensorRT version: ONE list.

Each :class:`Target` names the project entry point (``module:attribute``) and a driver here that calls it the way
the project does, with a scenario (what the stand-in TensorRT objects return: a tiny 3x8x8 -> 10 network, batches
1..4). Each driver hands the stand-in module to the code through the project's own seams (``build_engine(trt=...)``,
``EngineTools``, ``TrtRunner(import_backend=...)``); the on-device kit imports ``tensorrt`` itself, which the
subprocess has pointed at the stand-in (``sys.modules``).

``expect`` maps a TensorRT major version to the exception the code path is *meant* to raise there (e.g. legacy
precision flags on 11.x); any other exception is a finding.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..devicekit.fileio import sha256_file


@dataclasses.dataclass(frozen=True)
class Target:
    """One code path: ``name``, the project ``entry`` (``module:attribute``), its ``driver`` and what it covers."""

    name: str
    entry: str
    driver: str
    covers: str
    expect: dict[int, str] = dataclasses.field(default_factory=dict)


CONFORMANCE_TARGETS: tuple[Target, ...] = (
    Target("trt.build_engine", "ibit_deploy.trt.build:build_engine", "build_typed",
           "ibit-export's Python build (trt.build -> kit.build_serialized_engine): Builder, STRONGLY_TYPED network, "
           "OnnxParser, config, profile, timing cache, build_serialized_network"),
    Target("trt.build_engine.legacy_fp16", "ibit_deploy.trt.build:build_engine", "build_legacy_fp16",
           "the 10.x-only weakly typed build with BuilderFlag.FP16 (refused on 11.x before TensorRT is touched)",
           expect={11: "ValueError"}),
    Target("trt.build_engine.cache_mismatch", "ibit_deploy.trt.build:build_engine",
           "build_cache_mismatch", "timing cache refused by set_timing_cache and replaced"),
    Target("trt.build_engine.parser_errors", "ibit_deploy.trt.build:build_engine",
           "build_parser_errors", "OnnxParser failure: num_errors, get_error, ParserError accessors",
           expect={10: "EngineBuildError", 11: "EngineBuildError"}),
    Target("trt.verify_built_engine", "ibit_deploy.trt.build:verify_built_engine", "verify_built",
           "ibit-export's engine check: kit.run_engine (Runtime, deserialize, tensor names/modes/dtypes, "
           "set_input_shape, addresses, execute_async_v3) against ONNX Runtime"),
    Target("export.tensorrt_target", "ibit_deploy.export.targets:tensorrt_target", "export_target",
           "ibit-export --to tensorrt: device scripts, build_engine (an 8 GB Orin's builder limits), then "
           "verify_built_engine, manifest entry"),
    Target("kit.main", "ibit_deploy.devicekit.cli:main", "device_script",
           "the bundle's build_engine.py: build, run_engine + verify_engine against ONNX Runtime, manifest record"),
    Target("kit.main.legacy_int8", "ibit_deploy.devicekit.cli:main",
           "device_script_legacy_int8", "build_engine.py --legacy --precision int8 (BuilderFlag.INT8 + FP16; 10.x)",
           expect={11: "SystemExit"}),
    Target("kit.main.small_device", "ibit_deploy.devicekit.cli:main", "device_script_small_device",
           "build_engine.py with an 8 GB Orin's builder limits: workspace pool, builder_optimization_level, "
           "max_aux_streams, set_tactic_sources (TacticSource), keyed timing cache set aside"),
    Target("kit.main.engine_compat", "ibit_deploy.devicekit.cli:main", "device_script_engine_compat",
           "build_engine.py --engine-compat version+hardware: BuilderFlag.VERSION_COMPATIBLE, "
           "hardware_compatibility_level = HardwareCompatibilityLevel.AMPERE_PLUS, then the check opens the engine "
           "with Runtime.engine_host_code_allowed"),
    Target("kit.main.exclude_lean_runtime", "ibit_deploy.devicekit.cli:main", "device_script_exclude_lean",
           "build_engine.py --engine-compat version --exclude-lean-runtime --lean-runtime LIB: "
           "BuilderFlag.EXCLUDE_LEAN_RUNTIME, the check deserializes through Runtime.load_runtime"),
    Target("kit.main.precision_auto", "ibit_deploy.devicekit.cli:main", "device_script_auto",
           "build_engine.py --precision auto: three builds, three checks against ONNX Runtime (trtexec timing is "
           "a subprocess, outside TensorRT's Python API)"),
    Target("trt.build_engine.stripped", "ibit_deploy.trt.build:build_engine", "build_stripped",
           "ibit-export --refittable --strip-weights: BuilderFlag.REFIT + STRIP_PLAN on a strongly typed build"),
    Target("trt.verify_built_engine.stripped", "ibit_deploy.trt.build:verify_built_engine", "verify_stripped",
           "the check of a weight-stripped engine: Refitter + OnnxParserRefitter.refit_from_file in memory, "
           "serialize_with_config (EXCLUDE_WEIGHTS cleared, INCLUDE_REFIT on >= 10.14), then run_engine"),
    Target("kit.main.refit", "ibit_deploy.devicekit.cli:main", "device_script_refit",
           "build_engine.py --refit: deserialize, ICudaEngine.refittable, Refitter, OnnxParserRefitter, "
           "get_missing_weights, refit_cuda_engine, serialize_with_config, verify, staged swap"),
    Target("kit.main.refittable", "ibit_deploy.devicekit.cli:main", "device_script_refittable",
           "build_engine.py of a bundle exported --refittable: the build sets BuilderFlag.REFIT"),
    Target("kit.main.attention_op", "ibit_deploy.devicekit.cli:main", "device_script_attention_op",
           "build_engine.py on a bundle with the ONNX Attention-op form: TensorRT >= 10.14 parses model.attn.onnx "
           "first (the stand-in parser rejects it) and falls back to model.onnx; 10.3 / 10.13 parse model.onnx only"),
    Target("trt.build_engine.attention_op", "ibit_deploy.trt.build:build_engine", "build_attention_op",
           "ibit-export's engine build of a bundle with model.attn.onnx: TensorRT >= 10.14 parses it first (the "
           "stand-in parser rejects it) and falls back to model.onnx; 10.3 / 10.13 parse model.onnx only"),
    Target("runtime.trt_runner", "ibit_deploy.runtime.tensorrt_runner:TrtRunner", "runner_lifecycle",
           "TrtRunner: open (Runtime, deserialize, context, tensor names/modes/dtypes, profile, addresses), infer, "
           "infer_staged, time_stages, describe, close"),
    Target("runtime.load.version_compat", "ibit_deploy.runtime.load:load", "load_version_compatible",
           "runtime.load of a bundle whose version-compatible engine an older TensorRT built: the manifest's record "
           "passes the compatibility rule, the runner sets Runtime.engine_host_code_allowed and runs it"),
)

CHW = (3, 8, 8)
CLASSES = 10
BATCHES = (1, 2, 4)  # min, opt, max


def target_by_name(name: str) -> Target:
    for target in CONFORMANCE_TARGETS:
        if target.name == name:
            return target
    raise KeyError(f"unknown conformance target {name!r}; known: {[t.name for t in CONFORMANCE_TARGETS]}")


def resolve_entry(entry: str) -> Any:
    """``module:attr`` -> the object; ``/path/file.py:function`` loads that file (planted-misuse tests)."""
    module_name, _, attr = entry.rpartition(":")
    if module_name.endswith(".py"):
        import importlib.util

        spec = importlib.util.spec_from_file_location(Path(module_name).stem, module_name)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    else:
        import importlib

        module = importlib.import_module(module_name)
    return getattr(module, attr)


# ------------------------------------------------------------------------------------------------- scenarios

def tiny_onnx(path: Path) -> Path:
    """A real ONNX file: images (N, 3, 8, 8) -> Flatten -> MatMul -> logits (N, 10), for ONNX Runtime."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = np.random.default_rng(0).standard_normal((int(np.prod(CHW)), CLASSES)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Flatten", ["images"], ["flat"], axis=1), helper.make_node("MatMul", ["flat", "w"],
                                                                                     ["logits"])],
        "tiny", [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", *CHW])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", CLASSES])],
        [numpy_helper.from_array(weight, "w")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def tiny_attention_onnx(path: Path) -> Path:
    """A real opset-23 ONNX file with one ``Attention`` op and an additive float mask: images (N, 3, 8, 8) as 1 head
    of 3 tokens x 64 -> Attention -> Flatten -> MatMul -> logits (N, 10); ONNX Runtime >= 1.23 runs it."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    tokens, width = CHW[0], CHW[1] * CHW[2]
    weight = rng.standard_normal((tokens * width, CLASSES)).astype(np.float32)
    mask = rng.standard_normal((1, 1, tokens, tokens)).astype(np.float32)
    shape = np.array([0, 1, tokens, width], dtype=np.int64)
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["images", "qkv_shape"], ["qkv"]),
         helper.make_node("Attention", ["qkv", "qkv", "qkv", "bias"], ["attended"]),
         helper.make_node("Flatten", ["attended"], ["flat"], axis=1),
         helper.make_node("MatMul", ["flat", "w"], ["logits"])],
        "tiny_attention", [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", *CHW])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", CLASSES])],
        [numpy_helper.from_array(shape, "qkv_shape"), numpy_helper.from_array(mask, "bias"),
         numpy_helper.from_array(weight, "w")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 23)]), path)
    return path


def tiny_bundle(directory: Path, precision: str = "fp32") -> dict[str, Any]:
    """A bundle directory with manifest.json and the ONNX files build_engine.py reads; returns the manifest."""
    directory.mkdir(parents=True, exist_ok=True)
    artifacts = []
    for prec, name in (("fp32", "model.onnx"), ("int8", "model.int8.onnx")):
        tiny_onnx(directory / name)
        artifacts.append({"path": name, "kind": "onnx", "precision": prec})
    # The kit's bundle checks want every listed file present with its sha256 (the script's text does not matter here).
    (directory / "build_engine.py").write_text("# conformance stand-in for the kit\n", encoding="utf-8")
    artifacts.append({"path": "build_engine.py", "kind": "script", "precision": precision})
    for art in artifacts:
        art["sha256"] = sha256_file(directory / art["path"])
    manifest = {"format_version": 2,
                "input": {"name": "images", "shape": [1, *CHW], "batch_range": [BATCHES[0], BATCHES[2]],
                          "opt_batch": BATCHES[1]}, "artifacts": artifacts, "data": {}}
    (directory / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return manifest


def engine_scenario(trt: Any) -> dict[str, Any]:
    """What the stand-ins return for the tiny network; every value is checked against the real return type."""
    real = trt._impl  # real enum members, read past the recorder so the scenario does not count as a project use
    state = {"batch": BATCHES[2]}
    names = ["images", "logits"]

    def set_input_shape(name: str, shape: Any) -> bool:
        state["batch"] = int(tuple(shape)[0])
        return True

    return {
        "INetworkDefinition.num_inputs": 1, "INetworkDefinition.num_outputs": 1,
        "ITensor.name": "images", "ITensor.shape": (-1, *CHW),
        "ICudaEngine.num_io_tensors": 2,
        "ICudaEngine.get_tensor_name": lambda i: names[i],
        "ICudaEngine.get_tensor_mode": lambda n: real.TensorIOMode.INPUT if n == "images" else real.TensorIOMode.OUTPUT,
        "ICudaEngine.get_tensor_dtype": lambda n: real.DataType.FLOAT,
        "ICudaEngine.get_tensor_profile_shape": lambda n, i: [(b, *CHW) for b in BATCHES],
        "IExecutionContext.set_input_shape": set_input_shape,
        "IExecutionContext.get_tensor_shape": lambda n: (state["batch"], *CHW) if n == "images"
        else (state["batch"], CLASSES),
    }


def profile() -> Any:
    """The tiny network's engine profile (the project's EngineProfile)."""
    from ..devicekit.profile import EngineProfile

    return EngineProfile("images", CHW, *BATCHES)


# --------------------------------------------------------------------------------------------------- drivers

def build_typed(entry: Callable[..., Any], trt: Any, work: Path) -> Any:
    trt.set_scenario(engine_scenario(trt))
    onnx = tiny_onnx(work / "model.onnx")
    (work / "timing.cache").write_bytes(b"old cache")
    return entry(onnx, work / "engine.plan", profile(), timing_cache=work / "timing.cache", trt=trt)


def build_legacy_fp16(entry: Callable[..., Any], trt: Any, work: Path) -> Any:
    trt.set_scenario(engine_scenario(trt))
    return entry(tiny_onnx(work / "model.onnx"), work / "engine.plan", profile(), legacy_precision="fp16", trt=trt)


def build_cache_mismatch(entry: Callable[..., Any], trt: Any, work: Path) -> Any:
    scenario = engine_scenario(trt)
    calls = iter([False, True])
    scenario["IBuilderConfig.set_timing_cache"] = lambda cache, ignore_mismatch: next(calls)
    trt.set_scenario(scenario)
    (work / "timing.cache").write_bytes(b"cache from another GPU")
    return entry(tiny_onnx(work / "model.onnx"), work / "engine.plan", profile(), timing_cache=work / "timing.cache",
                 trt=trt)


def build_parser_errors(entry: Callable[..., Any], trt: Any, work: Path) -> Any:
    scenario = engine_scenario(trt)
    scenario.update({"OnnxParser.parse_from_file": False, "OnnxParser.num_errors": 2})
    trt.set_scenario(scenario)
    return entry(tiny_onnx(work / "model.onnx"), work / "engine.plan", profile(), trt=trt)


def verify_built(entry: Callable[..., Any], trt: Any, work: Path) -> Any:
    import numpy as np

    trt.set_scenario(engine_scenario(trt))
    engine = work / "engine.plan"
    engine.write_bytes(b"\0" * 64)
    images = np.random.default_rng(0).standard_normal((6, *CHW)).astype(np.float32)
    return entry(engine, tiny_onnx(work / "model.onnx"), "fp32", profile(), images, "6 random images", trt=trt)


def export_target(entry: Callable[..., Any], trt: Any, work: Path) -> Any:
    from functools import partial

    from ..trt.build import EngineTools, build_engine, verify_built_engine

    trt.set_scenario(engine_scenario(trt))
    out = work / "bundle"
    manifest = tiny_bundle(out)
    options = types.SimpleNamespace(target_precision="fp32", builder_limits={"device_class_key": "orin-8gb"})
    tools = EngineTools(build=partial(build_engine, trt=trt), verify=partial(verify_built_engine, trt=trt))
    return entry(out, manifest, options, tools)


def device_script(entry: Callable[..., Any], trt: Any, work: Path) -> Any:
    trt.set_scenario(engine_scenario(trt))
    tiny_bundle(work / "bundle")
    return entry(["--bundle", str(work / "bundle"), "--verify-samples", "4"])


def device_script_legacy_int8(entry: Callable[..., Any], trt: Any, work: Path) -> Any:
    trt.set_scenario(engine_scenario(trt))
    tiny_bundle(work / "bundle", precision="int8")
    return entry(["--bundle", str(work / "bundle"), "--precision", "int8", "--legacy", "--no-verify"])


def device_script_small_device(entry: Callable[..., Any], trt: Any, work: Path) -> Any:
    """The builder limits of the smallest device class, and a timing cache keyed for another GPU."""
    trt.set_scenario(engine_scenario(trt))
    bundle = work / "bundle"
    tiny_bundle(bundle)
    (bundle / "timing.cache").write_bytes(b"another GPU's cache")
    (bundle / "timing.cache.key.json").write_text('{"tensorrt": "0.0", "gpu": "other", "compute_capability": "0.0"}')
    return entry(["--bundle", str(bundle), "--no-verify", "--device-class", "orin-8gb",
                  "--tactic-sources", "jit_convolutions,edge_mask_convolutions", "--timing-cache",
                  str(bundle / "timing.cache")])


def device_script_engine_compat(entry: Callable[..., Any], trt: Any, work: Path) -> Any:
    """A version- and hardware-compatible build, checked against ONNX Runtime (no /etc/nv_tegra_release in the
    conformance subprocess: a desktop)."""
    trt.set_scenario(engine_scenario(trt))
    tiny_bundle(work / "bundle")
    return entry(["--bundle", str(work / "bundle"), "--verify-samples", "4", "--engine-compat", "version+hardware"])


def device_script_exclude_lean(entry: Callable[..., Any], trt: Any, work: Path) -> Any:
    """A version-compatible build without its lean runtime, checked through the lean runtime library (a file that
    stands for libnvinfer_lean.so: the stand-in Runtime.load_runtime only checks its argument)."""
    trt.set_scenario(engine_scenario(trt))
    tiny_bundle(work / "bundle")
    lean = work / "libnvinfer_lean.so"
    lean.write_bytes(b"lean runtime stand-in")
    return entry(["--bundle", str(work / "bundle"), "--verify-samples", "4", "--engine-compat", "version",
                  "--exclude-lean-runtime", "--lean-runtime", str(lean)])


def attention_op_bundle(trt: Any, bundle: Path) -> dict[str, Any]:
    """A bundle with model.attn.onnx (the ONNX Attention-op form of model.onnx) whose stand-in parser rejects it, so
    where the kit tries it (TensorRT >= 10.14) it falls back to model.onnx: both parses and the build run."""
    from ..devicekit.layout import ATTENTION_OP_KIND, ATTENTION_OP_ONNX, MANIFEST_FILE

    scenario = engine_scenario(trt)
    scenario["OnnxParser.parse_from_file"] = lambda path: not str(path).endswith(ATTENTION_OP_ONNX["fp32"])
    trt.set_scenario(scenario)
    manifest = tiny_bundle(bundle)
    twin = tiny_attention_onnx(bundle / ATTENTION_OP_ONNX["fp32"])
    source = next(a for a in manifest["artifacts"] if a["path"] == "model.onnx")
    manifest["artifacts"].append({"path": twin.name, "sha256": sha256_file(twin), "kind": ATTENTION_OP_KIND,
                                  "precision": "fp32", "twin_of": {"path": source["path"], "sha256": source["sha256"]},
                                  "gate": {"passed": True}})
    (bundle / MANIFEST_FILE).write_text(json.dumps(manifest), encoding="utf-8")
    return manifest


def build_attention_op(entry: Callable[..., Any], trt: Any, work: Path) -> Any:
    """ibit-export's engine build of a bundle with the Attention-op form (``build_engine(onnx_choice=...)``)."""
    from functools import partial

    from ..devicekit.attention_form import choose_onnx

    bundle = work / "bundle"
    manifest = attention_op_bundle(trt, bundle)
    info = entry(bundle / "model.onnx", work / "engine.plan", profile(), trt=trt,
                 onnx_choice=partial(choose_onnx, bundle, manifest, "fp32"))
    return {"built_from": info["built_from"], "form": info.get("attention_form"),
            "fell_back": "attention_op_error" in info}


def device_script_attention_op(entry: Callable[..., Any], trt: Any, work: Path) -> Any:
    """build_engine.py on :func:`attention_op_bundle`."""
    from ..devicekit.layout import MANIFEST_FILE

    bundle = work / "bundle"
    attention_op_bundle(trt, bundle)
    code = entry(["--bundle", str(bundle), "--no-verify"])
    engine = next((a for a in json.loads((bundle / MANIFEST_FILE).read_text())["artifacts"] if a["kind"] == "engine"),
                  {})
    return {"exit": code, "built_from": engine.get("built_from"), "fell_back": "could not build from" in
            str(engine.get("attention_note"))}


TRTEXEC_SUMMARY = """\
[I] === Performance summary ===
[I] Throughput: 1000 qps
[I] Latency: min = 1.0 ms, max = 1.2 ms, mean = 1.05 ms, median = 1.0 ms, percentile(90%) = 1.1 ms, percentile(99%) = 1.2 ms
[I] GPU Compute Time: min = 0.9 ms, max = 1.1 ms, mean = 0.95 ms, median = 0.9 ms, percentile(90%) = 1.0 ms, percentile(99%) = 1.1 ms
"""


def device_script_auto(entry: Callable[..., Any], trt: Any, work: Path) -> Any:
    """``--precision auto``; trtexec (a separate program, not TensorRT's Python API) answers with a fixed summary."""
    trt.set_scenario(engine_scenario(trt))
    tiny_bundle(work / "bundle")
    return entry(["--bundle", str(work / "bundle"), "--precision", "auto", "--verify-samples", "4"],
                 trtexec_run=lambda argv: TRTEXEC_SUMMARY)


def refit_scenario(trt: Any) -> dict[str, Any]:
    """The tiny network's scenario plus a refit that TensorRT accepts (no weight left missing)."""
    scenario = engine_scenario(trt)
    scenario.update({"Refitter.get_missing_weights": [], "Refitter.get_all_weights": ["w"],
                     "OnnxParserRefitter.refit_from_file": True, "Refitter.refit_cuda_engine": True,
                     "ICudaEngine.refittable": True})
    return scenario


def build_stripped(entry: Callable[..., Any], trt: Any, work: Path) -> Any:
    trt.set_scenario(engine_scenario(trt))
    return entry(tiny_onnx(work / "model.onnx"), work / "engine.plan", profile(), refit="stripped", trt=trt)


def verify_stripped(entry: Callable[..., Any], trt: Any, work: Path) -> Any:
    import numpy as np

    trt.set_scenario(refit_scenario(trt))
    engine = work / "engine.plan"
    engine.write_bytes(b"\0" * 64)
    images = np.random.default_rng(0).standard_normal((6, *CHW)).astype(np.float32)
    return entry(engine, tiny_onnx(work / "model.onnx"), "fp32", profile(), images, "6 random images", trt=trt,
                 stripped=True)


def device_script_refit(entry: Callable[..., Any], trt: Any, work: Path) -> Any:
    """``--refit`` of a bundle whose refittable engine is marked as holding the previous weights."""
    trt.set_scenario(refit_scenario(trt))
    bundle = work / "bundle"
    manifest = tiny_bundle(bundle)
    (bundle / "engine.plan").write_bytes(b"\0" * 64)
    manifest["artifacts"].append({"path": "engine.plan", "sha256": sha256_file(bundle / "engine.plan"),
                                  "kind": "engine", "precision": "fp32", "built_from": "model.onnx",
                                  "refit_mode": "refittable",
                                  "refit_pending": {"from": "model.onnx", "reason": "previous weights"}})
    (bundle / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return entry(["--bundle", str(bundle), "--refit", "--verify-samples", "4"])


def device_script_refittable(entry: Callable[..., Any], trt: Any, work: Path) -> Any:
    trt.set_scenario(engine_scenario(trt))
    bundle = work / "bundle"
    manifest = tiny_bundle(bundle)
    manifest["export"] = {"to": "tensorrt", "refittable": True}
    (bundle / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return entry(["--bundle", str(bundle), "--no-verify"])


def runner_lifecycle(entry: Callable[..., Any], trt: Any, work: Path) -> Any:
    import numpy as np

    from ..devicekit.profile import InputSpec

    trt.set_scenario(engine_scenario(trt))
    engine = work / "engine.plan"
    engine.write_bytes(b"\0" * 64)
    cudart = sys.modules["cuda.bindings.runtime"]  # cudart_double, installed by the child
    runner = entry(engine, InputSpec("images", *CHW, min_batch=1, max_batch=8), import_backend=lambda: (trt, cudart))
    with runner:
        runner.infer(np.zeros((2, *CHW), dtype=np.float32))
        runner.infer_staged(np.zeros((2, *CHW), dtype=np.float32))
        runner.time_stages(np.zeros((1, *CHW), dtype=np.float32), iterations=2, warmup=1)
        return runner.describe()


def load_version_compatible(entry: Callable[..., Any], trt: Any, work: Path) -> Any:
    """``runtime.load`` of a bundle whose engine entry records a version-compatible engine built by TensorRT 10.0
    (older than every version the suite runs, so the rule lets each run it)."""
    import numpy as np

    from ..devicekit.engine_compat import EngineCompat

    trt.set_scenario(engine_scenario(trt))
    bundle = work / "bundle"
    manifest = tiny_bundle(bundle)
    (bundle / "engine.plan").write_bytes(b"\0" * 64)
    manifest["artifacts"].append({"path": "engine.plan", "sha256": sha256_file(bundle / "engine.plan"),
                                  "kind": "engine", "precision": "fp32", "tensorrt": "10.0.1.6",
                                  "engine_compat": EngineCompat("version").record()})
    (bundle / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    with entry(bundle, backend="tensorrt") as runner:
        return runner.infer(np.zeros((2, *CHW), dtype=np.float32)).shape


def planted(entry: Callable[..., Any], trt: Any, work: Path) -> Any:
    """Driver for a test's own function ``fn(trt, work)`` (planted misuses)."""
    return entry(trt, work)


DRIVERS: dict[str, Callable[..., Any]] = {
    fn.__name__: fn for fn in (build_typed, build_legacy_fp16, build_cache_mismatch, build_parser_errors, verify_built,
                               export_target, device_script, device_script_legacy_int8, device_script_auto,
                               device_script_small_device, build_stripped, verify_stripped, device_script_refit,
                               device_script_refittable, device_script_engine_compat, device_script_exclude_lean,
                               device_script_attention_op, build_attention_op,
                               runner_lifecycle, load_version_compatible, planted)}
