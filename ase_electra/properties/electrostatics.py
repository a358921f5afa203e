"""Electrostatic potential of nuclei plus a Gaussian mixture, at points and on grids.

The potential of a normalised Gaussian N(mu, Sigma) at r, with d = r - mu, follows from
``1/|x| = (2/sqrt(pi)) int_0^inf exp(-s^2 |x|^2) ds`` and the convolution of Gaussians::

    phi(r) = (2/sqrt(pi)) int_0^inf det(I + 2 s^2 Sigma)^(-1/2) exp(-s^2 d^T (I + 2 s^2 Sigma)^(-1) d) ds

For an isotropic Gaussian (Sigma = sigma^2 I) this is ``erf(|d| / (sqrt(2) sigma)) / |d|``,
used in closed form. Otherwise, with Sigma = U diag(lambda) U^T, e = U^T d, lambda_max the
largest eigenvalue, r_i = lambda_i / lambda_max and ``t^2 = 2 s^2 lambda_max / (1 + 2 s^2
lambda_max)``, the integral becomes a smooth one over [0, 1]::

    phi(r) = (2/sqrt(pi)) / sqrt(2 lambda_max)
             int_0^1 prod_i (1 + (r_i - 1) t^2)^(-1/2) exp(-t^2 sum_i e_i^2 / (2 lambda_max (1 + (r_i - 1) t^2))) dt

integrated by 24-point Gauss-Legendre on [0, T], ``T = min(1, 6 sqrt(2 lambda_max) / |d|)``,
beyond which the integrand is below e^-36 of its bound. Against an adaptive quadrature of
the s-integral the relative error was below 1e-8 for covariances with eigenvalue ratios
up to 16 and 1e-4 at 100 (the shipped model's ratios stay below 4.8 on the first 20
validation molecules).

Nuclei are Gaussian charges of standard deviation ``NUCLEAR_SIGMA`` (1e-5 Angstrom, about
the size of a nucleus): the potential equals that of point charges to 1e-6 relative
beyond 5e-5 Angstrom of a nucleus, and stays finite at grid points that fall on one.

Units: the functions return volts (eV per elementary charge), as GPAW's
``get_electrostatic_potential``; ``HARTREE_PER_VOLT`` converts to atomic units (Hartree per
unit charge), what cube files of potentials hold. At arbitrary points
(:func:`electrostatic_potential`) molecules only: periodic images are not summed; on grids
(:func:`potential_on_grid`) molecules, slabs and crystals, by the Ewald split of
:mod:`.ewald`. :func:`planar_average` averages grid values over the planes of a lattice
axis and :func:`vacuum_levels` reads a slab's vacuum levels from it (the work function is
the vacuum level minus the Fermi level).

Legend: K Gaussians, P points, T quadrature nodes.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from functools import cache

import numpy as np
import torch
from ase import Atoms
from ase.units import Bohr, Hartree

from ..density import Density
from ..errors import InvalidInputError
from ..gaussians import GaussianMixture
from ..grid import Grid
from ..io import write_cube
from .ewald import charge_distribution, split_gaussian_potential

__all__ = [
    "VacuumLevel",
    "electrostatic_potential",
    "planar_average",
    "potential_on_grid",
    "vacuum_levels",
    "gaussian_potential",
    "write_potential_cube",
    "COULOMB",
    "HARTREE_PER_VOLT",
    "NUCLEAR_SIGMA",
]

#: e^2 / (4 pi eps0) in eV Angstrom: the potential of a unit charge at 1 Angstrom, volts.
COULOMB = Hartree * Bohr

#: Hartree per unit charge (atomic units) per volt.
HARTREE_PER_VOLT = 1.0 / Hartree

#: Standard deviation of the Gaussian nuclear charges, Angstrom.
NUCLEAR_SIGMA = 1e-5

_NODES = 24  # Gauss-Legendre nodes for anisotropic Gaussians
_TAIL = 6.0  # integrate up to t = _TAIL sqrt(2 lambda_max) / |d|
_ISOTROPIC = 1e-10  # relative eigenvalue spread below which a Gaussian counts as isotropic
_PAIRS = 1 << 21  # point-Gaussian pairs per chunk


def gaussian_potential(mixture: GaussianMixture, points: np.ndarray) -> np.ndarray:
    """Potential of the mixture's charge distribution ``sum_k w_k N_k`` (positive weights: positive).

    Parameters
    ----------
    mixture : GaussianMixture
        One structure; weights in elementary charges (any sign), centres in Angstrom.
    points : array, shape (P, 3), Angstrom

    Returns
    -------
    ndarray, shape (P,), e / Angstrom (multiply by :data:`COULOMB` for volts).
    """
    m = mixture.detach().to(device="cpu", dtype=torch.float64)
    pts = torch.as_tensor(np.asarray(points, dtype=np.float64)).reshape(-1, 3)
    lam, vectors = torch.linalg.eigh(m.covariances)  # (K, 3), (K, 3, 3) ascending
    iso = (lam[:, 2] - lam[:, 0]) <= _ISOTROPIC * lam[:, 2]
    out = torch.zeros(len(pts), dtype=torch.float64)
    if iso.any():
        out += _isotropic(pts, m.weights[iso], m.centres[iso], lam[iso].mean(-1).sqrt())
    if (~iso).any():
        out += _anisotropic(pts, m.weights[~iso], m.centres[~iso], lam[~iso], vectors[~iso])
    return out.numpy()


def electrostatic_potential(
    mixture: GaussianMixture, numbers: np.ndarray, positions: np.ndarray, points: np.ndarray
) -> np.ndarray:
    """Potential of nuclei (charges Z at ``positions``) minus electrons (the mixture), at ``points``.

    Parameters
    ----------
    mixture : GaussianMixture
        The electron density of one molecule; weights in electrons, centres in Angstrom.
    numbers : array of int, shape (N,)
    positions : array, shape (N, 3), Angstrom
    points : array, shape (P, 3), Angstrom

    Returns
    -------
    ndarray, shape (P,), volts (eV per elementary charge).
    """
    nuclei = torch.as_tensor(np.asarray(positions, dtype=np.float64))
    charges = torch.as_tensor(np.asarray(numbers, dtype=np.float64))
    pts = torch.as_tensor(np.asarray(points, dtype=np.float64)).reshape(-1, 3)
    nuclear = _isotropic(pts, charges, nuclei, torch.full_like(charges, NUCLEAR_SIGMA)).numpy()
    return COULOMB * (nuclear - gaussian_potential(mixture, pts.numpy()))


def potential_on_grid(
    mixture: GaussianMixture, numbers: np.ndarray, positions: np.ndarray, grid: Grid, screening: float | None = None
) -> np.ndarray:
    """Potential of nuclei minus electrons at every point of ``grid``, shape ``grid.shape``, volts.

    Computed by the Ewald split of :mod:`.ewald` (FFTs for the smooth part, local
    Gaussians for the rest); at the grid's points it equals :func:`electrostatic_potential`
    to a few 1e-6 V (RMSE 2e-7 V on the van der Waals shells of QM9 molecules). The grid's periodic axes are the structure's, and along them its cell
    rows must be the lattice vectors (:meth:`Grid.for_cell`, :meth:`Grid.for_atoms`):

    - no periodic axis (a molecule): the potential is zero at infinity, ions included;
    - two (a slab, free along the third): the potential of the 2-D periodic charges, whose
      planar average is ``-(2 pi / A) sum_k q_k E|z - Z_k|`` (A the cell's area, z along
      the normal): flat in the vacuum on both sides, at ``+-2 pi p / A`` for a neutral slab
      of dipole p (e Angstrom, along the normal, per cell), so the two vacuum levels average
      to zero; a charged slab's rises linearly into the vacuum;
    - three (a crystal): the potential's mean over the cell is zero (a charged cell gets a
      uniform neutralising background), as in VASP's LOCPOT and GPAW. A slab given as a
      3-D periodic cell with vacuum gets this convention too, without a dipole correction.

    One periodic axis (a wire) is refused. ``screening`` (Angstrom) moves work between
    the FFTs and the local part without changing the result beyond a few 1e-6 V (default:
    :mod:`.ewald`). Cost for a QM9 molecule with the default model (about 1,200 Gaussians),
    one CPU thread: 0.55 s on a 0.2 Angstrom box (about 230k points), 1.2 s at 0.1
    Angstrom (1.8M); the per-point sum of :func:`electrostatic_potential` took 140 s at 0.2.
    """
    charges = charge_distribution(mixture, numbers, positions, NUCLEAR_SIGMA)
    return COULOMB * split_gaussian_potential(charges, grid, screening)


def planar_average(values: np.ndarray, grid: Grid, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Average of grid values over the planes of lattice axis ``axis``.

    Parameters
    ----------
    values : array, shape ``grid.shape``
        e.g. a potential in volts.
    grid : Grid
    axis : int
        0, 1 or 2: the planes are spanned by the other two cell rows.

    Returns
    -------
    heights : ndarray, shape (grid.shape[axis],), Angstrom
        Height of each plane along their unit normal ``n`` (``n . r`` of its points; the
        normal's sign makes ``n . cell[axis]`` positive).
    averages : ndarray, shape (grid.shape[axis],), the unit of ``values``

    Examples
    --------
    >>> g = Grid(np.diag([1.0, 1.0, 2.0]), (2, 2, 4))
    >>> planar_average(np.arange(16.0).reshape(2, 2, 4), g, 2)[1].tolist()
    [6.0, 7.0, 8.0, 9.0]
    """
    values = np.asarray(values)
    if axis not in (0, 1, 2):
        raise InvalidInputError(f"axis: expected 0, 1 or 2, got {axis}")
    if values.shape != grid.shape:
        raise InvalidInputError(f"values: expected shape {grid.shape}, got {values.shape}")
    normal = plane_normal(grid.cell, axis)
    others = tuple(i for i in range(3) if i != axis)
    heights = grid.origin @ normal + np.arange(grid.shape[axis]) / grid.shape[axis] * (grid.cell[axis] @ normal)
    return heights, values.mean(axis=others)


def plane_normal(cell: np.ndarray, axis: int) -> np.ndarray:
    """Unit normal (3,) of the planes spanned by the cell rows other than ``axis``, pointing along ``cell[axis]``."""
    others = [i for i in range(3) if i != axis]
    normal = np.cross(cell[others[0]], cell[others[1]])
    normal = normal / np.linalg.norm(normal)
    return normal if normal @ cell[axis] > 0 else -normal


@dataclass(frozen=True)
class VacuumLevel:
    """One vacuum region of a planar-averaged potential (:func:`vacuum_levels`).

    ``side`` is ``"below"`` or ``"above"`` the atoms along a free axis, or ``"gap"`` for the
    vacuum between periodic images; ``height`` (Angstrom) is the middle of the planes
    averaged, those within ``window`` of the largest distance from any atom; ``energy``
    (eV) is that of an electron at rest there, ``-e`` times the mean potential (VASP's
    LOCPOT sign); ``flatness`` (eV) is the potential's peak-to-peak over those planes.
    The work function is ``energy`` minus the Fermi level, both on the potential's zero.
    """

    side: str
    height: float
    energy: float
    flatness: float


def vacuum_levels(
    heights: np.ndarray, averages: np.ndarray, atom_heights: np.ndarray, period: float | None = None,
    window: float = 1.0, min_gap: float = 3.0,
) -> list[VacuumLevel]:
    """The vacuum levels of a planar-averaged potential (:func:`planar_average`, volts).

    Parameters
    ----------
    heights, averages : arrays, shape (M,)
        Plane heights (Angstrom, increasing) and the potential's averages (volts).
    atom_heights : array, shape (N,), Angstrom
        The atoms' heights along the same normal.
    period : float, optional
        The cell's height along the normal if the axis is periodic (one vacuum gap between
        images); None for a free axis (vacuum below and above the atoms).
    window : float, Angstrom
        Planes within this of the largest distance from the atoms are averaged.
    min_gap : float, Angstrom
        Planes must lie this far from every atom to count as vacuum.

    Raises
    ------
    InvalidInputError
        If no plane lies ``min_gap`` from every atom (no vacuum: not a slab along this axis).
    """
    z = np.asarray(heights, dtype=np.float64)
    values = np.asarray(averages, dtype=np.float64)
    atoms = np.asarray(atom_heights, dtype=np.float64)
    offset = z[:, None] - atoms[None]  # (M, N)
    if period is not None:
        offset -= period * np.round(offset / period)
    distance = np.abs(offset).min(1)  # (M,) to the nearest atom
    if distance.max() < min_gap:
        raise InvalidInputError(
            f"no vacuum: every plane lies within {distance.max():.2f} A of an atom (need {min_gap:g} A; "
            "a slab needs vacuum along the axis averaged over)")
    if period is None:
        sides = [("below", z < atoms.min()), ("above", z > atoms.max())]
    else:
        sides = [("gap", np.ones(len(z), dtype=bool))]
    out = []
    for side, region in sides:
        if not region.any() or distance[region].max() < min_gap:
            continue
        take = region & (distance >= distance[region].max() - window)
        middle = z[take].mean()
        if period is not None:  # the planes may straddle the cell's face: average them unwrapped
            ref = z[take][np.argmax(distance[take])]
            middle = ref + np.mean((z[take] - ref + period / 2) % period - period / 2)
            middle = z[0] + (middle - z[0]) % period
        out.append(VacuumLevel(side, float(middle), -float(values[take].mean()), float(np.ptp(values[take]))))
    return out


def write_potential_cube(path: str | os.PathLike, atoms: Atoms, grid: Grid, potential: np.ndarray) -> None:
    """Write a potential (volts, shape ``grid.shape``) as a cube file in Hartree per unit charge.

    Written atomically by :func:`ase_electra.io.write_cube`, which stores its values times
    bohr^3 (its e/Angstrom^3 to e/bohr^3 step); the values are handed to it divided by
    bohr^3 so that the file holds Hartree, as Gaussian's cubegen and PySCF's
    ``cubegen.mep`` write potentials. Geometry in bohr as for densities.
    """
    hartree = np.asarray(potential, dtype=np.float64) * HARTREE_PER_VOLT
    write_cube(path, Density(atoms, grid, hartree / Bohr**3),
               comment="ase-electra electrostatic potential (nuclei + electrons), Hartree per unit charge")


# ---------------------------------------------------------------------- kernels
def _isotropic(points: torch.Tensor, weights: torch.Tensor, centres: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """sum_k w_k erf(|d| / (sqrt(2) sigma_k)) / |d| at ``points`` (P, 3), shape (P,), e/Angstrom."""
    out = torch.empty(len(points), dtype=torch.float64)
    scale = 1.0 / (math.sqrt(2.0) * sigma)  # (K,)
    step = max(1, _PAIRS // max(1, len(weights)))
    for start in range(0, len(points), step):
        x = torch.cdist(points[start:start + step], centres) * scale  # (p, K)
        small = x < 1e-4
        ratio = torch.where(small, 2.0 / math.sqrt(math.pi) * (1.0 - x * x / 3.0),
                            torch.erf(x) / torch.where(small, 1.0, x))  # erf(x) / x
        out[start:start + step] = (ratio * scale) @ weights
    return out


def _anisotropic(
    points: torch.Tensor, weights: torch.Tensor, centres: torch.Tensor, lam: torch.Tensor, vectors: torch.Tensor
) -> torch.Tensor:
    """Potential (P,) e/Angstrom of anisotropic Gaussians by the t-quadrature of the module docstring."""
    nodes, node_w = np.polynomial.legendre.leggauss(_NODES)
    lam_max = lam[:, 2]
    pref = weights * 2.0 / math.sqrt(math.pi) / torch.sqrt(2.0 * lam_max)  # (K,)
    out = _anisotropic_kernel()(
        points.numpy(), centres.numpy(), vectors.numpy(), (lam / lam_max[:, None]).numpy(),
        (0.5 / lam_max).numpy(), (_TAIL * torch.sqrt(2.0 * lam_max)).numpy(), pref.numpy(),
        0.5 * (nodes + 1.0), 0.5 * node_w,
    )
    return torch.as_tensor(out)


@cache
def _anisotropic_kernel():
    """The compiled loop (numba, compiled on first use and cached on disk)."""
    import numba

    @numba.njit(cache=True, fastmath=False)
    def kernel(points, centres, vectors, ratio, half_inv_lam, reach, pref, u, wu):  # pragma: no cover - compiled
        n_points, n_gauss, n_nodes = points.shape[0], centres.shape[0], u.shape[0]
        out = np.zeros(n_points)
        e2 = np.empty(3)
        for p in range(n_points):
            total = 0.0
            for k in range(n_gauss):
                dist2 = 0.0
                for b in range(3):  # components of d on the Gaussian's axes
                    c = 0.0
                    for a in range(3):
                        c += (points[p, a] - centres[k, a]) * vectors[k, a, b]
                    e2[b] = c * c
                    dist2 += c * c
                top = 1.0
                if dist2 > 0.0:
                    top = min(1.0, reach[k] / math.sqrt(dist2))
                acc = 0.0
                for j in range(n_nodes):
                    t = top * u[j]
                    t2 = t * t
                    d0 = 1.0 + (ratio[k, 0] - 1.0) * t2
                    d1 = 1.0 + (ratio[k, 1] - 1.0) * t2
                    d2 = 1.0 + (ratio[k, 2] - 1.0) * t2
                    q = e2[0] / d0 + e2[1] / d1 + e2[2] / d2
                    acc += wu[j] * math.exp(-t2 * half_inv_lam[k] * q) / math.sqrt(d0 * d1 * d2)
                total += pref[k] * top * acc
            out[p] = total
        return out

    return kernel
