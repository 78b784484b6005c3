"""``export_checkpoint``: checkpoint directory -> bundle directory (fold, ONNX, precision variants, target files).

The bundle is built in a staging directory beside ``out`` and swapped in whole (:mod:`.staging`), its manifest
written last: a failed or killed export leaves the previous bundle exactly as it was. What ``out`` may hold, and
which results of a replaced bundle survive, is :mod:`.replacing`'s rule (``--overwrite`` for another checkpoint's
bundle). An export whose accuracy gate fails into a new ``out`` still gets its bundle (so the user can see why), the
failing artifact marked ``"gate": {"passed": false}``; over an existing bundle it changes nothing. Either way the
call raises :class:`ExportFailed`; into a new ``out`` it is :class:`GateFailed`, which carries the written manifest.
"""

from __future__ import annotations

import os
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..checkpoint import checkpoint_fingerprint, library_versions, load_checkpoint
from ..devicekit.agreement import compare_logits
from ..devicekit.auto_build import AUTO
from ..devicekit.build_limits import resolve_limits
from ..devicekit.engine_compat import EngineCompat
from ..devicekit.layout import DEFAULT_ONNX as ONNX_FILES
from ..devicekit.layout import PRECISIONS
from ..devicekit.locking import directory_lock
from ..devicekit.manifest import FORMAT_VERSION, artifact_entry, set_artifact, utc_now, write_manifest
from ..devicekit.profile import check_batch_range
from ..devicekit.staging import clean_leftovers, new_staging, swap_in
from ..errors import ExportFailed, GateFailed
from ..fold import fold_masks, max_fold_error
from ..models.ibit import ibit_attentions
from ..trt.build import EngineTools
from .attention_op import FORM as ATTENTION_OP_FORM
from .flashbias import AttentionOption, attention_report, flashbias_stage, quantize_overrides
from .onnx_export import BATCH_AXIS, DEFAULT_OPSET, INPUT_NAME, MIN_OPSET, OUTPUT_NAME, export_onnx, max_opset
from .preflight import preflight
from .probe import parity_images
from .reference import reference_artifact
from .replacing import carry_over, keep_foreign, previous_bundle

__all__ = ["ExportFailed", "ExportOptions", "ONNX_FILES", "PRECISIONS", "TARGETS", "export_checkpoint",
           "parity_images"]

TARGETS = ("onnx", "tensorrt", "torch-tensorrt")
FOLD_TOLERANCE = 1e-5
PARITY_TOLERANCE = 1e-3  # max |ONNX Runtime - PyTorch| logit difference an fp32 export may show


@dataclass
class ExportOptions:
    """What ``ibit-export`` asks for. ``quantize`` holds the quantization options (see ibit_deploy.quantization)."""

    to: str = "onnx"
    precision: str = "fp32"
    opset: int = DEFAULT_OPSET
    min_batch: int = 1
    opt_batch: int = 8
    max_batch: int = 64
    require_engine: bool = False
    wait: bool = False  # another writer holds the bundle: wait for it (True) or fail at once with LockBusy
    overwrite: bool = False  # replace a bundle of another checkpoint (see export.replacing)
    quantize: dict[str, Any] = field(default_factory=dict)
    attention: str = "dense"  # dense | flashbias[:RANK|:energy=E|:error=X] | onnx-attention (export/flashbias.py)
    # builder limits given on the command line (devicekit/build_limits.py: workspace_mib, optimization_level,
    # aux_streams, tactic_sources, device_class_key); the rest come from the device class of the GPU here
    builder_limits: dict[str, Any] = field(default_factory=dict)
    ort_fusions: bool = True  # fused twins of the ONNX files for the ONNX Runtime backends (export/ort_graph.py)
    # --refittable / --strip-weights: the engine takes a retrained checkpoint's weights without a rebuild
    # (devicekit/refit.py; ``ibit-deploy refit``), optionally shipped without its weights
    refittable: bool = False
    strip_weights: bool = False

    # --engine-compat / --exclude-lean-runtime of the engine built here (devicekit/engine_compat.py)
    engine_compat: str = "none"
    exclude_lean_runtime: bool = False

    @property
    def refit_mode(self) -> str | None:
        """The engine's refit mode (:data:`ibit_deploy.devicekit.refit.REFIT_MODES`), None for a plain engine."""
        return "stripped" if self.strip_weights else "refittable" if self.refittable else None

    @property
    def asked(self) -> list[str]:
        """The --precision list as given (``"fp16,int8"``, or ``"auto"``)."""
        return [p.strip() for p in self.precision.split(",") if p.strip()]

    @property
    def precisions(self) -> list[str]:
        """Every ONNX precision to export; fp32 is always exported as the reference, ``auto`` exports all three."""
        return list(PRECISIONS) if AUTO in self.asked else self.asked

    @property
    def target_precision(self) -> str:
        """The precision of the TensorRT engine / torch-tensorrt program: the last one listed (or ``auto``)."""
        return AUTO if AUTO in self.asked else self.precisions[-1]

    def validate(self) -> None:
        if self.to not in TARGETS:
            raise ValueError(f"--to must be one of {TARGETS}, got {self.to!r}")
        bad = [p for p in self.asked if p not in (*PRECISIONS, AUTO)] or ([] if self.asked else [self.precision])
        if bad:
            raise ValueError(f"--precision must be one or more of {PRECISIONS} (comma-separated) or {AUTO}, got "
                             f"{bad[0]!r}")
        if AUTO in self.asked and (self.to != "tensorrt" or len(self.asked) > 1):
            raise ValueError(f"--precision {AUTO} stands alone and needs --to tensorrt (it picks the TensorRT engine's "
                             f"precision by measurement), got --to {self.to} --precision {self.precision}")
        if self.to == "torch-tensorrt" and self.target_precision == "int8":
            raise ValueError("torch-tensorrt export supports fp32 and fp16 here; for INT8 use --to tensorrt "
                             "(explicit Q/DQ ONNX, strongly typed engine)")
        AttentionOption.parse(self.attention)
        if not MIN_OPSET <= self.opset <= max_opset():
            raise ValueError(f"--opset must be in [{MIN_OPSET}, {max_opset()}] (what the ONNX exporter here supports), "
                             f"got {self.opset}")
        if self.require_engine and self.to == "onnx":
            raise ValueError("--require-engine needs --to tensorrt or --to torch-tensorrt (--to onnx builds no engine)")
        check_batch_range(self.min_batch, self.opt_batch, self.max_batch)
        if (self.refittable or self.strip_weights) and self.to != "tensorrt":
            raise ValueError(f"--refittable / --strip-weights describe a TensorRT engine: they need --to tensorrt, got "
                             f"--to {self.to}")
        if self.strip_weights and not self.refittable:
            raise ValueError("--strip-weights ships the engine without its weights, refitted on the device from the "
                             "bundle's ONNX: it needs --refittable")
        if (why := EngineCompat(self.engine_compat, self.exclude_lean_runtime).refit_refusal(self.refit_mode)):
            raise ValueError(why)
        if self.refittable and AUTO in self.asked:
            raise ValueError(f"--refittable needs one engine precision (the refit replaces that engine's weights); "
                             f"--precision {AUTO} picks among three: give fp32, fp16 or int8")
        if self.builder_limits:
            if self.to != "tensorrt":
                raise ValueError(f"builder limits (--workspace-mib, --builder-optimization-level, --aux-streams, "
                                 f"--tactic-sources, --device-class) need --to tensorrt, got --to {self.to}")
            resolve_limits(None, **self.builder_limits)  # ValueError naming a bad value, before anything is written
        compat = EngineCompat(self.engine_compat, self.exclude_lean_runtime).check()
        if compat != EngineCompat() and self.to != "tensorrt":
            raise ValueError(f"--engine-compat / --exclude-lean-runtime need --to tensorrt, got --to {self.to}")
        if compat.exclude_lean_runtime and self.target_precision == AUTO:
            raise ValueError("--exclude-lean-runtime with --precision auto: every candidate is checked by running it, "
                             "which needs the lean runtime library; run the bundle's build_engine.py --precision auto "
                             "--exclude-lean-runtime --lean-runtime PATH on the device instead")


def input_description(config: dict[str, Any], model: torch.nn.Module, options: ExportOptions) -> dict[str, Any]:
    """The manifest's ``input`` block, from what the checkpoint recorded (never guessed from the model alone)."""
    inp = config.get("input", {})
    data = config.get("data", {})
    # the model is asked only when the checkpoint recorded nothing (CNN teachers have no patch_embed)
    chans = int(inp.get("in_chans") or data.get("channels") or model.patch_embed.proj.in_channels)
    size = inp.get("image_size") or data.get("image_size") or list(model.patch_embed.img_size)
    height, width = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    mean = list(inp.get("mean") or data.get("mean") or model.pretrained_cfg["mean"])
    std = list(inp.get("std") or data.get("std") or model.pretrained_cfg["std"])
    return {
        "name": INPUT_NAME, "shape": [BATCH_AXIS, chans, height, width], "dtype": "float32", "layout": "NCHW",
        "image_size": [height, width], "mean": mean, "std": std, "channel_order": "L" if chans == 1 else "RGB",
        "value_range": "uint8 pixels / 255, then (x - mean) / std",
        "batch_range": [options.min_batch, options.max_batch], "opt_batch": options.opt_batch,
    }


def export_checkpoint(checkpoint: str | os.PathLike, out: str | os.PathLike,
                      options: ExportOptions | None = None, progress=None,
                      engine_tools: EngineTools | None = None) -> dict[str, Any]:
    """Export a checkpoint directory into bundle ``out``; returns the manifest (also written to out/manifest.json).

    The bundle is locked for the whole export, staging and swap included (:mod:`ibit_deploy.devicekit.locking`): another
    writer makes this call fail at once with LockBusy naming it, or, with ``options.wait``, wait for it. Leftovers
    of dead exports beside ``out`` are cleaned up first. ``progress`` is an optional callable taking a stage name,
    for progress bars; ``engine_tools`` builds and verifies a TensorRT engine (tests pass fakes). A replaced bundle
    is described in the returned manifest's ``export.replaced``.
    """
    options = options or ExportOptions()
    options.validate()
    out = Path(out)
    if out.is_symlink():
        out = out.resolve()  # the swap replaces the directory the link points to, not the link
    if out.resolve().name in ("", ".", ".."):
        raise IsADirectoryError(f"--out {out} is not a usable bundle folder; give a new or empty folder, or a bundle")
    step = progress or (lambda stage: None)
    step("load checkpoint")
    fingerprint = checkpoint_fingerprint(checkpoint) if Path(checkpoint).is_dir() else None
    model, config = load_checkpoint(checkpoint)
    # every input check that can fail, then whether what --out holds may be replaced at all: before the lock, so a
    # refused export writes nothing, not even the lock file beside --out; the latter is asked again under the lock
    preflight(model, config, checkpoint, options)
    previous_bundle(out, fingerprint, options.overwrite)
    with directory_lock(out, "ibit-export", wait=options.wait):
        for note in clean_leftovers(out):
            warnings.warn(note, stacklevel=2)
        return _export_locked(checkpoint, out, options, step, engine_tools, fingerprint, model, config)


def _export_locked(checkpoint: str | os.PathLike, out: Path, options: ExportOptions, step,
                   engine_tools: EngineTools | None, fingerprint: dict[str, str] | None, model: torch.nn.Module,
                   config: dict[str, Any]) -> dict[str, Any]:
    previous = previous_bundle(out, fingerprint, options.overwrite)
    staging = new_staging(out)
    try:
        manifest, failures = _build(checkpoint, staging, out, fingerprint, model, config, options, step,
                                    engine_tools)
        if failures and previous is not None:  # a failed export never replaces a bundle
            raise ExportFailed("accuracy gate failed: " + "; ".join(failures) + f"; the bundle in {out} is unchanged")
        if previous is not None:
            manifest["export"]["replaced"] = carry_over(previous, out, manifest, staging)
            kept, packages = keep_foreign(previous, out, staging)
            manifest["export"]["replaced"].update(kept=kept, packages=packages)
        step("write manifest")
        write_manifest(staging, manifest)
        swap_in(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if failures:
        raise GateFailed("accuracy gate failed (the manifest marks it): " + "; ".join(failures), manifest)
    return manifest


def _build(checkpoint: str | os.PathLike, out: Path, shown: Path, fingerprint: dict[str, str] | None,
           model: torch.nn.Module, config: dict[str, Any], options: ExportOptions, step,
           engine_tools: EngineTools | None) -> tuple[dict[str, Any], list[str]]:
    """Every file of the bundle into ``out`` (the staging directory; messages name ``shown``, the bundle's real
    place); returns the manifest, not yet written, and the failed gates."""
    inp = input_description(config, model, options)
    chw = tuple(inp["shape"][1:])

    step("fold masks")
    folded = fold_masks(model)
    probe, probe_kind = parity_images({"input": inp, "data": config.get("data", {})})
    fold_error = max_fold_error(model, folded, probe)
    if fold_error > FOLD_TOLERANCE:
        raise ExportFailed(f"folded model differs from the trained one by {fold_error:.3g} (> {FOLD_TOLERANCE})")

    attention = AttentionOption.parse(options.attention)
    attention_block: dict[str, Any] = {"form": "dense"}
    if attention.form == "flashbias":
        step("flashbias")
        folded, attention_block = flashbias_stage(folded, {"input": inp, "data": config.get("data", {})}, attention,
                                                  options.quantize.get("max_drop"), options.quantize.get("eval_count"),
                                                  options.quantize.get("data"))

    classes = list(config.get("classes") or [str(i) for i in range(model.num_classes)])
    attentions = ibit_attentions(model)
    manifest: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "created": utc_now(),
        "source": fingerprint,
        "model": {
            "name": config["model"]["name"], "kwargs": config["model"].get("kwargs", {}),
            "num_params": sum(p.numel() for p in model.parameters()),
            "attn_mode": attentions[0].mode if attentions else "timm",
            "folded": bool(attentions), "fold_max_abs_diff": fold_error,
        },
        "input": inp,
        "output": {"name": OUTPUT_NAME, "shape": [BATCH_AXIS, len(classes)], "dtype": "float32"},
        "classes": classes,
        "data": config.get("data", {}),
        "artifacts": [],
        "results": [],
        "tools": library_versions(),
        "export": {"to": options.to, "precision": options.precision, "opset": options.opset,
                   "attention": str(attention),
                   # the device kit builds its engine with the same compatibility unless told otherwise
                   **({"engine_compat": compat.record()} if (compat := EngineCompat(
                       options.engine_compat, options.exclude_lean_runtime)) != EngineCompat() else {}),
                   # what `ibit-deploy refit` re-exports a retrained checkpoint with (export/refit.py)
                   **({"refittable": True, "strip_weights": options.strip_weights, "quantize": options.quantize,
                       "ort_fusions": options.ort_fusions} if options.refittable else {})},
    }

    step("export ONNX fp32")
    metadata = {"ibit_deploy.model": manifest["model"]["name"], "ibit_deploy.classes": ",".join(classes),
                "ibit_deploy.mean": ",".join(map(str, inp["mean"])), "ibit_deploy.std": ",".join(map(str, inp["std"])),
                "ibit_deploy.image_size": "x".join(map(str, inp["image_size"])), "ibit_deploy.layout": "NCHW"}
    export_onnx(folded, out / ONNX_FILES["fp32"], chw, opset=options.opset, metadata=metadata)
    set_artifact(manifest, artifact_entry(out, ONNX_FILES["fp32"], "onnx", "fp32", opset=options.opset,
                                          parity=_ort_parity(out / ONNX_FILES["fp32"], folded, probe, probe_kind,
                                                             shown / ONNX_FILES["fp32"])))
    step("reference outputs")
    set_artifact(manifest, reference_artifact(out, model, inp, config.get("data", {})))

    failures: list[str] = []
    if attention.form == ATTENTION_OP_FORM:  # the exact ONNX Attention-op twin of model.onnx (TensorRT >= 10.14)
        step("ONNX Attention op")
        entry, attention_block = _attention_op(out, manifest, folded, config, options, metadata, shown)
        set_artifact(manifest, entry)
        if not entry["gate"]["passed"]:
            failures.append(f"{entry['path']} (ONNX Attention op vs {ONNX_FILES['fp32']}): {entry['gate']['reason']}")
    if not attention_block.get("gate", {"passed": True})["passed"]:
        failures.append(f"{ONNX_FILES['fp32']} (flashbias vs dense bias): {attention_block['gate']['reason']}")
    for precision in dict.fromkeys(p for p in options.precisions if p != "fp32"):
        step(f"quantize {precision}")
        from ..quantization import quantize_artifact

        for entry in quantize_artifact(out, manifest, precision,
                                       {**quantize_overrides(attention_block), **options.quantize},
                                       lock=False):  # private staging
            set_artifact(manifest, entry)
            gate = entry.get("gate")
            if gate is not None and not gate.get("passed", False):
                failures.append(f"{entry['path']}: {gate.get('reason', 'accuracy gate failed')}")

    if attention.form == ATTENTION_OP_FORM and "fp16" in options.precisions and not failures:
        # the fp16 twin of model.fp16.onnx (export/attention_op.py), once both its sources passed their gates
        step("ONNX Attention op fp16")
        from .attention_op import fp16_attention_op_stage

        entry = fp16_attention_op_stage(out, manifest, {**quantize_overrides(attention_block), **options.quantize},
                                        progress=step, shown=shown)
        set_artifact(manifest, entry)
        attention_block["attention_op"]["fp16"] = {"path": entry["path"], "passed": entry["gate"]["passed"],
                                                   "reason": entry["gate"].get("reason")}
        if not entry["gate"]["passed"]:
            failures.append(f"{entry['path']} (fp16 ONNX Attention op): {entry['gate'].get('reason')}")

    if options.ort_fusions:
        _ort_graphs(out, manifest, model, config, options, step)

    if options.to == "tensorrt":
        step("tensorrt")
        from .targets import tensorrt_target

        manifest["tensorrt"] = tensorrt_target(out, manifest, options, engine_tools, shown=shown)
        if manifest["tensorrt"]["status"] == "no-engine-passed":  # --precision auto: every candidate failed
            failures.append(manifest["tensorrt"]["reason"])
    elif options.to == "torch-tensorrt":
        step("torch-tensorrt")
        from .targets import torch_tensorrt_target

        manifest["torch_tensorrt"] = torch_tensorrt_target(out, manifest, folded, options, shown=shown)

    # every artifact that carries a failed gate (quantized ONNX, a built engine) fails the export
    failures += [f"{a['path']}: {a['gate'].get('reason', 'check failed')}" for a in manifest["artifacts"]
                 if a.get("gate") and not a["gate"].get("passed", False) and a["kind"] != "onnx"]
    if fingerprint != checkpoint_fingerprint(checkpoint):
        raise ExportFailed(f"{checkpoint} changed while it was being exported (is training still writing it?); "
                           f"export again once it is finished")

    manifest["attention"] = attention_report(out, manifest, attention_block)
    return manifest, failures


def _attention_op(out: Path, manifest: dict[str, Any], folded: torch.nn.Module, config: dict[str, Any],
                  options: ExportOptions, metadata: dict[str, str], shown: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The Attention-op stage (:mod:`.attention_op`), gated on the quantization gates' images."""
    from ..quantization.artifact import QuantizeOptions
    from .attention_op import attention_op_stage
    from .probe import probe_images

    quantize = QuantizeOptions.from_dict(options.quantize)
    probe = probe_images({"input": manifest["input"], "data": config.get("data", {})}, quantize.eval_count,
                         spec=quantize.data)
    return attention_op_stage(out, manifest, folded, probe, metadata=metadata, threads=quantize.threads, shown=shown)


def _ort_graphs(out: Path, manifest: dict[str, Any], model: torch.nn.Module, config: dict[str, Any],
                options: ExportOptions, step) -> None:
    """The ORT-graph stage (:mod:`.ort_graph`): fused twins of the ONNX files into ``out`` and the manifest, gated
    against their sources on the quantization gates' images and drop budget."""
    from ..quantization.artifact import QuantizeOptions
    from .ort_graph import ort_graph_stage
    from .probe import probe_images

    quantize = QuantizeOptions.from_dict(options.quantize)
    probe = probe_images({"input": manifest["input"], "data": config.get("data", {})}, quantize.eval_count,
                         spec=quantize.data)
    attn = getattr(getattr(model, "blocks", [None])[0], "attn", None)
    entries, records = ort_graph_stage(out, manifest, probe, num_heads=int(getattr(attn, "num_heads", 0) or 0),
                                       hidden_size=int(getattr(model, "embed_dim", 0) or 0),
                                       max_drop=float(quantize.max_drop), fp32_max_abs_diff=PARITY_TOLERANCE,
                                       threads=quantize.threads, step=step)
    for entry in entries:
        set_artifact(manifest, entry)
    manifest["ort_graphs"] = records


def _ort_parity(onnx_path: Path, folded: torch.nn.Module, probe: torch.Tensor, probe_kind: str,
                shown: Path) -> dict[str, Any]:
    """ONNX Runtime against PyTorch on ``probe`` (devicekit.agreement names; a cheap self-check of every export)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    ours = session.run(None, {INPUT_NAME: probe.numpy()})[0]
    with torch.no_grad():
        ref = folded(probe).numpy()
    metrics = compare_logits(ref, ours)
    diff = metrics["max_abs_diff"]
    if diff is None or diff > PARITY_TOLERANCE:
        raise ExportFailed(f"{shown}: ONNX Runtime output differs from PyTorch by {diff if diff is None else f'{diff:.3g}'}"
                           f" (> {PARITY_TOLERANCE})")
    return {"backend": "ort-cpu", "reference": "torch", **metrics, "inputs": probe_kind}
