"""Calibration data for INT8: stratified, seeded real images preprocessed as the manifest says, stored as .npz."""

from .dataset import MIN_SAMPLES, build_calibration_set, input_geometry, validate_calibration
from .recipe import CalibrationRecipe, calibrate, check_count, count_note, default_input_block, load_recipe
from .store import CALIBRATION_FORMAT, array_sha256, load_calibration, save_calibration

__all__ = [
    "CALIBRATION_FORMAT", "MIN_SAMPLES", "CalibrationRecipe", "array_sha256", "build_calibration_set", "calibrate",
    "check_count", "count_note",
    "default_input_block", "input_geometry", "load_calibration", "load_recipe", "save_calibration",
    "validate_calibration",
]
