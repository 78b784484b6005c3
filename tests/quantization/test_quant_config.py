"""Quantization configs: JSON round trip, unknown keys rejected, TensorRT-incompatible settings refused."""

from __future__ import annotations

import json

import pytest

from ibit_deploy.calibration import CalibrationRecipe
from ibit_deploy.quantization import Fp16Config, Int8Config, QuantizeOptions


@pytest.mark.parametrize("config", [
    Int8Config(),
    Int8Config(method="percentile", percentile=99.9, per_channel=False, include=["head"], exclude=["re:blocks\\.0\\..*"],
               op_types=["MatMul"], calibration_count=64, seed=3),
    Fp16Config(),
    Fp16Config(keep_io_types=False, keep_op_types=["LayerNormalization"], frobenius_fp32=False, keep_fp32=["head"]),
])
def test_config_round_trips_through_json(config):
    restored = type(config).from_dict(json.loads(json.dumps(config.to_dict())))
    assert restored == config


@pytest.mark.parametrize("cls", [Int8Config, Fp16Config])
def test_unknown_keys_are_rejected_by_name(cls):
    data = {**cls().to_dict(), "symetric": True}
    with pytest.raises(ValueError, match="unknown .*field.*symetric"):
        cls.from_dict(data)


@pytest.mark.parametrize("kwargs, message", [
    ({"method": "kl"}, "method must be one of"),
    ({"percentile": 101.0}, "percentile"),
    ({"percentile": float("nan")}, "percentile"),
    ({"symmetric_activations": False}, "symmetric"),
    ({"symmetric_weights": False}, "symmetric"),
    ({"op_types": ["Softmax"]}, "not supported"),
    ({"exclude": "head"}, "list of non-empty pattern"),
    ({"calibration_count": 0}, "positive integer"),
])
def test_int8_config_rejects_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        Int8Config(**kwargs)


def test_defaults_agree_between_recipe_and_config():
    assert CalibrationRecipe().method == Int8Config().method
    assert CalibrationRecipe().count == Int8Config().calibration_count


def test_quantize_options_reject_unknown_and_ignore_none():
    assert QuantizeOptions.from_dict({"max_drop": None, "method": None}).max_drop == 0.01
    assert QuantizeOptions.from_dict({"exclude": "a,b"}).exclude == ["a", "b"]
    with pytest.raises(ValueError, match="unknown quantization option.*calib_cnt"):
        QuantizeOptions.from_dict({"calib_cnt": 10})
    with pytest.raises(ValueError, match="split must be 'train' or 'test'"):
        QuantizeOptions.from_dict({"calib_split": "val"}).recipe_for("mnist5k", {})
