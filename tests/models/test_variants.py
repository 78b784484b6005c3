"""Every registered variant: timm registry, forward and backward (every parameter gets a gradient), both modes."""

from __future__ import annotations

import pytest
import timm
import torch

import ibit_deploy.models as models
from ibit_deploy.models.registry import VARIANTS

# Shrunk so every variant runs in CI: the architecture code path is the variant's, only depth / image size are small.
SMALL = {"depth": 1}


def small_kwargs(name: str) -> dict:
    _, data, patch = VARIANTS[name]
    return {**SMALL, "img_size": patch * 3}


def test_registered_with_timm():
    listed = timm.list_models("ibit_*")
    assert sorted(listed) == sorted(VARIANTS)
    model = timm.create_model("ibit_test_patch4_28")
    assert isinstance(model, models.IBiT)
    assert model.pretrained_cfg["input_size"] == (1, 28, 28)


def test_every_variant_is_an_explicit_entry_point():
    """timm style: one function per variant, defined in registry.py under its own name (a reader can jump to it)."""
    import inspect

    from ibit_deploy.models import registry

    source = inspect.getsource(registry)
    for name in VARIANTS:
        fn = getattr(registry, name)
        assert fn.__module__ == registry.__name__ and f"def {name}(" in source and fn.__doc__


def test_import_ibit_deploy_alone_registers_with_timm():
    import subprocess
    import sys

    code = ("import timm, ibit_deploy; m = timm.create_model('ibit_test_patch4_28'); "
            "print(type(m).__name__, len(timm.list_models('ibit_*')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["IBiT", str(len(VARIANTS))]


def test_tiny_224_parameter_count_matches_reference():
    model = timm.create_model("ibit_tiny_patch16_224")
    total = sum(p.numel() for p in model.parameters())
    masks = sum(p.numel() for n, p in model.named_parameters() if "mask_" in n)
    assert 5.8e6 < total < 5.9e6  # reference code: 5.8M at rank 9
    assert masks == 12 * 3 * 2 * 9 * 197  # 12 blocks x 3 heads x (A, B) x rank 9 x 197 tokens


@pytest.mark.parametrize("name", sorted(VARIANTS))
@pytest.mark.parametrize("mode", ["mask", "bias"])
def test_forward_backward_reaches_every_parameter(name, mode):
    model = models.create_model(name, attn_mode=mode, **small_kwargs(name)).train()
    chans, _, _ = model.pretrained_cfg["input_size"]
    size = model.pretrained_cfg["input_size"][1]
    out = model(torch.randn(2, chans, size, size))
    assert out.shape == (2, model.num_classes)
    out.square().mean().backward()
    for pname, param in model.named_parameters():
        assert param.grad is not None, pname
        assert torch.isfinite(param.grad).all(), pname
        assert param.grad.abs().sum() > 0, pname


def test_distilled_variant_trains_both_heads_and_averages_in_eval():
    model = models.create_model("ibit_test_patch4_28", distilled=True)
    model.set_distilled_training(True)
    model.train()
    cls_logits, dist_logits = model(torch.randn(3, 1, 28, 28))
    (cls_logits.sum() + dist_logits.sum()).backward()
    assert all(p.grad is not None for p in model.parameters())
    model.eval()
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        feats = model.forward_features(x)  # (B, tokens, dim): token 0 is CLS, token 1 is DIST
        both = (model.head(feats[:, 0]) + model.head_dist(feats[:, 1])) / 2
        assert torch.allclose(model(x), both, atol=1e-6)
    assert model.blocks[0].attn.num_tokens == 2 + 49


@pytest.mark.parametrize("img_size", [(28, 20), (12, 32)])
def test_non_square_grid(img_size):
    model = models.create_model("ibit_test_patch4_28", img_size=img_size)
    attn = model.blocks[0].attn
    assert attn.grid_size == (img_size[0] // 4, img_size[1] // 4)
    assert model(torch.randn(1, 1, *img_size)).shape == (1, 10)
    assert attn.dense_mask().shape == (2, attn.num_tokens, attn.num_tokens)


@pytest.mark.parametrize("rank", [1, 50])
def test_any_rank_in_range(rank):
    model = models.create_model("ibit_test_patch4_28", mask_rank=rank)
    assert model.blocks[0].attn.mask_a.shape == (2, rank, 50)
    assert torch.isfinite(model(torch.randn(1, 1, 28, 28))).all()
