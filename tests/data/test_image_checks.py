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


def test_one_rgb_image_among_greyscale_ones_is_converted_and_said(tmp_path, capsys):
    grey = np.full((8, 8), 100, np.uint8)
    colour = np.zeros((8, 8, 3), np.uint8)
    colour[..., 0] = 255
    root = _folder(tmp_path / "mostly-grey", {"a": [grey, grey, colour], "b": [grey, grey, grey]})
    raw = load_imagefolder(root)
    assert raw.images.shape == (6, 8, 8, 1)  # the folder stays 1-channel, and so does a model trained on it
    line = f"imagefolder:{root}: converted 1 of 6 images to L (1 from RGB): most images are greyscale"
    assert raw.notes["converted"] == line
    assert capsys.readouterr().err == f"note: {line}\n"
    assert raw.images[2, 0, 0, 0] == np.asarray(Image.fromarray(colour).convert("L"))[0, 0]


def test_channels_override_the_majority_and_a_tie_keeps_colour(tmp_path, capsys):
    grey = np.full((8, 8), 100, np.uint8)
    colour = np.zeros((8, 8, 3), np.uint8)
    root = _folder(tmp_path / "mostly-grey", {"a": [grey, grey, colour], "b": [grey, grey, grey]})
    assert load_imagefolder(root, channels=3).images.shape[-1] == 3
    assert "converted 5 of 6 images to RGB (5 from L): RGB was asked for" in capsys.readouterr().err
    with pytest.raises(ValueError, match=r"channels must be 1 \(greyscale\) or 3 \(RGB\), got 2"):
        load_imagefolder(root, channels=2)
    tie = load_imagefolder(_folder(tmp_path / "tie", {"a": [grey], "b": [colour]}))
    assert tie.images.shape[-1] == 3 and "as many greyscale as colour images: colour kept" in tie.notes["converted"]
    assert load_imagefolder(_folder(tmp_path / "grey", {"a": [grey], "b": [grey]})).notes == {}  # nothing converted


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")  # Pillow's own warning, then our refusal
def test_read_image_takes_an_upload_and_checks_the_header_before_decoding(png_claiming):
    import io

    from ibit_deploy.data.sources import ImageTooLarge, read_image

    buffer = io.BytesIO()
    Image.fromarray(np.zeros((8, 8), np.int32)).save(buffer, format="TIFF")
    with pytest.raises(ValueError, match=r"upload: mode 'I' \(32-bit integer pixels\)"):
        read_image(io.BytesIO(buffer.getvalue()), name="upload")
    with pytest.raises(ImageTooLarge, match=r"upload: 12300x12300 = 151290000 pixels exceeds the limit"):
        read_image(io.BytesIO(png_claiming(12300, 12300)), name="upload")
    with pytest.raises(ImageTooLarge, match=r"upload: .*decompression bomb"):
        read_image(io.BytesIO(png_claiming(40000, 40000)), name="upload")
