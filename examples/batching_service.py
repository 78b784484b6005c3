#!/usr/bin/env python3
"""A long-running HTTP classification service that batches concurrent requests, as Triton's dynamic batching does.

    python examples/batching_service.py BUNDLE --port 8080                    # serve until Ctrl-C
    curl -s --data-binary @digit.png localhost:8080/classify                 # -> {"top_k": [["7", 0.98], ...]}
    python examples/batching_service.py BUNDLE --load-test 5 --concurrency 16 --images DIR   # bounded local test

Requests wait in one queue; a worker takes the oldest and keeps collecting until the batch holds ``--max-batch``
images (default: the top of the runner's batch range, which the bundle's manifest records) or the oldest has waited
``--max-queue-delay-ms``; then it runs the batch (the runner pads a batch below the engine's minimum and drops the
padding's outputs) and answers every request in it. Uses ``ibit_deploy.runtime`` (Predictor: the manifest's
preprocessing, the best backend available here) and the dataset reader's image checks (413/400 with the reason).
"""

from __future__ import annotations

import argparse
import io
import json
import queue
import sys
import threading
import time
import urllib.request
from concurrent.futures import Future
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np

from ibit_deploy.cli.args import add_number
from ibit_deploy.data.sources import ImageTooLarge, read_image
from ibit_deploy.devicekit.fileio import atomic_write_json, parse_json_text
from ibit_deploy.devicekit.numbers import BATCH, COUNT, THREADS, Range
from ibit_deploy.outputs import LOAD_TEST_REPORT, check_output, json_marker
from ibit_deploy.runtime import BackendUnavailable, Predictor
from ibit_deploy.runtime.base import DEFAULT_CHUNK

MAX_REQUEST_BYTES = 16 * 1024 * 1024  # one image; larger bodies are refused before they are read
SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


class DynamicBatcher:
    """Collects concurrent requests into batches of up to ``max_batch`` within ``max_delay`` seconds.

    ``max_batch`` None: the largest batch the runner takes (its typed input spec, from the manifest), or
    DEFAULT_CHUNK for a runner without an upper bound.
    """

    def __init__(self, predictor: Predictor, max_batch: int | None, max_delay: float, top_k: int = 3,
                 max_queue: int = 1024) -> None:
        spec = predictor.runner.spec
        if max_batch is None:
            max_batch = spec.max_batch or DEFAULT_CHUNK
        if not 1 <= max_batch <= (spec.max_batch or max_batch):
            raise ValueError(f"--max-batch {max_batch} must lie in [1, {spec.max_batch}]: the runner's batch range is "
                             f"[{spec.min_batch}, {spec.max_batch}] (smaller batches are padded to its minimum)")
        self.predictor, self.max_batch, self.max_delay, self.top_k = predictor, max_batch, max_delay, top_k
        self.requests: queue.Queue = queue.Queue(maxsize=max_queue)
        self.batch_sizes: list[int] = []
        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._run, name="batcher", daemon=True)
        self._worker.start()

    def submit(self, image) -> Future:
        """Queue one PIL image; the future resolves to its top-k [(label, probability)] list."""
        future: Future = Future()
        self.requests.put_nowait((image, future))  # queue.Full when overloaded: the server answers 503
        return future

    def close(self) -> None:
        self._stop.set()
        self._worker.join(timeout=5)

    def _collect(self) -> list:
        try:
            batch = [self.requests.get(timeout=0.1)]
        except queue.Empty:
            return []
        deadline = time.perf_counter() + self.max_delay
        while len(batch) < self.max_batch:
            left = deadline - time.perf_counter()
            if left <= 0:
                break
            try:
                batch.append(self.requests.get(timeout=left))
            except queue.Empty:
                break
        return batch

    def _run(self) -> None:
        while not self._stop.is_set():
            batch = self._collect()
            if not batch:
                continue
            images = [image for image, _ in batch]
            try:
                tops = self.predictor.predict(images).top_k(self.top_k)  # Runner.infer_all pads to the min batch
            except Exception as exc:  # a bad image must fail its own request, not the service
                for _, future in batch:
                    future.set_exception(exc)
                continue
            self.batch_sizes.append(len(images))
            for (_, future), top in zip(batch, tops, strict=True):
                future.set_result(top)


def make_server(batcher: DynamicBatcher, host: str, port: int, timeout: float = 30.0) -> ThreadingHTTPServer:
    """POST /classify (body: an encoded image) -> {"top_k": [[label, prob], ...]}; GET /health, GET /stats.

    An upload is decoded by the dataset reader (:func:`ibit_deploy.data.sources.read_image`) and refused with its
    reason as training data would be: 413 when its header claims more pixels than the reader's limit (before it is
    decoded: a decompression bomb), 400 when it is not a readable 8- or 16-bit image.
    """

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _reply(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            if self.path == "/health":
                self._reply(200, {"status": "ok", "backend": batcher.predictor.runner.backend})
            elif self.path == "/stats":
                sizes = batcher.batch_sizes
                self._reply(200, {"batches": len(sizes), "mean_batch": float(np.mean(sizes)) if sizes else 0.0})
            else:
                self._reply(404, {"error": f"unknown path {self.path}; use POST /classify"})

        def do_POST(self) -> None:  # noqa: N802
            if self.path != "/classify":
                self._reply(404, {"error": f"unknown path {self.path}; use POST /classify"})
                return
            length = int(self.headers.get("Content-Length") or 0)
            if not 0 < length <= MAX_REQUEST_BYTES:
                self._reply(413 if length else 400, {"error": f"send one encoded image of 1..{MAX_REQUEST_BYTES} "
                                                              f"bytes, got {length}"})
                return
            try:  # the dataset reader's limits: pixel count from the header, 8/16-bit modes, decodable
                image = read_image(io.BytesIO(self.rfile.read(length)), name="the uploaded image")
            except ImageTooLarge as exc:
                self._reply(413, {"error": str(exc)})
                return
            except ValueError as exc:
                self._reply(400, {"error": str(exc)})
                return
            try:
                top = batcher.submit(image).result(timeout=timeout)
            except queue.Full:
                self._reply(503, {"error": "queue full, retry later"})
                return
            except Exception as exc:  # the batch failed: report it on this request
                self._reply(500, {"error": str(exc)})
                return
            self._reply(200, {"top_k": [[label, prob] for label, prob in top]})

        def log_message(self, *args) -> None:  # keep the console for the report
            pass

    return _Server((host, port), Handler)


class _Server(ThreadingHTTPServer):
    # socketserver's default listen backlog of 5 overflows under a few dozen concurrent clients, and each
    # overflowed connection waits out a 1 s TCP SYN retry: that shows up as a false p99 of ~1 s.
    request_queue_size = 256
    daemon_threads = True


def load_test(url: str, images: list[bytes], seconds: float, concurrency: int) -> dict:
    """``concurrency`` clients POST images back to back for ``seconds``; throughput and latency percentiles."""
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    stop_at = time.perf_counter() + seconds

    def client(offset: int) -> None:
        i = offset
        while time.perf_counter() < stop_at:
            body = images[i % len(images)]
            i += concurrency
            request = urllib.request.Request(url, data=body, method="POST")
            t0 = time.perf_counter()
            try:
                with urllib.request.urlopen(request, timeout=30) as response:
                    parse_json_text(response.read().decode("utf-8"), url, "service response")
            except Exception as exc:
                with lock:
                    errors.append(str(exc))
                continue
            with lock:
                latencies.append(time.perf_counter() - t0)

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(c,)) for c in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    ms = np.array(latencies) * 1e3
    pct = {f"p{q}": float(np.percentile(ms, q)) for q in (50, 90, 99)} if len(ms) else {}
    return {"requests": len(latencies), "errors": len(errors), "first_error": errors[0] if errors else None,
            "seconds": wall, "throughput_rps": len(latencies) / wall, "latency_ms": {**pct, "max": float(ms.max())
                                                                                    if len(ms) else None}}


def read_images(folder: Path, limit: int = 256) -> list[bytes]:
    """Encoded images of ``folder`` for the load test; files the service would refuse are skipped with a warning."""
    bodies = []
    for path in sorted(p for p in folder.iterdir() if p.suffix.lower() in SUFFIXES)[:limit]:
        data = path.read_bytes()
        try:
            read_image(io.BytesIO(data), name=str(path))
        except ValueError as exc:
            print(f"batching_service: skipping {path}: {exc}", file=sys.stderr)
            continue
        bodies.append(data)
    if not bodies:
        raise ValueError(f"{folder} holds no readable images ({', '.join(SUFFIXES)}) for the load test")
    return bodies


def build_parser() -> argparse.ArgumentParser:
    """The command line; numeric options are checked when parsed (exit 2 naming the flag)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle", type=Path)
    p.add_argument("--host", default="127.0.0.1")
    add_number(p, "--port", Range(0, 65535, integer=True), default=8080, help="0: any free port")
    p.add_argument("--backend", default="auto")
    p.add_argument("--precision", default="fp32")
    add_number(p, "--max-batch", BATCH, default=None,
               help=f"default: the runner's largest batch (the manifest's batch range; {DEFAULT_CHUNK} if "
                    f"unbounded)")
    add_number(p, "--max-queue-delay-ms", Range(0, 60_000), default=5.0, help="0 to 60000 (default 5)")
    add_number(p, "--top-k", COUNT, default=3)
    add_number(p, "--threads", THREADS, default=0, help="backend CPU threads (0: library default)")
    add_number(p, "--load-test", Range(0, 3600, low_open=True), default=None, metavar="SECONDS",
               help="start the service, load it for SECONDS with --concurrency clients, print a JSON report, exit")
    add_number(p, "--concurrency", Range(1, 1024, integer=True), default=8, help="load-test clients (threads)")
    p.add_argument("--images", type=Path, default=None, help="folder of images for --load-test")
    p.add_argument("--report", type=Path, default=None, help="also write the load-test report here (JSON)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.load_test is not None and (args.images is None or not args.images.is_dir()):
        print("batching_service: --load-test needs --images DIR (an existing folder of images)", file=sys.stderr)
        return 2
    try:
        if args.report is not None:  # the write policy: a new file or an earlier load-test report, checked first
            check_output(args.report, LOAD_TEST_REPORT, sources=(args.bundle, *((args.images,) if args.images else ())))
        images = read_images(args.images) if args.load_test is not None else []
        predictor = Predictor(args.bundle, backend=args.backend, precision=args.precision, threads=args.threads)
    except (ValueError, FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError,
            BackendUnavailable) as exc:
        print(f"batching_service: error: {exc}", file=sys.stderr)
        return 2
    height, width = predictor.image_size
    predictor.predict(np.zeros((height, width, predictor.channels), np.uint8))  # warm up: imports, kernels
    try:
        batcher = DynamicBatcher(predictor, args.max_batch, args.max_queue_delay_ms / 1e3, args.top_k)
    except ValueError as exc:
        print(f"batching_service: error: {exc}", file=sys.stderr)
        predictor.close()
        return 2
    server = make_server(batcher, args.host, 0 if args.load_test is not None else args.port)
    host, port = server.server_address[:2]
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    serving.start()
    try:
        if args.load_test is None:
            print(f"serving {args.bundle} on http://{host}:{port}/classify with {predictor.runner.backend} "
                  f"(max batch {batcher.max_batch}, max queue delay {args.max_queue_delay_ms} ms); Ctrl-C stops")
            serving.join()
            return 0
        report = load_test(f"http://{host}:{port}/classify", images, args.load_test, args.concurrency)
        sizes = batcher.batch_sizes
        report.update({"backend": predictor.runner.backend, "concurrency": args.concurrency,
                       "max_batch": batcher.max_batch, "max_queue_delay_ms": args.max_queue_delay_ms,
                       "batches": len(sizes), "mean_batch": float(np.mean(sizes)) if sizes else 0.0,
                       "largest_batch": max(sizes, default=0)})
        text = json.dumps(report, indent=2)
        print(text)
        if args.report:
            atomic_write_json(args.report, {**json_marker(LOAD_TEST_REPORT, None), **report})
        return 0 if report["requests"] and not report["errors"] else 1
    except KeyboardInterrupt:
        return 0
    finally:
        server.shutdown()
        server.server_close()
        batcher.close()
        predictor.close()


if __name__ == "__main__":
    raise SystemExit(main())
