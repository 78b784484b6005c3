"""Calibration sets: stratified, seeded, preprocessed as the manifest says, disjoint from the gate's val images."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from ibit_deploy.calibration import (
    MIN_SAMPLES,
    build_calibration_set,
    load_calibration,
    save_calibration,
    validate_calibration,
)

MNIST_INPUT = {"image_size": [28, 28], "mean": [0.1307], "std": [0.3081]}


def test_set_is_stratified_deterministic_and_shaped():
    images, labels = build_calibration_set("mnist5k", MNIST_INPUT, 100, seed=0, return_labels=True)
    assert images.shape == (100, 1, 28, 28) and images.dtype == np.float32
    assert np.bincount(labels, minlength=10).tolist() == [10] * 10
    again = build_calibration_set("mnist5k", MNIST_INPUT, 100, seed=0)
    other = build_calibration_set("mnist5k", MNIST_INPUT, 100, seed=1)
    assert np.array_equal(images, again)
    assert not np.array_equal(images, other)


def test_odd_count_is_exact_and_keeps_every_class():
    _, labels = build_calibration_set("mnist5k", MNIST_INPUT, 37, seed=2, return_labels=True)
    assert len(labels) == 37 and len(np.unique(labels)) == 10


def test_preprocessing_follows_the_input_block():
    raw = build_calibration_set("mnist5k", {"image_size": [14, 14], "mean": [0.0], "std": [1.0]}, 20, seed=0)
    assert raw.shape == (20, 1, 14, 14)
    assert raw.min() >= 0.0 and raw.max() <= 1.0  # mean 0 / std 1: plain pixels / 255
    normalised = build_calibration_set("mnist5k", {**MNIST_INPUT, "image_size": [14, 14]}, 20, seed=0)
    np.testing.assert_allclose(normalised, (raw - 0.1307) / 0.3081, atol=1e-5)


def test_never_draws_from_the_validation_split():
    from ibit_deploy.data import eval_arrays

    calib = build_calibration_set("mnist5k", MNIST_INPUT, 256, seed=0)
    val, _ = eval_arrays("mnist5k", "val", (28, 28), (0.1307,), (0.3081,))
    digest = lambda a: hashlib.sha1(a.tobytes()).hexdigest()  # noqa: E731
    assert not {digest(x) for x in calib} & {digest(x) for x in val}


def test_save_load_round_trip_records_meta(tmp_path):
    images, labels = build_calibration_set("mnist5k", MNIST_INPUT, 40, seed=0, return_labels=True)
    meta = save_calibration(tmp_path / "calib.npz", images, {"spec": "mnist5k", "seed": 0}, labels=labels)
    loaded, stored = load_calibration(tmp_path / "calib.npz", (1, 28, 28), "percentile")
    assert np.array_equal(loaded, images)
    assert stored == meta and stored["count"] == 40 and stored["spec"] == "mnist5k"
    with np.load(tmp_path / "calib.npz", allow_pickle=False) as npz:  # readable without pickle
        assert json.loads(str(npz["meta"]))["images_sha256"] == meta["images_sha256"]


def test_load_detects_altered_images_and_foreign_files(tmp_path):
    images = build_calibration_set("mnist5k", MNIST_INPUT, 10, seed=0)
    meta = save_calibration(tmp_path / "calib.npz", images, {})
    altered = images.copy()
    altered[0, 0, 0, 0] += 1.0
    np.savez(tmp_path / "altered.npz", images=altered, meta=np.array(json.dumps(meta)))
    with pytest.raises(ValueError, match="do not match the sha256"):
        load_calibration(tmp_path / "altered.npz")
    np.savez(tmp_path / "foreign.npz", x=images)
    with pytest.raises(ValueError, match="expected arrays 'images' and 'meta'"):
        load_calibration(tmp_path / "foreign.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a calibration .npz"):
        load_calibration(tmp_path / "junk.npz")
    with pytest.raises(FileNotFoundError):
        load_calibration(tmp_path / "missing.npz")


def test_load_checks_shape_against_the_model(tmp_path):
    save_calibration(tmp_path / "calib.npz", np.zeros((8, 1, 28, 28), np.float32), {})
    with pytest.raises(ValueError, match=r"\(1, 28, 28\).*expects \(3, 32, 32\)"):
        load_calibration(tmp_path / "calib.npz", (3, 32, 32))


@pytest.mark.parametrize("images, message", [
    (np.zeros((0, 1, 28, 28), np.float32), "no images"),
    (np.zeros((1, 28, 28), np.float32), "4-D"),
    (np.zeros((64, 1, 28, 28), np.uint8), "preprocessed float"),
    (np.zeros((64, 3, 28, 28), np.float32), r"\(3, 28, 28\).*expects \(1, 28, 28\)"),
    (np.full((64, 1, 28, 28), np.nan, np.float32), "NaN/inf"),
    (np.zeros((MIN_SAMPLES["percentile"] - 1, 1, 28, 28), np.float32), "too few for percentile"),
    ([[0.0]], "numpy array"),
])
def test_bad_calibration_inputs_are_refused_clearly(images, message):
    with pytest.raises((ValueError, TypeError), match=message):
        validate_calibration(images, (1, 28, 28), "percentile")


def test_inf_is_located(tmp_path):
    images = np.zeros((16, 1, 28, 28), np.float32)
    images[5, 0, 3, 3] = np.inf
    with pytest.raises(ValueError, match="first in image 5"):
        save_calibration(tmp_path / "calib.npz", images, {})
    assert not (tmp_path / "calib.npz").exists()


def test_bad_count_and_input_block():
    with pytest.raises(ValueError, match="positive integer"):
        build_calibration_set("mnist5k", MNIST_INPUT, 0)
    with pytest.raises(ValueError, match="lacks"):
        build_calibration_set("mnist5k", {"image_size": [28, 28]}, 10)
