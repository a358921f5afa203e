"""Torch evaluators (CPU and CUDA): the reference path, differentiable.

On a grid each Gaussian is evaluated only inside its index box (see ``_boxes``): the
Gaussians are sorted by box volume and processed in chunks whose padded boxes hold at
most ``work_points`` points, so memory stays bounded whatever the grid. Values are
scattered into the flat grid with ``index_add``, which sums periodic images.

Legend: K Gaussians, P points, X/Y/Z box extents.
"""

from __future__ import annotations

import math

import torch

from ..gaussians import GaussianMixture
from ..grid import Grid
from ._boxes import GridBoxes, cutoff_squares, grid_tensors, index_boxes, periodic_images


#: Box sizes are grouped in classes growing by this factor, so padding a chunk's boxes
#: to their per-axis maximum wastes at most a quarter of each axis.
_SIZE_CLASS_GROWTH = 1.25


def evaluate_grid(
    mixture: GaussianMixture, grid: Grid, n_sigma: float, tolerance: float, work_points: int
) -> torch.Tensor:
    """Density of one structure on ``grid``, shape ``grid.shape``, e/Angstrom^3."""
    _, voxels, shape = grid_tensors(grid, mixture.weights)
    out = torch.zeros(grid.n_points, dtype=mixture.dtype, device=mixture.device)
    boxes = index_boxes(mixture, grid, n_sigma, tolerance)
    size_class = torch.ceil(torch.log(boxes.dims.clamp(min=1).double()) / math.log(_SIZE_CLASS_GROWTH)).long()
    key = (size_class[:, 0] * 1024 + size_class[:, 1]) * 1024 + size_class[:, 2]  # (K,)
    order = torch.argsort(key)
    order = order[boxes.dims[order].prod(-1) > 0]
    _, counts = torch.unique_consecutive(key[order], return_counts=True)
    for group in torch.split(order, counts.tolist()):
        big = boxes.dims[group].amax(0).tolist()
        per_chunk = max(1, work_points // (big[0] * big[1] * big[2]))
        for chunk in torch.split(group, per_chunk):
            _accumulate(out, boxes, chunk, big, voxels, shape, work_points)
    return out.reshape(grid.shape)


def _accumulate(
    out: torch.Tensor,
    boxes: GridBoxes,
    chunk: torch.Tensor,
    big: list[int],
    voxels: torch.Tensor,
    shape: torch.Tensor,
    work_points: int,
) -> None:
    """Add the Gaussians ``chunk`` into ``out``, in slabs along the first axis if needed.

    With z = L^-1 (r - mu) = u_xy + s_z (u_xy from the first two box offsets, s_z from the
    third), q = |z|^2 = |u_xy|^2 + 2 u_xy . s_z + |s_z|^2: the cross term is one batched
    matrix product and no (K, X, Y, Z, 3) tensor is formed. Box points beyond each
    Gaussian's own extent, and beyond the cut-off, get q = inf and so add zero.
    """
    device, dtype = out.device, out.dtype
    white = boxes.whitening[chunk]  # (K, 3, 3)
    step = white @ voxels.T  # (K, 3, 3): column a = L^-1 voxel_a
    base = (white @ boxes.offset[chunk].unsqueeze(-1)).squeeze(-1)  # (K, 3)
    pref = boxes.prefactor[chunk]  # (K,)
    cutoff_sq = boxes.cutoff_sq[chunk].to(dtype)[:, None, None, None]  # (K, 1, 1, 1)
    lo, dims = boxes.lo[chunk], boxes.dims[chunk]  # (K, 3)
    offsets = [torch.arange(n, device=device) for n in big]
    outside = [torch.where(o < dims[:, a : a + 1], 0.0, torch.inf).to(dtype) for a, o in enumerate(offsets)]
    wrapped = [torch.remainder(lo[:, a : a + 1] + o, shape[a]) for a, o in enumerate(offsets)]  # (K, n_a)
    sy = offsets[1].to(dtype)[None, :, None] * step[:, None, :, 1]  # (K, Y, 3)
    sz = offsets[2].to(dtype)[None, :, None] * step[:, None, :, 2]  # (K, Z, 3)
    sz_sq = (sz * sz).sum(-1) + outside[2]  # (K, Z)
    k, ny, nz = len(chunk), big[1], big[2]
    slab = max(1, work_points // (k * ny * nz))
    for x0 in range(0, big[0], slab):
        x = slice(x0, min(x0 + slab, big[0]))
        sx = offsets[0][x].to(dtype)[None, :, None] * step[:, None, :, 0]  # (K, X, 3)
        u = base[:, None, None, :] + sx[:, :, None, :] + sy[:, None, :, :]  # (K, X, Y, 3)
        u_sq = (u * u).sum(-1) + outside[0][:, x, None] + outside[1][:, None, :]  # (K, X, Y)
        nx = u.shape[1]
        q = torch.bmm(u.reshape(k, nx * ny, 3), sz.transpose(1, 2)).reshape(k, nx, ny, nz)
        q = 2 * q + u_sq[..., None] + sz_sq[:, None, None, :]  # (K, X, Y, Z)
        q = q.masked_fill(q > cutoff_sq, torch.inf)  # exp(-inf / 2) = 0 beyond the cut-off
        flat_xy = (wrapped[0][:, x, None] * shape[1] + wrapped[1][:, None, :]) * shape[2]  # (K, X, Y)
        flat = flat_xy[..., None] + wrapped[2][:, None, None, :]  # (K, X, Y, Z)
        # Adding the zeros too is cheaper than selecting the points inside: indices run
        # along z, so the scatter is nearly sequential.
        out.index_add_(0, flat.reshape(-1), (pref[:, None, None, None] * torch.exp(-0.5 * q)).reshape(-1))


def evaluate_points(
    mixture: GaussianMixture,
    points: torch.Tensor,
    cell: torch.Tensor | None,
    pbc: tuple[bool, bool, bool],
    n_sigma: float,
    tolerance: float,
    work_points: int,
) -> torch.Tensor:
    """Density of one structure at arbitrary ``points`` (P, 3), Angstrom; shape (P,).

    Dense in points x Gaussians with the same cut-off as the grid path. For periodic
    axes, every lattice translation that brings a Gaussian's cut-off ellipsoid within
    reach of the cell is summed.
    """
    white = mixture.whitening()  # (K, 3, 3)
    pref = mixture.peak_values()  # (K,)
    cutoff_sq = cutoff_squares(pref, n_sigma, tolerance).to(pref.dtype)  # (K,)
    points, index, shifts = periodic_images(mixture, points, cell, pbc, cutoff_sq)
    centres, white, pref, cutoff_sq = mixture.centres[index] + shifts, white[index], pref[index], cutoff_sq[index]
    out = torch.zeros(points.shape[0], dtype=mixture.dtype, device=mixture.device)
    chunk = max(1, work_points // (max(1, index.shape[0]) * 3))
    for start in range(0, points.shape[0], chunk):
        d = points[start : start + chunk, None, :] - centres[None, :, :]  # (P, J, 3)
        z = torch.einsum("kab,pkb->pka", white, d)  # (P, J, 3)
        q = (z * z).sum(-1)  # (P, J)
        values = torch.where(q <= cutoff_sq, torch.exp(-0.5 * q), torch.zeros_like(q))
        out[start : start + chunk] = values @ pref
    return out


def density_and_gradient(
    mixture: GaussianMixture, points: torch.Tensor, n_sigma: float, tolerance: float, work_points: int
) -> torch.Tensor:
    """Density and its gradient at ``points`` (P, 3), Angstrom, in float64; shape (4, P).

    Rows: rho (e/Angstrom^3), d rho / dx, dy, dz (e/Angstrom^4). Non-periodic. Each
    Gaussian's exponent is a quadratic form in the point's coordinates, so for a block of
    points all of them come from one matrix product: q = [r_a r_b, r_a, 1] @ coefficients,
    and the gradient -sum_k e_k A_k (r - mu_k) from a second, with A_k = Sigma_k^-1.
    Coordinates are taken relative to the mixture's mean centre to keep the expansion exact
    to about 1e-12 in float64.
    """
    m = mixture.detach().to(dtype=torch.float64)
    points = points.to(m.centres)
    white = m.whitening()
    precision = white.transpose(-1, -2) @ white  # (K, 3, 3), 1/A^2
    pref = m.peak_values()  # (K,), e/A^3
    cutoff_sq = cutoff_squares(pref, n_sigma, tolerance)  # (K,)
    origin = m.centres.mean(0) if m.n_gaussians else torch.zeros(3, dtype=torch.float64, device=points.device)
    mu = m.centres - origin
    b = torch.einsum("kab,kb->ka", precision, mu)  # (K, 3), A mu
    rows, cols = _UPPER
    twice_off = torch.tensor([1.0, 1.0, 1.0, 2.0, 2.0, 2.0], dtype=torch.float64, device=points.device)
    # q = r^T A r - 2 b.r + mu^T A mu for r relative to the origin.
    exponent = torch.cat([precision[:, rows, cols] * twice_off, -2.0 * b, (b * mu).sum(-1, keepdim=True)], 1).T  # (10, K)
    moments = pref[:, None] * torch.cat([torch.ones_like(b[:, :1]), precision[:, rows, cols], b], 1)  # (K, 10)
    out = torch.empty(4, points.shape[0], dtype=torch.float64, device=points.device)
    chunk = max(1, work_points // max(1, m.n_gaussians))
    for start in range(0, points.shape[0], chunk):
        r = points[start : start + chunk] - origin  # (P', 3)
        features = torch.cat([r[:, rows] * r[:, cols], r, torch.ones_like(r[:, :1])], 1)  # (P', 10)
        q = features @ exponent  # (P', K)
        e = torch.exp(q.masked_fill_(q > cutoff_sq, math.inf).mul_(-0.5))  # 0 beyond the cut-off
        s = e @ moments  # (P', 10): rho, sum_k e_k w_k A_k (6 unique), sum_k e_k w_k A_k mu_k
        out[0, start : start + chunk] = s[:, 0]
        field = s[:, 1:7][:, _SYMMETRIC].reshape(-1, 3, 3)  # (P', 3, 3)
        out[1:, start : start + chunk] = (s[:, 7:] - torch.einsum("pab,pb->pa", field, r)).T
    return out


#: Upper-triangle (row, column) pairs of a 3x3 matrix: xx, yy, zz, xy, xz, yz.
_UPPER = ([0, 1, 2, 0, 0, 1], [0, 1, 2, 1, 2, 2])
#: Positions of a full 3x3 matrix's entries in the ``_UPPER`` order.
_SYMMETRIC = [0, 3, 4, 3, 1, 5, 4, 5, 2]

