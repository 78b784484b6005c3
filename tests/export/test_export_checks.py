"""ibit-export checks its inputs before writing anything: checkpoint config vs model, options, --require-engine."""

from __future__ import annotations

import importlib.util
import json
import shutil

import pytest
import torch

from ibit_deploy.cli.export import main
from ibit_deploy.devicekit.fileio import sha256_file
from ibit_deploy.export.pipeline import export_checkpoint

from ..conftest import exit_code


def _variant(checkpoint, tmp_path, edit):
    copy = tmp_path / "ck"
    shutil.copytree(checkpoint, copy)
    config = json.loads((copy / "config.json").read_text())
    edit(config)
    (copy / "config.json").write_text(json.dumps(config))
    return copy


@pytest.mark.parametrize("edit, message", [
    (lambda c: c.update(classes=c["classes"][:5]), r"5 class names for a model with 10 outputs"),
    (lambda c: c["input"].update(std=[0.0]), r"input.std must be > 0"),
    (lambda c: c["input"].update(mean=[0.1, 0.2, 0.3]), r"input.mean has 3 values, the model takes 1-channel"),
    (lambda c: c["input"].update(in_chans=3), r"input.in_chans is 3, but the model's weights take 1-channel"),
    (lambda c: c["input"].update(std=["wide"]), r"input.std must be a non-empty list of numbers"),
    (lambda c: c["data"].update(classes=c["data"]["classes"][:5]),
     r"data.classes has 5 names beside 10 in classes; the config contradicts itself"),
    (lambda c: c["data"].update(classes=c["data"]["classes"][::-1]), r"data.classes has the same number of names"),
    (lambda c: [c.update(classes=["0"] * 10), c["data"].update(classes=["0"] * 10)],
     r"classes names \['0'\] more than once"),
    (lambda c: c["data"].update(std=[0.0]), r"data.std must be > 0 for every channel"),
    (lambda c: c.update(format_version=99), r"format_version 99 is not one this version of ibit-deploy reads"),
    (lambda c: c["input"].update(image_size=[32, 32]), r"input.image_size is 32x32, but the model takes 28x28"),
    (lambda c: c["data"].update(image_size=[14, 28]), r"data.image_size is 14x28, but the model takes 28x28"),
    (lambda c: c["input"].update(image_size="big"), r"input.image_size must be \[height, width\] in pixels"),
], ids=["classes", "std0", "mean-length", "in_chans", "std-type", "data.classes-count", "data.classes-order",
        "duplicate-classes", "data.std0", "format_version", "image_size", "data.image_size", "image_size-type"])
def test_inconsistent_checkpoint_config_is_bad_input(tiny_checkpoint, tmp_path, capsys, edit, message):
    out = tmp_path / "bundle"
    assert main([str(_variant(tiny_checkpoint, tmp_path, edit)), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "config.json" in err and __import__("re").search(message, err), err
    assert not out.exists()  # refused before the output folder was made


def test_integer_weights_are_refused_not_cast(tiny_checkpoint, tmp_path, capsys):
    from safetensors.torch import load_file, save_file

    copy = tmp_path / "ck"
    shutil.copytree(tiny_checkpoint, copy)
    state = load_file(str(copy / "model.safetensors"))
    name = next(k for k in state if k.endswith("head.weight"))
    state[name] = state[name].round().to(torch.int32)
    save_file(state, str(copy / "model.safetensors"))
    assert main([str(copy), "--out", str(tmp_path / "b")]) == 2
    assert f"tensor {name!r} is torch.int32, expected a floating-point dtype" in capsys.readouterr().err


def test_bad_options_leave_an_existing_bundle_untouched(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "bundle"
    export_checkpoint(tiny_checkpoint, out)
    before = {p.name: sha256_file(p) for p in out.iterdir()}
    for extra, message in ((["--opset", "99"], "--opset must be an integer in [17, "),
                           (["--precision", "int8", "--calib-count", "0"], "count must be"),
                           (["--precision", "int8", "--data", f"imagefolder:{tmp_path / 'absent'}"], "absent"),
                           (["--require-engine"], "--require-engine needs --to tensorrt or --to torch-tensorrt")):
        assert exit_code(main, [str(tiny_checkpoint), "--out", str(out), *extra]) == 2, extra
        assert message in capsys.readouterr().err
        assert {p.name: sha256_file(p) for p in out.iterdir()} == before, extra


@pytest.mark.skipif(importlib.util.find_spec("torch_tensorrt") is not None and torch.cuda.is_available(),
                    reason="torch-tensorrt can build here")
def test_require_engine_for_torch_tensorrt_is_a_requirement_unmet(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "bundle"
    assert main([str(tiny_checkpoint), "--to", "torch-tensorrt", "--require-engine", "--out", str(out)]) == 3
    assert "--require-engine: no torch-tensorrt engine can be built" in capsys.readouterr().err
    assert not out.exists()


def test_parity_without_real_images_says_so(tiny_checkpoint, tmp_path, capsys):
    absent = tmp_path / "data-elsewhere"
    ck = _variant(tiny_checkpoint, tmp_path, lambda c: c["data"].update(spec=f"imagefolder:{absent}"))
    with pytest.warns(UserWarning, match="checks use 16 random normal inputs, NOT real images"):
        manifest = export_checkpoint(ck, tmp_path / "bundle")
    inputs = manifest["artifacts"][0]["parity"]["inputs"]
    assert "NOT real images" in inputs and str(absent) in inputs
