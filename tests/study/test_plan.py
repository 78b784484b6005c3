"""The study plan: run order, equal budgets, and the bad-input errors raised before anything is written."""

from __future__ import annotations

import pytest

from ibit_deploy.study.candidates import CANDIDATES, model_spec, parse_candidates
from ibit_deploy.study.plan import StudyConfig, budget, build_plan, fraction_order, parse_fractions, validate

TINY = dict(data="synthetic:256", steps=24, embed_dim=32, depth=2, num_heads=2, batch_size=16)


def test_order_is_seed_major_priority_fractions_first_teachers_before_student():
    runs = build_plan(StudyConfig(**TINY, candidates=["ibit", "ibit_kd", "vit"], seeds=[0, 1],
                                  fractions=[0.1, 0.25, 0.5, 1.0]))
    keys = [(r.seed, r.fraction) for r in runs]
    assert keys == sorted(keys, key=lambda k: (k[0], [1.0, 0.25, 0.1, 0.5].index(k[1])))
    first = [r.id for r in runs[:5]]
    assert first == ["s0/f100/ibit", "s0/f100/vit", "s0/f100/resnet", "s0/f100/rednet", "s0/f100/ibit_kd"]
    kd = runs[4]
    assert kd.after == ["s0/f100/resnet", "s0/f100/rednet"] and kd.train["distill"]["kind"] == "hard"
    roles = {r.name: r.role for r in runs}
    assert roles["resnet"] == "teacher" and roles["rednet"] == "teacher"  # resnet not asked for: teacher only
    assert fraction_order([0.5, 0.1, 1.0, 0.25]) == [1.0, 0.25, 0.1, 0.5]


def test_every_candidate_of_a_fraction_gets_the_same_steps_and_recipe():
    runs = build_plan(StudyConfig(**TINY, candidates=list(CANDIDATES), seeds=[0], fractions=[0.5, 1.0]))
    for fraction in (0.5, 1.0):
        same = [r for r in runs if r.fraction == fraction]
        assert len({r.budget["steps"] for r in same}) == 1
        recipe = {(r.train["lr"], r.train["batch_size"], r.train["epochs"], r.train["max_steps_per_epoch"],
                   r.train["warmup_epochs"], r.train["subset"]) for r in same}
        assert len(recipe) == 1
    b = budget(1000, 64, 1875)
    assert b["steps"] - 1875 < b["epochs"] and b["steps"] >= 1875 and b["steps_per_epoch"] <= 15


def test_dims_are_shared_and_convit_width_is_per_token():
    for name in ("ibit", "vit", "convit", "ibit_bias", "ibit_impulse"):
        _, kwargs = model_spec(CANDIDATES[name], 96, 4, 3)
        assert (kwargs["embed_dim"], kwargs["depth"], kwargs["num_heads"]) == (96, 4, 3)
    assert model_spec(CANDIDATES["convit"], 96, 4, 3)[1]["local_up_to_layer"] == 3
    assert "embed_dim" not in model_spec(CANDIDATES["resnet"], 96, 4, 3)[1]


def test_unknown_candidate_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown candidate.*'deit'.*known candidates: ibit, vit, convit"):
        parse_candidates("ibit,deit")


@pytest.mark.parametrize("text", ["0", "1.5", "-0.1", "nan", "x"])
def test_fraction_outside_unit_interval(text):
    with pytest.raises(ValueError, match=r"--fractions must be .*\(0, 1\]"):
        parse_fractions(text)


def test_budget_smaller_than_one_epoch_of_the_smallest_fraction():
    # synthetic:256 -> 204 training images; 50% = 104 images = 6 batches of 16
    with pytest.raises(ValueError, match=r"--steps 5 is too small: one epoch of the smallest fraction \(0.5, 104 "
                                         r"images at batch 16\) takes 6 steps"):
        validate(StudyConfig(**{**TINY, "steps": 5}, fractions=[0.5, 1.0]))
    validate(StudyConfig(**{**TINY, "steps": 6}, fractions=[0.5, 1.0]))


def test_too_few_images_per_class():
    with pytest.raises(ValueError, match="class 'class0' has 1 image.*at least 2 per class"):
        validate(StudyConfig(**{**TINY, "data": "synthetic:4", "batch_size": 1, "steps": 1}))
    with pytest.raises(ValueError, match="fraction 0.1 leaves 20 training images, fewer than one batch of 64"):
        validate(StudyConfig(**{**TINY, "batch_size": 64}, fractions=[0.1]))


def test_every_planned_model_builds_and_runs_at_the_study_dims():
    import torch

    from ibit_deploy.data import data_info
    from ibit_deploy.train.build import build_model, model_kwargs_for

    runs = build_plan(StudyConfig(**TINY, candidates=list(CANDIDATES), seeds=[0], fractions=[1.0]))
    info = data_info("synthetic:256")
    assert {r.name for r in runs} == {*CANDIDATES, "rednet"}
    for r in runs:
        kwargs = model_kwargs_for(r.train["model"], dict(r.train["model_kwargs"]), info, r.train["distill"] is not None)
        model = build_model(r.train["model"], kwargs).eval()
        with torch.no_grad():
            assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 4), r.id


def test_a_backend_alias_is_stored_by_its_canonical_name():
    # the worker picks the export by the canonical name: an alias kept raw would export ONNX for a TensorRT study
    config = StudyConfig(**TINY, backend="trt")
    validate(config)
    assert config.backend == "tensorrt"
