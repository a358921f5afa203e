"""Where each Gaussian lands on a grid: the index-space boxes both evaluators share.

A Gaussian cut off at ``n_sigma`` standard deviations is the ellipsoid
|L^-1 (r - mu)| <= n_sigma. Along grid axis i (fractional coordinate f_i = g_i . r with
g_i the i-th column of cell^-1) it spans f_i(mu) +- n_sigma |L^T g_i|, so in grid
indices it covers the integer range [ceil(c_i - e_i), floor(c_i + e_i)] with
c_i = n_i f_i(mu - origin) and e_i = n_i n_sigma |L^T g_i|. This bound is exact for
skewed cells. Non-periodic axes are clipped to the grid; periodic axes are not: an
index outside [0, n_i) is a periodic image and wraps when accumulated.

Legend: K Gaussians.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..gaussians import GaussianMixture
from ..grid import Grid


@dataclass(frozen=True)
class GridBoxes:
    """Per-Gaussian quantities an evaluator needs, on the mixture's device and dtype.

    lo : (K, 3) int64, first grid index of each box (may be negative on periodic axes)
    dims : (K, 3) int64, box size in points (0 where the Gaussian misses the grid)
    offset : (K, 3), Angstrom: position of grid point ``lo`` minus the centre
    whitening : (K, 3, 3), 1/Angstrom: L^-1
    prefactor : (K,), e/Angstrom^3: weight times normalisation (the peak value)
    """

    lo: torch.Tensor
    dims: torch.Tensor
    offset: torch.Tensor
    whitening: torch.Tensor
    prefactor: torch.Tensor


def grid_tensors(grid: Grid, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Origin (3,), voxel vectors (3, 3) and shape (3,) int64 of ``grid`` as tensors like ``like``."""
    origin = torch.tensor(grid.origin, dtype=like.dtype, device=like.device)
    voxels = torch.tensor(grid.voxels, dtype=like.dtype, device=like.device)
    shape = torch.tensor(grid.shape, dtype=torch.int64, device=like.device)
    return origin, voxels, shape


def index_boxes(mixture: GaussianMixture, grid: Grid, n_sigma: float) -> GridBoxes:
    """Compute the :class:`GridBoxes` of ``mixture`` (one structure) on ``grid``."""
    origin, voxels, shape = grid_tensors(grid, mixture.weights)
    # Geometry in float64 whatever the mixture's dtype: indices must not depend on rounding.
    inv_cell = torch.linalg.inv(torch.tensor(grid.cell, dtype=torch.float64, device=mixture.device))
    L64 = mixture.scale_tril.detach().double()
    centre_index = (mixture.centres.detach().double() - origin.double()) @ inv_cell * shape  # (K, 3)
    # |L^T g_i| for every Gaussian and axis: (K, 3)
    extent = torch.linalg.norm(L64.transpose(-1, -2) @ inv_cell, dim=-2) * shape * n_sigma
    lo = torch.ceil(centre_index - extent).to(torch.int64)
    hi = torch.floor(centre_index + extent).to(torch.int64)
    periodic = torch.tensor(grid.pbc, device=mixture.device)
    lo = torch.where(periodic, lo, lo.clamp(min=0))
    hi = torch.where(periodic, hi, torch.minimum(hi, shape - 1))
    dims = (hi - lo + 1).clamp(min=0)
    offset = origin + lo.to(mixture.dtype) @ voxels - mixture.centres  # (K, 3)
    return GridBoxes(
        lo=lo,
        dims=dims,
        offset=offset,
        whitening=mixture.whitening(),
        prefactor=mixture.weights * torch.exp(mixture.log_normalisation()),
    )
