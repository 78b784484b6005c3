#!/usr/bin/env python3
"""Classify every image in a folder with a bundle: top-k class names and probabilities, one CSV row per image.

    python examples/classify_folder.py BUNDLE IMAGES_DIR --top-k 3 --out predictions.csv

Uses ``ibit_deploy.runtime`` (and ``ibit_deploy.outputs``, the write policy, for ``--out``): the Predictor
preprocesses exactly as the bundle's manifest says and runs on the best backend this machine has (a TensorRT
engine, ONNX Runtime CUDA, else ONNX Runtime CPU). An artifact that FAILED its accuracy gate at export is used only
with ``--allow-failed``. Files the dataset reader (``ibit_deploy.data.sources.read_image``) refuses are reported and
skipped: unreadable or truncated, more pixels than its limit (read from the header), 32-bit or float pixels. Exit
codes: 0 done, 1 no image could be classified, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
import time
from pathlib import Path

from ibit_deploy.cli.args import add_number
from ibit_deploy.data.sources import read_image
from ibit_deploy.devicekit.numbers import Range
from ibit_deploy.outputs import PREDICTIONS, check_output
from ibit_deploy.runtime import BackendUnavailable, Predictor

SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
# Images decoded at a time (bounds memory); the runner splits each group into batches its artifact accepts.
READ_CHUNK = 256


def find_images(folder: Path, recursive: bool) -> list[Path]:
    """Image files of ``folder`` (by suffix), sorted, so the CSV order is stable."""
    pattern = "**/*" if recursive else "*"
    return sorted(p for p in folder.glob(pattern) if p.is_file() and p.suffix.lower() in SUFFIXES)


def warm_up(predictor: Predictor) -> None:
    """One blank image through preprocessing and the backend: the first call loads torchvision and builds kernels,
    which is start-up cost, not per-image time."""
    import numpy as np

    height, width = predictor.image_size
    predictor.predict(np.zeros((height, width, predictor.channels), np.uint8))


def classify_folder(bundle: Path, folder: Path, out: Path, top_k: int = 3, backend: str = "auto",
                    precision: str = "fp32", recursive: bool = False, allow_failed: bool = False) -> dict:
    """Write ``out`` (CSV: path, top-1 and the top-k labels/probabilities); returns a summary.

    ``out`` may only be new or an earlier predictions CSV (the toolkit's write policy): never the bundle's manifest
    or artifacts, nor any other file.
    """
    check_output(out, PREDICTIONS, sources=(bundle, folder))
    paths = find_images(folder, recursive)
    if not paths:
        raise ValueError(f"{folder} holds no image files ({', '.join(SUFFIXES)})")
    skipped: list[tuple[str, str]] = []
    rows: list[list] = []
    with Predictor(bundle, backend=backend, precision=precision, allow_failed=allow_failed) as predictor:
        warm_up(predictor)
        start = time.perf_counter()
        k = min(top_k, len(predictor.classes) or top_k)
        for i in range(0, len(paths), READ_CHUNK):
            chunk, images = [], []
            for path in paths[i:i + READ_CHUNK]:
                try:  # decoded now, so a broken file fails here and not mid-batch
                    images.append(read_image(path))
                    chunk.append(path)
                except ValueError as exc:  # unreadable, too many pixels, 32-bit: the dataset reader's rule
                    skipped.append((str(path), str(exc)))
            if not images:
                continue
            for path, top in zip(chunk, predictor.predict(images).top_k(k), strict=True):
                rows.append([path.relative_to(folder).as_posix(), *[v for pair in top for v in
                                                                   (pair[0], f"{pair[1]:.6f}")]])
        backend_used = predictor.runner.backend
        elapsed = time.perf_counter() - start
    header = ["path"] + [f"{field}_{j}" for j in range(1, k + 1) for field in ("label", "prob")]
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    with os.fdopen(fd, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    os.replace(tmp, out)
    return {"images": len(rows), "skipped": skipped, "backend": backend_used, "seconds": elapsed, "csv": str(out)}


TOP_K = Range(1, integer=True)  # at most the model's classes are listed


def build_parser() -> argparse.ArgumentParser:
    """The command line; numeric options are checked when parsed (exit 2 naming the flag)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle", type=Path)
    p.add_argument("images", type=Path, help="folder of images")
    p.add_argument("--out", type=Path, default=Path("predictions.csv"))
    add_number(p, "--top-k", TOP_K, default=3)
    p.add_argument("--backend", default="auto", help="auto (best available), tensorrt, ort-cuda, ort-cpu")
    p.add_argument("--precision", default="fp32")
    p.add_argument("--recursive", action="store_true")
    p.add_argument("--allow-failed", action="store_true",
                   help="use the artifact even if it FAILED its accuracy gate at export (a warning says so)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.images.is_dir():
        print(f"classify_folder: IMAGES_DIR must be an existing folder, got {args.images}", file=sys.stderr)
        return 2
    try:
        summary = classify_folder(args.bundle, args.images, args.out, args.top_k, args.backend, args.precision,
                                  args.recursive, args.allow_failed)
    except (ValueError, FileNotFoundError, FileExistsError, IsADirectoryError, BackendUnavailable) as exc:
        print(f"classify_folder: error: {exc}", file=sys.stderr)
        return 2
    for path, reason in summary["skipped"]:
        print(f"classify_folder: skipped {path}: {reason}", file=sys.stderr)
    rate = summary["images"] / summary["seconds"] if summary["seconds"] else 0.0
    print(f"classified {summary['images']} images ({len(summary['skipped'])} skipped) with {summary['backend']} in "
          f"{summary['seconds']:.2f} s ({rate:.0f} images/s); wrote {summary['csv']}")
    return 0 if summary["images"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
