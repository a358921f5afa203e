"""Voxel sampling: Gaussians narrower than the grid, widened so the grid sum integrates.

A Gaussian sampled at grid points is summed exactly (grid sum x voxel volume = weight)
only when it is wide compared with the voxels: by Poisson summation the relative error of
the sum is sum_{m != 0} exp(-2 pi^2 m^T C m) cos(2 pi m . t), with t the centre and C the
covariance both in grid-index units (C = V^-T Sigma V^-1, V the voxel vectors as rows), so
at most about 6 exp(-2 pi^2 lambda_min(C)). An all-electron core Gaussian of 0.02 Angstrom
on a 0.1 Angstrom grid has lambda_min = 0.04 and its sum is wrong by a factor of up to 8.

Voxel sampling convolves each such Gaussian with a Gaussian of the voxel's shape,
Sigma' = Sigma + (c - lambda_min(C)) V^T V, which raises lambda_min to ``c`` and leaves
every Gaussian with lambda_min >= c as it is. Weights and centres are kept, so the
mixture's integral is unchanged; the grid sum then errs by at most about
6 exp(-2 pi^2 c) of each widened Gaussian's weight, on any grid, skewed or periodic.
Like a voxel average, the widening spreads a narrow Gaussian over the voxels around its
centre, but further: a standard deviation of sqrt(c) = 0.71 voxels where a voxel's box
has 1/sqrt(12) = 0.29. Widening only to the box's variance (c = 1/12) leaves the sum
wrong by up to 140 %; c = 0.5 brings the worst case to 3.2e-4 (``benchmarks/grid_sums.py``:
0.005 Angstrom Gaussians at 200 random centres on 0.1 Angstrom cubic and skewed periodic
grids; c = 0.45 gave 8.1e-4 and 0.6 gave 5.6e-5, at the cost of wider cores).

Legend: K Gaussians.
"""

from __future__ import annotations

import torch

from ..gaussians import GaussianMixture
from ..grid import Grid

#: c, the smallest variance of a voxel-sampled Gaussian in grid-index units (voxels^2).
VOXEL_SPREAD = 0.5


def voxel_spread(mixture: GaussianMixture, grid: Grid, spread: float = VOXEL_SPREAD) -> GaussianMixture:
    """``mixture`` with every Gaussian's index-space variance raised to at least ``spread``.

    Parameters
    ----------
    mixture : GaussianMixture
        Any mixture; centres in Angstrom.
    grid : Grid
        Supplies the voxel vectors V (rows, Angstrom).
    spread : float, voxels^2
        c in the module docstring.

    Returns
    -------
    GaussianMixture with the same weights and centres; differentiable.
    """
    voxels = torch.tensor(grid.voxels, dtype=torch.float64, device=mixture.device)  # (3, 3)
    whitened = torch.linalg.solve(voxels.T, mixture.scale_tril.double())  # V^-T L: (K, 3, 3)
    smallest = torch.linalg.eigvalsh(whitened @ whitened.transpose(-1, -2))[:, 0]  # (K,), voxels^2
    top_up = (spread - smallest).clamp(min=0.0)  # (K,)
    extra = top_up[:, None, None] * (voxels.T @ voxels)  # (K, 3, 3), Angstrom^2
    return mixture.convolved(extra.to(mixture.dtype))
