"""ImageFolder input checks: high-bit-depth images scaled (not clipped), empty classes and oversized images refused."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from ibit_deploy.data import sources
from ibit_deploy.data.sources import load_imagefolder


def _folder(root, images: dict[str, list[np.ndarray]]):
    for name, arrays in images.items():
        (root / name).mkdir(parents=True)
        for i, array in enumerate(arrays):
            Image.fromarray(array).save(root / name / f"{i}.png")
    return root


def test_16bit_png_is_scaled_to_8bit_not_clipped(tmp_path):
    ramp = (np.arange(16 * 16, dtype=np.uint32).reshape(16, 16) * 257).astype(np.uint16)  # 0..65535 in 257 steps
    root = _folder(tmp_path / "deep", {"a": [ramp, ramp], "b": [ramp // 2, ramp // 2]})
    assert Image.open(root / "a" / "0.png").mode == "I;16"
    raw = load_imagefolder(root)
    assert raw.images.shape == (4, 16, 16, 1)
    np.testing.assert_array_equal(raw.images[0, ..., 0], np.arange(256).reshape(16, 16))  # exact: x / 257
    assert raw.images[2].max() == 127 and (raw.images == 255).mean() < 0.01  # not 99% white any more


def test_16bit_and_rgb_images_mix_into_rgb(tmp_path):
    gray16 = np.full((8, 8), 65535 // 2, np.uint16)
    rgb = np.zeros((8, 8, 3), np.uint8)
    raw = load_imagefolder(_folder(tmp_path / "mix", {"a": [gray16], "b": [rgb]}))
    assert raw.images.shape == (2, 8, 8, 3) and raw.images[0].tolist()[0][0] == [127, 127, 127]


def test_32bit_images_are_refused_naming_the_file(tmp_path):
    root = tmp_path / "i32"
    (root / "a").mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8), np.int32)).save(root / "a" / "wide.tif")
    with pytest.raises(ValueError, match=r"wide.tif: mode 'I' .*8- or 16-bit"):
        load_imagefolder(root)


def test_empty_class_folder_is_refused_by_name(tmp_path):
    img = np.zeros((8, 8), np.uint8)
    root = _folder(tmp_path / "f", {"cat": [img], "dog": [img]})
    (root / "zebra").mkdir()
    (root / "zebra" / "notes.txt").write_text("not an image")
    with pytest.raises(ValueError, match=r"class folder\(s\) without images: zebra"):
        load_imagefolder(root)


def test_pixel_limit_is_an_error(tmp_path, monkeypatch):
    # Pillow only warns between its limit and twice that; the limit the code sets must refuse the image outright.
    monkeypatch.setattr(sources, "MAX_IMAGE_PIXELS", 1000)
    root = _folder(tmp_path / "big", {"a": [np.zeros((8, 8), np.uint8)], "b": [np.zeros((40, 40), np.uint8)]})
    with pytest.raises(ValueError, match=r"0.png: 40x40 = 1600 pixels exceeds the limit of 1000"):
        load_imagefolder(root)
