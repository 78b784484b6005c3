"""The roll-index table and the closed-form locality initialization (METHODS.md section 1)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ibit_deploy.models import IBiTAttention
from ibit_deploy.models.locality import (
    energy_at_rank,
    locality_target,
    low_rank_factors,
    patch_distance,
    roll_index_table,
)


def brute_force_roll(grid_h: int, grid_w: int, prefix: int) -> torch.Tensor:
    n = grid_h * grid_w
    t = prefix + n
    table = torch.empty(t, t, dtype=torch.long)
    for i in range(t):
        for j in range(t):
            if i < prefix or j < prefix:
                table[i, j] = j
            else:
                table[i, j] = prefix + ((j - prefix) - (i - prefix)) % n
    return table


@pytest.mark.parametrize("grid", [(1, 1), (2, 3), (4, 4), (7, 5), (14, 14)])
@pytest.mark.parametrize("prefix", [0, 1, 2])
def test_roll_index_table_matches_definition(grid, prefix):
    assert torch.equal(roll_index_table(*grid, num_prefix=prefix), brute_force_roll(*grid, prefix))


def test_roll_index_rows_are_permutations():
    table = roll_index_table(5, 6, 1)
    for row in table:
        assert sorted(row.tolist()) == list(range(table.shape[0]))


def test_rank_energy_on_14x14_grid_matches_reference_figures():
    with_cls = locality_target(14, 14, num_prefix=1)
    patches = with_cls[1:, 1:]
    assert energy_at_rank(patches, 1) == pytest.approx(0.889, abs=0.002)
    assert energy_at_rank(with_cls, 1) == pytest.approx(0.827, abs=0.002)
    assert energy_at_rank(patches, 3) == pytest.approx(0.948, abs=0.002)
    assert energy_at_rank(patches, 9) == pytest.approx(0.985, abs=0.002)


def test_unrolled_target_needs_far_more_rank():
    n = 14 * 14
    dense = np.exp(-0.5 * patch_distance(14, 14))
    assert energy_at_rank(dense, 1) == pytest.approx(0.317, abs=0.003)
    assert energy_at_rank(dense, 1) < energy_at_rank(locality_target(14, 14, 0), 1) - 0.5
    assert dense.shape == (n, n)


@pytest.mark.parametrize("grid,rank", [((14, 14), 9), ((7, 7), 3), ((4, 6), 2)])
def test_initial_dense_mask_is_gaussian_locality_within_rank_error(grid, rank):
    attn = IBiTAttention(dim=16, num_heads=2, grid_size=grid, num_prefix=1, rank=rank)
    mask = attn.dense_mask().detach().double().numpy()
    expected = np.exp(-0.5 * patch_distance(*grid))
    target = locality_target(*grid, 1)
    a, b = low_rank_factors(target, rank)
    residual = ((a.T @ b).double().numpy() - target)[1:, 1:]
    rolled_error = np.abs(residual).max()
    for head in mask:
        patch_block = head[1:, 1:]
        # the folded mask is the rolled approximation re-indexed, so its error is the rolled one, permuted per row
        assert np.abs(patch_block - expected).max() <= rolled_error + 1e-5
    # re-indexing permutes each row, so the Frobenius error is exactly the best rank-r error in rolled coordinates
    assert np.linalg.norm(mask[0, 1:, 1:] - expected) == pytest.approx(np.linalg.norm(residual), rel=1e-4, abs=1e-5)


def test_full_rank_init_reproduces_target_exactly():
    grid = (3, 4)
    attn = IBiTAttention(dim=8, num_heads=1, grid_size=grid, num_prefix=1, rank=13)
    mask = attn.dense_mask()[0].detach().double().numpy()
    assert np.allclose(mask[1:, 1:], np.exp(-0.5 * patch_distance(*grid)), atol=1e-5)
    assert np.allclose(mask[0], 1.0, atol=1e-5) and np.allclose(mask[:, 0], 1.0, atol=1e-5)


def test_low_rank_factors_rejects_bad_rank():
    target = locality_target(2, 2, 1)
    for rank in (0, 6):
        with pytest.raises(ValueError, match="rank must be in"):
            low_rank_factors(target, rank)
