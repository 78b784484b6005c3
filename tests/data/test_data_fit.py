"""check_data_fits: the one check of ``--data`` against a trained model (classes, channels, image size), and every
command that takes ``--data`` for an existing model running it (exit 2 naming the data, the value and the model)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from ibit_deploy.data.fit import ModelInput, check_data_fits

DIGITS = tuple(str(i) for i in range(10))


def _folder(root, classes, size=28, mode="L", per_class=6):
    rng = np.random.default_rng(0)
    shape = (size, size) if mode == "L" else (size, size, 3)
    for name in classes:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(root / name / f"{i}.png")
    return f"imagefolder:{root}"


def _model(**changes) -> ModelInput:
    fields = {"where": "checkpoint ck", "classes": DIGITS, "channels": 1, "image_size": (28, 28),
              "trained_on": "mnist5k", **changes}
    return ModelInput(**fields)


def test_data_of_the_models_classes_channels_and_size_fits(tmp_path):
    spec = _folder(tmp_path / "digits", DIGITS)
    assert check_data_fits(spec, _model()).classes == list(DIGITS)
    assert check_data_fits("mnist5k", _model()).images.shape[1:] == (28, 28, 1)


def test_fewer_classes_are_refused_naming_both_counts(tmp_path):
    spec = _folder(tmp_path / "three", ["0", "1", "2"])
    with pytest.raises(ValueError, match=rf"dataset '{spec}' has 3 classes \(0, 1, 2\) but checkpoint ck predicts "
                                         r"10 \(0, 1, 2, 3, 4, 5, 6, 7, 8, 9\)"):
        check_data_fits(spec, _model())


def test_other_class_names_or_order_are_refused(tmp_path):
    spec = _folder(tmp_path / "named", ["cat", "dog"])
    with pytest.raises(ValueError, match=r"names its classes cat, dog but checkpoint ck was trained on a, b: label 0 "
                                         r"is 'cat' in the data and 'a' to the model"):
        check_data_fits(spec, _model(classes=("a", "b")))
    with pytest.raises(ValueError, match=r"the same names in another order"):
        check_data_fits(spec, _model(classes=("dog", "cat")))


def test_channels_and_image_size_are_refused(tmp_path):
    rgb = _folder(tmp_path / "rgb", DIGITS, mode="RGB")
    with pytest.raises(ValueError, match=rf"dataset '{rgb}' has 3-channel images but checkpoint ck takes 1-channel"):
        check_data_fits(rgb, _model())
    big = _folder(tmp_path / "big", DIGITS, size=64, per_class=1)
    with pytest.raises(ValueError, match=rf"dataset '{big}' has 64x64 images but checkpoint ck takes 28x28 \(and was "
                                         r"trained on 28x28 images of mnist5k\)"):
        check_data_fits(big, _model())


def test_a_model_trained_on_resized_images_takes_data_of_that_size(tmp_path):
    train = _folder(tmp_path / "train", DIGITS, size=16, per_class=1)
    test = _folder(tmp_path / "test", DIGITS, size=16, per_class=1)
    model = _model(image_size=(32, 32), trained_on=train)  # trained with --image-size 32 on 16x16 images
    check_data_fits(train, model)
    check_data_fits(test, model)
    with pytest.raises(ValueError, match=r"has 28x28 images but checkpoint ck takes 32x32 \(and was trained on 16x16"):
        check_data_fits("mnist5k", model)


def test_model_input_from_a_config_and_a_manifest(tiny_checkpoint, trained_bundle):
    config = json.loads((tiny_checkpoint / "config.json").read_text())
    assert ModelInput.from_config(config, "ck") == ModelInput("ck", DIGITS, 1, (28, 28), "mnist5k")
    assert ModelInput.from_manifest(trained_bundle[1], "b") == ModelInput("b", DIGITS, 1, (28, 28), "mnist5k")


# ------------------------------------------------------------------------------------- every command runs the check

@pytest.fixture(scope="module")
def three_classes(tmp_path_factory):
    return _folder(tmp_path_factory.mktemp("three") / "f", ["0", "1", "2"])


def _refused(err: str, spec: str) -> bool:
    return f"dataset '{spec}' has 3 classes" in err and "predicts 10" in err and "Traceback" not in err


def test_export_refuses_data_of_other_classes(tiny_checkpoint, three_classes, tmp_path, capsys):
    from ibit_deploy.cli.export import main

    for precision in ("fp16,int8", "fp32"):
        out = tmp_path / precision
        code = main([str(tiny_checkpoint), "--precision", precision, "--data", three_classes, "--out", str(out)])
        err = capsys.readouterr().err
        assert code == 2 and _refused(err, three_classes), err
        assert not out.exists()


def test_eval_bench_and_calibrate_refuse_data_of_other_classes(tiny_checkpoint, trained_bundle, three_classes,
                                                               tmp_path, capsys):
    from ibit_deploy.cli.bench import main as bench
    from ibit_deploy.cli.calibrate import main as calibrate
    from ibit_deploy.cli.evaluate import main as evaluate

    assert evaluate([str(tiny_checkpoint), "--data", three_classes, "--out", str(tmp_path)]) == 2
    assert _refused(capsys.readouterr().err, three_classes)
    assert bench([trained_bundle[0].as_posix(), "--data", three_classes, "--backends", "ort-cpu",
                  "--out", str(tmp_path / "bench")]) == 2
    assert _refused(capsys.readouterr().err, three_classes)
    out = tmp_path / "calib.npz"
    assert calibrate(["--bundle", str(trained_bundle[0]), "--spec", three_classes, "--out", str(out)]) == 2
    assert _refused(capsys.readouterr().err, three_classes) and not out.exists()
