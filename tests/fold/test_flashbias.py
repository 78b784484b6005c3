"""to_flashbias / FlashBiasAttention: SDPA without a mask equals dense-bias attention within the decomposition error."""

from __future__ import annotations

import pytest
import torch

import ibit_deploy.models as models
from ibit_deploy.fold import RankPolicy, fold_masks, to_flashbias
from ibit_deploy.models.flashbias import FlashBiasAttention


def bias_model(depth: int = 2, seed: int = 0, **kwargs) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = models.create_model("ibit_test_patch4_28", attn_mode="bias", depth=depth, **kwargs).eval()
    with torch.no_grad():  # away from the init, so the bias is an arbitrary low-rank-in-rolled-coordinates map
        for attn in models.ibit_attentions(model):
            attn.mask_a.add_(0.3 * torch.randn_like(attn.mask_a))
            attn.mask_b.add_(0.3 * torch.randn_like(attn.mask_b))
    return model


@pytest.mark.parametrize("policy", ["rank=2", "rank=8", "energy=0.9", "energy=1.0"])
def test_flashbias_model_within_decomposition_error(policy):
    model = bias_model()
    images = torch.randn(4, 1, 28, 28)
    dense = fold_masks(model)
    fb, layers = to_flashbias(model, policy)
    assert len(layers) == 2 and all(isinstance(b.attn, FlashBiasAttention) for b in fb.blocks)
    with torch.no_grad():
        ref, out = dense(images), fb(images)
        for block, dense_block, layer in zip(fb.blocks, dense.blocks, layers, strict=True):
            bias_error = float((block.attn.dense_bias() - dense_block.attn.folded_mask).abs().max())
            assert bias_error == pytest.approx(layer["max_abs_error"], rel=1e-3, abs=1e-6)
            assert (layer["head_dim"] + layer["width"]) % 8 == 0 and layer["qk_head_dim"] == block.attn.qk_head_dim
    worst = max(layer["max_abs_error"] for layer in layers)
    # softmax(s + b + e) differs from softmax(s + b) by at most a factor exp(+-2|e|) per weight
    assert float((out - ref).abs().max()) <= 1e-4 + 4 * worst * float(ref.abs().max())
    if policy == "energy=1.0":
        assert worst < 1e-4 and float((out - ref).abs().max()) < 1e-4


def test_exact_when_token_rank_within_rank():
    model = bias_model()
    dense = fold_masks(model)
    with torch.no_grad():  # make each folded bias exactly rank 3 in token coordinates
        for attn in models.ibit_attentions(dense):
            u, s, vh = torch.linalg.svd(attn.folded_mask)
            attn.folded_mask.copy_(u[..., :3] @ torch.diag_embed(s[..., :3]) @ vh[..., :3, :])
    fb, layers = to_flashbias(dense, "rank=3")
    assert all(layer["rank"] == 3 and layer["max_abs_error"] < 1e-5 for layer in layers)
    images = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(fb(images), dense(images), atol=2e-5, rtol=1e-5)


def test_to_flashbias_leaves_input_alone_and_checks_rank():
    model = bias_model(depth=1)
    to_flashbias(model, RankPolicy("rank", 4))
    assert not models.ibit_attentions(model)[0].folded
    tokens = models.ibit_attentions(model)[0].num_tokens
    with pytest.raises(ValueError, match=rf"rank must be in \[1, {tokens}\]"):
        to_flashbias(model, f"rank={tokens + 1}")


def test_not_applicable_models_get_clear_errors():
    mask = models.create_model("ibit_test_patch4_28", attn_mode="mask", depth=1)
    with pytest.raises(ValueError, match="FlashBias does not apply to mask-mode IBiT.*mode: mask"):
        to_flashbias(mask, "rank=4")
    vit = models.create_model("vit_tiny_patch16_224", **models.matching_baseline_kwargs("ibit_test_patch4_28"))
    with pytest.raises(ValueError, match="no IBiT attention"):
        to_flashbias(vit, "rank=4")
