"""Issue 24's CPU goals, measured side by side in one run with every library on ONE thread.

1. ORT CPU fp32 on ``ibit_tiny_patch16_224`` at batch 32 reaches >= 60% of the single-thread fp32 matmul peak
   measured on this machine in this run.
2. ONNX Runtime is faster than eager PyTorch at every batch size measured.

What it measures, interleaved round by round (A, B, C, ... then again) so that load from other processes hits every
candidate alike; the statistic is the median over rounds of each round's mean:

- ``ort_plain``: the folded model's ONNX (what ``model.onnx`` is), ORT CPU, all graph optimisations;
- ``ort_fused``: the same file through ONNX Runtime's transformer fusions and our rewrites (``model.ort.onnx`` as the
  export writes it, export/ort_fusions.py and export/ort_rewrites.py);
- ``torch_folded``: the same folded model, eager PyTorch (``torch.inference_mode``);
- ``torch_ref``: the unfolded reference model, eager PyTorch (what ibit-bench's torch-ref runs).

FLOPs are counted from the ONNX graph at the measured batch size (:func:`graph_flops`): ONNX shape inference gives
every tensor's shape, and each MatMul / Gemm / Conv node counts 2 x (multiply-adds), i.e. 2 x output elements x the
reduced dimension (Conv: x C_in/groups x kernel area). Elementwise ops, normalisations and reductions are not
counted (they are not matmul work, and < 1% of the FLOPs here). The peak is the best of a large single-thread
MatMul on ONNX Runtime (MLAS) and on PyTorch (its BLAS), each timed in the same rounds as the models.

Goal 2 is judged on the ratio of the medians (ORT fused over the faster of the two torch models); the table also
gives the range of that ratio over the single rounds, i.e. how much the machine's load moved it.

    python benchmarks/ort_cpu_goals.py --rounds 7
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):  # one thread, before numpy/torch load
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
import torch  # noqa: E402
from onnx import TensorProto, helper  # noqa: E402
from ort_bench import interleaved_rounds, medians, ort_session  # noqa: E402

from ibit_deploy.export.onnx_export import export_onnx  # noqa: E402
from ibit_deploy.export.ort_fusions import fuse_for_ort  # noqa: E402
from ibit_deploy.fold import fold_masks  # noqa: E402
from ibit_deploy.models import create_model  # noqa: E402
from ibit_deploy.models.registry import VARIANTS  # noqa: E402

PEAK_GOAL = 0.60  # ORT fp32 at batch 32 reaches this fraction of the measured matmul peak
PEAK_SIZE = 1024  # the peak MatMul: (PEAK_SIZE x PEAK_SIZE) @ (PEAK_SIZE x PEAK_SIZE), fp32


def graph_flops(path: str | os.PathLike, batch: int) -> dict[str, int]:
    """FLOPs (2 x multiply-adds) per op type of the MatMul, Gemm and Conv nodes of ONNX file ``path`` at ``batch``.

    The first input's first dimension is fixed to ``batch`` and ONNX shape inference fills in every other shape;
    a node whose shapes cannot be inferred raises ValueError naming it.
    """
    model = onnx.load(str(path))
    model.graph.input[0].type.tensor_type.shape.dim[0].dim_value = batch
    model = onnx.shape_inference.infer_shapes(model, data_prop=True)
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in [*model.graph.value_info, *model.graph.input, *model.graph.output]}
    shapes.update({t.name: list(t.dims) for t in model.graph.initializer})
    flops: dict[str, int] = {}
    for node in model.graph.node:
        if node.op_type not in ("MatMul", "Gemm", "Conv"):
            continue
        a, w, out = shapes.get(node.input[0]), shapes.get(node.input[1]), shapes.get(node.output[0])
        if not a or not w or not out or 0 in (*a, *w, *out):
            raise ValueError(f"{path}: shapes of {node.op_type} node {node.name!r} are unknown at batch {batch}")
        if node.op_type == "Conv":
            group = next((attr.i for attr in node.attribute if attr.name == "group"), 1)
            reduced = a[1] // group * int(np.prod(w[2:]))
        elif node.op_type == "Gemm":
            trans_a = next((attr.i for attr in node.attribute if attr.name == "transA"), 0)
            reduced = a[0] if trans_a else a[1]
        else:
            reduced = a[-1]
        flops[node.op_type] = flops.get(node.op_type, 0) + 2 * int(np.prod(out)) * reduced
    return flops


def peak_matmul_onnx(path: Path, size: int) -> Path:
    """A one-node ONNX file: ``X @ W``, both (size x size) fp32, W a constant."""
    w = np.random.default_rng(1).standard_normal((size, size)).astype(np.float32)
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "peak",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [size, size])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [size, size])],
                              [onnx.numpy_helper.from_array(w, "w")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), path)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="ibit_tiny_patch16_224", choices=sorted(VARIANTS))
    parser.add_argument("--batches", default="1,8,32")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "ort_cpu_goals.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    torch.manual_seed(0)

    ref = create_model(args.model).eval()
    folded = fold_masks(ref).eval()
    chw = tuple(ref.pretrained_cfg["input_size"])
    tmp = Path(tempfile.mkdtemp(prefix="ibit-ort-goals-"))
    plain = export_onnx(folded, tmp / "model.onnx", chw)
    fused_report = fuse_for_ort(plain, tmp / "model.ort.onnx", num_heads=ref.blocks[0].attn.num_heads,
                                hidden_size=ref.embed_dim)
    sessions = {"ort_plain": ort_session(plain, 1), "ort_fused": ort_session(tmp / "model.ort.onnx", 1)}
    peak_session = ort_session(peak_matmul_onnx(tmp / "peak.onnx", PEAK_SIZE), 1)
    px = np.random.default_rng(2).standard_normal((PEAK_SIZE, PEAK_SIZE)).astype(np.float32)
    pa, pb = torch.from_numpy(px), torch.from_numpy(px.T.copy())
    peak_flops = 2 * PEAK_SIZE ** 3

    results: dict[str, dict[str, float]] = {}
    peaks: list[dict[str, float]] = []
    for batch in [int(b) for b in args.batches.split(",")]:
        x = np.random.default_rng(0).standard_normal((batch, *chw)).astype(np.float32)
        xt = torch.from_numpy(x)
        iters = max(2, 32 // batch)
        flops = sum(graph_flops(plain, batch).values())

        def eager(model: torch.nn.Module, xt: torch.Tensor = xt) -> None:
            with torch.inference_mode():
                model(xt)

        candidates = {name: (lambda s=s, x=x: s.run(None, {"images": x})) for name, s in sessions.items()}
        candidates.update(torch_folded=lambda: eager(folded), torch_ref=lambda: eager(ref),
                          peak_ort=lambda: peak_session.run(None, {"x": px}), peak_torch=lambda: torch.mm(pa, pb))
        times = interleaved_rounds(candidates, args.rounds, iters)
        med = medians(times)
        # the spread of the goal-2 ratio over rounds (each round's fused time over that round's faster torch)
        per_round = sorted(f / min(a, b) for f, a, b in zip(times["ort_fused"], times["torch_folded"],
                                                            times["torch_ref"], strict=True))
        peak = max(peak_flops / med["peak_ort"], peak_flops / med["peak_torch"]) / 1e6  # GFLOP/s (ms -> s: 1e3)
        peaks.append({"batch_round": batch, "peak_ort_gflops": peak_flops / med["peak_ort"] / 1e6,
                      "peak_torch_gflops": peak_flops / med["peak_torch"] / 1e6})
        row = {f"{k}_ms": v for k, v in med.items() if not k.startswith("peak")}
        row.update(gflop=flops / 1e9, peak_gflops=peak)
        for name in ("ort_plain", "ort_fused", "torch_folded", "torch_ref"):
            row[f"{name}_gflops"] = flops / med[name] / 1e6
            row[f"{name}_of_peak"] = row[f"{name}_gflops"] / peak
        best_torch = min(med["torch_folded"], med["torch_ref"])
        row.update(ort_fused_vs_best_torch=med["ort_fused"] / best_torch, per_round_fused_vs_best_torch=per_round,
                   ort_plain_vs_best_torch=med["ort_plain"] / best_torch,
                   fused_vs_plain=med["ort_fused"] / med["ort_plain"])
        results[str(batch)] = row

    print(f"model {args.model} input {chw}, ONNX Runtime {ort.__version__} CPU, torch {torch.__version__}, 1 thread, "
          f"{platform.processor() or platform.machine()}, fusions {fused_report['fusions']}, "
          f"rewrites {fused_report['rewrites']}")
    print("| batch | GFLOP | peak GFLOP/s | ORT plain ms (GFLOP/s, of peak) | ORT fused ms (GFLOP/s, of peak) "
          "| torch folded ms | torch ref ms | fused / best torch | per round: min-max | fused / plain |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for batch, r in results.items():
        print(f"| {batch} | {r['gflop']:.2f} | {r['peak_gflops']:.1f} | {r['ort_plain_ms']:.1f} "
              f"({r['ort_plain_gflops']:.1f}, {r['ort_plain_of_peak']:.0%}) | {r['ort_fused_ms']:.1f} "
              f"({r['ort_fused_gflops']:.1f}, {r['ort_fused_of_peak']:.0%}) | {r['torch_folded_ms']:.1f} | "
              f"{r['torch_ref_ms']:.1f} | {r['ort_fused_vs_best_torch']:.3f} | "
              f"{min(r['per_round_fused_vs_best_torch']):.2f}-{max(r['per_round_fused_vs_best_torch']):.2f} | "
              f"{r['fused_vs_plain']:.3f} |")
    last = results[max(results, key=int)]
    goal1 = last["ort_fused_of_peak"] >= PEAK_GOAL
    goal2 = all(r["ort_fused_vs_best_torch"] < 1 for r in results.values())
    print(f"goal 1 (ORT fused at batch {max(results, key=int)} >= {PEAK_GOAL:.0%} of peak): "
          f"{'MET' if goal1 else 'NOT MET'} ({last['ort_fused_of_peak']:.1%})")
    print(f"goal 2 (ORT faster than eager PyTorch at every batch): {'MET' if goal2 else 'NOT MET'}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"model": args.model, "threads": 1, "ort": ort.__version__,
                                    "torch": torch.__version__, "rounds": args.rounds, "peak_size": PEAK_SIZE,
                                    "fusions": fused_report["fusions"], "rewrites": fused_report["rewrites"],
                                    "peaks": peaks, "results": results,
                                    "goals": {"peak_fraction": goal1, "ort_faster_than_torch": goal2}}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
