"""From a bundle directory to runners: ``load(bundle)`` for applications, ``make_runners`` for the benchmark harness.

Backend names (one vocabulary for the harness, the CLI and the Python API):

    torch-ref     the trained checkpoint the bundle came from (unfolded masks): the reference everything is judged by
    torch-folded  the same checkpoint with its masks folded, as exported
    ort-cpu       ONNX Runtime, CPU execution provider, one runner per ONNX artifact precision
    ort-cuda      ONNX Runtime, CUDA execution provider
    ort-trt       ONNX Runtime, TensorRT execution provider (alias: ort-tensorrt)
    tensorrt      a serialized TensorRT engine listed in the manifest (kind "engine"), one runner per engine

Runners are only constructed here; backends that cannot run on this machine say why when they are opened
(:class:`BackendUnavailable`), or, when the bundle lacks what they need, come back as a reason string.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from pathlib import Path
from typing import Any, NamedTuple

from ..devicekit.acceptance import artifact_verdict
from ..devicekit.engine_compat import EngineCompat, recorded_version
from ..devicekit.layout import MANIFEST_FILE, ORT_KIND
from ..devicekit.manifest import load_manifest, ort_graph_artifact
from ..devicekit.profile import InputSpec
from ..errors import BackendUnavailable
from .base import Runner

MODEL_KINDS = ("onnx", ORT_KIND, "engine")  # the artifact kinds a runner runs
BACKENDS = ("torch-ref", "torch-folded", "ort-cpu", "ort-cuda", "ort-trt", "tensorrt")
ALIASES = {"ort-tensorrt": "ort-trt", "trt": "tensorrt", "torch": "torch-folded"}
ORT_DEVICES = {"ort-cpu": "cpu", "ort-cuda": "cuda", "ort-trt": "tensorrt"}
# the ORT backends that run a bundle's fused graph (model*.ort.onnx) when it has one; ORT's TensorRT provider hands
# the graph to TensorRT, which cannot parse ONNX Runtime's contrib ops and fuses the plain graph on its own
FUSED_GRAPH_BACKENDS = ("ort-cpu", "ort-cuda")
ORT_GRAPHS = ("fused", "plain")  # ort_graph=: the fused twin where the bundle has one (default), or the plain ONNX
# ``load(backend="auto")`` tries these in order; ORT's TensorRT provider is left out because it builds an engine
# when the session opens (minutes on a Jetson), which an application should ask for by name.
AUTO_ORDER = ("tensorrt", "ort-cuda", "ort-cpu")


class RunnerChoice(NamedTuple):
    """One row of the harness: ``runner`` is a Runner, or a string saying why this backend cannot run."""

    name: str
    runner: Runner | str
    backend: str
    precision: str
    artifact: str


def canonical_backend(name: str) -> str:
    """The canonical backend name for ``name`` (aliases resolved), or ValueError listing the known names."""
    key = name.strip().lower()
    key = ALIASES.get(key, key)
    if key not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; expected one of {', '.join(BACKENDS)} "
                         f"(aliases: {', '.join(f'{a}={b}' for a, b in ALIASES.items())})")
    return key


def reference_checkpoint(manifest: dict[str, Any]) -> Path | str:
    """The checkpoint directory the bundle was exported from, or the reason it cannot serve as the reference.

    The checkpoint's weights and config must still hash to what the manifest's ``source`` recorded: a checkpoint
    retrained in place is not the model this bundle was made from.
    """
    from ..checkpoint import checkpoint_fingerprint

    source = manifest.get("source") or {}
    if not source.get("path"):
        return "the manifest records no source checkpoint (manifest['source']['path'])"
    path = Path(source["path"])
    if not path.is_dir():
        return f"source checkpoint {path} is not on this machine (copy it here to benchmark against the reference)"
    try:
        found = checkpoint_fingerprint(path)
    except OSError as exc:
        return f"source checkpoint {path} is unreadable: {exc}"
    for key in ("weights_sha256", "config_sha256"):
        if source.get(key) and found[key] != source[key]:
            return (f"source checkpoint {path} changed since export: {key} is {found[key][:12]}..., the manifest "
                    f"recorded {source[key][:12]}...")
    return path


def make_runners(bundle: str | os.PathLike, backends: list[str], manifest: dict[str, Any], *,
                 precisions: list[str] | None = None, threads: int = 0,
                 torch_device: str = "cpu", allow_failed: bool = False,
                 ort_graph: str = "fused", lean_runtime: str | os.PathLike | None = None) -> list[RunnerChoice]:
    """One :class:`RunnerChoice` per (backend, artifact) pair of ``bundle``, in the order of ``backends``.

    ``precisions`` filters the ONNX and engine artifacts (None: every precision the manifest lists); a requested
    precision without an artifact comes back as a reason. An artifact whose recorded verdict failed
    (:func:`~ibit_deploy.devicekit.acceptance.artifact_verdict`) comes back as a reason too, unless
    ``allow_failed``: then it runs and a warning says so. ``ort_graph``: "fused" runs an ONNX file's fused twin
    (:func:`ort_graph_for`) on ort-cpu and ort-cuda where the bundle has one, "plain" always the ONNX file itself.
    Engine runners carry the manifest's record of what built each engine (:func:`load`; ``lean_runtime`` as there).
    Runners are not opened.
    """
    if ort_graph not in ORT_GRAPHS:
        raise ValueError(f"ort_graph must be one of {ORT_GRAPHS}, got {ort_graph!r}")
    bundle = Path(bundle)
    spec = InputSpec.from_manifest(manifest)
    wanted = list(dict.fromkeys(canonical_backend(b) for b in backends))
    choices: list[RunnerChoice] = []
    torch_models: dict[str, Any] | str | None = None
    for backend in wanted:
        if backend.startswith("torch-"):
            if torch_models is None:
                torch_models = _torch_models(manifest)
            source = str((manifest.get("source") or {}).get("path", ""))
            if isinstance(torch_models, str):
                choices.append(RunnerChoice(backend, torch_models, backend, "fp32", source))
                continue
            from .torch_runner import TorchRunner

            # PyTorch takes any batch size; the ONNX batch range is an export setting, not the model's.
            torch_spec = dataclasses.replace(spec, max_batch=None)
            runner = TorchRunner(torch_models[backend], torch_spec, backend, device=torch_device, threads=threads)
            choices.append(RunnerChoice(backend, runner, backend, "fp32", source))
        elif backend in ORT_DEVICES:
            if not any(a.get("kind") == "onnx" for a in manifest.get("artifacts", [])):
                choices.append(RunnerChoice(backend, "the bundle lists no ONNX artifact", backend, "fp32", ""))
                continue
            arts = _artifacts(manifest, "onnx", precisions)
            for art, precision, missing in arts:
                name = _row_name(backend, art, precision, arts)
                if missing:
                    choices.append(RunnerChoice(name, missing, backend, precision, ""))
                    continue
                refused = failed_artifact(bundle, manifest, art, allow_failed)
                if refused:
                    choices.append(RunnerChoice(name, refused, backend, precision, art["path"]))
                    continue
                from .ort_runner import OrtRunner

                if ort_graph == "fused" and backend in FUSED_GRAPH_BACKENDS:
                    art = ort_graph_for(manifest, art)
                runner = OrtRunner(bundle / art["path"], spec, device=ORT_DEVICES[backend], threads=threads)
                choices.append(RunnerChoice(name, runner, backend, precision, art["path"]))
        else:
            choices.extend(_engine_runners(bundle, manifest, spec, precisions, allow_failed, lean_runtime))
    return choices


def ort_graph_for(manifest: dict[str, Any], art: dict[str, Any]) -> dict[str, Any]:
    """The artifact ONNX Runtime runs for ONNX artifact ``art``: its fused twin when the manifest lists one for
    these very bytes and the twin's recorded gate did not fail (export/ort_graph.py), else ``art`` itself."""
    twin = ort_graph_artifact(manifest, art)
    if twin is None or artifact_verdict(twin, manifest).failed:
        return art
    return twin


def failed_artifact(bundle: Path, manifest: dict[str, Any], art: dict[str, Any], allow_failed: bool) -> str | None:
    """Why artifact ``art`` may not run (its recorded verdict failed and ``allow_failed`` is off), else None; with
    ``allow_failed`` a failed artifact runs, and a warning on stderr says so plainly."""
    verdict = artifact_verdict(art, manifest)
    if not verdict.failed:
        return None
    what = "check against ONNX Runtime" if art.get("kind") == "engine" else "accuracy gate"
    if not allow_failed:
        return (f"{art['path']} FAILED its {what} at export ({verdict.reason}); it is not loaded unless asked for "
                f"by name (allow_failed=True, --allow-failed)")
    warnings.warn(f"{Path(bundle) / art['path']} FAILED its {what} at export ({verdict.reason}) and is used only "
                  f"because allow_failed was given: its outputs may be wrong", FailedArtifactWarning, stacklevel=3)
    return None


class FailedArtifactWarning(UserWarning):
    """An artifact that failed its gate is being used because the caller asked for it."""


def load(bundle: str | os.PathLike, backend: str = "auto", precision: str = "fp32", *, threads: int = 0,
         verify: bool = True, allow_failed: bool = False, ort_graph: str = "fused",
         lean_runtime: str | os.PathLike | None = None) -> Runner:
    """An **open** runner for ``bundle``: the Python embedding API (``with load(b) as r: logits = r.infer(x)``).

    ``backend`` is "auto" (the first of a TensorRT engine, ORT CUDA, ORT CPU that opens here), a backend name of
    this module ("ort-cpu", "ort-cuda", "ort-tensorrt", "tensorrt"), or "torch" (the folded checkpoint, fp32).
    ``verify`` checks every artifact's sha256 against the manifest first. An artifact whose gate failed at export is
    never loaded unless ``allow_failed`` (then a :class:`FailedArtifactWarning` says so). ONNX Runtime on CPU or CUDA
    runs the bundle's fused graph of that precision where it has one that passed its gate (``ort_graph="plain"``:
    the plain ONNX file). A TensorRT engine opens only where the installed TensorRT can run it, by what the manifest
    records (the version that built it, ``engine_compat``; devicekit/engine_compat.py): otherwise its reason names
    both versions. ``lean_runtime``: the lean runtime library (libnvinfer_lean.so of the TensorRT that built it) of
    an engine built with ``--exclude-lean-runtime``. Raises BackendUnavailable
    with every reason when nothing suitable can run.
    """
    manifest = load_manifest(bundle, verify=verify)
    if not any(isinstance(a, dict) and a.get("kind") in MODEL_KINDS for a in manifest["artifacts"]):
        raise ValueError(f"{Path(bundle) / MANIFEST_FILE} lists no model (no ONNX file or TensorRT engine): there is "
                         f"nothing to run; re-export the bundle with ibit-export")
    if backend.strip().lower() == "auto":
        candidates = list(AUTO_ORDER)
    else:
        candidates = [canonical_backend(backend)]
    if any(c.startswith("torch-") for c in candidates) and precision != "fp32":
        raise ValueError(f"backend {backend!r} runs the PyTorch checkpoint in fp32; precision {precision!r} applies "
                         f"to ONNX and engine artifacts")
    reasons = []
    for candidate in candidates:
        for choice in make_runners(bundle, [candidate], manifest, precisions=[precision], threads=threads,
                                   allow_failed=allow_failed, ort_graph=ort_graph, lean_runtime=lean_runtime):
            if isinstance(choice.runner, str):
                reasons.append(f"{choice.name}: {choice.runner}")
                continue
            try:
                return choice.runner.open()
            except BackendUnavailable as exc:
                reasons.append(f"{choice.name}: {exc}")
    raise BackendUnavailable(f"no {backend} runner for {precision} can run {bundle} here: " + "; ".join(reasons))


def _torch_models(manifest: dict[str, Any]) -> dict[str, Any] | str:
    """{"torch-ref": model, "torch-folded": folded model} from the source checkpoint, or the reason there are none
    (a device install has no torch: the bundle's recorded reference outputs stand in, see ibit_deploy.bench)."""
    from ..checkpoint import load_checkpoint

    path = reference_checkpoint(manifest)
    if isinstance(path, str):
        return path
    try:
        from ..fold import fold_masks
    except ImportError as exc:
        return f"PyTorch is not importable here ({exc}): the source checkpoint cannot run"
    try:
        model, _ = load_checkpoint(path)
    except (OSError, ValueError) as exc:  # the other backends can still be measured without it
        return f"source checkpoint {path} cannot be loaded: {exc}"
    return {"torch-ref": model, "torch-folded": fold_masks(model)}


def _artifacts(manifest: dict[str, Any], kind: str,
               precisions: list[str] | None) -> list[tuple[dict[str, Any] | None, str, str | None]]:
    """(artifact, precision, reason-if-missing) for every artifact of ``kind`` and every requested precision."""
    arts = [a for a in manifest.get("artifacts", []) if a.get("kind") == kind]
    if precisions is None:
        return [(a, str(a.get("precision", "fp32")), None) for a in arts]
    out: list[tuple[dict[str, Any] | None, str, str | None]] = []
    for precision in precisions:
        found = [a for a in arts if a.get("precision", "fp32") == precision]
        if not found:
            have = sorted({str(a.get("precision", "fp32")) for a in arts}) or ["none"]
            out.append((None, precision, f"the manifest lists no {precision} {kind} artifact (it has: "
                                         f"{', '.join(have)})"))
        out.extend((a, precision, None) for a in found)
    return out


def _engine_runners(bundle: Path, manifest: dict[str, Any], spec: InputSpec,
                    precisions: list[str] | None, allow_failed: bool,
                    lean_runtime: str | os.PathLike | None = None) -> list[RunnerChoice]:
    if not any(a.get("kind") == "engine" for a in manifest.get("artifacts", [])):
        return [RunnerChoice("tensorrt", "the bundle has no TensorRT engine (manifest artifact of kind 'engine'); "
                                         "build one on the target GPU with the bundle's build_engine.sh",
                             "tensorrt", (precisions or ["fp32"])[0], "")]
    arts = _artifacts(manifest, "engine", precisions)
    choices = []
    for art, precision, missing in arts:
        name = _row_name("tensorrt", art, precision, arts)
        if missing:
            choices.append(RunnerChoice(name, missing, "tensorrt", precision, ""))
            continue
        # The verdict recorded when the engine was checked, with the rule then applied (devicekit.acceptance).
        refused = failed_artifact(bundle, manifest, art, allow_failed)
        if refused:
            choices.append(RunnerChoice(name, refused, "tensorrt", precision, art["path"]))
            continue
        # the manifest's record of what built the engine: the runner refuses what the installed TensorRT cannot run
        where = f"{bundle / MANIFEST_FILE}: {art['path']}"
        compat, built_with = EngineCompat.from_record(art.get("engine_compat"), where), recorded_version(
            art.get("tensorrt"), where)
        try:
            from .tensorrt_runner import TrtRunner

            runner: Runner | str = TrtRunner(bundle / art["path"], spec, built_with=built_with,
                                             compat=compat, lean_runtime=lean_runtime)
        except ImportError as exc:
            runner = f"the TensorRT runner cannot be imported here: {exc}"
        except BackendUnavailable as exc:
            runner = str(exc)
        choices.append(RunnerChoice(name, runner, "tensorrt", precision, art["path"]))
    return choices


def _row_name(backend: str, art: dict[str, Any] | None, precision: str,
              arts: list[tuple[dict[str, Any] | None, str, str | None]]) -> str:
    """``backend:precision``, plus the file when several artifacts share that precision."""
    if art is None or sum(1 for _, p, _ in arts if p == precision) == 1:
        return f"{backend}:{precision}"
    return f"{backend}:{precision}:{art['path']}"
