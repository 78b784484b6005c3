"""FlashBiasAttention / flashbias_sdpa: one SDPA call without a mask, and the fused backends that take it."""

from __future__ import annotations

import pytest
import torch

import ibit_deploy.models as models
from ibit_deploy.fold import to_flashbias
from ibit_deploy.models.flashbias import FlashBiasAttention, flashbias_sdpa


def bias_model(depth: int = 2, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    model = models.create_model("ibit_test_patch4_28", attn_mode="bias", depth=depth).eval()
    with torch.no_grad():
        for attn in models.ibit_attentions(model):
            attn.mask_a.add_(0.3 * torch.randn_like(attn.mask_a))
            attn.mask_b.add_(0.3 * torch.randn_like(attn.mask_b))
    return model


def test_flashbias_sdpa_matches_dense_bias_exactly_for_low_rank_bias():
    torch.manual_seed(0)
    q, k, v = (torch.randn(2, 3, 50, 32) for _ in range(3))
    qb, kb = torch.randn(3, 50, 8), torch.randn(3, 50, 8)
    qb[..., 5:] = 0
    dense = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=qb @ kb.transpose(1, 2))
    for pad_value in (False, True):
        out = flashbias_sdpa(q, k, v, qb, kb, 32**-0.5, pad_value=pad_value)
        assert out.shape == v.shape
        torch.testing.assert_close(out, dense, atol=1e-5, rtol=1e-5)


@pytest.mark.filterwarnings("ignore:Flash attention")  # torch explains the rejection it is asked for
def test_cpu_flash_backend_takes_flashbias_with_padded_v():
    from torch.nn.attention import SDPBackend, sdpa_kernel

    model = bias_model()
    images = torch.randn(2, 1, 28, 28)
    fb, layers = to_flashbias(model, "rank=8")
    assert all(layer["v_head_dim"] == layer["qk_head_dim"] for layer in layers)
    with torch.no_grad():
        reference = fb(images)
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):  # only the fused kernel: raises if it rejects the inputs
            torch.testing.assert_close(fb(images), reference, atol=1e-5, rtol=1e-5)
        unpadded, _ = to_flashbias(model, "rank=8", pad_value=False)
        torch.testing.assert_close(unpadded(images), reference, atol=1e-5, rtol=1e-5)
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION), pytest.raises(RuntimeError):
            unpadded(images)  # a narrower v is not for the flash kernel: SDPA would fall back to math


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU to check SDPA backend eligibility")
def test_cuda_flash_and_efficient_backends_accept_flashbias():
    from torch.nn.attention import SDPBackend, sdpa_kernel

    model = bias_model()
    fb, _ = to_flashbias(model, "rank=8")  # v padded: the flash backend needs equal q/k/v head dims
    images = torch.randn(8, 1, 28, 28, device="cuda", dtype=torch.float16)
    fb = fb.cuda().half()
    with torch.no_grad():
        reference = fb(images).float()
        # restricting SDPA to one backend raises if that backend rejects the inputs: eligibility, asserted
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            flash = fb(images).float()
        for block in fb.blocks:
            block.attn.pad_value = False  # the memory-efficient backend takes a narrower v
        with sdpa_kernel(SDPBackend.EFFICIENT_ATTENTION):
            efficient = fb(images).float()
    torch.testing.assert_close(efficient, reference, atol=2e-2, rtol=2e-2)
    torch.testing.assert_close(flash, reference, atol=2e-2, rtol=2e-2)


def test_module_rejects_mask_mode_and_wrong_factor_shapes():
    mask = models.create_model("ibit_test_patch4_28", attn_mode="mask", depth=1)
    attn = models.ibit_attentions(mask)[0]
    with pytest.raises(ValueError, match="needs an additive bias under a softmax"):
        FlashBiasAttention(attn, torch.zeros(2, 50, 8), torch.zeros(2, 50, 8), 8)
    bias = models.ibit_attentions(bias_model(depth=1))[0]
    with pytest.raises(ValueError, match=r"must both be \(heads, T, w\) = \(2, 50, w\)"):
        FlashBiasAttention(bias, torch.zeros(2, 49, 8), torch.zeros(2, 49, 8), 8)
