"""Checks of the project's TensorRT use that run without a GPU (issue 11). Development tooling: nothing in the
package proper imports it; tests and ``benchmarks/trt_api_report.py`` do.

- ``bindings``: fetch NVIDIA's real Python bindings for TensorRT 10.3, 10.13, 10.14, 10.16 and 11.4 (pip wheels),
  compile a C stub for the few library entry points they link against, and run a code path against them in a
  subprocess per version.
- ``binding_standins`` (inside that subprocess): a ``tensorrt`` module generated from the real classes and enums, whose
  every attribute access and call is checked against the real names and docstring signatures, with file and line.
- ``paths``: the one list of project code paths that are checked (``CONFORMANCE_TARGETS``).
- ``onnx_support``: every op / attribute / input form of an ONNX file against TensorRT 10.3's ONNX parser table.
- ``trtexec_flags``: generated trtexec command lines against each version's documented flags.

None of this builds an engine: numerics, speed and the build itself need a GPU (README, "TensorRT conformance").
"""
