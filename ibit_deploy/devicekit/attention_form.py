"""Which ONNX form the device kit builds an engine from: the ONNX ``Attention`` op where TensorRT parses it, else the
MatMul form.

A bias-mode bundle exported with ``--attention onnx-attention`` carries, beside ``model.onnx`` (MatMul -> Softmax ->
MatMul, which every TensorRT 10.x / 11.x parses and fuses into its MHA kernels), ``model.attn.onnx``
(:data:`.layout.ATTENTION_OP_ONNX`): the same model with each attention core as one ONNX ``Attention`` op (opset
23) whose additive ``attn_mask`` is the folded bias. It is exact (no low-rank step), and was gated against
``model.onnx`` at export. TensorRT's ONNX parser takes the op from 10.14 on (feature ``onnx_attention_op`` of
:mod:`.versions`; JetPack 6's 10.3 and JetPack 7.0/7.1's 10.13 do not).

:func:`choose_onnx` picks the Attention-op form where the installed TensorRT has the feature and the form's
recorded verdict did not fail, the MatMul form elsewhere; :func:`build_with_fallback` builds from the choice and,
when TensorRT rejects the Attention-op form (its parser or its builder: :class:`.session.EngineBuildError`), builds
from the MatMul form and says why. The engine's manifest entry records the form (``attention_form``) and the file
(``built_from``). Mask-mode IBiT has no softmax, so it never has this form.

GPU-only: no TensorRT build runs on the machines this project is tested on. The choice and the fallback are tested
with stand-ins, and the TensorRT calls they reach run under the real bindings of every version of the matrix
(conformance target ``kit.main.attention_op``).
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from . import versions
from .acceptance import artifact_verdict
from .manifest import attention_op_artifact, onnx_for
from .session import EngineBuildError

MATMUL = "matmul"
ATTENTION_OP = "attention-op"
FEATURE = "onnx_attention_op"
RECORD_KEYS = ("attention_form", "attention_note", "attention_op_error", "verified_against")  # what an engine entry may carry
_ERROR_CHARS = 2000  # of TensorRT's rejection kept in the manifest (the full text is printed)
T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class OnnxChoice:
    """The file to build first, its attention form, the MatMul-form file to fall back to (None: no fallback), and
    why. ``considered``: the bundle has an Attention-op form, so the engine records which form it was built from."""

    path: Path
    form: str
    fallback: Path | None
    reason: str
    considered: bool = True

    def record(self) -> dict[str, Any]:
        """What the engine's manifest entry keeps about the form (nothing when the bundle has only one form)."""
        return {"attention_form": self.form, "attention_note": self.reason} if self.considered else {}


def choose_onnx(bundle: Path, manifest: dict[str, Any], precision: str, trt_version: str,
                jetson: bool = False) -> OnnxChoice:
    """The ONNX file an engine of ``precision`` (the ONNX precision) is built from with TensorRT ``trt_version``."""
    matmul = bundle / onnx_for(manifest, precision, where=bundle / "manifest.json")
    twin = attention_op_artifact(manifest, precision)
    if twin is None:
        return OnnxChoice(matmul, MATMUL, None, f"the bundle has no ONNX Attention-op form of its {precision} model",
                          considered=False)
    name = twin["path"]
    if not versions.has(FEATURE, trt_version, jetson):
        span = versions.feature(FEATURE).span()
        return OnnxChoice(matmul, MATMUL, None, f"TensorRT {trt_version}'s ONNX parser does not take the Attention "
                                                f"op ({span}): built from the MatMul form {matmul.name}, not {name}")
    verdict = artifact_verdict(twin, manifest)
    if verdict.failed:
        return OnnxChoice(matmul, MATMUL, None, f"{name} failed its check at export ({verdict.reason}): built from "
                                                f"the MatMul form {matmul.name}")
    if not (bundle / name).is_file():
        return OnnxChoice(matmul, MATMUL, None, f"{name} is listed but missing: built from {matmul.name}")
    return OnnxChoice(bundle / name, ATTENTION_OP, matmul,
                      f"TensorRT {trt_version} parses the ONNX Attention op: built from {name} (the folded bias as "
                      f"the op's attn_mask); {matmul.name} is the fallback")


def build_with_fallback(choice: OnnxChoice, build: Callable[[Path], T],
                        say: Callable[[str], None] = lambda line: print(f"build_engine.py: {line}", file=sys.stderr),
                        ) -> tuple[T, Path, dict[str, Any]]:
    """``build(choice.path)``; when that raises EngineBuildError and the choice has a fallback, ``build`` of the
    MatMul form, saying why. Returns the build's result, the file it was built from and the form record."""
    try:
        return build(choice.path), choice.path, choice.record()
    except EngineBuildError as exc:
        if choice.fallback is None:
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        note = (f"TensorRT could not build from {choice.path.name} ({first}); built from {choice.fallback.name}, the "
                f"MatMul form, instead")
        say(f"note: {note}")
        result = build(choice.fallback)
        return result, choice.fallback, {"attention_form": MATMUL, "attention_note": note,
                                         "attention_op_error": str(exc)[:_ERROR_CHARS]}


def external_record(bundle: Path, manifest: dict[str, Any], precision: str, trt_version: str | None,
                    built_from: Path, error: str | None = None, jetson: bool = False) -> tuple[Path, dict[str, Any]]:
    """For an engine built outside the kit (trtexec in ``build_engine.sh``) from ``built_from``: (the file its
    outputs are checked against, the form record), the same record :func:`build_with_fallback` writes for a build
    here. ``error``: why the builder failed on the Attention-op form before ``built_from`` (the MatMul form) was
    built; ``trt_version`` None: the caller could not tell the version (the script then builds the MatMul form)."""
    twin = attention_op_artifact(manifest, precision)
    if twin is None:
        return built_from, {}
    if trt_version is None:
        matmul = bundle / onnx_for(manifest, precision, where=bundle / "manifest.json")
        choice = OnnxChoice(matmul, MATMUL, None, f"the TensorRT version was not known: built from the MatMul form "
                                                  f"{matmul.name}, not {twin['path']}")
    else:
        choice = choose_onnx(bundle, manifest, precision, trt_version, jetson)
    matmul = choice.fallback or choice.path
    replayed = built_from.name == choice.path.name or (built_from.name == matmul.name and bool(error))
    if not replayed or (error and choice.fallback is None):
        # built from a file the kit would not have picked (or a fallback the choice did not offer): say so
        form = ATTENTION_OP if built_from.name == twin["path"] else MATMUL
        note = f"built from {built_from.name} as given (the kit's choice: {choice.reason})"
        return (built_from if form == MATMUL else matmul), {"attention_form": form, "attention_note": note,
                                                            **({"attention_op_error": error[:_ERROR_CHARS]}
                                                               if error else {})}

    def build(path: Path) -> None:  # replays what the external builder did: it failed on every file but built_from
        if path.name != built_from.name:
            raise EngineBuildError(error or f"the builder did not build {path.name}")

    return matmul, build_with_fallback(choice, build, say=lambda line: None)[2]
