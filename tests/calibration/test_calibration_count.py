"""A calibration count the data cannot give is said, naming the flag the user typed; a count below the method's
minimum is refused naming that flag (not "recipe count")."""

from __future__ import annotations

import pytest

from ibit_deploy.cli.calibrate import main as calibrate
from ibit_deploy.cli.export import main as export

from ..conftest import exit_code


def test_calibrate_says_when_the_split_holds_fewer_images_than_count(tmp_path, capsys):
    out = tmp_path / "calib.npz"
    assert calibrate(["--spec", "synthetic:64", "--count", "100000", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "ibit-calibrate: note: --count 100000: calibrated on 52 images, all that the train split of synthetic:64 " \
           "holds" in err
    assert calibrate(["--spec", "synthetic:64", "--count", "16", "--out", str(out)]) == 0
    assert "note" not in capsys.readouterr().err  # nothing to say when the count was met


def test_calibrate_names_count_below_the_minimum(tmp_path, capsys):
    assert exit_code(calibrate, ["--spec", "synthetic:64", "--count", "0", "--out", str(tmp_path / "c.npz")]) == 2
    assert "--count must be an integer >= 8" in capsys.readouterr().err  # refused when parsed
    assert calibrate(["--spec", "synthetic:64", "--count", "20", "--method", "entropy",
                      "--out", str(tmp_path / "c.npz")]) == 2
    assert "--count must be an integer >= 32 for entropy calibration, got 20" in capsys.readouterr().err


@pytest.fixture(scope="module")
def synthetic_checkpoint(tmp_path_factory, checkpoint_factory):
    return checkpoint_factory(tmp_path_factory.mktemp("syn") / "ck", spec="synthetic:64", num_classes=4)


def test_export_calib_count_is_said_and_named(synthetic_checkpoint, tmp_path, capsys):
    out = tmp_path / "bundle"
    argv = [str(synthetic_checkpoint), "--precision", "int8", "--max-drop", "100", "--out", str(out)]
    assert exit_code(export, [*argv, "--calib-count", "0"]) == 2
    err = capsys.readouterr().err
    assert "--calib-count must be an integer >= 8" in err and "recipe" not in err
    assert export([*argv, "--calib-count", "20", "--calib-method", "entropy"]) == 2
    err = capsys.readouterr().err
    assert "--calib-count must be an integer >= 32 for entropy calibration, got 20" in err and "recipe" not in err
    assert not out.exists()
    assert export([*argv, "--calib-count", "100000"]) == 0
    err = capsys.readouterr().err
    assert "ibit-export: note: --calib-count 100000: calibrated on 52 images, all that the train split of " \
           "synthetic:64 holds" in err
