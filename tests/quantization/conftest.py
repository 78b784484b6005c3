"""Session fixtures on top of tests/conftest.py's trained tiny IBiT and its fp32 bundle: validation and calibration sets,
and the int8 export.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

EVAL_COUNT = 500  # validation images for gates in tests (the library default is 1000)


@pytest.fixture(scope="session")
def val_set(trained_bundle) -> tuple[np.ndarray, np.ndarray]:
    """EVAL_COUNT held-out validation images and labels, preprocessed as the manifest says."""
    from ibit_deploy.data import eval_arrays

    _, manifest = trained_bundle
    inp = manifest["input"]
    return eval_arrays("mnist5k", "val", tuple(inp["image_size"]), tuple(inp["mean"]), tuple(inp["std"]),
                       limit=EVAL_COUNT)


@pytest.fixture(scope="session")
def calibration_images(trained_bundle) -> np.ndarray:
    from ibit_deploy.calibration import build_calibration_set

    _, manifest = trained_bundle
    return build_calibration_set("mnist5k", manifest["input"], 128, seed=0)


@pytest.fixture(scope="session")
def int8_export(trained_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """The trained checkpoint exported end to end with --precision int8 (default options, gate on 500 images)."""
    from ibit_deploy.export.pipeline import ExportOptions, export_checkpoint

    out = tmp_path_factory.mktemp("quant") / "bundle_int8"
    options = ExportOptions(precision="int8", quantize={"eval_count": EVAL_COUNT, "threads": 1})
    return out, export_checkpoint(trained_checkpoint, out, options)
