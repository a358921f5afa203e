"""Reciprocal-space evaluation on periodic grids: plane-wave coefficients and one inverse FFT.

On a grid periodic along all three axes the density is a Fourier series,
rho(r) = (1/V) sum_G rho^(G) exp(i G . r), and a Gaussian's transform is analytic::

    rho^(G) = sum_k w_k exp(-i G . mu_k - G^T Sigma_k G / 2).

With G = B^T m (B the reciprocal vectors 2 pi cell^-T as rows, m integer) and grid
point j at origin + (j / N) cell, the value at point j is sum_m c(m) exp(2 pi i m . j / N)
with c(m) = rho^(G_m) exp(i G_m . origin) / V: an inverse FFT of the coefficients
(``irfftn(..., norm="forward")`` of the half spectrum m3 >= 0). Every periodic image is
included; nothing is cut off in real space.

**Which Gaussians.** Gaussian k's transform is a Gaussian in m with q_k(m) = m^T A_k m,
A_k = B Sigma_k B^T. Its coefficients are summed over the ellipsoid q_k <= R^2; the
modes left out add up to at most P(chi_3 > R) of its peak value at any point. R is
``RADIUS`` = 6.35 (9e-9), or more where the caller's real-space cut-off n_sigma asks for
more (P(chi_3 > R) = exp(-n_sigma^2 / 2), the real path's value at its cut-off: R = 7.25
for n_sigma = 7), so this path is never the less exact one.

A Gaussian *fits the grid* when that ellipsoid lies inside the grid's Nyquist box,
|m_a| <= (N_a - 1) // 2. Its extent along m_a is R |L^-1 a_a| / 2 pi (a_a the cell
vector, L the Cholesky factor), so a voxel step v_a must be below pi / R = 0.495
standard deviations along it: the Gaussian is more than R / pi = 2.02 voxels wide along
every grid axis (a little less on an axis of odd length). Point samples of a narrower
Gaussian alias: its transform reaches past the Nyquist box and folds back onto the
grid's modes. Measured with the ellipsoid clipped at the box (one Gaussian at 20 random
centres in a periodic 20^3 grid, against the exact sum over images; the first table of
``benchmarks/reciprocal_density.py``), the largest error relative to the peak is 6.9e-3
at 1 voxel, 1.8e-5 at 1.5, 3.3e-7 at 1.75, 8.4e-9 at 2.0 and below 1e-8 for every
Gaussian that fits. Those go to reciprocal space; narrower ones (all-electron cores and
most of a molecule's Gaussians on a 0.1 Angstrom grid) stay on the real-space path
(``_numba``, ``_torch``, ``_cupy``), where they are cheap anyway: a Gaussian's real-space
cost grows with its width and its reciprocal cost shrinks, so the cost model below rarely
wants one near the limit.

**Where it pays.** A Gaussian costs about the number of points inside its cut-off
ellipsoid in real space, (4/3) pi n^3 sqrt(det Sigma) / v (v the voxel volume, n the
cut-off radius in standard deviations), and about the number of modes inside its
coefficient ellipsoid in reciprocal space, (2/3) pi R^3 V / ((2 pi)^3 sqrt(det Sigma))
(half the spectrum); the inverse FFT costs once, N log N, pruned to the modes in use. So
reciprocal space wins for Gaussians wide compared with the cell, per Gaussian where the
cell volume V is below about 250 sigma^6 / h^3 at equal cost per point and mode
(isotropic, spacing h, n = 5), and in all where those savings exceed the FFT: with many
wide Gaussians in small cells, not with few in large ones. :func:`reciprocal_share`
makes the choice with costs per line, point, mode and FFT measured on one CPU thread
(``_COSTS``). Measured (``benchmarks/reciprocal_density.py``, one thread of a shared
2-core CPU, 0.1 Angstrom grids): 128 isotropic 0.8 Angstrom Gaussians in a 10 Angstrom
cube take 0.111 s in real space and 0.021 s here, in a 20 Angstrom cube 0.214 and 0.474 s
(auto stays real); promolecule crystals with ``space="auto"`` run 1.4 to 6 times faster
from a conventional cell up (Al 3x3x3 0.61 -> 0.11 s, NaCl 2x2x2 0.50 -> 0.08 s), the
default model's ethanol in an 8 Angstrom periodic box 1.4 times; where auto gains nothing
it costs its choice (a few milliseconds: a primitive Al cell, 27,000 points, 0.012 ->
0.015 s).

**Voxel sampling.** ``sampling="voxel"`` widens only Gaussians whose variance in voxel
units is below 0.5 along some direction (``_voxel.py``). A Gaussian that fits the grid
has at least R^2 / 3 pi^2 = 1.36 along every direction (its ellipsoid, inside the
Nyquist box, reaches at most the box's corners), so it is never widened, and widened ones
never fit: voxel values are the real path's widened Gaussians plus the unchanged wide
ones from here. The grid sum of the reciprocal part is its weights exactly (N times the
m = 0 coefficient).

Legend: K Gaussians, M modes of a chunk's box, N grid points.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from ..errors import GridTooLargeError, InvalidInputError
from ..gaussians import GaussianMixture
from ..grid import Grid
from ._boxes import index_boxes

__all__ = [
    "RADIUS", "Space", "ModeBoxes", "coefficient_radius", "mode_boxes", "fits_grid", "plane_wave_coefficients",
    "evaluate_reciprocal", "reciprocal_share",
]

Space = Literal["auto", "real", "reciprocal"]

#: Smallest Mahalanobis radius of each Gaussian's coefficient ellipsoid in reciprocal
#: space: the modes beyond it hold P(chi_3 > 6.35) = 9e-9 of the Gaussian's peak value.
RADIUS = 6.35


def coefficient_radius(n_sigma: float) -> float:
    """R for a real-space cut-off of ``n_sigma``: ``RADIUS``, or more where P(chi_3 > R) must
    reach exp(-n_sigma^2 / 2) (dimensionless; see the module docstring).

    >>> coefficient_radius(5.0), round(coefficient_radius(7.0), 2)
    (6.35, 7.25)
    """
    from scipy.special import gammainccinv

    return max(RADIUS, math.sqrt(2.0 * gammainccinv(1.5, math.exp(-0.5 * n_sigma**2))))


@dataclass(frozen=True)
class ModeBoxes:
    """Per-Gaussian quantities of the coefficients, float64 on the mixture's device.

    metric : (K, 3, 3), A_k = B Sigma_k B^T (dimensionless)
    frac : (K, 3), centres minus the grid's origin in fractions of the cell vectors, wrapped into [0, 1)
    pref : (K,), e/Angstrom^3: weight over the cell volume
    extents : (K, 3) int64, the largest |m_a| inside each ellipsoid q_k <= radius^2
    radius : R, the ellipsoids' Mahalanobis radius
    """

    metric: torch.Tensor
    frac: torch.Tensor
    pref: torch.Tensor
    extents: torch.Tensor
    radius: float

    def fit(self, grid: Grid) -> torch.Tensor:
        """Which ellipsoids lie inside ``grid``'s Nyquist box, (K,) bool."""
        nyquist = torch.tensor([(n - 1) // 2 for n in grid.shape], device=self.extents.device)
        return (self.extents <= nyquist).all(-1)


def mode_boxes(mixture: GaussianMixture, grid: Grid, radius: float = RADIUS) -> ModeBoxes:
    """:class:`ModeBoxes` of ``mixture`` on ``grid``'s cell; differentiable in metric, frac and pref."""
    m = mixture.to(dtype=torch.float64)
    cell = torch.tensor(grid.cell, dtype=torch.float64, device=m.device)
    inv_cell = torch.linalg.inv(cell)
    recip = 2.0 * math.pi * inv_cell.T  # (3, 3) rows b_a, 1/Angstrom
    metric = recip @ m.covariances @ recip.T  # (K, 3, 3)
    frac = (m.centres - torch.tensor(grid.origin, dtype=torch.float64, device=m.device)) @ inv_cell  # (K, 3)
    frac = frac - torch.floor(frac.detach())  # the phases are periodic in f; in [0, 1) they keep their digits
    pref = m.weights / abs(float(np.linalg.det(grid.cell)))
    stretch = torch.linalg.norm(m.detach().whitening() @ cell.T, dim=-2)  # (K, 3): |L^-1 a_a|
    extents = torch.floor(radius * stretch / (2.0 * math.pi)).to(torch.int64)
    return ModeBoxes(metric, frac, pref, extents, radius)


def fits_grid(mixture: GaussianMixture, grid: Grid, radius: float = RADIUS) -> torch.Tensor:
    """Which Gaussians' coefficient ellipsoids (Mahalanobis ``radius``) lie inside ``grid``'s Nyquist box, (K,) bool.

    Those are evaluated to within P(chi_3 > radius) of their peak values by
    :func:`evaluate_reciprocal`: at ``RADIUS``, 9e-9 for Gaussians more than 2.02 voxels wide
    along every axis (see the module docstring).
    """
    return mode_boxes(mixture.detach(), grid, radius).fit(grid)


def plane_wave_coefficients(
    mixture: GaussianMixture,
    grid: Grid,
    *,
    radius: float = RADIUS,
    compiled: bool | None = None,
    work_points: int = 1 << 21,
) -> torch.Tensor:
    """Half spectrum of ``mixture`` on ``grid``: ``irfftn(c, s=grid.shape, norm="forward")`` gives its values.

    Parameters
    ----------
    mixture : GaussianMixture
        One structure, every Gaussian fitting the grid (:func:`fits_grid`); weights may be signed.
    grid : Grid
        Periodic along all three axes; its cell rows are the lattice vectors.
    radius : float
        R, the Mahalanobis radius of each Gaussian's coefficient ellipsoid (at least ``RADIUS``).
    compiled : bool, optional
        Sum with the numba kernel (CPU, not differentiable) or with torch (any device,
        differentiable); default: numba for a CPU mixture that needs no gradient.
    work_points : int
        Modes times Gaussians held at once by the torch sum (about 50 bytes each).

    Returns
    -------
    Tensor, shape (N1, N2, N3 // 2 + 1), complex128, e/Angstrom^3, on the mixture's device:
    the coefficient of mode (m1, m2, m3) at index (m1 mod N1, m2 mod N2, m3).
    """
    box = _coefficient_box(mixture, grid, radius, compiled, work_points)  # (2 T1 + 1, 2 T2 + 1, T3 + 1)
    n1, n2, n3 = grid.shape
    spread = _spread(_spread(box, 0, n1), 1, n2)
    return torch.nn.functional.pad(spread, (0, n3 // 2 - box.shape[2] + 1))


def evaluate_reciprocal(
    mixture: GaussianMixture,
    grid: Grid,
    *,
    radius: float = RADIUS,
    compiled: bool | None = None,
    work_points: int = 1 << 21,
) -> torch.Tensor:
    """Density of ``mixture`` (every Gaussian fitting the grid) on the periodic ``grid``; see the module docstring.

    The inverse FFT is pruned: the modes lie within the widest coefficient box, |m_a| <= T_a,
    so the transform along the first axis runs only over the (2 T2 + 1)(T3 + 1) lines that
    hold modes, the one along the second axis over N1 (T3 + 1) lines, and only the last
    (a real inverse FFT) over all N1 N2 lines.

    Parameters
    ----------
    mixture : GaussianMixture
        One structure; centres in Angstrom. Signed weights are summed as they are (no clamp).
    grid : Grid
        Periodic along all three axes.
    radius, compiled, work_points
        As in :func:`plane_wave_coefficients`.

    Returns
    -------
    Tensor, shape ``grid.shape``, float64, e/Angstrom^3, on the mixture's device;
    differentiable unless ``compiled``.
    """
    return _inverse(_coefficient_box(mixture, grid, radius, compiled, work_points), grid.shape)


def _inverse(box: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
    """Grid values (``shape``) of the coefficient box (2 T1 + 1, 2 T2 + 1, T3 + 1): the pruned inverse FFT."""
    n1, n2, n3 = shape
    lines = torch.fft.ifft(_spread(box, 0, n1), dim=0, norm="forward")  # (N1, 2 T2 + 1, T3 + 1)
    lines = torch.fft.ifft(_spread(lines, 1, n2), dim=1, norm="forward")  # (N1, N2, T3 + 1)
    return torch.fft.irfft(lines, n=n3, dim=2, norm="forward")  # modes above T3 are zero


def _spread(box: torch.Tensor, dim: int, n: int) -> torch.Tensor:
    """Modes -T..T along ``dim`` (centred, 2 T + 1 entries) laid out FFT-style in ``n`` entries."""
    t = (box.shape[dim] - 1) // 2
    gap = list(box.shape)
    gap[dim] = n - 2 * t - 1
    return torch.cat([box.narrow(dim, t, t + 1), box.new_zeros(gap), box.narrow(dim, 0, t)], dim)


def _coefficient_box(
    mixture: GaussianMixture, grid: Grid, radius: float, compiled: bool | None, work_points: int
) -> torch.Tensor:
    """Coefficients on the box of modes |m_a| <= T_a, m3 >= 0 (T the largest extents), complex128,
    shape (2 T1 + 1, 2 T2 + 1, T3 + 1), mode (m1, m2, m3) at (m1 + T1, m2 + T2, m3)."""
    if not all(grid.pbc):
        raise InvalidInputError(f"reciprocal space: the grid must be periodic along all three axes, got pbc {grid.pbc}")
    if not radius >= RADIUS:
        raise InvalidInputError(f"radius: expected at least {RADIUS}, got {radius}")
    boxes = mode_boxes(mixture, grid, radius)
    outside = ~boxes.fit(grid)
    if outside.any():
        k = int(torch.nonzero(outside)[0, 0])
        raise InvalidInputError(
            f"reciprocal space: Gaussian {k} is too narrow for grid ({grid.describe()}): its transform reaches past "
            "the grid's Nyquist frequency (fits_grid); evaluate it in real space"
        )
    top = boxes.extents.amax(0).tolist() if mixture.n_gaussians else [0, 0, 0]
    shape = (2 * top[0] + 1, 2 * top[1] + 1, top[2] + 1)
    if compiled is None:
        compiled = mixture.device.type == "cpu" and not _needs_grad(mixture) and _has_numba()
    if compiled:
        from ._reciprocal_numba import add_coefficients

        out = np.zeros(shape, dtype=np.complex128)
        add_coefficients(*(t.detach().cpu().numpy() for t in (boxes.metric, boxes.frac, boxes.pref, boxes.extents)),
                         radius**2, out)  # fmt: skip
        return torch.from_numpy(out).to(mixture.device)
    return _torch_coefficients(boxes, top, work_points).reshape(shape)


def _torch_coefficients(boxes: ModeBoxes, top: list[int], work_points: int) -> torch.Tensor:
    """Flat coefficient box ((2 T1 + 1)(2 T2 + 1)(T3 + 1),) complex128 (``top`` = T), summed chunk by
    chunk of Gaussians with similar boxes."""
    device = boxes.pref.device
    out = torch.zeros((2 * top[0] + 1) * (2 * top[1] + 1) * (top[2] + 1), dtype=torch.complex128, device=device)
    e = boxes.extents
    volume = ((2 * e[:, 0] + 1) * (2 * e[:, 1] + 1) * (e[:, 2] + 1)).tolist()  # (K,) modes in each box
    order = sorted(range(len(volume)), key=volume.__getitem__)
    start = 0
    while start < len(order):
        # Boxes ascending in volume: a chunk's padded box is that of its last Gaussian.
        stop = start + 1
        while stop < len(order) and volume[order[stop]] * (stop + 1 - start) <= work_points:
            stop += 1
        chunk = torch.tensor(order[start:stop], device=device)
        start = stop
        big = e[chunk].amax(0).tolist()
        axes = [torch.arange(-big[0], big[0] + 1, device=device), torch.arange(-big[1], big[1] + 1, device=device),
                torch.arange(0, big[2] + 1, device=device)]
        modes = torch.cartesian_prod(*axes)  # (M, 3) int64
        m = modes.to(torch.float64)
        q = _quadratic_coefficients(boxes.metric[chunk]) @ _quadratic_features(m).T  # (K, M): m^T A_k m
        theta = -2.0 * math.pi * boxes.frac[chunk] @ m.T  # (K, M)
        size = boxes.pref[chunk, None] * torch.exp(-0.5 * q).masked_fill(q.detach() > boxes.radius**2, 0.0)  # (K, M)
        values = torch.complex((size * torch.cos(theta)).sum(0), (size * torch.sin(theta)).sum(0))  # (M,)
        index = ((modes[:, 0] + top[0]) * (2 * top[1] + 1) + modes[:, 1] + top[1]) * (top[2] + 1) + modes[:, 2]
        out.index_add_(0, index, values)
    return out


def _quadratic_features(m: torch.Tensor) -> torch.Tensor:
    """(M, 6): m1^2, m2^2, m3^2, m1 m2, m1 m3, m2 m3 of modes ``m`` (M, 3)."""
    return torch.stack([m[:, 0] ** 2, m[:, 1] ** 2, m[:, 2] ** 2, m[:, 0] * m[:, 1], m[:, 0] * m[:, 2],
                        m[:, 1] * m[:, 2]], 1)  # fmt: skip


def _quadratic_coefficients(metric: torch.Tensor) -> torch.Tensor:
    """(K, 6) such that q = coefficients @ features (:func:`_quadratic_features`) is m^T A m."""
    a = metric
    return torch.stack([a[:, 0, 0], a[:, 1, 1], a[:, 2, 2], 2 * a[:, 0, 1], 2 * a[:, 0, 2], 2 * a[:, 1, 2]], 1)


def reciprocal_share(
    mixture: GaussianMixture,
    grid: Grid,
    backend: Literal["torch", "numba", "cupy"],
    space: Space,
    n_sigma: float,
    tolerance: float,
    max_bytes: int,
) -> torch.Tensor:
    """Which Gaussians :func:`~ase_electra.evaluate.evaluate` sums in reciprocal space, (K,) bool.

    "real": none. "reciprocal": every Gaussian that fits the grid at
    ``coefficient_radius(n_sigma)`` and reaches above ``tolerance`` (the real path skips
    the others). "auto": on the CPU, the share that the cost model (``_COSTS`` for
    ``backend``) finds fastest, if any: the candidates, widest first, are taken as long as
    the total falls, the inverse FFT's cost growing with the largest mode along the last
    axis; on a GPU none (not measured there). A grid whose spectrum would not fit in
    ``max_bytes`` stays real.
    """
    none = torch.zeros(mixture.n_gaussians, dtype=torch.bool, device=mixture.device)
    if space == "real":
        return none
    if space not in ("auto", "reciprocal"):
        raise InvalidInputError(f"space: expected 'auto', 'real' or 'reciprocal', got {space!r}")
    if not all(grid.pbc):
        if space == "reciprocal":
            raise InvalidInputError(
                f"space='reciprocal' needs a grid periodic along all three axes, got pbc {grid.pbc}"
            )
        return none
    if 4 * 8 * grid.n_points > max_bytes:  # real part, half spectrum, inverse FFT, sum: float64 each
        if space == "reciprocal":
            raise GridTooLargeError(
                f"grid ({grid.describe()}, {grid.n_points:,} points): its spectrum needs more than the memory bound "
                f"of {max_bytes / 1e9:.1f} GB; use space='real' or a coarser spacing"
            )
        return none
    if mixture.n_gaussians == 0:
        return none
    detached = mixture.detach()
    boxes = index_boxes(detached, grid, n_sigma, tolerance)
    modes = mode_boxes(detached, grid, coefficient_radius(n_sigma))
    candidates = modes.fit(grid) & (boxes.cutoff_sq > 0)
    if space == "reciprocal":
        return candidates
    if backend == "cupy" or mixture.device.type != "cpu":
        return none
    costs = _COSTS["numba" if backend == "numba" and not _needs_grad(mixture) else "torch"]
    real = _real_cost(boxes.dims.double(), costs)  # (K,) seconds
    recip = _reciprocal_cost(modes.extents.double(), costs)
    # Widest first (smallest coefficient boxes); prefix j sums the j + 1 widest in reciprocal space.
    order = torch.nonzero(candidates).flatten()
    order = order[torch.argsort(modes.extents[order].prod(-1), stable=True)]
    if not len(order):
        return none
    top = torch.cummax(modes.extents[order, 2], 0).values.double()  # (J,) largest m3 of each prefix
    n3 = grid.shape[2]
    inverse = costs.call + costs.fft * grid.n_points * math.log2(grid.n_points) * (0.5 + 2.0 * (top + 1) / n3)
    total = torch.cumsum(recip[order] - real[order], 0) + inverse  # (J,) seconds more than all real
    best = int(torch.argmin(total))
    if float(total[best]) >= 0.0:
        return none
    share = none.clone()
    share[order[: best + 1]] = True
    return share


@dataclass(frozen=True)
class _Cost:
    """Seconds per real-space line and point, per reciprocal line and mode, per N log2 N of the
    inverse FFT (times 1/2 + 2 (T3 + 1) / N3, the share of the pruned transform's work for
    modes up to T3 along the last axis), and per reciprocal evaluation (bookkeeping, the sum
    with the real part)."""

    line: float
    point: float
    mode_line: float
    mode: float
    fft: float
    call: float


def _real_cost(dims: torch.Tensor, c: _Cost) -> torch.Tensor:
    """Seconds to evaluate each Gaussian's box of ``dims`` (K, 3) in real space: its lines, and the
    points of its cut-off ellipsoid (pi / 6 of the box)."""
    return c.line * dims[:, 0] * dims[:, 1] + c.point * (math.pi / 6.0) * dims.prod(-1)


def _reciprocal_cost(extents: torch.Tensor, c: _Cost) -> torch.Tensor:
    """Seconds to sum each Gaussian's coefficients over the half ellipsoid within ``extents`` (K, 3)."""
    lines = (2 * extents[:, 0] + 1) * (2 * extents[:, 1] + 1)
    return c.mode_line * lines + c.mode * (math.pi / 6.0) * lines * (extents[:, 2] + 1)


#: Measured on one thread of this project's 2-core CPU, shared with training and labelling (load
#: average 5 to 8.5), by ``benchmarks/reciprocal_density.py --calibrate`` (fits that moved by up to
#: 50 % between runs with the load) and checked on the default model's Gaussians in a 14 Angstrom
#: box, whose modes and inverse FFT took 1.6 and 1.8 times the fitted costs: the reciprocal costs
#: are set at the upper end, so that where the model is unsure the real path stays.
_COSTS = {
    "numba": _Cost(line=9e-8, point=4.5e-9, mode_line=6e-8, mode=6e-9, fft=2.5e-9, call=5e-3),
    "torch": _Cost(line=3e-7, point=1.1e-7, mode_line=5e-9, mode=1.5e-7, fft=2.5e-9, call=5e-3),
}


def _needs_grad(mixture: GaussianMixture) -> bool:
    tensors = (mixture.weights, mixture.centres, mixture.scale_tril)
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


def _has_numba() -> bool:
    import importlib.util

    return importlib.util.find_spec("numba") is not None
