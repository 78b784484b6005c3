"""fold_masks: static (heads, T, T) constants with outputs equal to the trained model's."""

from __future__ import annotations

import pytest
import torch

import ibit_deploy.models as models
from ibit_deploy.fold import fold_masks, max_fold_error
from ibit_deploy.models.registry import VARIANTS


@pytest.mark.parametrize("name", sorted(VARIANTS))
@pytest.mark.parametrize("mode", ["mask", "bias"])
def test_fold_equals_unfolded(name, mode):
    torch.manual_seed(0)
    _, _, patch = VARIANTS[name]
    model = models.create_model(name, attn_mode=mode, depth=2, img_size=patch * 4).eval()
    with torch.no_grad():  # trained masks are not the init: perturb so folding is tested on arbitrary factors
        for attn in models.ibit_attentions(model):
            attn.mask_a.add_(0.3 * torch.randn_like(attn.mask_a))
            attn.mask_b.add_(0.3 * torch.randn_like(attn.mask_b))
    chans = model.patch_embed.proj.in_channels
    images = torch.randn(3, chans, patch * 4, patch * 4)
    folded = fold_masks(model)
    assert max_fold_error(model, folded, images) <= 1e-6
    for attn in models.ibit_attentions(folded):
        assert attn.folded and attn.folded_mask.shape == (attn.num_heads, attn.num_tokens, attn.num_tokens)
    assert not any("mask_a" in n or "mask_b" in n for n, _ in folded.named_parameters())
    assert all(not a.folded for a in models.ibit_attentions(model)), "fold_masks must not modify its input"


def test_fold_distilled_and_baseline():
    distilled = models.create_model("ibit_test_patch4_28", distilled=True).eval()
    x = torch.randn(2, 1, 28, 28)
    assert max_fold_error(distilled, fold_masks(distilled), x) <= 1e-6
    vit = models.create_model("vit_tiny_patch16_224", **models.matching_baseline_kwargs("ibit_test_patch4_28")).eval()
    assert max_fold_error(vit, fold_masks(vit), x) == 0.0


def test_fold_inplace_is_idempotent():
    model = models.create_model("ibit_test_patch4_28").eval()
    fold_masks(model, inplace=True)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    fold_masks(model, inplace=True)
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
