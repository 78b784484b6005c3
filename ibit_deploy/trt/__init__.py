"""Everything TensorRT, on the ground floor: version rules, trtexec command lines, engine build, run, verification,
and the one engine acceptance table.

``kit`` is standalone (it is also every bundle's ``build_engine.py``); ``build`` wraps it with the package's
conventions; ``shell_template`` is the text of ``build_engine.sh``. Imports only the ground floor (errors, fileio,
compare_metrics, locking); runtime, export and bench import from here, never the reverse.
"""

from .kit import (
    DEFAULT_ENGINE,
    DEFAULT_ONNX,
    DEFAULT_WORKSPACE_MIB,
    ENGINE_ACCEPTANCE,
    KIT_FILES,
    PRECISIONS,
    SUPPORTED_TRT_MAJORS,
    CudaUnavailable,
    EngineBuildError,
    EngineProfile,
    EngineSession,
    check_batch_range,
    check_trt_major,
    cuda_check,
    cuda_device_count,
    engine_acceptance,
    engine_accepted,
    import_cudart,
    parse_trt_version,
    trt_build_settings,
    trtexec_benchmark_command,
    trtexec_command,
)

__all__ = ["DEFAULT_ENGINE", "DEFAULT_ONNX", "DEFAULT_WORKSPACE_MIB", "ENGINE_ACCEPTANCE", "KIT_FILES", "PRECISIONS",
           "SUPPORTED_TRT_MAJORS",
           "CudaUnavailable", "EngineBuildError", "EngineProfile", "EngineSession",
           "check_batch_range", "check_trt_major", "cuda_check",
           "cuda_device_count", "engine_acceptance", "engine_accepted", "import_cudart", "parse_trt_version",
           "trt_build_settings", "trtexec_benchmark_command", "trtexec_command"]
