"""Torch evaluators (CPU and CUDA): the reference path, differentiable.

On a grid each Gaussian is evaluated only inside its index box (see ``_boxes``): the
Gaussians are sorted by box volume and processed in chunks whose padded boxes hold at
most ``work_points`` points, so memory stays bounded whatever the grid. Values are
scattered into the flat grid with ``index_add``, which sums periodic images.

Legend: K Gaussians, P points, X/Y/Z box extents.
"""

from __future__ import annotations

import torch

from ..gaussians import GaussianMixture
from ..grid import Grid
from ._boxes import GridBoxes, grid_tensors, index_boxes


def evaluate_grid(mixture: GaussianMixture, grid: Grid, n_sigma: float, work_points: int) -> torch.Tensor:
    """Density of one structure on ``grid``, shape ``grid.shape``, e/Angstrom^3."""
    _, voxels, shape = grid_tensors(grid, mixture.weights)
    out = torch.zeros(grid.n_points, dtype=mixture.dtype, device=mixture.device)
    boxes = index_boxes(mixture, grid, n_sigma)
    volume = boxes.dims.prod(-1)
    order = torch.argsort(volume, descending=True)
    order = order[volume[order] > 0].tolist()
    dims_host = boxes.dims.tolist()
    start = 0
    while start < len(order):
        # Chunk Gaussians of similar volume; every box is padded to the chunk's per-axis maximum.
        first = dims_host[order[start]]
        count = max(1, min(len(order) - start, work_points // (first[0] * first[1] * first[2])))
        while True:
            big = [max(dims_host[g][a] for g in order[start : start + count]) for a in range(3)]
            if count == 1 or count * big[0] * big[1] * big[2] <= 2 * work_points:
                break
            count //= 2
        chunk = torch.tensor(order[start : start + count], device=mixture.device)
        _accumulate(out, boxes, chunk, big, voxels, shape, n_sigma, work_points)
        start += count
    return out.reshape(grid.shape)


def _accumulate(
    out: torch.Tensor,
    boxes: GridBoxes,
    chunk: torch.Tensor,
    big: list[int],
    voxels: torch.Tensor,
    shape: torch.Tensor,
    n_sigma: float,
    work_points: int,
) -> None:
    """Add the Gaussians ``chunk`` into ``out``, in slabs along the first axis if needed."""
    device, dtype = out.device, out.dtype
    white = boxes.whitening[chunk]  # (K, 3, 3)
    step = white @ voxels.T  # (K, 3, 3): column a = L^-1 voxel_a
    base = (white @ boxes.offset[chunk].unsqueeze(-1)).squeeze(-1)  # (K, 3)
    pref = boxes.prefactor[chunk]  # (K,)
    lo, dims = boxes.lo[chunk], boxes.dims[chunk]  # (K, 3)
    oy = torch.arange(big[1], device=device)
    oz = torch.arange(big[2], device=device)
    zy = oy.to(dtype)[None, :, None] * step[:, None, :, 1]  # (K, Y, 3)
    zz = oz.to(dtype)[None, :, None] * step[:, None, :, 2]  # (K, Z, 3)
    iy = torch.remainder(lo[:, 1:2] + oy, shape[1])  # (K, Y)
    iz = torch.remainder(lo[:, 2:3] + oz, shape[2])  # (K, Z)
    in_y = oy < dims[:, 1:2]
    in_z = oz < dims[:, 2:3]
    slab = max(1, work_points // (len(chunk) * big[1] * big[2]))
    for x0 in range(0, big[0], slab):
        ox = torch.arange(x0, min(x0 + slab, big[0]), device=device)
        zx = ox.to(dtype)[None, :, None] * step[:, None, :, 0]  # (K, X, 3)
        z = (
            base[:, None, None, None, :]
            + zx[:, :, None, None, :]
            + zy[:, None, :, None, :]
            + zz[:, None, None, :, :]
        )  # (K, X, Y, Z, 3)
        q = (z * z).sum(-1)  # (K, X, Y, Z)
        ix = torch.remainder(lo[:, 0:1] + ox, shape[0])  # (K, X)
        inside = (
            (ox < dims[:, 0:1])[:, :, None, None]
            & in_y[:, None, :, None]
            & in_z[:, None, None, :]
            & (q <= n_sigma * n_sigma)
        )
        flat = (ix[:, :, None, None] * shape[1] + iy[:, None, :, None]) * shape[2] + iz[:, None, None, :]
        values = pref[:, None, None, None] * torch.exp(-0.5 * q)
        out.index_add_(0, flat[inside], values[inside])


def evaluate_points(
    mixture: GaussianMixture,
    points: torch.Tensor,
    cell: torch.Tensor | None,
    pbc: tuple[bool, bool, bool],
    n_sigma: float,
    work_points: int,
) -> torch.Tensor:
    """Density of one structure at arbitrary ``points`` (P, 3), Angstrom; shape (P,).

    Dense in points x Gaussians with the same cut-off as the grid path. For periodic
    axes, every lattice translation that brings a Gaussian's cut-off ellipsoid within
    reach of the cell is summed.
    """
    white = mixture.whitening()  # (K, 3, 3)
    pref = mixture.weights * torch.exp(mixture.log_normalisation())  # (K,)
    shifts = _image_shifts(mixture, cell, pbc, n_sigma)  # (T, 3)
    centres = mixture.centres
    if cell is not None and any(pbc):
        # Wrap points and centres into the cell along periodic axes, so the shifts suffice.
        periodic = torch.tensor(pbc, device=points.device)
        inv = torch.linalg.inv(cell)
        points = points - torch.where(periodic, torch.floor(points @ inv), 0.0) @ cell
        centres = centres - torch.where(periodic, torch.floor(centres.detach() @ inv), 0.0) @ cell
    out = torch.zeros(points.shape[0], dtype=mixture.dtype, device=mixture.device)
    k = max(1, mixture.n_gaussians)
    chunk = max(1, work_points // (k * 3))
    for start in range(0, points.shape[0], chunk):
        p = points[start : start + chunk]
        total = torch.zeros(p.shape[0], dtype=mixture.dtype, device=mixture.device)
        for shift in shifts:
            d = p[:, None, :] - (centres + shift)[None, :, :]  # (P, K, 3)
            z = torch.einsum("kab,pkb->pka", white, d)  # (P, K, 3)
            q = (z * z).sum(-1)  # (P, K)
            values = torch.where(q <= n_sigma * n_sigma, torch.exp(-0.5 * q), torch.zeros_like(q))
            total = total + values @ pref
        out[start : start + chunk] = total
    return out


def _image_shifts(
    mixture: GaussianMixture, cell: torch.Tensor | None, pbc: tuple[bool, bool, bool], n_sigma: float
) -> torch.Tensor:
    """Lattice translations (T, 3), Angstrom, that can bring a Gaussian near the cell."""
    dtype, device = mixture.dtype, mixture.device
    if cell is None or not any(pbc) or mixture.n_gaussians == 0:
        return torch.zeros(1, 3, dtype=dtype, device=device)
    inv = torch.linalg.inv(cell.detach())
    # Largest fractional half-extent of any Gaussian along each axis.
    reach = (torch.linalg.norm(mixture.scale_tril.detach().transpose(-1, -2) @ inv, dim=-2) * n_sigma).amax(0)
    ranges = [
        torch.arange(-int(reach[a].ceil()) - 1, int(reach[a].ceil()) + 2, device=device) if pbc[a]
        else torch.zeros(1, dtype=torch.int64, device=device)
        for a in range(3)
    ]
    n = torch.cartesian_prod(*ranges).to(dtype)  # (T, 3)
    return n @ cell
