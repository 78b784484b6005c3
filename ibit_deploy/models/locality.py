"""The fixed geometry of IBiT masks: the roll-index table and the closed-form locality initialization.

Tokens are ``num_prefix`` prefix tokens (CLS, and DIST for distilled models) followed by the ``N = H * W`` patches in
row-major order. Masks are parameterised in *rolled* coordinates, where the column of a patch query is the flat offset
to its key, so that every patch row looks alike and the matrix is nearly low-rank (METHODS.md section 1).
"""

from __future__ import annotations

import numpy as np
import torch


def roll_index_table(grid_h: int, grid_w: int, num_prefix: int = 1) -> torch.Tensor:
    """Return the (T, T) int64 table with ``Mask[i, j] = M[i, table[i, j]]``, ``T = num_prefix + grid_h * grid_w``.

    - prefix rows (i < P): identity, ``table[i, j] = j``;
    - patch rows, prefix columns (j < P): ``table[i, j] = j``;
    - patch i, patch j: ``table[i, j] = P + ((j - i) mod N)``, the flat offset from query to key.
    """
    if grid_h < 1 or grid_w < 1:
        raise ValueError(f"grid must be at least 1 x 1 patches, got {grid_h} x {grid_w}")
    if num_prefix < 0:
        raise ValueError(f"num_prefix must be >= 0, got {num_prefix}")
    n = grid_h * grid_w
    t = num_prefix + n
    table = torch.arange(t).repeat(t, 1)  # identity everywhere, then overwrite the patch block
    patch = torch.arange(n)
    table[num_prefix:, num_prefix:] = num_prefix + (patch[None, :] - patch[:, None]) % n
    return table


def locality_target(grid_h: int, grid_w: int, num_prefix: int = 1) -> np.ndarray:
    """The Gaussian locality target in rolled coordinates, shape (T, T), float64.

    ``target[i, P + m] = exp(-0.5 * ||pos(p) - pos((p + m) mod N)||)`` for patch token i (patch p), 2-D distance in
    patch units; prefix rows and prefix columns are 1 (everything attends to CLS and CLS attends to everything).
    """
    n = grid_h * grid_w
    t = num_prefix + n
    target = np.ones((t, t), dtype=np.float64)
    p = np.arange(n)
    keys = (p[:, None] + p[None, :]) % n  # key patch for query p at rolled offset m
    dy = p[:, None] // grid_w - keys // grid_w
    dx = p[:, None] % grid_w - keys % grid_w
    target[num_prefix:, num_prefix:] = np.exp(-0.5 * np.sqrt(dy**2 + dx**2))
    return target


def low_rank_factors(target: np.ndarray, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Best rank-``rank`` factors of ``target`` in the Frobenius norm (Eckart-Young), as (A, B) of shape (r, T).

    ``A.T @ B`` is the truncated SVD of ``target``; the singular values are split evenly between the factors so that
    both start at the same scale (they receive the same weight decay).
    """
    if not 1 <= rank <= min(target.shape):
        raise ValueError(f"mask rank must be in [1, {min(target.shape)}] (the token count), got {rank}")
    u, s, vt = np.linalg.svd(target, full_matrices=False)
    root = np.sqrt(s[:rank])
    a = (u[:, :rank] * root).T
    b = root[:, None] * vt[:rank]
    return torch.from_numpy(a.astype(np.float32)), torch.from_numpy(b.astype(np.float32))


def energy_at_rank(matrix: np.ndarray, rank: int) -> float:
    """Fraction of the squared Frobenius norm kept by the best rank-``rank`` approximation."""
    s = np.linalg.svd(matrix, compute_uv=False)
    return float((s[:rank] ** 2).sum() / (s**2).sum())


def patch_distance(grid_h: int, grid_w: int) -> np.ndarray:
    """Euclidean distance between every pair of patches, (N, N), in patch units (no wrap-around)."""
    p = np.arange(grid_h * grid_w)
    dy = p[:, None] // grid_w - p[None, :] // grid_w
    dx = p[:, None] % grid_w - p[None, :] % grid_w
    return np.sqrt(dy**2 + dx**2)
