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
    cutoff_sq: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The periodic copies of the Gaussians that reach the points.

    Points are wrapped into the cell along periodic axes. Copy j is Gaussian ``index[j]``
    translated by ``shifts[j]`` (Angstrom), for every lattice translation that puts its
    cut-off box (m_k^2 = ``cutoff_sq``, the module docstring's bound) over the cell, so a
    narrow Gaussian brings a few copies and only wide ones many.
    Returns (points (P, 3), index (J,) int64, shifts (J, 3)); without periodicity the
    points as they are and each Gaussian once, untranslated.
    """
    k = mixture.n_gaussians
    if cell is None or not any(pbc) or k == 0:
        index = torch.arange(k, device=mixture.device)
        return points, index, torch.zeros(k, 3, dtype=mixture.dtype, device=mixture.device)
    periodic = torch.tensor(pbc, device=points.device)
    inv = torch.linalg.inv(cell.detach())
    points = points - torch.where(periodic, torch.floor(points @ inv), 0.0) @ cell
    frac = mixture.centres.detach() @ inv  # (K, 3)
    whole = torch.where(periodic, torch.floor(frac), 0.0)  # (K, 3): the cell each centre lies in
    frac = frac - whole
    # Fractional half-extent of each Gaussian's cut-off box along each axis (K, 3).
    extent = torch.linalg.norm(mixture.scale_tril.detach().transpose(-1, -2) @ inv, dim=-2)
    extent = extent * cutoff_sq.detach().sqrt()[:, None]
    eps = 1e-9
    lo = torch.where(periodic, torch.floor(-frac - extent - eps) + 1, 0.0).to(torch.int64)  # (K, 3)
    hi = torch.where(periodic, torch.ceil(1 - frac + extent + eps) - 1, 0.0).to(torch.int64)
    hi = torch.maximum(hi, lo - 1)  # no copy where the cut-off is empty
    axes = [torch.arange(int(lo[:, a].min()), int(hi[:, a].max()) + 1, device=points.device) for a in range(3)]
    inside = [(axes[a][None] >= lo[:, a : a + 1]) & (axes[a][None] <= hi[:, a : a + 1]) for a in range(3)]  # (K, n_a)
    mask = inside[0][:, :, None, None] & inside[1][:, None, :, None] & inside[2][:, None, None, :]
    index, i0, i1, i2 = mask.nonzero(as_tuple=True)
    n = torch.stack([axes[0][i0], axes[1][i1], axes[2][i2]], dim=-1).to(mixture.dtype)  # (J, 3)
    return points, index, (n - whole[index]) @ cell
