"""FlashBias attention: IBiT's bias variant as one plain attention call, the bias carried by wider q/k heads.

``softmax(q k^T s + Q_b K_b^T) v == softmax([q s, Q_b] [k, K_b]^T) v`` (METHODS.md section 3): the bias factors are
concatenated to every query and key, so the call is ``scaled_dot_product_attention(q_aug, k_aug, v, scale=1)`` with
no ``attn_mask``. That is the MatMul -> Softmax -> MatMul pattern fused-attention kernels take (PyTorch's flash /
memory-efficient SDPA backends, TensorRT's MHA fusion), and its exported graph holds two (heads, T, width) factor
constants per layer instead of a (heads, T, T) bias.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .attention import IBiTAttention


def flashbias_sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, q_bias: torch.Tensor, k_bias: torch.Tensor,
                   scale: float, pad_value: bool = False, dropout_p: float = 0.0) -> torch.Tensor:
    """``softmax(q k^T scale + q_bias k_bias^T) v`` through SDPA without a mask.

    Args:
        q, k, v: (B, heads, T, d).
        q_bias, k_bias: (heads, T, w), zero-padded so ``d + w`` is the kernels' multiple of 8.
        scale: the score scale (1/sqrt(d)); folded into q, so SDPA runs with scale 1.
        pad_value: zero-pad v to the q/k head dim and slice the output back. Fused kernels want one head size for
            q, k and v: PyTorch's flash backends (CPU and CUDA; with a narrower v, CPU SDPA falls back to the math
            path, measured 1.3-2.6x slower in benchmarks/RESULTS.md) and TensorRT's fused attention ([B, N, S, H]
            for all three). Only ONNX Runtime's MatMul form and the CUDA memory-efficient backend do without.
    """
    batch = q.shape[0]
    q_aug = torch.cat([q * scale, q_bias.to(q.dtype).expand(batch, -1, -1, -1)], dim=-1)
    k_aug = torch.cat([k, k_bias.to(k.dtype).expand(batch, -1, -1, -1)], dim=-1)
    width = v.shape[-1]
    if pad_value:
        v = F.pad(v, (0, q_aug.shape[-1] - width))
    out = F.scaled_dot_product_attention(q_aug, k_aug, v, dropout_p=dropout_p, scale=1.0)
    return out[..., :width] if pad_value else out


class FlashBiasAttention(nn.Module):
    """An IBiT bias-mode attention whose (heads, T, T) bias is replaced by factors ``q_bias @ k_bias^T``.

    Shares ``qkv`` / ``proj`` (and dropouts) with the :class:`IBiTAttention` it is built from, so the weights are the
    trained ones; ``q_bias`` / ``k_bias`` are (heads, T, w) buffers (see :mod:`ibit_deploy.fold.lowrank`).
    ``pad_value`` (default on): v is zero-padded to the q/k head dim, see :func:`flashbias_sdpa`.
    """

    def __init__(self, attention: IBiTAttention, q_bias: torch.Tensor, k_bias: torch.Tensor, rank: int,
                 pad_value: bool = True) -> None:
        super().__init__()
        if attention.mode != "bias":
            raise ValueError(f"FlashBias needs an additive bias under a softmax (mode 'bias'), got mode "
                             f"{attention.mode!r}")
        shape = (attention.num_heads, attention.num_tokens)
        if tuple(q_bias.shape[:2]) != shape or q_bias.shape != k_bias.shape:
            raise ValueError(f"bias factors must both be (heads, T, w) = ({shape[0]}, {shape[1]}, w), got "
                             f"{tuple(q_bias.shape)} and {tuple(k_bias.shape)}")
        self.num_heads, self.head_dim, self.scale = attention.num_heads, attention.head_dim, attention.scale
        self.num_tokens, self.rank, self.pad_value = attention.num_tokens, rank, pad_value
        self.qkv, self.proj = attention.qkv, attention.proj
        self.attn_drop, self.proj_drop = attention.attn_drop, attention.proj_drop
        self.register_buffer("q_bias", q_bias.detach().clone())
        self.register_buffer("k_bias", k_bias.detach().clone())

    @property
    def qk_head_dim(self) -> int:
        """The head dim of the attention call's queries and keys: d + rank, padded to a multiple of 8."""
        return self.head_dim + int(self.q_bias.shape[-1])

    def dense_bias(self) -> torch.Tensor:
        """The (heads, T, T) bias the factors stand for (for error measurements)."""
        return self.q_bias @ self.k_bias.transpose(1, 2)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, is_causal: bool = False) -> torch.Tensor:
        if attn_mask is not None or is_causal:
            raise ValueError("FlashBiasAttention carries its own bias; external attn_mask / is_causal are not supported")
        batch, tokens, dim = x.shape
        if tokens != self.num_tokens:
            raise ValueError(f"FlashBiasAttention was built for {self.num_tokens} tokens, got {tokens}")
        q, k, v = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        x = flashbias_sdpa(q, k, v, self.q_bias, self.k_bias, self.scale, self.pad_value,
                           self.attn_drop.p if self.training else 0.0)
        x = x.transpose(1, 2).reshape(batch, tokens, dim)
        return self.proj_drop(self.proj(x))

    def extra_repr(self) -> str:
        return (f"heads={self.num_heads}, tokens={self.num_tokens}, rank={self.rank}, "
                f"qk_head_dim={self.qk_head_dim}, v_head_dim={self.head_dim}, pad_value={self.pad_value}")
