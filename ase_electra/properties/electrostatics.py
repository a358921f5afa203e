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
:mod:`.ewald`.

Legend: K Gaussians, P points, T quadrature nodes.
"""

from __future__ import annotations

import math
import os
from functools import cache

import numpy as np
import torch
from ase import Atoms
from ase.units import Bohr, Hartree

from ..density import Density
from ..gaussians import GaussianMixture
from ..grid import Grid
from ..io import write_cube
from .ewald import charge_distribution, split_gaussian_potential

__all__ = [
    "electrostatic_potential",
    "potential_on_grid",
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

    Computed by the Ewald split of :mod:`.ewald` (FFT for the smooth part, local
    Gaussians for the rest), equal to :func:`electrostatic_potential` at the grid's
    points to about 1e-7 V. The grid's periodicity is the structure's: no periodic axis
    (a molecule, zero at infinity), two (a slab, free along the third axis, which must
    not be periodic) or three (a crystal: the cell's mean potential is zero, VASP's and
    GPAW's convention); along a periodic axis the grid's cell row must be the lattice
    vector (:meth:`Grid.for_cell`). ``screening`` (Angstrom) trades FFT for local work.
    """
    charges = charge_distribution(mixture, numbers, positions, NUCLEAR_SIGMA)
    return COULOMB * split_gaussian_potential(charges, grid, screening)


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
