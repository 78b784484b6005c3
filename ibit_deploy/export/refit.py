"""``ibit-deploy refit BUNDLE CHECKPOINT``, the desktop half of refit-instead-of-rebuild.

A bundle exported with ``ibit-export --to tensorrt --refittable`` holds (or will hold, once the device builds it) a
refittable engine. A checkpoint of the same architecture retrained on new images reaches the device as follows:

1. here (torch): the checkpoint is checked against the bundle's recorded model (name, architecture arguments,
   attention mode, folding, input, classes; :func:`architecture_differences`), then re-exported with the bundle's
   recorded export settings (precisions, opset, attention form, batch range, quantization options) into a private
   folder beside the bundle: folded ONNX files, the reference outputs, every gate of an export re-run;
2. every ONNX file of the bundle (the ONNX Attention-op form ``model.attn.onnx`` too: an engine built from it is
   refitted from it) is compared with its new twin (:mod:`.graph_match`): same initializers (name, dtype, shape),
   same nodes; anything else is refused, naming what differs, and the bundle is left as it was;
3. the new bundle is the re-export plus, from the old one, the engine files (their manifest entries marked
   ``refit_pending``: they hold the previous weights, so no reader runs them until refitted), the kit (rewritten
   from this package, so it has ``--refit``) and whatever no export made (packages, timing cache, reports); bench
   results go (they measured the previous weights). It replaces the bundle through the same staged swap as an
   export (:mod:`ibit_deploy.devicekit.staging`);
4. on the device (torch-free: the kit needs numpy, ONNX Runtime and TensorRT): ``python3 build_engine.py --refit``
   refits the engine from the new ONNX and checks it like a built one (:mod:`ibit_deploy.devicekit.refit_kit`).
"""

from __future__ import annotations

import os
import shutil
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..checkpoint import checkpoint_fingerprint, load_checkpoint
from ..devicekit.layout import ATTENTION_OP_KIND, LAUNCHER, LAUNCHER_KIND, ORT_KIND, PRECISIONS
from ..devicekit.locking import directory_lock
from ..devicekit.manifest import load_manifest, set_artifact, utc_now, write_manifest
from ..devicekit.refit import mark_pending
from ..devicekit.staging import clean_leftovers, new_staging, swap_in
from ..errors import BadInput, ExportFailed
from .graph_match import describe, graph_differences
from .pipeline import ExportOptions, _build, input_description
from .replacing import keep_foreign

# manifest artifacts an export writes (replaced by the re-export); every other kind is carried from the old bundle
EXPORTED_KINDS = ("onnx", ORT_KIND, ATTENTION_OP_KIND, "reference", "calibration")
# the ONNX files an engine may be built from (or ONNX Runtime may run): each must match its re-exported twin
GRAPH_KINDS = ("onnx", ORT_KIND, ATTENTION_OP_KIND)
DEVICE_KINDS = ("script", LAUNCHER_KIND, "kit")  # the device scripts and kit: rewritten from this package


def check_recorded_blocks(manifest: dict[str, Any], where: Path) -> None:
    """BadInput naming ``where`` unless the blocks a refit replays have the shapes an export writes: ``export``,
    ``model`` and ``input`` objects, ``input.batch_range`` [min, max], ``input.shape/mean/std`` lists."""
    for key in ("export", "model", "input"):
        if not isinstance(manifest.get(key) or {}, dict):
            raise BadInput(f"{where}: {key} must be an object, got {manifest.get(key)!r}; the bundle's manifest was "
                           f"edited or damaged: export the checkpoint again instead of refitting")
    inp = manifest.get("input") or {}
    batch_range = inp.get("batch_range", [1, 64])
    if not (isinstance(batch_range, list) and len(batch_range) == 2):
        raise BadInput(f"{where}: input.batch_range must be [min, max], got {batch_range!r}")
    for key in ("shape", "mean", "std"):
        if not isinstance(inp.get(key) or [], list):
            raise BadInput(f"{where}: input.{key} must be a list, got {inp.get(key)!r}")


def options_from_manifest(manifest: dict[str, Any], where: Path) -> ExportOptions:
    """The ONNX export settings the bundle was made with (``export`` and ``input`` blocks of its manifest)."""
    check_recorded_blocks(manifest, where)
    export, inp = manifest.get("export") or {}, manifest.get("input") or {}
    if not export.get("refittable") and not any(a.get("refit_mode") for a in manifest.get("artifacts", [])
                                                if a.get("kind") == "engine"):
        raise BadInput(f"{where} was not exported refittable (ibit-export --to tensorrt --refittable) and lists no "
                       f"refittable engine: its engine cannot take new weights; export the new checkpoint instead")
    lo, hi = (inp.get("batch_range") or [1, 64])[:2]
    try:
        options = ExportOptions(to="onnx", precision=str(export.get("precision", "fp32")),
                                opset=int(export.get("opset", 18)), min_batch=int(lo), max_batch=int(hi),
                                opt_batch=int(inp.get("opt_batch", lo)), attention=str(export.get("attention", "dense")),
                                quantize=dict(export.get("quantize") or {}),
                                ort_fusions=bool(export.get("ort_fusions", bool(manifest.get("ort_graphs")))))
        options.validate()
    except (TypeError, ValueError) as exc:
        raise BadInput(f"{where}: the recorded export settings (export, input blocks) cannot be replayed: "
                       f"{exc}") from exc
    return options


def architecture_differences(old: dict[str, Any], model: Any, config: dict[str, Any],
                             options: ExportOptions) -> list[str]:
    """How the checkpoint (``model``, ``config``) differs from the bundle's recorded model (manifest ``old``) in
    architecture, attention/folding, input or classes; empty when it is the same model retrained."""
    from ..models.ibit import ibit_attentions

    recorded = old.get("model") or {}
    attentions = ibit_attentions(model)
    now = {"name": config["model"]["name"], "kwargs": config["model"].get("kwargs", {}),
           "attn_mode": attentions[0].mode if attentions else "timm", "folded": bool(attentions)}
    diffs = []
    for key in ("name", "attn_mode", "folded"):
        if recorded.get(key) != now[key]:
            diffs.append(f"model.{key}: {recorded.get(key)!r} -> {now[key]!r}")
    before, after = recorded.get("kwargs") or {}, now["kwargs"] or {}
    for key in sorted(set(before) | set(after)):
        if before.get(key) != after.get(key):
            diffs.append(f"model.kwargs.{key}: {before.get(key)!r} -> {after.get(key)!r}")
    inp = input_description(config, model, options)
    for key in ("shape", "mean", "std"):
        if list((old.get("input") or {}).get(key) or []) != list(inp[key]):
            diffs.append(f"input.{key}: {(old.get('input') or {}).get(key)} -> {inp[key]}")
    classes = list(config.get("classes") or [str(i) for i in range(model.num_classes)])
    if list(old.get("classes") or []) != classes:
        diffs.append(f"classes: {len(old.get('classes') or [])} -> {len(classes)} ({classes[:4]}...)")
    return diffs


def refit_bundle(bundle: str | os.PathLike, checkpoint: str | os.PathLike, *, wait: bool = False,
                 progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Put ``checkpoint``'s weights into ``bundle`` for an on-device refit (module docstring); returns the new
    manifest, whose ``refit`` block says what was done.

    Raises BadInput (nothing written) for a bundle that is not refittable or a checkpoint whose architecture,
    folding or graph differs, naming what differs; ExportFailed when a gate of the re-export fails (the bundle is
    left as it was); LockBusy when another writer holds the bundle (``wait``: wait for it).
    """
    bundle, step = Path(bundle), progress or (lambda stage: None)
    where = bundle / "manifest.json"
    try:
        old = load_manifest(bundle, verify=True)
    except (OSError, ValueError) as exc:
        raise BadInput(str(exc)) from exc
    options = options_from_manifest(old, where)
    step("load checkpoint")
    fingerprint = checkpoint_fingerprint(checkpoint)
    model, config = load_checkpoint(checkpoint)
    diffs = architecture_differences(old, model, config, options)
    if diffs:
        raise BadInput(f"{checkpoint} is not the model of {bundle} retrained: {'; '.join(diffs)}. A refit only takes "
                       f"new weights; export this checkpoint with ibit-export instead")
    with directory_lock(bundle, "ibit-deploy refit", wait=wait):
        for note in clean_leftovers(bundle):
            warnings.warn(note, stacklevel=2)
        old = load_manifest(bundle, verify=True)  # under the lock: what is there now
        check_recorded_blocks(old, where)
        staging = new_staging(bundle)
        try:
            manifest = _refit_locked(bundle, staging, old, checkpoint, fingerprint, model, config, options, step)
            step("swap in")
            write_manifest(staging, manifest)
            swap_in(staging, bundle)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return manifest


def _refit_locked(bundle: Path, staging: Path, old: dict[str, Any], checkpoint: str | os.PathLike,
                  fingerprint: dict[str, str], model: Any, config: dict[str, Any], options: ExportOptions,
                  step: Callable[[str], None]) -> dict[str, Any]:
    new, failures = _build(checkpoint, staging, bundle, fingerprint, model, config, options, step, None)
    if failures:
        raise ExportFailed("the re-export failed its gates: " + "; ".join(failures) + f"; {bundle} is unchanged")
    step("compare graphs")
    compared = []
    for art in old.get("artifacts", []):
        if art.get("kind") not in GRAPH_KINDS:
            continue
        twin = staging / art["path"]
        if not twin.is_file():
            raise BadInput(f"the re-export wrote no {art['path']} (the bundle's {art.get('kind')} "
                           f"{art.get('precision', '')} file): the export settings or the model differ")
        diffs = graph_differences(bundle / art["path"], twin)
        if diffs:
            raise BadInput(describe(diffs, bundle / art["path"], twin) + "; the engine cannot be refitted from it")
        compared.append(art["path"])
    step("carry engines and kit")
    engines = []
    for art in old.get("artifacts", []):
        kind = art.get("kind")
        if kind in EXPORTED_KINDS or kind in DEVICE_KINDS:
            continue
        if kind != "engine" or not art.get("refit_mode"):
            raise BadInput(f"{bundle} holds {art['path']} ({kind}{', not built refittable' if kind == 'engine' else ''})"
                           f", which cannot take new weights; rebuild or re-export instead of refitting")
        (staging / art["path"]).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(bundle / art["path"], staging / art["path"])
        set_artifact(new, mark_pending(art, str(art.get("built_from") or ""),
                                       f"holds the weights of the previous checkpoint "
                                       f"({(old.get('source') or {}).get('path', '?')})"))
        engines.append(art["path"])
    launcher = next((a for a in old.get("artifacts", []) if a.get("path") == LAUNCHER), None)
    if launcher is not None:
        from .device_bundle import write_device_scripts

        for entry in write_device_scripts(staging, new, str(launcher.get("precision") or PRECISIONS[0])):
            set_artifact(new, entry)
    kept, packages = keep_foreign(old, bundle, staging)
    for key, value in old.items():  # the export's record (to, refittable, ...), the TensorRT target's, selections
        if key not in new or key == "export":
            new[key] = value
    new["results"] = []
    new["refit"] = {"at": utc_now(), "checkpoint": str(checkpoint), "previous_source": old.get("source"),
                    "graphs_compared": compared, "engines_pending": engines, "kept": kept,
                    "stale_packages": packages, "results_dropped": len(old.get("results") or [])}
    return new
