"""IBiT attention: multi-head self-attention whose score map carries a learned low-rank mask in rolled coordinates.

Two modes share the factors, the roll-index table and the initialization:

- ``"mask"`` (the paper's IBiT, METHODS.md section 1): ``S = (Q K^T / sqrt(d)) * Mask``, ``S / (||S||_F + eps)``, no
  softmax, ``out = S V``.
- ``"bias"`` (METHODS.md section 2): ``softmax(Q K^T / sqrt(d) + Bias) V``, which fused attention kernels accept.

The layout of ``qkv`` and ``proj`` is timm's, so weights and tools written for timm's ``Attention`` carry over.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .locality import locality_target, low_rank_factors, roll_index_table

ATTENTION_MODES = ("mask", "bias")
FROBENIUS_EPS = 1e-8


class IBiTAttention(nn.Module):
    """Self-attention with a learned rank-``rank`` mask (or additive bias) per head.

    Args:
        dim: token width.
        num_heads: number of heads; ``dim`` must be divisible by it.
        grid_size: patch grid ``(H, W)``; the token count is ``num_prefix + H * W`` and is fixed by it.
        num_prefix: leading non-patch tokens (1 for CLS, 2 for CLS + DIST).
        rank: rank of each head's mask, in ``[1, T]``.
        mode: ``"mask"`` (multiplicative, no softmax) or ``"bias"`` (additive, softmax).
        qkv_bias, proj_bias, attn_drop, proj_drop: as in timm's ``Attention``.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        grid_size: tuple[int, int],
        num_prefix: int = 1,
        rank: int = 9,
        mode: str = "mask",
        qkv_bias: bool = True,
        proj_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
    ) -> None:
        super().__init__()
        if mode not in ATTENTION_MODES:
            raise ValueError(f"attention mode must be one of {ATTENTION_MODES}, got {mode!r}")
        if dim % num_heads:
            raise ValueError(f"dim ({dim}) must be divisible by num_heads ({num_heads})")
        grid_h, grid_w = grid_size
        tokens = num_prefix + grid_h * grid_w
        if not 1 <= rank <= tokens:
            raise ValueError(f"mask rank must be in [1, {tokens}] (the token count for a {grid_h}x{grid_w} grid), got {rank}")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim**-0.5
        self.grid_size = (grid_h, grid_w)
        self.num_prefix = num_prefix
        self.num_tokens = tokens
        self.rank = rank
        self.mode = mode

        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim, bias=proj_bias)
        self.proj_drop = nn.Dropout(proj_drop)

        a, b = low_rank_factors(locality_target(grid_h, grid_w, num_prefix), rank)
        # Every head starts from the same fitted factors (as in the reference); all are trained.
        self.mask_a = nn.Parameter(a.unsqueeze(0).repeat(num_heads, 1, 1))  # (heads, r, T)
        self.mask_b = nn.Parameter(b.unsqueeze(0).repeat(num_heads, 1, 1))  # (heads, r, T)
        self.register_buffer("roll_index", roll_index_table(grid_h, grid_w, num_prefix), persistent=False)

    @property
    def folded(self) -> bool:
        """True once :meth:`fold` replaced the factors by a constant ``(heads, T, T)`` buffer."""
        return self.mask_a is None

    def dense_mask(self) -> torch.Tensor:
        """The effective (heads, T, T) mask (mode "mask") or bias (mode "bias") in token coordinates."""
        if self.folded:
            return self.folded_mask
        rolled = self.mask_a.transpose(1, 2) @ self.mask_b  # (heads, T, T), rolled coordinates
        index = self.roll_index.expand(self.num_heads, -1, -1)
        return torch.gather(rolled, 2, index)  # Mask[h, i, j] = M[h, i, roll(i, j)]

    @torch.no_grad()
    def fold(self) -> None:
        """Replace the low-rank factors by their dense product, a static buffer: the deployable form."""
        if self.folded:
            return
        mask = self.dense_mask().detach().clone()
        del self.mask_a, self.mask_b
        self.mask_a = None
        self.mask_b = None
        self.register_buffer("folded_mask", mask)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, is_causal: bool = False) -> torch.Tensor:
        # timm's Block passes these through; IBiT's mask is its own and image attention is never causal.
        if attn_mask is not None or is_causal:
            raise ValueError("IBiTAttention carries its own mask; external attn_mask / is_causal are not supported")
        batch, tokens, dim = x.shape
        if tokens != self.num_tokens:
            raise ValueError(
                f"IBiTAttention was built for {self.num_tokens} tokens ({self.grid_size[0]}x{self.grid_size[1]} patches "
                f"+ {self.num_prefix} prefix), got {tokens}"
            )
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each (B, heads, T, d)
        mask = self.dense_mask().to(q.dtype)  # (heads, T, T)
        if self.mode == "bias":
            x = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask.unsqueeze(0), dropout_p=self.attn_drop.p if self.training else 0.0
            )
        else:
            # The 1/sqrt(d) scale rides on the mask: a folded export then multiplies by one constant per layer.
            scores = (q @ k.transpose(-2, -1)) * (mask * self.scale)  # (B, heads, T, T)
            # Frobenius norm over the whole map, per sample and head: one ReduceL2 in ONNX (one pass over the map
            # instead of Pow + ReduceSum + Sqrt; benchmarks/attention_core.py). Computed in fp32: the sum of (T^2)
            # squares overflows fp16 as soon as the entries' RMS exceeds sqrt(65504) / T (METHODS.md section 1).
            scores32 = scores.float()  # one fp32 copy under fp16/AMP; the same tensor in fp32
            norm = torch.linalg.vector_norm(scores32, dim=(-2, -1), keepdim=True)
            # Divide in fp32 too: a norm above 65504 cast back to fp16 would be inf and zero the whole map, while the
            # normalised entries (all <= 1) are safe to cast. A no-op in fp32 (and in the fp32 export).
            scores = (scores32 / (norm + FROBENIUS_EPS)).to(scores.dtype)
            scores = self.attn_drop(scores)
            x = scores @ v  # (B, heads, T, d)
        x = x.transpose(1, 2).reshape(batch, tokens, dim)
        return self.proj_drop(self.proj(x))

    def extra_repr(self) -> str:
        return (
            f"heads={self.num_heads}, grid={self.grid_size}, prefix={self.num_prefix}, rank={self.rank}, "
            f"mode={self.mode!r}, folded={self.folded}"
        )
