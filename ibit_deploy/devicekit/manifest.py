"""``manifest.json``: the one description of an exported bundle that every stage reads and extends.

Schema (format_version 2)::

    {
      "format_version": 2,
      "created": "2026-11-21T21:00:00Z",
      "source": {"path", "weights_sha256", "config_sha256"},          # the checkpoint it came from
      "model": {"name", "kwargs", "num_params", "attn_mode", "folded"},
      "input": {"name": "images", "shape": ["batch", C, H, W], "dtype": "float32", "layout": "NCHW",
                "image_size": [H, W], "mean": [...], "std": [...], "channel_order": "RGB" | "L"},
      "output": {"name": "logits", "shape": ["batch", num_classes], "dtype": "float32"},
      "classes": [...],
      "artifacts": [{"path", "sha256", "kind": "onnx"|"engine"|"calibration"|"script"|...,
                     "precision": "fp32"|"fp16"|"int8", "opset", "quantization": {...}, "gate": {...},
                     "parity": {...}, engines: "acceptance": {"metric", "min"}, "verification": {...}, ...}],
      "results": [{"artifact", "backend", "accuracy": {...}, "latency": {...}, "machine": {...}}],
      "attention": {"form": "dense"|"flashbias"|"onnx-attention", ...},   # export/flashbias.py, attention_op.py
      "ort_graphs": [{"source", "precision", "path", "status": "written"|"skipped"|"refused", "fusions",
                      "rewrites", "gate", "reason"}],                       # export/ort_graph.py; written ones are artifacts of kind
                                                        # "onnx-ort" with "optimized_from": {"path", "sha256"}
      # --attention onnx-attention: kind "onnx-attention-op" (layout.ATTENTION_OP_KIND), "twin_of": {"path", "sha256"}
      # of its MatMul-form ONNX, its "gate" against that file; engines record "attention_form" and "built_from"
      "tools": {library versions}
    }

Every comparison record (a quantized file's ``gate``, an ONNX file's ``parity``, an engine's ``verification``, a
result's ``accuracy``) uses the names and units of :mod:`ibit_deploy.devicekit.agreement` (fractions). Version 1 wrote
some in percent and under other names; :func:`load_manifest` migrates a version-1 manifest in memory
(:func:`migrate_v1`), so old bundles still load. Typed access: :mod:`.bundle`.

This module is the ONE reader and writer of manifest.json, for ibit-export, every later stage and the device kit
(``build_engine.py`` records its engine through :func:`put_artifact`). It also owns the bundle file checks
(:func:`check_bundle_files`: every artifact path inside the bundle, every sha256 as recorded) and the one lookup of
which ONNX file serves a precision (:func:`onnx_for`).

The manifest is written last (atomically): a bundle without one is incomplete by definition. Writers hold the
bundle's lock (:mod:`.locking`) from reading the manifest to writing it, so no update is lost.
"""

from __future__ import annotations

import copy
import datetime as _dt
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .acceptance import engine_acceptance
from .fileio import atomic_write_json, read_json, sha256_file
from .layout import ATTENTION_OP_KIND, MANIFEST_FILE, ORT_KIND, PRECISIONS
from .locking import directory_lock

FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
# version 1 name -> version 2 name in comparison records (values in percent are converted where marked below)
_V1_RENAMES = {"drop": "top1_drop", "samples": "count", "top1_agreement": "agreement",
               "agreement_top1": "agreement", "max_abs_logit_diff": "max_abs_diff",
               "mean_abs_logit_diff": "mean_abs_diff", "cosine_mean": "cosine"}
_V1_PERCENT = ("top1", "top1_ref", "top1_drop", "agreement", "max_drop", "min_agreement")


def utc_now() -> str:
    """Current UTC time, ISO 8601 with a Z."""
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def artifact_entry(bundle: str | os.PathLike, relpath: str, kind: str, precision: str | None = None,
                   **extra: Any) -> dict[str, Any]:
    """Describe file ``relpath`` of ``bundle`` (its sha256 is computed now)."""
    entry: dict[str, Any] = {"path": relpath, "sha256": sha256_file(Path(bundle) / relpath), "kind": kind}
    if precision is not None:
        entry["precision"] = precision
    entry.update(extra)
    return entry


def set_artifact(manifest: dict[str, Any], entry: dict[str, Any]) -> None:
    """Add ``entry`` to the manifest's artifacts, replacing an earlier entry for the same path."""
    arts = [a for a in manifest.setdefault("artifacts", []) if a["path"] != entry["path"]]
    arts.append(entry)
    manifest["artifacts"] = arts


def find_artifact(manifest: dict[str, Any], kind: str | None = None, precision: str | None = None,
                  path: str | None = None) -> dict[str, Any] | None:
    """The first artifact matching every given field, or None."""
    for art in manifest.get("artifacts", []):
        if (kind is None or art.get("kind") == kind) and (precision is None or art.get("precision") == precision) \
                and (path is None or art["path"] == path):
            return art
    return None


def write_manifest(bundle: str | os.PathLike, manifest: dict[str, Any]) -> Path:
    """Write ``manifest`` into ``bundle`` atomically; call it after every file it lists is in place."""
    manifest.setdefault("format_version", FORMAT_VERSION)
    manifest.setdefault("created", utc_now())
    path = Path(bundle) / MANIFEST_FILE
    atomic_write_json(path, manifest)
    return path


def load_manifest(bundle: str | os.PathLike, verify: bool = True) -> dict[str, Any]:
    """Read a bundle's manifest; with ``verify``, check every listed file exists and matches its sha256."""
    bundle = Path(bundle)
    if not bundle.is_dir():
        raise FileNotFoundError(f"bundle directory not found: {bundle}")
    path = bundle / MANIFEST_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{bundle} has no {MANIFEST_FILE}: the bundle is incomplete (an export that did not "
                                f"finish) or not a bundle written by ibit-export")
    manifest = read_json(path, "bundle manifest")
    manifest = check_format(manifest, path)
    for key in ("input", "artifacts"):
        if key not in manifest:
            raise ValueError(f"{path}: missing required field {key!r}")
    check_bundle_files(bundle, manifest, verify=verify)
    return manifest


def check_format(manifest: Any, path: str | os.PathLike) -> dict[str, Any]:
    """``manifest`` as a version-2 dict (a version-1 one migrated); ValueError naming ``path`` for any other."""
    if not isinstance(manifest, dict) or manifest.get("format_version") not in READABLE_VERSIONS:
        found = manifest.get("format_version") if isinstance(manifest, dict) else type(manifest).__name__
        raise ValueError(f"{path}: expected format_version {' or '.join(map(str, READABLE_VERSIONS))}, "
                         f"found {found!r}")
    if isinstance(manifest["format_version"], bool):
        raise ValueError(f"{path}: expected format_version {' or '.join(map(str, READABLE_VERSIONS))}, found True")
    if manifest["format_version"] == 1:
        manifest = migrate_v1(manifest)
    return manifest


def measured_identity(manifest: dict[str, Any], artifact: str) -> tuple[str, ...] | None:
    """What a result's ``artifact`` was, byte for byte, in ``manifest``: a bundle file's sha256, or for a PyTorch run
    (its ``artifact`` is the source checkpoint's path) the checkpoint's weights and config sha256; None if unknown."""
    art = find_artifact(manifest, path=artifact) if artifact else None
    if art is not None:
        return ("file", str(art.get("sha256")))
    source = manifest.get("source") or {}
    if artifact and source.get("path") == artifact and source.get("weights_sha256"):
        return ("checkpoint", str(source["weights_sha256"]), str(source.get("config_sha256")))
    return None


def carry_results(old: dict[str, Any], new: dict[str, Any]) -> tuple[list[dict[str, Any]], list[str]]:
    """The results of bundle manifest ``old`` still true of ``new`` (what they measured is byte-identical in it), and
    a short reason for each one that is not."""
    kept: list[dict[str, Any]] = []
    dropped: list[str] = []
    for result in old.get("results") or []:
        artifact = str(result.get("artifact") or "") if isinstance(result, dict) else ""
        before, after = measured_identity(old, artifact), measured_identity(new, artifact)
        if before is not None and before == after:
            kept.append(result)
        else:
            why = "not in the new bundle" if after is None else "changed"
            dropped.append(f"{result.get('backend', '?') if isinstance(result, dict) else '?'} on "
                           f"{artifact or '?'} ({why})")
    return kept, dropped


def update_manifest(bundle: str | os.PathLike, *, wait: bool = True, measured_on: dict[str, Any] | None = None,
                    **fields: Any) -> dict[str, Any]:
    """Under the bundle lock: read, update top-level ``fields`` (``results`` are appended), rewrite atomically.

    ``wait``: wait for another writer (saying so on stderr) rather than fail with LockBusy. ``measured_on``: the
    manifest the ``results`` were measured on; results whose artifact has changed since (the bundle was re-exported
    meanwhile) are left out, so no result describes a file it did not measure.
    """
    with directory_lock(bundle, "update manifest", wait=wait):
        manifest = load_manifest(bundle, verify=False)
        for key, value in fields.items():
            if key == "results":
                if measured_on is not None:
                    value = [r for r in value if measured_identity(measured_on, r.get("artifact", "")) ==
                             measured_identity(manifest, r.get("artifact", ""))]
                manifest.setdefault("results", []).extend(value)
            else:
                manifest[key] = value
        write_manifest(bundle, manifest)
    return manifest


def migrate_v1(manifest: dict[str, Any]) -> dict[str, Any]:
    """A version-2 manifest from a version-1 one (a new dict): comparison records renamed and in fractions.

    v1 wrote the quantization gate's ``top1``/``top1_ref``/``drop``/``agreement``/``max_drop``/``min_agreement`` in
    percent, the export parity check as ``max_abs_diff_vs_torch``, the on-device kit's check as ``samples`` /
    ``top1_agreement`` / ``min_top1_agreement``, and ibit-bench results as ``agreement_top1`` /
    ``max_abs_logit_diff``. Engines get the acceptance rule of today's table beside their check.
    """
    out = copy.deepcopy(manifest)
    for art in out.get("artifacts", []):
        if isinstance(art.get("gate"), dict) and art.get("kind") == "onnx":
            art["gate"] = _v1_record(art["gate"], percent=True)
            if isinstance(art["gate"].get("fp16_probe"), dict):
                art["gate"]["fp16_probe"] = _v1_record(art["gate"]["fp16_probe"], percent=True)
        if isinstance(art.get("parity"), dict) and "max_abs_diff_vs_torch" in art["parity"]:
            parity = dict(art["parity"])
            parity["max_abs_diff"] = parity.pop("max_abs_diff_vs_torch")
            parity.setdefault("reference", "torch")
            art["parity"] = parity
        if art.get("kind") == "engine":
            check = art.get("verification")
            if isinstance(check, dict):
                check = _v1_record(check, percent=False)
                check.pop("min_top1_agreement", None)
                art["verification"] = check
            if art.get("precision") in ("fp32", "fp16", "int8"):
                art.setdefault("acceptance", engine_acceptance(art["precision"]))
    for result in out.get("results", []):
        if isinstance(result, dict) and isinstance(result.get("accuracy"), dict):
            result["accuracy"] = _v1_record(result["accuracy"], percent=False)
    out["format_version"] = FORMAT_VERSION
    out["migrated_from"] = 1
    return out


def _v1_record(record: dict[str, Any], percent: bool) -> dict[str, Any]:
    renamed = {_V1_RENAMES.get(key, key): value for key, value in record.items()}
    if percent:
        for key in _V1_PERCENT:
            if isinstance(renamed.get(key), (int, float)) and not isinstance(renamed.get(key), bool):
                renamed[key] = renamed[key] / 100.0
    return renamed


def put_artifact(bundle: str | os.PathLike, entry: dict[str, Any] | None, *, holder: str = "update manifest",
                 **fields: Any) -> dict[str, Any]:
    """Under the bundle lock: read the manifest again, put ``entry`` in place of any entry for its path, set
    top-level ``fields``, rewrite atomically; return the manifest. Results another writer added meanwhile are kept."""
    with directory_lock(bundle, holder):
        manifest = load_manifest(bundle, verify=False)
        if entry is not None:
            set_artifact(manifest, entry)
        manifest.update(fields)
        write_manifest(bundle, manifest)
    return manifest


def check_bundle_files(bundle: str | os.PathLike, manifest: dict[str, Any], *, verify: bool = True,
                       skip: Sequence[str] = ()) -> None:
    """The bundle checks every reader applies: each artifact has a string path and sha256, the path stays inside the
    bundle, and (``verify``) the file exists with that sha256. ``skip``: paths not hashed (a file about to be
    rewritten). Raises ValueError (or FileNotFoundError for a missing file) naming the file.
    """
    bundle = Path(bundle)
    path, root = bundle / MANIFEST_FILE, bundle.resolve()
    artifacts = manifest.get("artifacts")
    if not isinstance(artifacts, list):
        raise ValueError(f"{path}: 'artifacts' must be a list, got {type(artifacts).__name__}")
    for art in artifacts:
        rel = art.get("path") if isinstance(art, dict) else None
        if not isinstance(rel, str) or not isinstance(art.get("sha256"), str):
            raise ValueError(f"{path}: every artifact needs a string 'path' and 'sha256', got {art!r}")
        if not rel or "\0" in rel or Path(rel).is_absolute() or not (bundle / rel).resolve().is_relative_to(root):
            raise ValueError(f"{path}: artifact path {rel!r} points outside the bundle {bundle}; refusing it")
    if not verify:
        return
    for art in artifacts:
        if art["path"] in skip:
            continue
        file = bundle / art["path"]
        if not file.is_file():
            raise FileNotFoundError(f"{path} lists {art['path']}, which is missing from {bundle}")
        digest = sha256_file(file)
        if digest != art["sha256"]:
            raise ValueError(f"{file} was altered after export: sha256 {digest[:12]}... does not match the "
                             f"manifest's {art['sha256'][:12]}...")


def onnx_artifact(manifest: dict[str, Any], precision: str) -> dict[str, Any] | None:
    """The manifest entry of the ONNX file that serves ``precision``, or None: the one precision -> file lookup."""
    return find_artifact(manifest, kind="onnx", precision=precision)


def ort_graph_artifact(manifest: dict[str, Any], source: dict[str, Any]) -> dict[str, Any] | None:
    """The entry of the ONNX Runtime fused twin of ONNX artifact ``source`` (kind ORT_KIND, ``optimized_from`` its
    path and sha256), or None. A twin recorded for other bytes than ``source``'s is not its twin."""
    for art in manifest.get("artifacts", []):
        made_from = art.get("optimized_from") if isinstance(art, dict) else None
        if art.get("kind") == ORT_KIND and isinstance(made_from, dict) and made_from.get("path") == source.get(
                "path") and made_from.get("sha256") == source.get("sha256"):
            return art
    return None


def attention_op_artifact(manifest: dict[str, Any], precision: str) -> dict[str, Any] | None:
    """The entry of the ONNX Attention-op form of ``precision``'s ONNX (kind ATTENTION_OP_KIND, ``twin_of`` that
    file's path and sha256), or None. A form recorded for other bytes than today's MatMul-form file is not its twin."""
    source = onnx_artifact(manifest, precision)
    if source is None:
        return None
    for art in manifest.get("artifacts", []):
        twin_of = art.get("twin_of") if isinstance(art, dict) else None
        if art.get("kind") == ATTENTION_OP_KIND and art.get("precision") == precision and isinstance(twin_of, dict) \
                and twin_of.get("path") == source.get("path") and twin_of.get("sha256") == source.get("sha256"):
            return art
    return None


def onnx_for(manifest: dict[str, Any], precision: str, *, where: str | os.PathLike = MANIFEST_FILE) -> str:
    """The bundle-relative ONNX file of ``precision``; ValueError naming ``where`` and what the bundle has."""
    art = onnx_artifact(manifest, precision)
    if art is None:
        have = sorted({str(a.get("precision", "fp32")) for a in manifest.get("artifacts", [])
                       if isinstance(a, dict) and a.get("kind") == "onnx"})
        how = f" (re-export with --precision {precision})" if precision in PRECISIONS else ""
        raise ValueError(f"{where} lists no {precision} ONNX (it has: {', '.join(have) or 'none'}){how}")
    return str(art["path"])
