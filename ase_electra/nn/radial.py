"""Radial basis of bond lengths: Bessel functions times a smooth polynomial cutoff.

    b_n(d) = sqrt(2 / r_c) sin(n pi d / r_c) / d,       n = 1 .. n_basis
    f(x)   = 1 - (p+1)(p+2)/2 x^p + p(p+2) x^(p+1) - p(p+1)/2 x^(p+2),   x = d / r_c

f and its first two derivatives vanish at d = r_c, so every edge enters and leaves the
cutoff smoothly (DimeNet, HotPP ``hotpp/layer/cutoff.py``, MACE ``mace/modules/radial.py``).

Legend: E edges, B basis functions.
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["BesselBasis", "PolynomialCutoff", "RadialBasis", "polynomial_cutoff"]


def polynomial_cutoff(distances: torch.Tensor, cutoff: float, p: int = 5) -> torch.Tensor:
    """Smooth envelope f(d / r_c), shape of ``distances``; 1 at 0, 0 from ``cutoff`` on."""
    x = distances / cutoff
    f = 1.0 - 0.5 * (p + 1) * (p + 2) * x**p + p * (p + 2) * x ** (p + 1) - 0.5 * p * (p + 1) * x ** (p + 2)
    return f * (x < 1.0)


class PolynomialCutoff(nn.Module):
    """Module form of :func:`polynomial_cutoff`."""

    def __init__(self, cutoff: float, p: int = 5) -> None:
        super().__init__()
        if not cutoff > 0:
            raise ValueError(f"cutoff: expected > 0, got {cutoff}")
        if p < 2:
            raise ValueError(f"p: expected >= 2, got {p}")
        self.cutoff = float(cutoff)
        self.p = int(p)

    def forward(self, distances: torch.Tensor) -> torch.Tensor:
        return polynomial_cutoff(distances, self.cutoff, self.p)

    def extra_repr(self) -> str:
        return f"cutoff={self.cutoff}, p={self.p}"


class BesselBasis(nn.Module):
    """sqrt(2 / r_c) sin(n pi d / r_c) / d for n = 1 .. n_basis; distances must be > 0."""

    frequencies: torch.Tensor

    def __init__(self, cutoff: float, n_basis: int = 8) -> None:
        super().__init__()
        if not cutoff > 0:
            raise ValueError(f"cutoff: expected > 0, got {cutoff}")
        if n_basis < 1:
            raise ValueError(f"n_basis: expected >= 1, got {n_basis}")
        self.cutoff = float(cutoff)
        self.n_basis = int(n_basis)
        self.register_buffer("frequencies", torch.arange(1, n_basis + 1) * math.pi / cutoff)

    def forward(self, distances: torch.Tensor) -> torch.Tensor:
        d = distances.unsqueeze(-1)  # (E, 1)
        freq = self.frequencies.to(distances.dtype)
        return math.sqrt(2.0 / self.cutoff) * torch.sin(freq * d) / d  # (E, B)

    def extra_repr(self) -> str:
        return f"cutoff={self.cutoff}, n_basis={self.n_basis}"


class RadialBasis(nn.Module):
    """Bessel basis times the polynomial cutoff: (E,) Angstrom -> (E, B)."""

    def __init__(self, cutoff: float, n_basis: int = 8, p: int = 5) -> None:
        super().__init__()
        self.bessel = BesselBasis(cutoff, n_basis)
        self.envelope = PolynomialCutoff(cutoff, p)

    @property
    def n_basis(self) -> int:
        return self.bessel.n_basis

    def forward(self, distances: torch.Tensor) -> torch.Tensor:
        return self.bessel(distances) * self.envelope(distances).unsqueeze(-1)  # (E, B)
