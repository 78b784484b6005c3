"""Which of ONNX Runtime's transformer fusions apply to which IBiT graph, what they change and what they gain.

For the folded ``--model`` in mask mode, bias mode and bias mode through FlashBias (rank 16), each at fp32, fp16 and
int8 (the project's converters: ``convert_fp16`` with its fp32 islands, ``quantize_int8`` calibrated min-max on 32
random inputs), it applies :func:`ibit_deploy.export.ort_fusions.fuse_for_ort` with EVERY fusion enabled (the
export leaves out those in ``DISABLED_FUSIONS``) and our rewrites (export/ort_rewrites.py), compares the fused graph's logits with the plain one's on 64 random inputs (max |diff|, top-1
agreement) and times both on ORT CPU, one thread, in interleaved rounds (median of the rounds' means).

Weights are untrained (latency does not depend on them; the logit comparison is graph against graph). The export's
gate runs the same comparison on real validation images of the trained model.

    python benchmarks/ort_fusions.py --rounds 3 --batches 1,32
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
import torch  # noqa: E402
from ort_bench import interleaved_rounds, medians, ort_session  # noqa: E402

from ibit_deploy.export.flashbias import FP16_KEEP_OP_TYPES  # noqa: E402
from ibit_deploy.export.onnx_export import export_onnx  # noqa: E402
from ibit_deploy.export.ort_fusions import fuse_for_ort  # noqa: E402
from ibit_deploy.fold import fold_masks, to_flashbias  # noqa: E402
from ibit_deploy.models import create_model  # noqa: E402
from ibit_deploy.models.registry import VARIANTS  # noqa: E402
from ibit_deploy.quantization.config import Fp16Config, Int8Config  # noqa: E402
from ibit_deploy.quantization.fp16 import convert_fp16  # noqa: E402
from ibit_deploy.quantization.int8 import quantize_int8  # noqa: E402

GRAPHS = ("mask", "bias", "flashbias")


def graphs(model_name: str, folder: Path, chw: tuple[int, ...]) -> dict[str, tuple[Path, int, int]]:
    """``"mode/precision"`` -> (plain ONNX, heads, width) for every graph this script studies."""
    out: dict[str, tuple[Path, int, int]] = {}
    calib = np.random.default_rng(3).standard_normal((32, *chw)).astype(np.float32)
    for mode in GRAPHS:
        torch.manual_seed(0)
        model = fold_masks(create_model(model_name, attn_mode="mask" if mode == "mask" else "bias").eval())
        if mode == "flashbias":
            model, _ = to_flashbias(model, "16")
        fp32 = export_onnx(model, folder / f"{mode}.onnx", chw)
        keep = {"keep_op_types": FP16_KEEP_OP_TYPES} if mode == "flashbias" else {}
        convert_fp16(fp32, folder / f"{mode}.fp16.onnx", Fp16Config(**keep))
        quantize_int8(fp32, folder / f"{mode}.int8.onnx", calib, Int8Config(method="minmax"))
        dims = (model.blocks[0].attn.num_heads, model.embed_dim)
        for precision, path in (("fp32", fp32), ("fp16", folder / f"{mode}.fp16.onnx"),
                                ("int8", folder / f"{mode}.int8.onnx")):
            out[f"{mode}/{precision}"] = (path, *dims)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="ibit_tiny_patch16_224", choices=sorted(VARIANTS))
    parser.add_argument("--batches", default="1,32")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "ort_fusions.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    chw = tuple(create_model(args.model).pretrained_cfg["input_size"])
    folder = Path(tempfile.mkdtemp(prefix="ibit-ort-fusions-"))
    probe = np.random.default_rng(0).standard_normal((64, *chw)).astype(np.float32)
    results: dict[str, dict] = {}
    for key, (plain, heads, width) in graphs(args.model, folder, chw).items():
        fused = plain.with_suffix(".ort.onnx")
        report = fuse_for_ort(plain, fused, num_heads=heads, hidden_size=width, disabled=())  # every fusion
        sessions = {"plain": ort_session(plain, 1), "fused": ort_session(fused, 1)}
        a, b = (s.run(None, {"images": probe})[0] for s in sessions.values())
        row = {"fusions": report["fusions"], "rewrites": report["rewrites"], "max_abs_diff": float(np.abs(a - b).max()),
               "max_abs_logit": float(np.abs(a).max()), "agreement": float((a.argmax(1) == b.argmax(1)).mean())}
        for batch in [int(x) for x in args.batches.split(",")]:
            x = probe[:batch] if batch <= len(probe) else np.resize(probe, (batch, *chw))
            med = medians(interleaved_rounds({k: (lambda s=s, x=x: s.run(None, {"images": x}))
                                              for k, s in sessions.items()}, args.rounds, max(2, 16 // batch)))
            row[f"batch{batch}"] = {"plain_ms": med["plain"], "fused_ms": med["fused"],
                                    "fused_vs_plain": med["fused"] / med["plain"]}
        results[key] = row
        timings = ", ".join(f"b{b[5:]} {v['plain_ms']:.1f} -> {v['fused_ms']:.1f} ms ({v['fused_vs_plain']:.2f}x)"
                            for b, v in row.items() if b.startswith("batch"))
        print(f"{key}: {report['fusions'] or 'none'}, rewrites {report['rewrites'] or 'none'}; max|diff| {row['max_abs_diff']:.2g}, agreement "
              f"{row['agreement']:.3f}; {timings}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"model": args.model, "threads": 1, "ort": ort.__version__,
                                    "rounds": args.rounds, "results": results}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
