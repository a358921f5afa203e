"""Where each Gaussian lands on a grid: the cut-offs and index-space boxes all evaluators share.

Gaussian k is cut off at the Mahalanobis radius m_k, the smaller of ``n_sigma`` and the
radius where its value falls below the absolute ``tolerance`` (e/Angstrom^3):
m_k^2 = min(n_sigma^2, 2 ln(|p_k| / tolerance)) with p_k its peak value, and m_k = 0
(no points) when |p_k| <= tolerance. ``tolerance = 0`` cuts every Gaussian at ``n_sigma``.
A Gaussian cut off at m_k is the ellipsoid |L^-1 (r - mu)| <= m_k. Along grid axis i
(fractional coordinate f_i = g_i . r with g_i the i-th column of cell^-1) it spans
f_i(mu) +- m_k |L^T g_i|, so in grid indices it covers the integer range
[ceil(c_i - e_i), floor(c_i + e_i)] with c_i = n_i f_i(mu - origin) and
e_i = n_i m_k |L^T g_i|. This bound is exact for skewed cells. Non-periodic axes are
clipped to the grid; periodic axes are not: an index outside [0, n_i) is a periodic
image and wraps when accumulated.

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
    cutoff_sq : (K,): m_k^2, the squared Mahalanobis cut-off radius of each Gaussian
    """

    lo: torch.Tensor
    dims: torch.Tensor
    offset: torch.Tensor
    whitening: torch.Tensor
    prefactor: torch.Tensor
    cutoff_sq: torch.Tensor


def cutoff_squares(prefactor: torch.Tensor, n_sigma: float, tolerance: float) -> torch.Tensor:
    """m_k^2 of each Gaussian (K,), from its peak values ``prefactor`` (K,), e/Angstrom^3.

    Not differentiable: the cut-off selects points, it is not part of the density.
    """
    peak = prefactor.detach().abs()
    full = torch.full_like(peak, n_sigma * n_sigma)
    if tolerance <= 0:
        return full
    by_value = 2.0 * torch.log(peak / tolerance)  # -inf where the peak is zero
    return torch.minimum(full, by_value).clamp(min=0.0)


def grid_tensors(grid: Grid, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Origin (3,), voxel vectors (3, 3) and shape (3,) int64 of ``grid`` as tensors like ``like``."""
    origin = torch.tensor(grid.origin, dtype=like.dtype, device=like.device)
    voxels = torch.tensor(grid.voxels, dtype=like.dtype, device=like.device)
    shape = torch.tensor(grid.shape, dtype=torch.int64, device=like.device)
    return origin, voxels, shape


def index_boxes(mixture: GaussianMixture, grid: Grid, n_sigma: float, tolerance: float) -> GridBoxes:
    """Compute the :class:`GridBoxes` of ``mixture`` (one structure) on ``grid``."""
    origin, voxels, shape = grid_tensors(grid, mixture.weights)
    prefactor = mixture.peak_values()
    cutoff_sq = cutoff_squares(prefactor, n_sigma, tolerance)
    # Geometry in float64 whatever the mixture's dtype: indices must not depend on rounding.
    inv_cell = torch.linalg.inv(torch.tensor(grid.cell, dtype=torch.float64, device=mixture.device))
    L64 = mixture.scale_tril.detach().double()
    centre_index = (mixture.centres.detach().double() - origin.double()) @ inv_cell * shape  # (K, 3)
    # |L^T g_i| for every Gaussian and axis: (K, 3)
    radius = torch.sqrt(cutoff_sq.double())[:, None]  # (K, 1)
    extent = torch.linalg.norm(L64.transpose(-1, -2) @ inv_cell, dim=-2) * shape * radius
    lo = torch.ceil(centre_index - extent).to(torch.int64)
    hi = torch.floor(centre_index + extent).to(torch.int64)
    periodic = torch.tensor(grid.pbc, device=mixture.device)
    lo = torch.where(periodic, lo, lo.clamp(min=0))
    hi = torch.where(periodic, hi, torch.minimum(hi, shape - 1))
    dims = torch.where(cutoff_sq[:, None] > 0, (hi - lo + 1).clamp(min=0), 0)
    offset = origin + lo.to(mixture.dtype) @ voxels - mixture.centres  # (K, 3)
    return GridBoxes(
        lo=lo,
        dims=dims,
        offset=offset,
        whitening=mixture.whitening(),
        prefactor=prefactor,
        cutoff_sq=cutoff_sq,
    )


def periodic_images(
    mixture: GaussianMixture, points: torch.Tensor, cell: torch.Tensor | None, pbc: tuple[bool, bool, bool],
    n_sigma: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Points (P, 3) and centres (K, 3) wrapped into the cell along periodic axes, and the
    lattice translations (T, 3), Angstrom, that bring every Gaussian within reach of them.

    The density at the points is then the sum over the translated copies of the Gaussians;
    without periodicity the points and centres are returned as they are, with one zero shift.
    """
    centres = mixture.centres
    if cell is None or not any(pbc) or mixture.n_gaussians == 0:
        return points, centres, torch.zeros(1, 3, dtype=mixture.dtype, device=mixture.device)
    periodic = torch.tensor(pbc, device=points.device)
    inv = torch.linalg.inv(cell.detach())
    points = points - torch.where(periodic, torch.floor(points @ inv), 0.0) @ cell
    centres = centres - torch.where(periodic, torch.floor(centres.detach() @ inv), 0.0) @ cell
    # Largest fractional half-extent of any Gaussian along each axis.
    reach = (torch.linalg.norm(mixture.scale_tril.detach().transpose(-1, -2) @ inv, dim=-2) * n_sigma).amax(0)
    ranges = [
        torch.arange(-int(reach[a].ceil()) - 1, int(reach[a].ceil()) + 2, device=points.device) if pbc[a]
        else torch.zeros(1, dtype=torch.int64, device=points.device)
        for a in range(3)
    ]
    n = torch.cartesian_prod(*ranges).to(mixture.dtype)  # (T, 3)
    return points, centres, n @ cell
