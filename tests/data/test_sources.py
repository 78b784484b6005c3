"""Image sources on small files written in the real formats: CIFAR-10 python batches and ImageFolder trees."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
from PIL import Image

from ibit_deploy.data import build_dataset, load_source
from ibit_deploy.data.sources import load_cifar10, load_imagefolder

NAMES = [b"airplane", b"automobile", b"bird"]


def _batch(n: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {b"batch_label": b"training batch", b"labels": [int(v) for v in rng.integers(0, 3, n)],
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"filenames": [b"x.png"] * n}


def _write_cifar(root, batches=(12, 8), test=6):
    root.mkdir(parents=True, exist_ok=True)
    for i, n in enumerate(batches, start=1):
        (root / f"data_batch_{i}").write_bytes(pickle.dumps(_batch(n, i), protocol=2))
    (root / "test_batch").write_bytes(pickle.dumps(_batch(test, 99), protocol=2))
    (root / "batches.meta").write_bytes(pickle.dumps({b"label_names": NAMES, b"num_vis": 3072}, protocol=2))
    return root


def test_cifar10_python_format(tmp_path):
    root = _write_cifar(tmp_path / "cifar-10-batches-py")
    raw = load_cifar10(root)
    first = _batch(12, 1)
    assert raw.images.shape == (20, 32, 32, 3) and raw.images.dtype == np.uint8
    assert raw.classes == ["airplane", "automobile", "bird"]
    assert raw.labels[:12].tolist() == first[b"labels"]
    # Rows are channel planes (1024 R, then G, then B), each row-major 32x32.
    r, c = 5, 17
    assert raw.images[0, r, c].tolist() == [int(first[b"data"][0, ch * 1024 + r * 32 + c]) for ch in range(3)]
    assert raw.test_images.shape == (6, 32, 32, 3)
    train, info = build_dataset(f"cifar10:{root}", "train", val_fraction=0.25)
    assert info.channels == 3 and info.classes == ("airplane", "automobile", "bird")
    image, label, index = train[0]
    assert tuple(image.shape) == (3, 32, 32) and index == 0


class _Evil:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def test_malicious_pickle_is_refused_without_running_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    root = _write_cifar(tmp_path / "cifar")
    (root / "data_batch_1").write_bytes(pickle.dumps({b"data": _Evil(), b"labels": [0]}))
    with pytest.raises(ValueError, match=r"data_batch_1 is not a CIFAR-10 python-format batch.*refusing.*system"):
        load_cifar10(root)
    assert not (tmp_path / "PWNED").exists()


def test_wrong_shapes_are_named(tmp_path):
    root = _write_cifar(tmp_path / "cifar")
    bad = {b"data": np.zeros((4, 100), np.uint8), b"labels": [0, 1, 2, 0]}
    (root / "data_batch_2").write_bytes(pickle.dumps(bad))
    with pytest.raises(ValueError, match=r"data_batch_2: expected uint8 data of shape \(N, 3072\)"):
        load_cifar10(root)
    mismatch = {b"data": np.zeros((4, 3072), np.uint8), b"labels": [0, 1]}
    (root / "data_batch_2").write_bytes(pickle.dumps(mismatch))
    with pytest.raises(ValueError, match="data_batch_2"):
        load_cifar10(root)


def test_cifar_missing_pieces(tmp_path):
    with pytest.raises(FileNotFoundError, match="CIFAR-10 folder not found: .*nowhere"):
        load_cifar10(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no data_batch_1..5"):
        load_cifar10(tmp_path / "empty")
    root = _write_cifar(tmp_path / "nometa")
    (root / "batches.meta").unlink()
    with pytest.raises(FileNotFoundError, match="batches.meta"):
        load_cifar10(root)


def _write_folder(root, sizes=((10, 12), (10, 12)), mode="RGB", per_class=3):
    for k, name in enumerate(["cat", "dog"]):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            color = (40 * k + i, 100, 200) if mode == "RGB" else 40 * k + i
            Image.new(mode, sizes[k], color).save(root / name / f"{i}.png")
    return root


def test_imagefolder_rgb(tmp_path):
    root = _write_folder(tmp_path / "rgb", sizes=((10, 12), (20, 24)))
    raw = load_imagefolder(root)
    assert raw.classes == ["cat", "dog"] and raw.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert raw.images.shape == (6, 12, 10, 3)  # every image resized to the first one's size (W=10, H=12)
    assert raw.images[0, 0, 0].tolist() == [0, 100, 200]
    assert len(raw.mean) == 3 and all(s > 0 for s in raw.std)
    dataset, info = build_dataset(f"imagefolder:{root}", "val", image_size=(16, 16), val_fraction=0.34)
    assert info.classes == ("cat", "dog") and tuple(dataset[0][0].shape) == (3, 16, 16)


def test_imagefolder_grayscale_has_one_channel(tmp_path):
    raw = load_source(f"imagefolder:{_write_folder(tmp_path / 'gray', mode='L')}")
    assert raw.images.shape[-1] == 1 and raw.images[3, 0, 0, 0] == 40


def test_imagefolder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="ImageFolder root not found: .*absent"):
        load_imagefolder(tmp_path / "absent")
    (tmp_path / "empty" / "cat").mkdir(parents=True)
    with pytest.raises(ValueError, match="no images found"):
        load_imagefolder(tmp_path / "empty")
    root = _write_folder(tmp_path / "corrupt")
    (root / "dog" / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(ValueError, match=r"broken.png is not a readable image"):
        load_imagefolder(root)


def test_spec_errors():
    with pytest.raises(ValueError, match="cifar10 needs a folder"):
        load_source("cifar10")
    with pytest.raises(ValueError, match="unknown dataset spec 'imagenet'"):
        load_source("imagenet")
