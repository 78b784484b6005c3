"""Impulse structured initialization: each head's attention over position embeddings peaks at its shift."""

from __future__ import annotations

import pytest
import torch

import ibit_deploy.models as models
from ibit_deploy.models.impulse import IMPULSE_ORDER, impulse_shift, shift_matrix


def peak_fraction(model, block_index: int, head: int) -> float:
    """Fraction of queries (with a valid shifted key) whose highest logit over positions is the shifted key."""
    block = model.blocks[block_index]
    gh, gw = model.patch_embed.grid_size
    n, prefix = gh * gw, model.num_prefix_tokens
    attn = block.attn
    with torch.no_grad():
        pos = block.norm1(model.pos_embed[0, prefix : prefix + n])
        qkv = attn.qkv(pos).reshape(n, 3, attn.num_heads, attn.head_dim)
        logits = qkv[:, 0, head] @ qkv[:, 1, head].T
    dr, dc = impulse_shift(head)
    hits = total = 0
    for r in range(gh):
        for c in range(gw):
            if 0 <= r + dr < gh and 0 <= c + dc < gw:
                total += 1
                hits += int(logits[r * gw + c].argmax()) == (r + dr) * gw + c + dc
    return hits / total


def test_shift_order_is_centre_then_neighbours():
    assert impulse_shift(0) == (0, 0)
    assert {impulse_shift(h) for h in range(9)} == {(m, n) for m in (-1, 0, 1) for n in (-1, 0, 1)}
    assert impulse_shift(9) == impulse_shift(0) and len(IMPULSE_ORDER) == 9


def test_shift_matrix_drops_keys_outside_grid():
    m = shift_matrix(3, 3, (0, 1))
    assert m.sum() == 6 and m[0, 1] == 1 and m[2, :].sum() == 0


@pytest.mark.parametrize(
    "name,kwargs",
    [
        ("ibit_tiny_patch4_28", {"depth": 2}),
        ("vit_tiny_patch16_224", models.matching_baseline_kwargs("ibit_tiny_patch4_28", depth=2)),
    ],
)
def test_heads_peak_at_their_shift(name, kwargs):
    torch.manual_seed(0)
    model = models.create_model(name, init="impulse", **kwargs)
    for block in range(2):
        for head in range(model.blocks[block].attn.num_heads):
            assert peak_fraction(model, block, head) >= 0.9, (block, head)


def test_default_init_does_not_peak():
    torch.manual_seed(0)
    model = models.create_model("ibit_tiny_patch4_28", depth=1)
    assert peak_fraction(model, 0, 1) < 0.5


def test_impulse_rejected_for_convit():
    with pytest.raises(ValueError, match="ConViT"):
        models.create_model("convit_tiny", init="impulse")
