"""ibit-train writes only into a new or empty --out (or resumes its own run there); bad model kwargs are bad input."""

from __future__ import annotations

import shutil

import pytest

from ibit_deploy.cli.train import main
from ibit_deploy.train import train

from .conftest import tiny_config


def test_checkpoint_without_resume_state_is_not_replaced(trained_run, tmp_path, capsys):
    # what export needs (weights + config + metrics) but no train_state.pt: used to be silently overwritten
    run, _ = trained_run
    keep = tmp_path / "exportable"
    shutil.copytree(run, keep, ignore=shutil.ignore_patterns("train_state.pt"))
    before = {p.name: p.read_bytes() for p in keep.iterdir()}
    config = tiny_config(keep)
    assert main(["--model", config.model, "--data", config.data, "--epochs", "1", "--max-steps-per-epoch", "1",
                 "--num-workers", "0", "--quiet", "--out", str(keep)]) == 2
    err = capsys.readouterr().err
    assert "is not empty" in err and "config.json" in err and "new or empty --out" in err
    assert {p.name: p.read_bytes() for p in keep.iterdir()} == before


def test_any_non_empty_directory_is_refused_but_an_empty_one_or_leftover_temps_are_fine(tmp_path):
    other = tmp_path / "bundle"
    other.mkdir()
    (other / "manifest.json").write_text("{}")
    with pytest.raises(FileExistsError, match=r"bundle is not empty \(manifest.json\)"):
        train(tiny_config(other, epochs=1, max_steps_per_epoch=1))
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / ".model.safetensors.999999999.abcd1234.tmp").write_bytes(b"killed write")
    result = train(tiny_config(empty, epochs=1, max_steps_per_epoch=1))
    assert result["epoch"] == 1 and not list(empty.glob(".*.tmp"))


def test_invalid_model_kwargs_exit_2_and_write_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["--model", "ibit_test_patch4_28", "--model-kwargs", '{"depth": -1}', "--data", "synthetic:64",
                 "--num-workers", "0", "--quiet", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "cannot build model 'ibit_test_patch4_28' with kwargs {" in err and "'depth': -1}" in err and "Traceback" not in err
    assert not out.exists()
