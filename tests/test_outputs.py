"""Commands refuse to write over a checkpoint's or a bundle's files, or over a file of another kind."""

from __future__ import annotations

import numpy as np
import pytest

from ibit_deploy.cli.calibrate import main as calibrate_main
from ibit_deploy.cli.distill import main as distill_main
from ibit_deploy.cli.masks import main as masks_main
from ibit_deploy.devicekit.fileio import sha256_file
from ibit_deploy.devicekit.manifest import artifact_entry, load_manifest, set_artifact, write_manifest
from ibit_deploy.outputs import CALIBRATION, check_output_file, owner_of


@pytest.fixture
def bundle(tmp_path):
    """A bundle whose manifest lists model.onnx and calib.npz (placeholder bytes; the hashes are real)."""
    root = tmp_path / "bundle"
    root.mkdir()
    manifest = {"input": {"name": "images", "shape": ["batch", 1, 28, 28], "image_size": [28, 28], "mean": [0.1307],
                          "std": [0.3081]}, "data": {"spec": "mnist5k"}, "artifacts": []}
    (root / "model.onnx").write_bytes(b"onnx bytes")
    np.savez(root / "calib.npz", images=np.zeros(1, np.float32))
    for name, kind in (("model.onnx", "onnx"), ("calib.npz", "calibration")):
        set_artifact(manifest, artifact_entry(root, name, kind, "fp32"))
    write_manifest(root, manifest)
    return root


def _hashes(folder):
    return {p.name: sha256_file(p) for p in folder.iterdir() if p.is_file()}


def test_calibrate_refuses_a_checkpoints_weights(tiny_checkpoint, capsys):
    before = _hashes(tiny_checkpoint)
    out = tiny_checkpoint / "model.safetensors"
    assert calibrate_main(["--spec", "mnist5k", "--count", "16", "--out", str(out)]) == 2
    assert f"it is part of the checkpoint {tiny_checkpoint}" in capsys.readouterr().err
    assert _hashes(tiny_checkpoint) == before


def test_calibrate_refuses_a_bundle_artifact_and_its_manifest(bundle, capsys):
    before = _hashes(bundle)
    assert calibrate_main(["--bundle", str(bundle), "--count", "16", "--out", str(bundle / "calib.npz")]) == 2
    assert "it is an artifact of the bundle" in capsys.readouterr().err
    assert calibrate_main(["--spec", "mnist5k", "--count", "16", "--out", str(bundle / "manifest.json")]) == 2
    assert "it is the manifest of the bundle" in capsys.readouterr().err
    assert _hashes(bundle) == before
    load_manifest(bundle)  # still verifies


def test_calibrate_overwrites_its_own_kind_only(bundle, tmp_path, capsys):
    own = tmp_path / "calib.npz"
    assert calibrate_main(["--bundle", str(bundle), "--count", "16", "--out", str(own)]) == 0
    assert calibrate_main(["--bundle", str(bundle), "--count", "16", "--seed", "2", "--out", str(own)]) == 0
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes")
    assert calibrate_main(["--spec", "mnist5k", "--count", "16", "--out", str(notes)]) == 2
    assert "it is a file of no kind ibit-deploy writes" in capsys.readouterr().err and notes.read_text() == "my notes"


def test_masks_refuse_a_manifest(bundle, capsys):
    before = _hashes(bundle)
    assert masks_main(["ibit_test_patch4_28", "--out", str(bundle / "manifest.json")]) == 2
    assert "refusing to write a mask plot over" in capsys.readouterr().err
    assert _hashes(bundle) == before


def test_distill_logits_refuse_a_bundle_artifact(bundle, tiny_checkpoint, capsys):
    before = _hashes(bundle)
    assert distill_main([str(tiny_checkpoint), "--out", str(bundle / "model.onnx")]) == 2
    assert "it is an artifact of the bundle" in capsys.readouterr().err
    assert _hashes(bundle) == before


def test_owner_and_directories(bundle, tmp_path):
    assert owner_of(tmp_path / "elsewhere.npz") is None and owner_of(bundle / "unlisted.npz") is None
    with pytest.raises(IsADirectoryError, match="is a directory"):
        check_output_file(bundle, CALIBRATION)
