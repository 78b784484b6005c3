"""IBiT attention written out by hand against the module: both modes, dense_mask, folding, bad input."""

from __future__ import annotations

import pytest
import torch

from ibit_deploy.models import IBiTAttention


def reference_attention(attn: IBiTAttention, x: torch.Tensor) -> torch.Tensor:
    """The METHODS.md formulas, spelled out with explicit loops over heads."""
    b, t, d = x.shape
    h, hd = attn.num_heads, attn.head_dim
    q, k, v = attn.qkv(x).reshape(b, t, 3, h, hd).unbind(2)
    outs = []
    for head in range(h):
        a, bb = attn.mask_a[head], attn.mask_b[head]
        rolled = a.T @ bb
        mask = torch.stack([rolled[i, attn.roll_index[i]] for i in range(t)])
        s = q[:, :, head] @ k[:, :, head].transpose(1, 2) / hd**0.5
        if attn.mode == "mask":
            s = s * mask
            s = s / (s.flatten(1).norm(dim=1)[:, None, None] + 1e-8)
        else:
            s = torch.softmax(s + mask, dim=-1)
        outs.append(s @ v[:, :, head])
    return attn.proj(torch.cat(outs, dim=-1))


@pytest.mark.parametrize("mode", ["mask", "bias"])
def test_matches_spelled_out_formula(mode):
    torch.manual_seed(0)
    attn = IBiTAttention(dim=24, num_heads=3, grid_size=(3, 4), num_prefix=1, rank=4, mode=mode).eval()
    with torch.no_grad():  # break the identical-heads init so per-head indexing is exercised
        attn.mask_a.add_(0.1 * torch.randn_like(attn.mask_a))
    x = torch.randn(2, 13, 24)
    assert torch.allclose(attn(x), reference_attention(attn, x), atol=1e-5)


@pytest.mark.parametrize("mode", ["mask", "bias"])
def test_fold_keeps_output_and_drops_factors(mode):
    torch.manual_seed(1)
    attn = IBiTAttention(dim=16, num_heads=2, grid_size=(4, 4), rank=3, mode=mode).eval()
    x = torch.randn(2, 17, 16)
    before = attn(x)
    mask = attn.dense_mask().detach().clone()
    attn.fold()
    assert attn.folded and not any("mask_" in n for n, _ in attn.named_parameters())
    assert torch.equal(attn.dense_mask(), mask)
    assert (attn(x) - before).abs().max() <= 1e-6


def test_frobenius_normalisation_makes_output_invariant_to_query_scale():
    torch.manual_seed(2)
    attn = IBiTAttention(dim=8, num_heads=2, grid_size=(2, 2), rank=2, mode="mask").eval()
    x = torch.randn(3, 5, 8)
    before = attn(x)
    with torch.no_grad():  # scale every query by 7: S scales by 7 and its Frobenius normalisation undoes it
        attn.qkv.weight[:8].mul_(7.0)
        attn.qkv.bias[:8].mul_(7.0)
    assert torch.allclose(attn(x), before, atol=1e-5)
    attn.mode = "bias"  # softmax attention is not scale invariant: the same change moves its output
    base = attn(x)
    with torch.no_grad():
        attn.qkv.weight[:8].div_(7.0)
        attn.qkv.bias[:8].div_(7.0)
    assert not torch.allclose(attn(x), base, atol=1e-3)


def test_half_precision_map_with_a_norm_beyond_fp16_range_is_not_zeroed():
    # Entries of S up to ~10,000 fit fp16, but the Frobenius norm of a 17x17 map of them passes 65504:
    # normalising must not go through an fp16 norm.
    torch.manual_seed(3)
    attn = IBiTAttention(dim=16, num_heads=2, grid_size=(4, 4), rank=3, mode="mask").eval()
    with torch.no_grad():
        attn.qkv.weight[:32].mul_(100.0)  # queries and keys x100: S x10^4
        attn.fold()
        attn.folded_mask.fill_(1.0)
    x = torch.randn(2, 17, 16)
    expected = attn(x)
    half = attn.half()
    with torch.no_grad():
        q, k, _ = half.qkv(x.half()).reshape(2, 17, 3, 2, 8).permute(2, 0, 3, 1, 4).unbind(0)
        s = (q @ k.transpose(-2, -1)) * half.scale
    assert s.isfinite().all() and s.float().flatten(2).norm(dim=-1).max() > 65504  # the case this test is about
    out = half(x.half()).float()
    assert out.isfinite().all() and out.abs().max() > 0
    torch.testing.assert_close(out, expected, rtol=0.05, atol=0.05)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"mode": "softmax"}, "attention mode must be one of"),
        ({"rank": 0}, r"mask rank must be in \[1, 17\]"),
        ({"rank": 18}, r"mask rank must be in \[1, 17\]"),
    ],
)
def test_bad_arguments_are_named(kwargs, match):
    args = {"dim": 16, "num_heads": 2, "grid_size": (4, 4), **kwargs}
    with pytest.raises(ValueError, match=match):
        IBiTAttention(**args)


def test_wrong_token_count_is_a_clear_error():
    attn = IBiTAttention(dim=16, num_heads=2, grid_size=(4, 4))
    with pytest.raises(ValueError, match="built for 17 tokens"):
        attn(torch.randn(1, 10, 16))
