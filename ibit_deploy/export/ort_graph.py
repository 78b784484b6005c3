"""The export's ORT-graph stage: each ONNX file of the bundle gets a fused twin for the ONNX Runtime backends.

For every ONNX file the export wrote and that passed its own gate (``model.onnx``, ``model.fp16.onnx``,
``model.int8.onnx``), :func:`~.ort_fusions.fuse_for_ort` writes ``model[.fp16|.int8].ort.onnx``
(``devicekit.layout.ORT_ONNX``), which is then gated against its source like every artifact: both run on ONNX Runtime
CPU over the same probe images (real validation images where readable, :func:`.probe.probe_images`), through
:class:`~ibit_deploy.quantization.gate.AccuracyGate` (top-1 drop against the source's labels, finite logits) and,
where the caller gives one, a bound on the largest logit difference (the export's fp32 parity tolerance: a fusion
of fp32 ops is a rewrite of the same arithmetic).

A fused graph is listed (manifest kind ``devicekit.layout.ORT_KIND``, with ``optimized_from``, the fusions and
rewrites applied and its ``gate``) only when it passed. One that no fusion or rewrite changes is skipped, and one
that fails its gate, or that the optimizer cannot rewrite, is refused and deleted: the ONNX Runtime backends then run the plain graph, and the
manifest's ``ort_graphs`` block records why for every file. A refused graph does not fail the export (the plain
graph it would have replaced is there and gated).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..devicekit.acceptance import artifact_verdict
from ..devicekit.agreement import compare_logits
from ..devicekit.layout import ORT_KIND, ORT_ONNX
from ..devicekit.manifest import artifact_entry
from ..devicekit.profile import InputSpec
from .ort_fusions import fuse_for_ort
from .probe import ProbeImages

# what fuse_for_ort's record keeps in the manifest entry (the per-op counts before and after go to ort_graphs)
_ENTRY_KEYS = ("tool", "onnxruntime", "model_type", "opt_level", "num_heads", "hidden_size", "disabled")


def ort_graph_stage(bundle: Path, manifest: dict[str, Any], probe: ProbeImages, *, num_heads: int, hidden_size: int,
                    max_drop: float, fp32_max_abs_diff: float | None = None, threads: int = 0,
                    step=None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The fused artifacts' manifest entries (only those that passed) and one ``ort_graphs`` record per ONNX file.

    ``manifest`` is the export's manifest so far (its ``onnx`` artifacts are the sources); ``probe`` the images
    the gates run on; ``max_drop`` the top-1 drop allowed against the source (a fraction); ``fp32_max_abs_diff``
    bounds the logit difference of the fp32 graph; ``threads`` ONNX Runtime's intra-op threads for the gates.
    """
    from ..quantization.gate import AccuracyGate, run_logits  # lazy: loads onnxruntime

    spec = InputSpec.from_manifest(manifest)
    images = probe.images.numpy()
    entries: list[dict[str, Any]] = []
    records: list[dict[str, Any]] = []
    for source in [a for a in manifest["artifacts"] if a.get("kind") == "onnx"]:
        precision = str(source.get("precision", "fp32"))
        record: dict[str, Any] = {"source": source["path"], "precision": precision, "path": ORT_ONNX[precision]}
        records.append(record)
        if artifact_verdict(source, manifest).failed:
            record.update(status="skipped", reason=f"{source['path']} failed its own gate")
            continue
        if step:
            step(f"ORT fusions {precision}")
        target = bundle / ORT_ONNX[precision]
        try:
            report = fuse_for_ort(bundle / source["path"], target, num_heads=num_heads, hidden_size=hidden_size)
        except Exception as exc:  # noqa: BLE001  (the optimizer's failure is recorded; the plain graph serves)
            target.unlink(missing_ok=True)
            record.update(status="refused", reason=f"the optimizer failed: {type(exc).__name__}: {exc}")
            continue
        record.update(fusions=report["fusions"], rewrites=report["rewrites"], ops_before=report["ops_before"],
                      ops_after=report["ops_after"])
        if not report["fusions"] and not report["rewrites"]:
            target.unlink()
            record.update(status="skipped", reason="no fusion or rewrite applies to this graph")
            continue
        ref = run_logits(bundle / source["path"], images, spec, threads=threads)
        ours = run_logits(target, images, spec, threads=threads)
        labels = probe.labels if probe.real else ref.argmax(1)
        gate = AccuracyGate(max_drop=max_drop).check(compare_logits(ref, ours, labels))
        gate.update(images=probe.description, real_images=probe.real, backend="ort-cpu", reference=source["path"])
        if not probe.real:
            gate["labels"] = f"{source['path']}'s top-1 (random inputs have none)"
        bound = fp32_max_abs_diff if precision == "fp32" else None
        if bound is not None:
            gate["max_abs_diff_allowed"] = bound
            if gate["max_abs_diff"] is None or gate["max_abs_diff"] > bound:
                gate["passed"] = False
                gate["reason"] = f"max |logit difference| {gate['max_abs_diff']} against {source['path']} > {bound}"
        record["gate"] = gate
        if not gate["passed"]:
            target.unlink()
            record.update(status="refused", reason=f"the fused graph failed its gate: {gate['reason']}")
            continue
        record["status"] = "written"
        entries.append(artifact_entry(bundle, ORT_ONNX[precision], ORT_KIND, precision,
                                      optimized_from={"path": source["path"], "sha256": source["sha256"]},
                                      optimizer={k: report[k] for k in _ENTRY_KEYS}, fusions=report["fusions"],
                                      rewrites=report["rewrites"], gate=gate))
    return entries, records
