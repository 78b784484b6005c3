"""The two example applications, run on the session's small trained bundle and real MNIST digits."""

from __future__ import annotations

import csv
import json
import threading

import numpy as np
import pytest
from PIL import Image

from ibit_deploy.runtime import Predictor

from ..runtime.test_failed_artifacts import FailedArtifactWarning, failed_bundle
from .conftest import load_example


def test_classify_folder_writes_topk_csv(trained_bundle, digit_folder, tmp_path, capsys):
    folder, labels = digit_folder
    out = tmp_path / "predictions.csv"
    code = load_example("classify_folder").main([str(trained_bundle[0]), str(folder), "--out", str(out),
                                                 "--top-k", "3"])
    captured = capsys.readouterr()
    assert code == 0 and "skipped" in captured.err and "zz_broken.png" in captured.err
    rows = list(csv.reader(out.open()))
    assert rows[0] == ["path", "label_1", "prob_1", "label_2", "prob_2", "label_3", "prob_3"]
    body = rows[1:]
    assert [r[0] for r in body] == [f"{i:04d}.png" for i in range(0, 5000, 125)]
    with Predictor(trained_bundle[0], backend="ort-cpu", threads=1) as predictor:
        images = [Image.open(folder / r[0]) for r in body]
        expected = predictor.predict(images).top_k(3)
    for row, top in zip(body, expected, strict=True):
        assert row[1::2] == [label for label, _ in top]
        probs = [float(p) for p in row[2::2]]
        assert probs == sorted(probs, reverse=True) and np.allclose(probs, [p for _, p in top], atol=1e-6)
    accuracy = np.mean([int(r[1]) == y for r, y in zip(body, labels, strict=True)])
    assert accuracy >= 0.4  # the tiny model is trained for seconds (~65% top-1); 10% would mean a broken pipeline


def test_classify_folder_bad_input(trained_bundle, tmp_path):
    example = load_example("classify_folder")
    assert example.main([str(trained_bundle[0]), str(tmp_path / "missing")]) == 2
    (tmp_path / "empty").mkdir()
    assert example.main([str(trained_bundle[0]), str(tmp_path / "empty")]) == 2


def test_batcher_routes_each_result_to_its_request(trained_bundle, digit_folder):
    folder, _ = digit_folder
    service = load_example("batching_service")
    images = [Image.open(p).copy() for p in sorted(folder.glob("[0-9]*.png"))[:16]]
    with Predictor(trained_bundle[0], backend="ort-cpu", threads=1) as predictor:
        expected = [predictor.predict([im]).top_k(3)[0] for im in images]
        batcher = service.DynamicBatcher(predictor, max_batch=8, max_delay=0.05)
        try:
            futures: list = [None] * len(images)
            barrier = threading.Barrier(len(images))

            def submit(i: int) -> None:
                barrier.wait()  # all requests arrive together, so they share batches
                futures[i] = batcher.submit(images[i])

            threads = [threading.Thread(target=submit, args=(i,)) for i in range(len(images))]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            results = [f.result(timeout=30) for f in futures]
        finally:
            batcher.close()
    for got, want in zip(results, expected, strict=True):
        assert [label for label, _ in got] == [label for label, _ in want]
        assert np.allclose([p for _, p in got], [p for _, p in want], atol=1e-5)
    assert max(batcher.batch_sizes) > 1 and max(batcher.batch_sizes) <= 8 and sum(batcher.batch_sizes) == 16


def test_service_load_test_reports_throughput_and_percentiles(trained_bundle, digit_folder, tmp_path, capsys):
    folder, _ = digit_folder
    report_path = tmp_path / "report.json"
    code = load_example("batching_service").main([
        str(trained_bundle[0]), "--load-test", "2", "--concurrency", "6", "--images", str(folder),
        "--max-batch", "4", "--max-queue-delay-ms", "20", "--threads", "1", "--report", str(report_path)])
    assert code == 0, capsys.readouterr().err
    report = json.loads(report_path.read_text())
    assert report["requests"] > 0 and report["errors"] == 0 and report["throughput_rps"] > 0
    lat = report["latency_ms"]
    assert 0 < lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
    assert 1 < report["largest_batch"] <= 4 and report["seconds"] < 30  # batched, bounded
    assert report["backend"] == "ort-cpu"  # the best backend on a CPU-only machine


def test_service_refuses_a_batch_outside_the_engine_range(trained_bundle, digit_folder):
    folder, _ = digit_folder
    code = load_example("batching_service").main([str(trained_bundle[0]), "--load-test", "1", "--images",
                                                  str(folder), "--max-batch", "65"])
    assert code == 2


def _hostile_images(folder, png_claiming) -> dict[str, bytes]:
    """A decompression bomb, a 151-megapixel PNG of a few hundred bytes and a 32-bit TIFF, written into ``folder``."""
    import io

    tiff = io.BytesIO()
    Image.fromarray(np.full((28, 28), 70000, np.int32)).save(tiff, format="TIFF")
    files = {"bomb.png": png_claiming(40000, 40000), "huge.png": png_claiming(12300, 12300),
             "wide.tif": tiff.getvalue()}
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return files


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_service_refuses_hostile_images_with_the_reason(trained_bundle, digit_folder, png_claiming, tmp_path):
    import urllib.error
    import urllib.request

    service = load_example("batching_service")
    files = _hostile_images(tmp_path / "hostile", png_claiming)
    good = (digit_folder[0] / "0000.png").read_bytes()
    with Predictor(trained_bundle[0], backend="ort-cpu", threads=1) as predictor:
        batcher = service.DynamicBatcher(predictor, max_batch=4, max_delay=0.01)
        server = service.make_server(batcher, "127.0.0.1", 0)
        serving = threading.Thread(target=server.serve_forever, daemon=True)
        serving.start()
        url = f"http://127.0.0.1:{server.server_address[1]}/classify"

        def post(body: bytes) -> tuple[int, dict]:
            try:
                with urllib.request.urlopen(urllib.request.Request(url, data=body, method="POST"), timeout=30) as r:
                    return r.status, json.loads(r.read())
            except urllib.error.HTTPError as exc:
                return exc.code, json.loads(exc.read())

        try:
            replies = {name: post(body) for name, body in files.items()}
            after = post(good)
        finally:
            server.shutdown()
            server.server_close()
            batcher.close()
    assert replies["bomb.png"][0] == 413 and "decompression bomb" in replies["bomb.png"][1]["error"]
    assert replies["huge.png"] == (413, {"error": "the uploaded image: 12300x12300 = 151290000 pixels exceeds the "
                                                  "limit of 67108864 pixels; downscale it"})
    assert replies["wide.tif"][0] == 400 and "mode 'I' (32-bit integer pixels)" in replies["wide.tif"][1]["error"]
    assert after[0] == 200 and len(after[1]["top_k"]) == 3  # the service kept serving


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_classify_folder_skips_hostile_images_and_says_why(trained_bundle, digit_folder, png_claiming, tmp_path,
                                                           capsys):
    import shutil

    folder = tmp_path / "mixed"
    _hostile_images(folder, png_claiming)
    shutil.copy(digit_folder[0] / "0000.png", folder / "digit.png")
    out = tmp_path / "predictions.csv"
    assert load_example("classify_folder").main([str(trained_bundle[0]), str(folder), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert f"skipped {folder / 'huge.png'}: {folder / 'huge.png'}: 12300x12300 = 151290000 pixels exceeds" in err
    assert f"skipped {folder / 'bomb.png'}: " in err and "decompression bomb" in err
    assert f"skipped {folder / 'wide.tif'}: {folder / 'wide.tif'}: mode 'I' (32-bit integer pixels)" in err
    assert [row[0] for row in csv.reader(out.open())][1:] == ["digit.png"]


def test_classify_folder_refuses_a_failed_artifact_unless_asked(tmp_path, digit_folder, capsys):
    bundle = failed_bundle(tmp_path, fp16_failed=True)
    example = load_example("classify_folder")
    folder, _ = digit_folder
    out = tmp_path / "p.csv"
    assert example.main([str(bundle), str(folder), "--out", str(out), "--precision", "fp16"]) != 0
    assert "FAILED its accuracy gate" in capsys.readouterr().err and not out.exists()
    with pytest.warns(FailedArtifactWarning):
        code = example.main([str(bundle), str(folder), "--out", str(out), "--precision", "fp16", "--allow-failed"])
    assert code == 0 and out.is_file()


def test_the_load_test_report_never_replaces_a_bundle_file(trained_bundle, digit_folder, tmp_path, capsys):
    """``batching_service.py --report`` follows the write policy (it wrote over any file, the manifest included)."""
    from ibit_deploy.devicekit.fileio import sha256_file

    bundle = trained_bundle[0]
    manifest = bundle / "manifest.json"
    before = sha256_file(manifest)
    service = load_example("batching_service")
    argv = [str(bundle), "--load-test", "1", "--images", str(digit_folder[0]), "--threads", "1"]
    assert service.main([*argv, "--report", str(manifest)]) == 2
    assert "refusing to write a load-test report over" in capsys.readouterr().err
    assert sha256_file(manifest) == before
    report = tmp_path / "load.json"
    assert service.main([*argv, "--report", str(report)]) == 0
    assert service.main([*argv, "--report", str(report)]) == 0  # its own earlier report is replaced
