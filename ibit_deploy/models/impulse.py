"""Structured (impulse) initialization of Q/K (seed 001, METHODS.md section 5).

Each head starts as a random "impulse filter": its attention over the (normalised) position embeddings is a one-hot
shift, query patch (r, c) -> key patch (r + m, c + n), so the first layers mix space like a 3x3 convolution would.
The Q/K weights are solved in closed form: with P the normalised patch position embeddings (N, D) and W the target
logits (N, N), ``A = P+ W P+^T`` and its rank-``head_dim`` SVD gives ``W_q W_k^T``.
"""

from __future__ import annotations

import torch
from torch import nn

# Head i gets offset k = IMPULSE_ORDER[i % 9]: row shift k // 3 - 1, column shift k % 3 - 1 (centre first).
IMPULSE_ORDER = (4, 1, 5, 3, 7, 0, 2, 6, 8)
TARGET_GAIN = 1000.0
TARGET_NOISE = 3.0
QK_FROBENIUS = 7.0
POS_EMBED_GAIN = 18.0
VALUE_PROJ_GAIN = -0.4


def impulse_shift(head: int) -> tuple[int, int]:
    """(row shift, column shift) of the impulse filter that head ``head`` starts as."""
    k = IMPULSE_ORDER[head % len(IMPULSE_ORDER)]
    return k // 3 - 1, k % 3 - 1


def shift_matrix(grid_h: int, grid_w: int, shift: tuple[int, int]) -> torch.Tensor:
    """(N, N) 0/1 matrix with a one at [query (r, c), key (r + m, c + n)] where that key lies inside the grid."""
    m, n = shift
    size = grid_h * grid_w
    out = torch.zeros(size, size)
    for r in range(grid_h):
        for c in range(grid_w):
            rr, cc = r + m, c + n
            if 0 <= rr < grid_h and 0 <= cc < grid_w:
                out[r * grid_w + c, rr * grid_w + cc] = 1.0
    return out


def _scaled(t: torch.Tensor, frobenius: float) -> torch.Tensor:
    return t * (frobenius / t.norm().clamp_min(1e-12))


@torch.no_grad()
def impulse_init_(model: nn.Module, generator: torch.Generator | None = None) -> nn.Module:
    """Initialise every block's Q/K (and V, proj) of a timm-style ViT as impulse filters, in place.

    Works for timm's ``VisionTransformer`` family and for IBiT (anything with ``blocks[i].attn.qkv``, ``pos_embed``,
    ``patch_embed.grid_size`` and ``num_prefix_tokens``). Returns ``model``.
    """
    grid_h, grid_w = model.patch_embed.grid_size
    n = grid_h * grid_w
    prefix = 0 if getattr(model, "no_embed_class", False) else model.num_prefix_tokens
    model.pos_embed.mul_(POS_EMBED_GAIN)  # position dominates content at init, so the shifts show through
    dim = model.embed_dim
    for block in model.blocks:
        attn = block.attn
        heads = attn.num_heads
        head_dim = dim // heads
        pos = model.pos_embed[0, prefix : prefix + n]  # (N, D)
        p = block.norm1(pos).double()  # what the attention sees of the positions
        p_pinv = torch.linalg.pinv(p, rtol=1e-6)  # (D, N)
        qkv = attn.qkv.weight  # (3D, D): rows [q heads | k heads | v heads]
        for h in range(heads):
            target = TARGET_GAIN * shift_matrix(grid_h, grid_w, impulse_shift(h)).double()
            target += TARGET_NOISE * torch.randn(n, n, generator=generator, dtype=torch.float64)
            a = p_pinv @ target @ p_pinv.T  # (D, D)
            u, s, vt = torch.linalg.svd(a)
            root = s[:head_dim].sqrt()
            w_q = _scaled(u[:, :head_dim] * root, QK_FROBENIUS)  # (D, d)
            w_k = _scaled(vt[:head_dim].T * root, QK_FROBENIUS)  # (D, d)
            qkv[h * head_dim : (h + 1) * head_dim] = w_q.T.to(qkv.dtype)
            qkv[dim + h * head_dim : dim + (h + 1) * head_dim] = w_k.T.to(qkv.dtype)
        eye = torch.eye(dim, dtype=qkv.dtype)
        qkv[2 * dim :] = VALUE_PROJ_GAIN * eye + 0.02 * torch.randn(dim, dim, generator=generator, dtype=qkv.dtype)
        attn.proj.weight.copy_(VALUE_PROJ_GAIN * eye + 0.02 * torch.randn(dim, dim, generator=generator, dtype=qkv.dtype))
        if attn.qkv.bias is not None:
            attn.qkv.bias.zero_()
    return model
