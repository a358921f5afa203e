"""Electrostatic potential of Gaussian charges on grids: an Ewald split, FFTs plus local Gaussians.

The potential of a normalised Gaussian N(mu, Sigma) is the heat-kernel integral::

    phi_Sigma(r) = 2 pi int_0^inf N(r | mu, Sigma + tau I) dtau

(for Sigma -> 0 it is 1/|r - mu|). Splitting it at tau = a::

    phi_Sigma = phi_(Sigma + a I)  +  2 pi int_0^a N(r | mu, Sigma + tau I) dtau
                long range            short range

Every Gaussian whose smallest covariance eigenvalue lambda_min is below s^2 (s the
screening width, default ``max(MIN_SCREENING, 2 h)`` for grid spacing h) gets
``a = s^2 - lambda_min``; wider Gaussians are long range only. Nuclei are Gaussians too
(1e-5 Angstrom wide).

**Long range.** The widened charges (all at least s wide) are sampled on periodic grids
of spacing ``SAMPLING * s`` (each on the coarsest of 1, 2, 4, 8 times that spacing that
resolves it), Fourier transformed (a Nyquist mode counted half at +G and half at -G),
multiplied by a Coulomb kernel v(G) and summed as
a Fourier series at the output points, one axis at a time (modes folded onto the output
points per period, then one inverse FFT per axis): the exact band-limited sum, not a
local interpolation. Periodic axes use the structure's cell; along free axes the
computational cell is the output grid extended until the kernel sees no image. Kernels:

- all axes periodic (a crystal): ``4 pi / G^2`` with G = 0 dropped, so the potential's
  mean over the cell is zero, a charged cell getting a uniform neutralising background:
  the convention of VASP's LOCPOT and of GPAW;
- no axis periodic (a molecule) and two (a slab) use two levels.
  Near: ``erfc(beta r) / r`` (``4 pi / G^2 (1 - exp(-G^2 / 4 beta^2))``, ``pi / beta^2``
  at G = 0) on a cell extended by its reach, 4.5 / beta. Far: the charges widened by
  ``1 / 2 beta^2`` more (``_LEVELS`` times s in all) with the bare kernel truncated so
  that no image is seen: a molecule's beyond R, the longest distance between points and
  charges, on a cell of at least extent + R, ``4 pi (1 - cos G R) / G^2``, ``2 pi R^2``
  at G = 0 (Jarvis, Chen and Holt, Phys. Rev. B 56, 14972 (1997)): zero at infinity,
  charged molecules included; a slab's beyond half its computational cell along the
  normal, twice the extent of points and charges, ``4 pi / G^2 (1 - exp(-G_par R)
  cos(G_z R))`` (Ismail-Beigi, Phys. Rev. B 73, 233103 (2006)), ``-2 pi R^2`` at G = 0:
  the 2-D periodic potential whose planar average is ``-(2 pi / A) sum_k q_k E|z - Z_k|``
  (A the cell's area, Z_k the charges' heights), so a neutral slab's two vacuum levels
  are ``+-2 pi p / A`` (p the dipole along the normal per cell): flat, their mean zero.

One periodic axis (a wire) is refused.

**Short range.** The tau-integral by Gauss-Legendre in ``u = ln(lambda_min + tau)``
from ``ln lambda_min`` to ``ln s^2``, in panels at most ``_PANEL`` wide of
``ceil(2.5 + 3 width)`` nodes each, so each Gaussian's short-range potential is itself
a mixture of Gaussians ``N(mu, Sigma + tau_j I)``, evaluated on the output grid by
:func:`ase_electra.evaluate.evaluate` like a density (6.5 standard deviations each).
Against the closed form of an isotropic Gaussian, ``(erf(r / sqrt(2 lambda)) - erf(r /
sqrt(2) s)) / r``, the rule's error is below 3e-9 of ``1 / max(r, sqrt(lambda))`` for
widths from 1e-5 Angstrom to s. On a periodic grid the short-range potentials' cell mean
(their weights over the cell volume) is subtracted with the long range's G = 0 term.

Accuracy (``benchmarks/esp_speed.py``): against the analytic potential
(:func:`.electrostatics.electrostatic_potential`) on the van der Waals shells of 10 QM9
molecules on 0.2 Angstrom grids, RMSE 4.8e-6 kcal/mol/e (2e-7 V), largest difference
4.1e-5 kcal/mol/e; cubic rocksalt against a brute-force Ewald sum, 9e-8 relative.

Legend: K Gaussians, J quadrature nodes, M coarse grid points, P points.
"""

from __future__ import annotations

import math

import numpy as np
import scipy.fft
import torch

from ..errors import InvalidInputError
from ..evaluate import evaluate
from ..gaussians import GaussianMixture
from ..grid import Grid, fft_friendly

__all__ = ["MIN_SCREENING", "SAMPLING", "charge_distribution", "split_gaussian_potential"]

#: Smallest default screening width s, Angstrom; the default is the larger of this and
#: twice the grid's largest spacing (timed on a QM9 molecule at 0.1 and 0.2 Angstrom).
MIN_SCREENING = 0.3

#: Long-range grid spacing per unit of screening width. On a QM9 molecule (qm9_005128,
#: default model, 0.2 Angstrom grid) against the analytic potential on the van der Waals
#: shells: RMSE 4e-6 kcal/mol/e at 0.5 and 0.55, 6e-6 at 0.6 (max 3.5e-5), 1e-4 at 0.7.
SAMPLING = 0.6

_PANEL = 3.0  # widest Gauss-Legendre panel in u = ln(lambda_min + tau)
_NODES_BASE, _NODES_PER_WIDTH = 2.5, 3.0  # nodes per panel: ceil(2.5 + 3 width)
_DEPOSIT_LEVELS, _LEVEL_RATIO = 4, 2.0  # long-range charges are sampled on grids 1, 2, 4 or 8 times coarser
_SUPPORT = 6.5  # Mahalanobis radius that holds a widened Gaussian's charge (2e-9 of it outside)
_SHORT_SUPPORT = 6.5  # Mahalanobis radius of the short-range Gaussians (their values fall to 6.5e-10 of the peak)
_LEVELS = 2.25  # free axes: the far level's charges are this many times wider than s
_ERFC_REACH = 4.5  # the near level's kernel erfc(beta r) / r ends at beta r = 4.5 (erfc = 2e-10)
_LONG_TOLERANCE = 1e-12  # value cut-off of the sampled widened charges, e / Angstrom^3
_SHORT_TOLERANCE = 1e-11  # value cut-off of the short-range Gaussians, e / Angstrom


def charge_distribution(mixture: GaussianMixture, numbers: np.ndarray, positions: np.ndarray,
                        nuclear_sigma: float) -> GaussianMixture:
    """Nuclei (weights +Z, isotropic, ``nuclear_sigma`` Angstrom wide) and electrons (weights -w), float64 CPU."""
    m = mixture.detach().to(device="cpu", dtype=torch.float64)
    z = torch.as_tensor(np.asarray(numbers, dtype=np.float64))
    nuclei = torch.as_tensor(np.asarray(positions, dtype=np.float64)).reshape(-1, 3)
    tril = torch.eye(3, dtype=torch.float64).expand(len(z), 3, 3) * nuclear_sigma
    return GaussianMixture(torch.cat([z, -m.weights]), torch.cat([nuclei, m.centres]), torch.cat([tril, m.scale_tril]))


def split_gaussian_potential(charges: GaussianMixture, grid: Grid, screening: float | None = None) -> np.ndarray:
    """Potential of ``sum_k q_k N_k`` at every point of ``grid``, shape ``grid.shape``, e / Angstrom.

    Periodic axes of ``grid`` are those of the charges (its cell rows along them are the
    lattice vectors); see the module docstring for the kernels and conventions.

    Parameters
    ----------
    charges : GaussianMixture
        One structure; weights in elementary charges (any sign), centres in Angstrom.
    grid : Grid
        Output points; no periodic axis, two, or three.
    screening : float, Angstrom, optional
        Split width s: cost moves from the FFT (small s) to the local part (large s);
        default ``max(MIN_SCREENING, 2 * largest grid spacing)``. The result does not
        depend on it beyond about 1e-7 e / Angstrom (1.4e-6 V).
    """
    if screening is None:
        screening = max(MIN_SCREENING, 2.0 * float(grid.spacing.max()))
    if not (math.isfinite(screening) and screening > 0):
        raise InvalidInputError(f"screening: expected a finite width > 0 Angstrom, got {screening}")
    if sum(grid.pbc) == 1:
        raise InvalidInputError(f"electrostatic potential: one periodic axis (a wire) is not supported; got pbc {grid.pbc}")
    q = charges.detach().to(device="cpu", dtype=torch.float64)
    lam = torch.linalg.eigvalsh(q.covariances)  # (K, 3) ascending
    widen = torch.clamp(screening**2 - lam[:, 0], min=0.0)  # (K,)
    eye = torch.eye(3, dtype=torch.float64)
    wide = GaussianMixture.from_covariances(q.weights, q.centres, q.covariances + widen[:, None, None] * eye)
    out = _long_range(wide, grid, screening)
    narrow = torch.nonzero(widen > 0).flatten()
    if len(narrow):
        short = _short_range(_subset(q, narrow), lam[narrow, 0], screening)
        out += _signed_evaluate(short, grid, _SHORT_SUPPORT, _SHORT_TOLERANCE)
        if all(grid.pbc):  # the short-range potentials' cell mean, so that the whole potential's is zero
            out -= float(short.weights.sum()) / abs(np.linalg.det(grid.cell))
    return out


# ---------------------------------------------------------------------- long range
def _long_range(wide: GaussianMixture, grid: Grid, screening: float) -> np.ndarray:
    """Potential (grid.shape) e/Angstrom of the widened charges (module docstring: one level or two)."""
    if all(grid.pbc):
        return _fourier_potential(wide, grid, screening, lambda extent, radius: extent, _coulomb)
    beta = 1.0 / (screening * math.sqrt(2.0 * (_LEVELS**2 - 1.0)))  # erf(beta r) / r = 1/r convolved with N(1 / 2 beta^2)
    near = _fourier_potential(wide, grid, screening, lambda extent, radius: extent + _ERFC_REACH / beta,
                              lambda g2, slab, radius: _screened(g2, beta))
    far = GaussianMixture.from_covariances(
        wide.weights, wide.centres, wide.covariances + torch.eye(3, dtype=torch.float64) / (2.0 * beta**2))
    slab = any(grid.pbc)
    return near + _fourier_potential(far, grid, _LEVELS * screening,
                                     lambda extent, radius: 2.0 * extent if slab else extent + radius, _truncated)


def _fourier_potential(charges: GaussianMixture, grid: Grid, width: float, length, kernel) -> np.ndarray:
    """Potential (grid.shape) of charges at least ``width`` wide (Angstrom), by FFTs and per-axis sums.

    ``length(extent, radius)`` gives the computational cell's length along a free axis
    (Angstrom, along the axis' normal) from the extent of grid plus charges along it and
    the longest distance between them; ``kernel(g2, slab, radius)`` gives v(G) (:func:`_modes`).
    Each charge is sampled on the coarsest of the grids of spacing ``SAMPLING * width *
    2^l`` (l < ``_DEPOSIT_LEVELS``) that resolves it, and the Fourier coefficients of the
    levels are added up.
    """
    lam = torch.linalg.eigvalsh(charges.covariances)  # (K, 3)
    reach = (_SUPPORT * torch.sqrt(lam[:, 2])).numpy()  # (K,) Angstrom
    voxels = grid.voxels  # (3, 3) output voxel vectors
    frac = np.linalg.solve(grid.cell.T, (charges.centres.numpy() - grid.origin).T).T  # (K, 3) output-cell fractions
    heights = abs(np.linalg.det(grid.cell)) / np.linalg.norm(np.cross(grid.cell[[1, 2, 0]], grid.cell[[2, 0, 1]]), axis=1)
    lo = np.minimum(0.0, (frac - reach[:, None] / heights).min(0))  # (3,) support and grid, fractions
    hi = np.maximum((np.array(grid.shape) - 1) / grid.shape, (frac + reach[:, None] / heights).max(0))
    extent = (hi - lo) * heights  # (3,) Angstrom, along each axis' normal
    corners = np.array([[1, 1, 1], [1, 1, -1], [1, -1, 1], [-1, 1, 1]]) @ ((hi - lo)[:, None] * grid.cell)
    radius = float(np.linalg.norm(corners, axis=1).max())  # longest diagonal: >= any point-to-charge distance
    spacing = SAMPLING * width
    # Computational cell: the output voxels times `points` (the output grid's own shape along periodic axes).
    points = [n if periodic else fft_friendly(math.ceil(length(e, radius) / h * n - 1e-9))
              for n, periodic, e, h in zip(grid.shape, grid.pbc, extent, heights)]
    cell = voxels * np.array(points)[:, None]  # (3, 3)
    lengths = np.linalg.norm(cell, axis=1)
    coarse = tuple(fft_friendly(math.ceil(n / spacing - 1e-9)) for n in lengths)
    span = tuple(n | 1 for n in coarse)  # odd: room for +-n/2 of the finest level's Nyquist modes
    modes = np.zeros(span[:2] + (span[2] // 2 + 1,), dtype=complex)
    level = np.floor(np.log(np.sqrt(lam[:, 0].numpy()) / width + 1e-12) / math.log(_LEVEL_RATIO))
    level = np.clip(level, 0, _DEPOSIT_LEVELS - 1)
    for l in np.unique(level).astype(int):
        shape = tuple(min(n, fft_friendly(math.ceil(m / (spacing * _LEVEL_RATIO**l) - 1e-9)))
                      for n, m in zip(coarse, lengths))
        members = torch.as_tensor(np.nonzero(level == l)[0])
        sampled = _signed_evaluate(_subset(charges, members), Grid(cell, shape, grid.origin, (True, True, True)),
                                   _SUPPORT, _LONG_TOLERANCE)
        _add_modes(modes, scipy.fft.rfftn(sampled, workers=_workers()) / math.prod(shape), shape)
    g2, slab = _modes(cell, span, grid.pbc)
    modes *= kernel(g2, slab, radius)
    for axis in (0, 1):  # the Fourier series at the output points, one axis at a time
        modes = scipy.fft.ifft(_fold(modes, axis, span[axis], points[axis]), axis=axis, norm="forward",
                               workers=_workers())
        modes = modes[:grid.shape[0]] if axis == 0 else modes[:, :grid.shape[1]]
    out = scipy.fft.irfft(_fold_half(modes, span[2], points[2]), n=points[2], axis=2, norm="forward",
                          workers=_workers())
    return np.ascontiguousarray(out[:, :, :grid.shape[2]])


def _fold(modes: np.ndarray, axis: int, n: int, points: int) -> np.ndarray:
    """Coefficients of modes m (|m| < n / 2, stored FFT-style in ``n`` entries along ``axis``) as those of
    ``points`` samples per period: mode m adds to entry m mod ``points`` (exact at the samples)."""
    moved = np.moveaxis(modes, axis, 0)
    out = np.zeros((points,) + moved.shape[1:], dtype=complex)
    k = (n - 1) // 2
    if points > 2 * k:  # no two modes meet
        out[: k + 1] = moved[: k + 1]
        if k:
            out[points - k:] = moved[n - k:]
    else:
        for m in range(-k, k + 1):
            out[m % points] += moved[m % n]
    return np.moveaxis(out, 0, axis)


def _fold_half(modes: np.ndarray, n: int, points: int) -> np.ndarray:
    """Like :func:`_fold` along the last axis for the half spectrum of a real signal (rfft of ``n``
    samples, Nyquist dropped), giving the half spectrum for ``irfft(..., n=points)``."""
    out = np.zeros(modes.shape[:-1] + (points // 2 + 1,), dtype=complex)
    k = (n - 1) // 2
    if points > 2 * k:  # no two modes meet
        out[..., : k + 1] = modes[..., : k + 1]
        return out
    out[..., 0] = modes[..., 0]
    for m in range(1, k + 1):
        j = m % points
        if j == 0 or 2 * j == points:  # c e^{i theta} + conj(c) e^{-i theta} with e^{i theta} real at every sample
            out[..., j] += 2.0 * modes[..., m].real
        elif 2 * j < points:
            out[..., j] += modes[..., m]
        else:
            out[..., points - j] += np.conj(modes[..., m])
    return out


def _add_modes(total: np.ndarray, modes: np.ndarray, shape: tuple[int, int, int]) -> None:
    """Add the rfftn ``modes`` of a grid of ``shape`` into ``total``, the modes m (|m| <= (N - 1) / 2, N odd and
    larger than ``shape``) of a grid of the same cell. A Nyquist mode (m = n / 2 of an even n) stands for
    +-n / 2 alike: half of it goes to each (along the last axis, whose negative half is implied, half to +n / 2)."""
    blocks = []  # per axis: (source slice, target slice, weight)
    for axis, n in enumerate(shape):
        k, size = (n - 1) // 2, total.shape[axis]
        parts = [(slice(0, k + 1), slice(0, k + 1), 1.0)]
        if axis < 2 and k:
            parts.append((slice(n - k, n), slice(size - k, size), 1.0))
        if n % 2 == 0:
            parts.append((slice(n // 2, n // 2 + 1), slice(n // 2, n // 2 + 1), 0.5))
            if axis < 2:
                parts.append((slice(n // 2, n // 2 + 1), slice(size - n // 2, size - n // 2 + 1), 0.5))
        blocks.append(parts)
    for s0, t0, w0 in blocks[0]:
        for s1, t1, w1 in blocks[1]:
            for s2, t2, w2 in blocks[2]:
                weight = w0 * w1 * w2
                total[t0, t1, t2] += modes[s0, s1, s2] if weight == 1.0 else weight * modes[s0, s1, s2]


def _modes(cell: np.ndarray, shape: tuple[int, int, int], pbc: tuple[bool, ...]) -> tuple[np.ndarray, tuple | None]:
    """|G|^2 on the rfftn modes of ``shape`` in ``cell``, 1/Angstrom^2; for a slab also (G along the free
    axis' normal, half the cell's height along it in Angstrom)."""
    recip = 2.0 * np.pi * np.linalg.inv(cell).T  # (3, 3) rows b_i
    m = [np.fft.fftfreq(shape[0], 1 / shape[0])[:, None, None], np.fft.fftfreq(shape[1], 1 / shape[1])[None, :, None],
         np.fft.rfftfreq(shape[2], 1 / shape[2])[None, None, :]]
    metric = recip @ recip.T
    g2 = sum(metric[i, j] * m[i] * m[j] for i in range(3) for j in range(3))  # (M0, M1, M2 // 2 + 1)
    if sum(pbc) != 2:
        return g2, None
    free = np.linalg.norm(recip[pbc.index(False)])
    normal = recip[pbc.index(False)] / free
    return g2, (sum(m[i] * (recip[i] @ normal) for i in range(3)), np.pi / free)


def _coulomb(g2: np.ndarray, slab: tuple | None, radius: float) -> np.ndarray:
    """4 pi / G^2, G = 0 dropped (periodic cells: mean potential zero)."""
    v = 4.0 * np.pi / np.where(g2 > 0, g2, 1.0)
    v[0, 0, 0] = 0.0
    return v


def _screened(g2: np.ndarray, beta: float) -> np.ndarray:
    """Fourier transform of erfc(beta r) / r: 4 pi / G^2 (1 - exp(-G^2 / 4 beta^2)); pi / beta^2 at G = 0."""
    safe = np.where(g2 > 0, g2, 1.0)
    v = 4.0 * np.pi / safe * -np.expm1(-safe / (4.0 * beta**2))
    v[0, 0, 0] = np.pi / beta**2
    return v


def _truncated(g2: np.ndarray, slab: tuple | None, radius: float) -> np.ndarray:
    """Coulomb kernel truncated at distance ``radius`` (no periodic axis) or at half the cell along a slab's normal."""
    safe = np.where(g2 > 0, g2, 1.0)
    if slab is None:
        v = 4.0 * np.pi * (1.0 - np.cos(np.sqrt(safe) * radius)) / safe
        v[0, 0, 0] = 2.0 * np.pi * radius**2
        return v
    gz, half = slab
    g_par = np.sqrt(np.maximum(g2 - gz * gz, 0.0))
    v = 4.0 * np.pi / safe * (1.0 - np.exp(-g_par * half) * np.cos(gz * half))
    v[0, 0, 0] = -2.0 * np.pi * half**2  # planar average -2 pi / A sum_k q_k E|z - Z_k| (module docstring)
    return v


# ---------------------------------------------------------------------- short range
def _short_range(q: GaussianMixture, lam_min: torch.Tensor, screening: float) -> GaussianMixture:
    """``2 pi q_k int_0^a_k N(mu_k, Sigma_k + tau I) dtau`` of every Gaussian, as one mixture (weights e Angstrom^2).

    ``q`` holds the Gaussians narrower than ``screening`` (``lam_min`` their smallest
    covariance eigenvalues, Angstrom^2), so ``a_k = screening^2 - lam_min_k > 0``.
    """
    lo = np.log(np.maximum(lam_min.numpy(), 1e-30))  # (K,) u = ln(lam_min + tau) runs from ln lam_min to ln s^2
    span = 2.0 * math.log(screening) - lo  # (K,)
    n_panels = np.ceil(span / _PANEL).astype(int)  # (K,) >= 1
    width = span / n_panels  # (K,)
    n_nodes = np.ceil(_NODES_BASE + _NODES_PER_WIDTH * width).astype(int)  # (K,) per panel
    tau, node_w, owner = [], [], []
    for p in np.unique(n_nodes):  # Gaussians with p nodes per panel
        x, w = np.polynomial.legendre.leggauss(p)
        k = np.repeat(np.nonzero(n_nodes == p)[0], n_panels[n_nodes == p])  # (panels,) Gaussian of each panel
        first = np.arange(len(k)) - np.repeat(np.cumsum(n_panels[n_nodes == p]) - n_panels[n_nodes == p],
                                              n_panels[n_nodes == p])  # panel index within its Gaussian
        half = 0.5 * width[k][:, None]
        v = np.exp(lo[k][:, None] + (2 * first + 1)[:, None] * half + half * x)  # (panels, p): lam_min + tau
        tau.append(np.maximum(v - lam_min.numpy()[k][:, None], 0.0).ravel())
        node_w.append((2.0 * np.pi * v * half * w).ravel())  # 2 pi dtau = 2 pi v du
        owner.append(np.repeat(k, p))
    k = torch.as_tensor(np.concatenate(owner))  # (J,)
    tau = torch.as_tensor(np.concatenate(tau))
    covariances = q.covariances[k] + tau[:, None, None] * torch.eye(3, dtype=torch.float64)
    return GaussianMixture(q.weights[k] * torch.as_tensor(np.concatenate(node_w)), q.centres[k],
                           torch.linalg.cholesky(covariances))


def _subset(m: GaussianMixture, index: torch.Tensor) -> GaussianMixture:
    return GaussianMixture(m.weights[index], m.centres[index], m.scale_tril[index])


def _signed_evaluate(mixture: GaussianMixture, grid: Grid, support: float, tolerance: float) -> np.ndarray:
    """Sum of signed-weight Gaussians on ``grid`` (evaluators clamp a sum at zero, so each sign separately)."""
    out = np.zeros(grid.shape)
    for sign in (1.0, -1.0):
        part = torch.nonzero(sign * mixture.weights > 0).flatten()
        if len(part):
            m = _subset(mixture, part)
            m = GaussianMixture(sign * m.weights, m.centres, m.scale_tril)
            out += sign * evaluate(m, grid, n_sigma=support, tolerance=tolerance).detach().cpu().numpy()
    return out


def _workers() -> int:
    return max(1, torch.get_num_threads())
