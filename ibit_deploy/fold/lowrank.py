"""Low-rank decomposition of a folded (heads, T, T) attention bias in token coordinates, for FlashBias.

FlashBias (METHODS.md section 3) needs ``Bias ~= Q_b K_b^T`` with thin factors. IBiT's bias is low-rank in rolled
coordinates, not in token coordinates, so the rank is chosen here from the bias's singular values with a measured
error: a fixed ``rank``, the smallest rank keeping an ``energy`` fraction of sum(sigma^2) in every head (FlashBias's
SwinV2 choice is 0.995), or the smallest rank whose max |bias error| stays within ``max_error``. One rank serves all
heads of a layer because they share one attention call (one head dim).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

# q/k head dims are padded to a multiple of this: FlashAttention-style kernels (PyTorch's flash backend, TensorRT's
# fused MHA) need head dims that are multiples of 8.
HEAD_DIM_MULTIPLE = 8
POLICY_KINDS = ("rank", "energy", "error")


@dataclass(frozen=True)
class RankPolicy:
    """How to choose a layer's rank: ``kind`` is ``"rank"`` (value: int R), ``"energy"`` (0 < E <= 1) or ``"error"``
    (max |bias error| >= 0)."""

    kind: str
    value: float

    def __post_init__(self) -> None:
        if self.kind not in POLICY_KINDS:
            raise ValueError(f"rank policy must be one of {POLICY_KINDS}, got {self.kind!r}")
        if self.kind == "rank" and (isinstance(self.value, bool) or int(self.value) != self.value or self.value < 1):
            raise ValueError(f"rank must be an integer >= 1 (and <= the token count), got {self.value!r}")
        if self.kind == "energy" and not 0.0 < self.value <= 1.0:
            raise ValueError(f"energy must be in (0, 1] (the fraction of sum(sigma^2) kept, e.g. 0.995), "
                             f"got {self.value!r}")
        if self.kind == "error" and not self.value >= 0.0:
            raise ValueError(f"max bias error must be a number >= 0, got {self.value!r}")

    @classmethod
    def parse(cls, text: str) -> RankPolicy:
        """``"16"`` or ``"rank=16"``, ``"energy=0.995"``, ``"error=0.01"``."""
        key, sep, value = text.strip().partition("=")
        if not sep:
            key, value = "rank", key
        key = key.strip()
        if key not in POLICY_KINDS:
            raise ValueError(f"rank policy {text!r}: expected RANK, rank=R, energy=E or error=X")
        try:
            number = int(value) if key == "rank" else float(value)
        except ValueError:
            what = "an integer" if key == "rank" else "a number"
            raise ValueError(f"rank policy {text!r}: {key} must be {what}, got {value!r}") from None
        return cls(key, number)

    def __str__(self) -> str:
        return f"{self.kind}={self.value:g}" if self.kind != "rank" else f"rank={int(self.value)}"


@dataclass
class BiasFactors:
    """``bias[h] ~= q_bias[h] @ k_bias[h].T`` with ``q_bias``, ``k_bias`` of shape (heads, T, width).

    ``width`` = ``rank`` plus zero columns so that ``head_dim + width`` is a multiple of :data:`HEAD_DIM_MULTIPLE`.
    ``energy`` is each head's kept fraction of sum(sigma^2); ``max_error`` the largest |bias - q_bias k_bias^T|.
    """

    q_bias: torch.Tensor
    k_bias: torch.Tensor
    rank: int
    energy: list[float]
    max_error: float
    bias_max_abs: float

    def summary(self) -> dict[str, float | int | list[float]]:
        """JSON-ready numbers for a manifest / report."""
        return {"rank": self.rank, "width": int(self.q_bias.shape[-1]), "energy_min": min(self.energy),
                "energy_per_head": self.energy, "max_abs_error": self.max_error, "bias_max_abs": self.bias_max_abs}


def energy_curve(bias: torch.Tensor) -> torch.Tensor:
    """(heads, T) cumulative fraction of sum(sigma^2) kept by ranks 1..T of each head's bias (1 for a zero bias)."""
    sigma = torch.linalg.svdvals(bias.double())
    power = sigma**2
    total = power.sum(-1, keepdim=True)
    return torch.where(total > 0, power.cumsum(-1) / total.clamp_min(1e-300), torch.ones_like(power))


def rank_for_energy(bias: torch.Tensor, energy: float) -> int:
    """Smallest rank that keeps ``energy`` of sum(sigma^2) in every head of ``bias`` (heads, T, T)."""
    curve = energy_curve(bias)
    # a tiny slack so energy=1.0 is met by the full rank despite rounding in the cumulative sum
    needed = (curve < energy - 1e-12).sum(-1) + 1
    return int(needed.clamp(max=bias.shape[-1]).max())


def _check_bias(bias: torch.Tensor) -> None:
    if bias.ndim != 3 or bias.shape[1] != bias.shape[2]:
        raise ValueError(f"bias must be (heads, T, T), got shape {tuple(bias.shape)}")
    if not torch.isfinite(bias).all():
        raise ValueError("bias has non-finite values; it cannot be decomposed")


def decompose_bias(bias: torch.Tensor, policy: RankPolicy, head_dim: int) -> BiasFactors:
    """Truncated SVD of each head's (T, T) ``bias`` in token coordinates, at the rank ``policy`` chooses.

    The factors are balanced (``U sqrt(S)`` and ``V sqrt(S)``), which keeps both in a range fp16 holds, and padded
    with zero columns so ``head_dim + width`` is a multiple of 8. Exact to float precision when every head's rank is
    at most the chosen rank.
    """
    _check_bias(bias)
    tokens = bias.shape[-1]
    if head_dim < 1:
        raise ValueError(f"head_dim must be >= 1, got {head_dim}")
    b64 = bias.double()
    u, s, vh = torch.linalg.svd(b64)
    if policy.kind == "rank":
        rank = int(policy.value)
        if rank > tokens:
            raise ValueError(f"rank must be in [1, {tokens}] (the token count), got {rank}")
    elif policy.kind == "energy":
        rank = rank_for_energy(b64, policy.value)
    else:
        rank = _rank_for_error(u, s, vh, b64, policy.value)
    root = s[:, :rank].sqrt().unsqueeze(1)  # (heads, 1, R)
    q_bias = u[:, :, :rank] * root
    k_bias = vh[:, :rank, :].transpose(1, 2) * root
    pad = -(head_dim + rank) % HEAD_DIM_MULTIPLE
    q_bias = torch.nn.functional.pad(q_bias, (0, pad))
    k_bias = torch.nn.functional.pad(k_bias, (0, pad))
    # The error of the factors as they will be used, in the bias's own precision.
    approx = (q_bias.to(bias.dtype) @ k_bias.to(bias.dtype).transpose(1, 2)).double()
    power = s**2
    total = power.sum(-1)
    energy = torch.where(total > 0, power[:, :rank].sum(-1) / total.clamp_min(1e-300), torch.ones_like(total))
    return BiasFactors(q_bias=q_bias.to(bias.dtype).contiguous(), k_bias=k_bias.to(bias.dtype).contiguous(),
                       rank=rank, energy=[float(e) for e in energy], max_error=float((approx - b64).abs().max()),
                       bias_max_abs=float(b64.abs().max()))


def _rank_for_error(u: torch.Tensor, s: torch.Tensor, vh: torch.Tensor, bias: torch.Tensor, max_error: float) -> int:
    """Smallest rank whose reconstruction is within ``max_error`` of ``bias`` everywhere, in every head."""
    recon = torch.zeros_like(bias)
    for rank in range(1, bias.shape[-1] + 1):  # one rank-1 update per step: O(T^2) each
        recon += s[:, rank - 1, None, None] * u[:, :, rank - 1, None] * vh[:, None, rank - 1, :]
        if float((recon - bias).abs().max()) <= max_error:
            return rank
    return bias.shape[-1]
