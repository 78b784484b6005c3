"""``quantize_artifact``: the export pipeline's quantization stage, bundle in, gated artifacts out.

For ``int8``: build ``calib.npz`` from training images, quantize ``model.onnx`` to ``model.int8.onnx`` (optionally
searching which layers to keep float), and gate it against ``model.onnx`` on held-out validation images. For
``fp16``: convert to ``model.fp16.onnx`` and gate it the same way, plus a bit-faithful fp16 probe on a few images
(ONNX Runtime CPU computes many fp16 ops in fp32 and would hide an overflow; see :mod:`.emulate`).

A failed gate is recorded, not raised: the pipeline marks the manifest and fails the export. Bad input raises.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..calibration import CalibrationRecipe, calibrate, check_count, load_calibration, load_recipe
from ..data.eval_split import EvalSet
from ..data.fit import ModelInput, check_data_fits
from ..devicekit.layout import DEFAULT_CALIBRATION, DEFAULT_ONNX
from ..devicekit.manifest import artifact_entry
from ..devicekit.profile import InputSpec
from .config import Fp16Config, Int8Config
from .emulate import PROBE_MIN_COSINE, emulate_logits
from .gate import AccuracyGate, compare_logits, run_logits

FILES = {"fp16": DEFAULT_ONNX["fp16"], "int8": DEFAULT_ONNX["int8"], "calibration": DEFAULT_CALIBRATION,
         "reference": DEFAULT_ONNX["fp32"]}


@dataclass
class QuantizeOptions:
    """What ``ibit-export --precision fp16|int8`` may set (every key optional; ``None`` means "default").

    Attributes:
        data: dataset spec for calibration and the gate (default: the manifest's ``data.spec``).
        recipe: a calibration recipe JSON (``calibration/*.json``); explicit options below override it.
        calib_count, calib_split, calib_seed: the calibration selection (training split by default).
        method, percentile, per_channel, op_types, include, exclude: see :class:`.Int8Config`.
        max_drop: the gate's allowed top-1 drop (a fraction: 0.01 is one point); min_agreement: optional top-1
            agreement floor (a fraction).
        auto: search the layers to keep in float (``auto_exclude``) until the gate passes; max_float bounds it.
        eval_count: validation images for the gate (default 1000, or the whole val split when smaller).
        keep_fp32, keep_io_types, fp16_probe: see :class:`.Fp16Config`; fp16_probe is how many images the
            bit-faithful fp16 probe runs (0 disables it).
        fp16_keep_op_types: :attr:`.Fp16Config.keep_op_types` (``None``: its default); the FlashBias export sets it.
        threads: ONNX Runtime intra-op threads for the gate (0: ORT's default).
    """

    data: str | None = None
    recipe: str | None = None
    calib_count: int | None = None
    calib_split: str | None = None
    calib_seed: int | None = None
    method: str | None = None
    percentile: float | None = None
    per_channel: bool | None = None
    op_types: list[str] | None = None
    include: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)
    max_drop: float = 0.01
    min_agreement: float | None = None
    auto: bool = False
    max_float: int | None = None
    eval_count: int = 1000
    keep_fp32: list[str] = field(default_factory=list)
    keep_io_types: bool = True
    fp16_probe: int = 4
    fp16_keep_op_types: list[str] | None = None
    threads: int = 0

    @classmethod
    def from_dict(cls, options: dict[str, Any] | None) -> QuantizeOptions:
        """Build from the pipeline's ``options`` dict; unknown keys raise, ``None`` values mean the default."""
        options = {k: v for k, v in (options or {}).items() if v is not None}
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ValueError(f"unknown quantization option(s) {unknown}; expected a subset of {sorted(known)}")
        for key in ("include", "exclude", "keep_fp32", "op_types", "fp16_keep_op_types"):
            if isinstance(options.get(key), str):
                options[key] = [p for p in options[key].split(",") if p]  # CLI convenience: "a,b"
        opts = cls(**options)
        if isinstance(opts.eval_count, bool) or not isinstance(opts.eval_count, int) or opts.eval_count < 1:
            raise ValueError(f"eval_count must be a positive integer, got {opts.eval_count!r}")
        return opts

    def recipe_for(self, spec: str, data: dict[str, Any]) -> CalibrationRecipe:
        """The calibration recipe: the recipe file (if any) overridden by explicit options and the manifest's split."""
        base = load_recipe(self.recipe).to_dict() if self.recipe else {}
        split = EvalSet.from_manifest({"data": data})
        base.update({"spec": spec, "val_fraction": split.val_fraction, "split_seed": split.seed})
        for key, value in (("count", self.calib_count), ("split", self.calib_split), ("seed", self.calib_seed),
                           ("method", self.method), ("percentile", self.percentile)):
            if value is not None:
                base[key] = value
        base.pop("input", None)  # the manifest's input block is the authority on preprocessing
        if self.calib_count is not None:  # name the option the user set, not the recipe field it fills
            check_count(self.calib_count, base.get("method", CalibrationRecipe.method), "--calib-count")
        return CalibrationRecipe.from_dict(base, source=str(self.recipe or "quantization options"))

    def int8_config(self, recipe: CalibrationRecipe) -> Int8Config:
        kwargs: dict[str, Any] = {"method": recipe.method, "percentile": recipe.percentile,
                                  "include": self.include, "exclude": self.exclude,
                                  "calibration_count": recipe.count, "seed": recipe.seed}
        if self.per_channel is not None:
            kwargs["per_channel"] = self.per_channel
        if self.op_types is not None:
            kwargs["op_types"] = self.op_types
        return Int8Config(**kwargs)


def check_quantize_options(options: dict[str, Any] | None, precisions: list[str], data: dict[str, Any]) -> None:
    """Raise ValueError/FileNotFoundError for quantization options that would fail later, before anything is written.

    Builds what :func:`quantize_artifact` builds from the options (the recipe, the int8 config) and loads the dataset
    it would read (``options['data']`` or the checkpoint's ``data.spec``), so a bad count, method or data spec fails
    while the previous bundle is untouched.
    """
    wanted = [p for p in precisions if p in ("fp16", "int8")]
    if not wanted:
        return
    from ..data.datasets import load_source

    opts = QuantizeOptions.from_dict(options)
    spec = opts.data or data.get("spec")
    if not spec:
        raise ValueError("quantization needs real images: the checkpoint records no data spec; pass --data SPEC")
    load_source(spec)
    if "int8" in wanted:
        opts.int8_config(opts.recipe_for(spec, data))


def _eval_set(spec: str, manifest: dict[str, Any], count: int) -> tuple[np.ndarray, np.ndarray, str]:
    eval_set = EvalSet.from_manifest(manifest, spec)
    images, labels = eval_set.arrays("val", InputSpec.from_manifest(manifest), limit=count)
    return images, labels, eval_set.describe(len(labels))


def quantize_artifact(bundle: str | Path, manifest: dict[str, Any], precision: str,
                      options: dict[str, Any] | None = None, progress=None, *,
                      lock: bool = True) -> list[dict[str, Any]]:
    """Write the ``precision`` variant of ``bundle/model.onnx`` into the bundle and return its manifest entries.

    ``lock``: hold the bundle's lock meanwhile; False only for a directory no one else can know of (an export's
    staging directory, whose bundle the export already holds locked).

    Returns ``[calibration entry, int8 entry]`` for int8 and ``[fp16 entry]`` for fp16; each ONNX entry carries
    ``quantization`` (the config), ``gate`` (see :class:`.AccuracyGate`) and ``float_nodes``.
    """
    if precision not in ("fp16", "int8"):
        raise ValueError(f"quantize_artifact: precision must be 'fp16' or 'int8', got {precision!r}")
    from ..devicekit.locking import directory_lock

    if not lock:
        return _quantize_locked(Path(bundle), manifest, precision, options, progress)
    with directory_lock(bundle, "quantize"):  # re-entrant: inside a lock this process holds this only counts
        return _quantize_locked(Path(bundle), manifest, precision, options, progress)


def _quantize_locked(bundle: Path, manifest: dict[str, Any], precision: str, options: dict[str, Any] | None,
                     progress) -> list[dict[str, Any]]:
    reference = bundle / FILES["reference"]
    if not reference.is_file():
        raise FileNotFoundError(f"{bundle} has no {FILES['reference']} to quantize (export the fp32 model first)")
    opts = QuantizeOptions.from_dict(options)
    step = progress or (lambda message: None)
    spec = opts.data or manifest.get("data", {}).get("spec")
    if not spec:
        raise ValueError("quantization needs real images: the manifest records no data spec; pass options['data'] "
                         "(e.g. 'mnist5k' or 'imagefolder:DIR')")
    if opts.data:  # another dataset than the one the model was trained on: it must fit the model
        check_data_fits(spec, ModelInput.from_manifest(manifest, f"bundle {bundle}"))
    input_spec = InputSpec.from_manifest(manifest)
    images, labels, described = _eval_set(spec, manifest, opts.eval_count)
    gate = AccuracyGate(max_drop=float(opts.max_drop), min_agreement=opts.min_agreement)
    step("reference logits")
    ref_logits = run_logits(reference, images, input_spec, threads=opts.threads)
    opset = manifest.get("export", {}).get("opset")
    if precision == "fp16":
        return [_fp16_entry(bundle, opts, images, labels, described, gate, input_spec, ref_logits, opset, step)]
    return _int8_entries(bundle, manifest, opts, spec, images, labels, described, gate, input_spec, ref_logits, step)


def _fp16_entry(bundle: Path, opts: QuantizeOptions, images: np.ndarray, labels: np.ndarray, described: str,
                gate: AccuracyGate, input_spec: InputSpec, ref_logits: np.ndarray, opset: int | None,
                step) -> dict[str, Any]:
    config, report, record = _fp16_converted(bundle / FILES["reference"], bundle / FILES["fp16"], opts, images,
                                             labels, described, gate, input_spec, ref_logits, step)
    return artifact_entry(bundle, FILES["fp16"], "onnx", "fp16", opset=opset, quantization=config.to_dict(),
                          gate=record, float_nodes=report["fp32_nodes"], conversion=report)


def fp16_twin(bundle: str | Path, manifest: dict[str, Any], source: str, dest: str,
              options: dict[str, Any] | None = None, progress=None) -> tuple[Fp16Config, dict[str, Any], dict[str, Any]]:
    """Convert another fp32 form of the bundle's model (``source``, e.g. the ONNX Attention-op form) to fp16 as
    ``dest`` exactly as ``model.fp16.onnx`` is made (the same :class:`.Fp16Config` from ``options``) and gate it the
    same way (ONNX Runtime CPU on the eval set against ``model.onnx``'s logits and the labels, plus the bit-faithful
    fp16 probe); returns (the config, the conversion report, the gate record). For a private staging directory
    (no lock is taken)."""
    bundle, opts = Path(bundle), QuantizeOptions.from_dict(options)
    spec = opts.data or manifest.get("data", {}).get("spec")
    if not spec:
        raise ValueError("the fp16 gate needs real images: the manifest records no data spec; pass options['data']")
    input_spec = InputSpec.from_manifest(manifest)
    images, labels, described = _eval_set(spec, manifest, opts.eval_count)
    ref_logits = run_logits(bundle / FILES["reference"], images, input_spec, threads=opts.threads)
    gate = AccuracyGate(max_drop=float(opts.max_drop), min_agreement=opts.min_agreement)
    return _fp16_converted(bundle / source, bundle / dest, opts, images, labels, described, gate, input_spec,
                           ref_logits, progress or (lambda message: None))


def _fp16_converted(source: Path, dest: Path, opts: QuantizeOptions, images: np.ndarray, labels: np.ndarray,
                    described: str, gate: AccuracyGate, input_spec: InputSpec, ref_logits: np.ndarray,
                    step) -> tuple[Fp16Config, dict[str, Any], dict[str, Any]]:
    """THE fp16 conversion and gate: ``source`` -> ``dest``; returns (config, conversion report, gate record)."""
    from .fp16 import convert_fp16

    config = Fp16Config(keep_io_types=opts.keep_io_types, keep_fp32=opts.keep_fp32,
                        **({} if opts.fp16_keep_op_types is None else {"keep_op_types": opts.fp16_keep_op_types}))
    step("convert fp16")
    report = convert_fp16(source, dest, config)
    logits = run_logits(dest, images, input_spec, threads=opts.threads)
    record = gate.check(compare_logits(ref_logits, logits, labels))
    record["images"] = described
    record["backend"] = "ort-cpu"
    if opts.fp16_probe > 0:
        step("fp16 probe")
        n = min(opts.fp16_probe, len(images))
        probe = compare_logits(ref_logits[:n], emulate_logits(dest, images[:n]), labels[:n])
        probe_ok = not probe["nonfinite"] and probe["cosine_min"] is not None and probe["cosine_min"] >= PROBE_MIN_COSINE
        record["fp16_probe"] = {"backend": "onnx-reference (numpy, fp16 as typed)", "min_cosine": PROBE_MIN_COSINE,
                                "passed": probe_ok, **{k: probe[k] for k in ("count", "agreement", "max_abs_diff",
                                                                           "cosine_min", "nonfinite")}}
        if not probe_ok:
            record["passed"] = False
            record["reason"] = (f"bit-faithful fp16 probe: logits diverge from fp32 (min cosine "
                                f"{probe['cosine_min']}, {probe['nonfinite']} non-finite) - an fp16 overflow that "
                                f"ONNX Runtime CPU hides; keep more of the graph in fp32 (keep_fp32)")
    return config, report, record


def _int8_entries(bundle: Path, manifest: dict[str, Any], opts: QuantizeOptions, spec: str, images: np.ndarray,
                  labels: np.ndarray, described: str, gate: AccuracyGate, input_spec: InputSpec,
                  ref_logits: np.ndarray, step) -> list[dict[str, Any]]:
    from .int8 import quantize_int8
    from .sensitivity import auto_exclude

    recipe = opts.recipe_for(spec, manifest.get("data", {}))
    config = opts.int8_config(recipe)
    step("calibration set")
    calibrate(bundle / FILES["calibration"], recipe, manifest["input"])
    calibration, calib_meta = load_calibration(bundle / FILES["calibration"], InputSpec.from_manifest(manifest).chw,
                                               config.method)
    calib_entry = artifact_entry(bundle, FILES["calibration"], "calibration", "int8",
                                 **{k: calib_meta[k] for k in ("spec", "split", "seed", "split_seed", "count",
                                                               "requested_count", "method", "images_sha256")})
    auto = None
    if opts.auto:
        step("auto: per-layer sensitivity")
        auto = auto_exclude(bundle / FILES["reference"], calibration, images, labels, input_spec, config, gate,
                            max_float=opts.max_float, threads=opts.threads, progress=step)
    step("quantize int8")
    report = quantize_int8(bundle / FILES["reference"], bundle / FILES["int8"], calibration, config,
                           extra_float=auto["float_nodes"] if auto else ())
    logits = run_logits(bundle / FILES["int8"], images, input_spec, threads=opts.threads)
    record = gate.check(compare_logits(ref_logits, logits, labels))
    record["images"] = described
    record["backend"] = "ort-cpu"
    extra: dict[str, Any] = {}
    if auto is not None:
        extra["auto"] = {"float_nodes": auto["float_nodes"],
                         "float_layers": [auto["layers"].get(n, n) for n in auto["float_nodes"]],
                         "passed": auto["passed"], "sensitivity": auto["sensitivity"], "steps": auto["steps"]}
    entry = artifact_entry(bundle, FILES["int8"], "onnx", "int8", opset=report["opset"],
                           quantization=config.to_dict(), gate=record, float_nodes=report["float_nodes"],
                           float_reasons=report["float_reasons"], quantized_nodes=report["quantized_nodes"],
                           layers=report["layers"], qdq=report["qdq"], calibration=FILES["calibration"], **extra)
    return [calib_entry, entry]
