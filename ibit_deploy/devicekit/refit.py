"""Refittable engines: the builder flags that make one, and refitting a serialized engine from an ONNX file.

A refittable engine (``BuilderFlag.REFIT``) takes new weights without a rebuild: the device refits it from the
bundle's new ONNX (exported on the desktop from a retrained checkpoint of the same architecture and folding) in
seconds, instead of the minutes a build takes. The ONNX parser's refitter maps every ONNX initializer (the folded
mask/bias constants included) to the engine's weights by name.

Modes (:data:`REFIT_MODES`), recorded in the manifest's engine entry as ``refit_mode``:

- ``refittable``: ``BuilderFlag.REFIT``; the plan carries its weights and runs as built.
- ``stripped``: ``REFIT`` + ``STRIP_PLAN``; the plan ships without its refittable weights (a fraction of the
  size) and must be refitted from the bundle's ONNX before first use (``build_engine.py --refit``), after which
  it is a full engine that can be refitted again. ``REFIT_IDENTICAL`` is not used: it allows refits with the
  build's own weights only, and a new checkpoint brings new ones.

Every TensorRT name used here exists in the real bindings of 10.3, 10.13, 10.14, 10.16 and 11.4 (conformance
targets ``kit.main.refit`` and ``trt.build_engine.stripped``); ``SerializationFlag.INCLUDE_REFIT`` (keep a refitted
engine refittable when it is serialized) exists from 10.14 and is set only there (the ``include_refit`` row of
:mod:`.versions`). TensorRT 11.3 documents that a REFIT engine may drop a GEMM bias: every refitted engine goes
through the same acceptance check as a built one before it is kept.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from . import versions
from .session import EngineBuildError, deserialize_engine, make_logger, trt_errors

REFIT_MODES = ("refittable", "stripped")
_BUILDER_FLAGS = {"refittable": ("REFIT",), "stripped": ("REFIT", "STRIP_PLAN")}
PENDING = "refit_pending"  # the engine entry's field while its weights are not the bundle ONNX's


def check_refit_mode(mode: str | None) -> str | None:
    """``mode`` if it is None or one of :data:`REFIT_MODES`, else ValueError naming them."""
    if mode is not None and mode not in REFIT_MODES:
        raise ValueError(f"refit mode must be one of {REFIT_MODES} (or none), got {mode!r}")
    return mode


def refit_builder_flags(mode: str | None) -> list[str]:
    """The ``trt.BuilderFlag`` names an engine of refit ``mode`` is built with (none for a plain engine)."""
    return list(_BUILDER_FLAGS[mode]) if check_refit_mode(mode) else []


def pending_reason(entry: dict[str, Any]) -> str | None:
    """Why the engine of manifest ``entry`` must be refitted before it runs, or None when its weights are current."""
    pending = entry.get(PENDING)
    if not isinstance(pending, dict):
        return None
    return str(pending.get("reason") or "its weights are not those of the bundle's ONNX; refit it first")


def mark_pending(entry: dict[str, Any], onnx: str, reason: str) -> dict[str, Any]:
    """A copy of engine ``entry`` marked as needing a refit from bundle file ``onnx``."""
    return {**entry, PENDING: {"from": onnx, "reason": f"{reason}; run `python3 build_engine.py --refit` on the "
                                                      f"device (refits it from {onnx} and checks it)"}}


def _parser_errors(refitter_parser: Any) -> str:
    lines = []
    for i in range(int(refitter_parser.num_errors)):
        err = refitter_parser.get_error(i)
        lines.append(f"[{err.code()}] {err.desc()}")
    return "; ".join(lines) or "no error recorded"


def refit_serialized(trt: Any, engine_bytes: bytes, onnx_path: str | Path) -> tuple[bytes, dict[str, Any]]:
    """Refit the serialized refittable engine ``engine_bytes`` with the weights of ``onnx_path``; return (the
    refitted engine serialized with its weights, a description).

    Runtime -> deserialize -> Refitter -> OnnxParserRefitter.refit_from_file -> get_missing_weights (must be
    empty) -> refit_cuda_engine -> serialize_with_config (``EXCLUDE_WEIGHTS`` cleared so a weight-stripped engine
    comes back whole; ``INCLUDE_REFIT`` where TensorRT has it, so it stays refittable). Raises EngineBuildError
    naming what TensorRT refused (a graph whose weights do not match the engine's, an engine not built
    refittable), CudaUnavailable when no runtime can be created here.
    """
    onnx_path = Path(onnx_path)
    version = str(trt.__version__)
    logger = make_logger(trt)
    runtime, engine = deserialize_engine(trt, engine_bytes, logger)  # noqa: F841  # runtime outlives engine
    if engine is None:
        raise EngineBuildError(f"TensorRT {version} could not deserialize the engine to refit it (engines load only "
                               f"on the GPU and TensorRT version that built them)" + trt_errors(logger))
    if not engine.refittable:
        raise EngineBuildError("the engine was not built refittable (BuilderFlag.REFIT): rebuild it with "
                               "`python3 build_engine.py --refittable` (or ibit-export --refittable)")
    start = time.perf_counter()
    refitter = trt.Refitter(engine, logger)
    parser = trt.OnnxParserRefitter(refitter, logger)
    if not parser.refit_from_file(str(onnx_path)):
        raise EngineBuildError(f"TensorRT's ONNX refitter could not take the weights of {onnx_path}: "
                               f"{_parser_errors(parser)}" + trt_errors(logger))
    missing = list(refitter.get_missing_weights())
    if missing:
        raise EngineBuildError(f"{onnx_path} does not supply {len(missing)} weight(s) the engine needs: "
                               f"{', '.join(missing[:8])}{' ...' if len(missing) > 8 else ''} (is it the graph the "
                               f"engine was built from?)")
    if not refitter.refit_cuda_engine():
        raise EngineBuildError(f"TensorRT {version} failed to refit the engine from {onnx_path}" + trt_errors(logger))
    refitted = len(refitter.get_all_weights())
    seconds = time.perf_counter() - start
    config = engine.create_serialization_config()
    config.clear_flag(trt.SerializationFlag.EXCLUDE_WEIGHTS)
    include_refit = versions.has("include_refit", version)
    if include_refit:  # named through the version matrix's row: the flag does not exist before 10.14
        flag = versions.feature("include_refit").bindings[0].split(".", 1)[1]
        config.set_flag(getattr(trt.SerializationFlag, flag))
    serialized = engine.serialize_with_config(config)
    if serialized is None:
        raise EngineBuildError(f"TensorRT {version} could not serialize the refitted engine" + trt_errors(logger))
    return bytes(serialized), {"from": onnx_path.name, "tensorrt": version, "weights_refitted": refitted,
                               "refit_seconds": round(seconds, 3), "stays_refittable": True if include_refit else
                               "as built (TensorRT < 10.14 keeps a REFIT engine refittable when serialized)"}
