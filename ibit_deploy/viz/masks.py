"""Render what each IBiT head attends to: the mask row of one query patch, reshaped onto the patch grid."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..devicekit.fileio import atomic_path
from ..models.ibit import ibit_attentions


def mask_maps(model: nn.Module, query: tuple[int, int]) -> np.ndarray:
    """(layers, heads, H, W): for the query patch at grid cell ``query`` (row, col), each head's mask over keys."""
    attentions = ibit_attentions(model)
    if not attentions:
        raise ValueError("the model has no IBiT attention to visualise (is it a timm baseline?)")
    grid_h, grid_w = attentions[0].grid_size
    row, col = query
    if not (0 <= row < grid_h and 0 <= col < grid_w):
        raise ValueError(f"query patch {query} is outside the {grid_h}x{grid_w} patch grid")
    token = attentions[0].num_prefix + row * grid_w + col
    maps = []
    with torch.no_grad():
        for attn in attentions:
            rows = attn.dense_mask()[:, token, attn.num_prefix :]  # (heads, N): the query's weights over patches
            maps.append(rows.reshape(attn.num_heads, grid_h, grid_w).float().cpu().numpy())
    return np.stack(maps)


def plot_masks(model: nn.Module, out: str | os.PathLike, query: tuple[int, int] | None = None,
               title: str | None = None, metadata: dict[str, str] | None = None) -> Path:
    """Write a PNG grid (rows = layers, columns = heads) of the masks of query patch ``query`` (default: centre).

    ``metadata``: PNG text chunks to add (the write policy's kind marker, :func:`ibit_deploy.outputs.png_marker`).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid_h, grid_w = ibit_attentions(model)[0].grid_size if ibit_attentions(model) else (0, 0)
    query = query if query is not None else (grid_h // 2, grid_w // 2)
    maps = mask_maps(model, query)
    layers, heads = maps.shape[:2]
    fig, axes = plt.subplots(layers, heads, figsize=(1.6 * heads + 1, 1.5 * layers + 0.6), squeeze=False)
    for layer in range(layers):
        for head in range(heads):
            ax = axes[layer, head]
            values = maps[layer, head]
            limit = float(np.abs(values).max()) or 1.0  # symmetric scale: learned masks can go negative
            ax.imshow(values, cmap="RdBu_r", vmin=-limit, vmax=limit)
            ax.plot(query[1], query[0], marker="x", color="black", markersize=5)
            ax.set_xticks([])
            ax.set_yticks([])
            if layer == 0:
                ax.set_title(f"head {head}", fontsize=8)
            if head == 0:
                ax.set_ylabel(f"layer {layer}", fontsize=8)
    fig.suptitle(title or f"IBiT masks for query patch {query} (x)", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.5 / fig.get_figheight()))  # leave room for the title
    out = Path(out)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=110, metadata=metadata)
    plt.close(fig)
    return out
