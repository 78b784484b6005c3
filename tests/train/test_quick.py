"""train_steps: the fixed-step loop that gives tests and benchmarks a model trained enough to check accuracy."""

from __future__ import annotations

import pytest
import torch

from ibit_deploy.data import build_dataset
from ibit_deploy.models import create_model
from ibit_deploy.train.quick import train_steps


def _digits(count: int) -> tuple[torch.Tensor, torch.Tensor]:
    dataset, _ = build_dataset("mnist5k", "train")
    images = torch.stack([dataset[i][0] for i in range(count)])
    return images, torch.as_tensor(dataset.labels[:count])


def _accuracy(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    with torch.inference_mode():
        return (model(images).argmax(1) == labels).float().mean().item()


def test_train_steps_learns_digits_and_returns_eval_mode() -> None:
    torch.manual_seed(0)
    images, labels = _digits(512)
    model = create_model("ibit_test_patch4_28")
    before = _accuracy(model.eval(), images, labels)
    trained = train_steps(model, images, labels, steps=80, lr=3e-3)
    assert trained is model and not model.training
    assert _accuracy(model, images, labels) > before + 0.2


def test_train_steps_is_reproducible_for_a_seed() -> None:
    images, labels = _digits(128)
    outputs = []
    for seed in (7, 7, 8):
        torch.manual_seed(0)  # same initial weights every time: only train_steps' own seed differs
        model = train_steps(create_model("ibit_test_patch4_28"), images, labels, steps=3, lr=1e-3, seed=seed)
        with torch.inference_mode():
            outputs.append(model(images[:4]))
    torch.testing.assert_close(outputs[0], outputs[1], rtol=0, atol=0)
    assert not torch.equal(outputs[0], outputs[2])  # the seed picks the batches


@pytest.mark.parametrize(("count", "steps", "match"), [(0, 1, "labels"), (8, 0, "steps must be >= 1")])
def test_train_steps_rejects_bad_input(count: int, steps: int, match: str) -> None:
    images, labels = _digits(8)
    with pytest.raises(ValueError, match=match):
        train_steps(create_model("ibit_test_patch4_28"), images[:count], labels[:count], steps=steps, lr=1e-3)


def test_train_steps_rejects_mismatched_labels() -> None:
    images, labels = _digits(8)
    with pytest.raises(ValueError, match="8 images, 7 labels"):
        train_steps(create_model("ibit_test_patch4_28"), images, labels[:7], steps=1, lr=1e-3)
