"""decompose_bias: truncated SVD of a (heads, T, T) bias with its rank chosen by rank, energy or max error."""

from __future__ import annotations

import pytest
import torch

from ibit_deploy.fold.lowrank import HEAD_DIM_MULTIPLE, RankPolicy, decompose_bias, energy_curve, rank_for_energy


def low_rank_bias(heads: int, tokens: int, rank: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    a = torch.randn(heads, tokens, rank, generator=gen)
    b = torch.randn(heads, tokens, rank, generator=gen)
    return a @ b.transpose(1, 2) / rank**0.5


@pytest.mark.parametrize("true_rank,rank", [(3, 3), (3, 8), (5, 17)])
def test_exact_when_bias_rank_within_rank(true_rank, rank):
    bias = low_rank_bias(3, 50, true_rank)
    factors = decompose_bias(bias, RankPolicy("rank", rank), head_dim=32)
    assert factors.rank == rank
    assert factors.max_error < 1e-5 * float(bias.abs().max())
    assert min(factors.energy) == pytest.approx(1.0, abs=1e-9)
    approx = factors.q_bias @ factors.k_bias.transpose(1, 2)
    torch.testing.assert_close(approx, bias, atol=1e-5, rtol=0)


def test_truncation_error_is_measured_and_shrinks_with_rank():
    bias = torch.randn(2, 50, 50, generator=torch.Generator().manual_seed(1))
    errors = [decompose_bias(bias, RankPolicy("rank", r), 32).max_error for r in (2, 10, 40, 50)]
    assert errors[0] > errors[1] > errors[2] > errors[3]
    assert errors[3] < 1e-5
    low = decompose_bias(bias, RankPolicy("rank", 10), 32)
    dense_error = float((low.q_bias @ low.k_bias.transpose(1, 2) - bias).abs().max())
    assert low.max_error == pytest.approx(dense_error, rel=1e-4)
    assert all(0 < e < 1 for e in low.energy)


@pytest.mark.parametrize("head_dim,rank,width", [(32, 3, 8), (32, 8, 8), (32, 9, 16), (12, 3, 4), (16, 1, 8)])
def test_padding_to_multiple_of_eight(head_dim, rank, width):
    factors = decompose_bias(low_rank_bias(2, 17, 2), RankPolicy("rank", rank), head_dim)
    assert factors.q_bias.shape == factors.k_bias.shape == (2, 17, width)
    assert (head_dim + width) % HEAD_DIM_MULTIPLE == 0
    assert factors.q_bias[..., rank:].abs().max() == 0 if width > rank else True


def test_energy_policy_picks_smallest_rank_meeting_bound_in_every_head():
    torch.manual_seed(0)
    u, _ = torch.linalg.qr(torch.randn(2, 20, 20))
    v, _ = torch.linalg.qr(torch.randn(2, 20, 20))
    sigma = torch.tensor([[10.0, 3.0, 1.0] + [0.01] * 17, [10.0, 0.5, 0.1] + [0.0] * 17]).sqrt()
    bias = u @ torch.diag_embed(sigma) @ v.transpose(1, 2)  # sigma^2 = the energies above
    total0 = 14.0 + 0.17
    assert rank_for_energy(bias, 13.0 / total0 - 1e-4) == 2  # head 0 needs 2, head 1 needs 1
    assert rank_for_energy(bias, 14.0 / total0 - 1e-4) == 3
    assert rank_for_energy(bias, 1.0) == 20
    factors = decompose_bias(bias, RankPolicy.parse("energy=0.98"), 32)
    assert factors.rank == 3 and min(factors.energy) >= 0.98
    assert energy_curve(bias)[:, -1].tolist() == pytest.approx([1.0, 1.0])


def test_error_policy_meets_bound():
    bias = torch.randn(2, 30, 30, generator=torch.Generator().manual_seed(2))
    factors = decompose_bias(bias, RankPolicy.parse("error=0.5"), 32)
    assert factors.max_error <= 0.5
    assert decompose_bias(bias, RankPolicy("rank", factors.rank - 1), 32).max_error > 0.5


def test_zero_bias_is_rank_one_and_exact():
    factors = decompose_bias(torch.zeros(2, 10, 10), RankPolicy("energy", 0.995), 32)
    assert factors.rank == 1 and factors.max_error == 0.0 and factors.energy == [1.0, 1.0]


@pytest.mark.parametrize("text,message", [
    ("0", "rank must be an integer >= 1"), ("rank=-3", "rank must be an integer >= 1"),
    ("energy=0", r"energy must be in \(0, 1\]"), ("energy=1.5", r"energy must be in \(0, 1\]"),
    ("energy=abc", "energy must be a number"), ("error=-1", "max bias error must be a number >= 0"),
    ("size=3", "expected RANK, rank=R, energy=E or error=X"), ("2.5", "rank must be an integer"),
])
def test_bad_policies_are_rejected(text, message):
    with pytest.raises(ValueError, match=message):
        RankPolicy.parse(text)


def test_rank_above_token_count_is_rejected():
    with pytest.raises(ValueError, match=r"rank must be in \[1, 10\] \(the token count\), got 11"):
        decompose_bias(torch.zeros(1, 10, 10), RankPolicy("rank", 11), 32)
    with pytest.raises(ValueError, match="bias must be"):
        decompose_bias(torch.zeros(10, 10), RankPolicy("rank", 1), 32)


def test_policy_round_trips_to_text():
    for text in ("rank=16", "energy=0.995", "error=0.01"):
        assert str(RankPolicy.parse(text)) == text
    assert RankPolicy.parse("16") == RankPolicy("rank", 16)
