"""Recipes in calibration/ and the ibit-calibrate CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ibit_deploy.calibration import CalibrationRecipe, load_calibration, load_recipe
from ibit_deploy.cli.calibrate import main

REPO = Path(__file__).resolve().parents[2]


def test_repository_recipes_load():
    recipes = sorted((REPO / "calibration").glob("*.json"))
    assert recipes, "calibration/ should hold at least one recipe"
    for path in recipes:
        assert isinstance(load_recipe(path), CalibrationRecipe)


def test_recipe_rejects_unknown_keys_and_the_val_split(tmp_path):
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"spec": "mnist5k", "cnt": 10}))
    with pytest.raises(ValueError, match=r"r\.json.*unknown .*field.*cnt"):
        load_recipe(path)
    with pytest.raises(ValueError, match="held out"):
        CalibrationRecipe(split="val")


def test_cli_builds_from_recipe_and_flags(tmp_path, capsys):
    recipe = tmp_path / "r.json"
    recipe.write_text(json.dumps({"spec": "mnist5k", "count": 64, "seed": 1}))
    out = tmp_path / "calib.npz"
    assert main(["--recipe", str(recipe), "--count", "40", "--out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    images, meta = load_calibration(out, (1, 28, 28))
    assert images.shape == (40, 1, 28, 28) and meta["seed"] == 1 and printed["images_sha256"] == meta["images_sha256"]
    assert sum(meta["class_counts"].values()) == 40
    assert meta["preprocessing"]["mean"] == [0.1307]
    # same recipe, same bytes: a Jetson rebuilding the set gets the identical array
    assert main(["--recipe", str(recipe), "--count", "40", "--out", str(tmp_path / "again.npz")]) == 0
    assert np.array_equal(images, load_calibration(tmp_path / "again.npz")[0])


def test_cli_reports_too_few_images(tmp_path, capsys):
    assert main(["--spec", "mnist5k", "--count", "20", "--method", "entropy", "--out", str(tmp_path / "c.npz")]) == 2
    assert "count must be an integer >= 32" in capsys.readouterr().err
    assert not (tmp_path / "c.npz").exists()
