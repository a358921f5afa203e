"""Hirshfeld charges: each atom's share of the density, by the free atoms' proportions.

Atom A owns the fraction ``w_A(r) = rho0_A(r) / sum_B rho0_B(r)`` of the density at r,
with ``rho0`` the spherical neutral free-atom densities of the package's promolecule
table (:func:`~ase_electra.models.promolecule.atomic_gaussians`, PBE/def2-SVP, H to Ar).
Its charge is ``q_A = Z_A - int w_A(r) rho(r) dr`` (elementary charges). The weights
sum to one everywhere, so the charges sum to the total charge up to the quadrature
error of ``int rho``. For a Gaussian mixture that error is zero: each Gaussian's shares
are normalised by its own quadrature (:func:`hirshfeld_charges`). Any other density
(the exact reference, in ``benchmarks/properties.py``) goes through
:func:`hirshfeld_charges_of` on a molecular grid.

For the promolecule model itself (rho = sum_B rho0_B) every charge is zero; the
quadrature leaves below 1e-3 e (``tests/test_properties.py``), at most 2.4e-4 e on
qm9_005128 and qm9_006858.

Legend: N atoms, P points, G Gaussians per element.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from ase.data import chemical_symbols

from ..errors import UnknownElementError
from ..gaussians import GaussianMixture
from ..models.promolecule import atomic_gaussians
from .quadrature import becke_grid, gaussian_nodes

__all__ = ["hirshfeld_charges", "hirshfeld_charges_of", "hirshfeld_weights", "reference_atoms"]

#: Gaussians no wider than this (largest standard deviation, Angstrom) are integrated on
#: their own nodes; wider ones on the Becke grid.
NARROW = 0.2

#: Point-Gaussian or point-atom pairs per chunk (bounds work buffers to about 100 MB).
_PAIRS = 1 << 21


def hirshfeld_weights(numbers: np.ndarray, positions: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Hirshfeld weights w_A at ``points``, shape (P, N), rows summing to one.

    Parameters
    ----------
    numbers : array of int, shape (N,)
    positions : array, shape (N, 3), Angstrom
    points : array, shape (P, 3), Angstrom

    Computed in log space, so points far from every atom (where the free-atom densities
    underflow) still get weights that sum to one.
    """
    table = reference_atoms(numbers)
    points = np.asarray(points, dtype=np.float64)
    log_rho = np.empty((len(points), len(numbers)))  # (P, N)
    for a, (z, centre) in enumerate(zip(numbers, np.asarray(positions, dtype=np.float64))):
        atom = table[int(z)]
        r2 = ((points - centre) ** 2).sum(-1)  # (P,)
        log_norm = np.log(atom.weights) - 1.5 * np.log(2.0 * np.pi * atom.sigmas**2)  # (G,)
        log_rho[:, a] = _logsumexp(log_norm[None] - 0.5 * r2[:, None] / atom.sigmas[None] ** 2)
    return np.exp(log_rho - _logsumexp(log_rho)[:, None])


def hirshfeld_charges_of(
    density: Callable[[np.ndarray], np.ndarray],
    numbers: np.ndarray,
    positions: np.ndarray,
    points: np.ndarray,
    weights: np.ndarray,
) -> np.ndarray:
    """Hirshfeld charges of any density, given as a function, on a molecular integration grid.

    Parameters
    ----------
    density : callable
        Maps points (P, 3) Angstrom to the electron density (P,) e/Angstrom^3.
    numbers : array of int, shape (N,)
    positions : array, shape (N, 3), Angstrom
    points : array, shape (P, 3), Angstrom
    weights : array, shape (P,), Angstrom^3
        Integration weights over all space (e.g. PySCF's Becke grid).

    Returns
    -------
    ndarray, shape (N,), elementary charges (nuclear charge minus electrons).
    """
    numbers = np.asarray(numbers)
    share = hirshfeld_weights(numbers, positions, points)  # (P, N)
    electrons = (np.asarray(weights) * density(points)) @ share  # (N,)
    return numbers.astype(np.float64) - electrons


def hirshfeld_charges(
    mixture: GaussianMixture,
    numbers: np.ndarray,
    positions: np.ndarray,
    narrow: float = NARROW,
) -> np.ndarray:
    """Hirshfeld charges of a one-structure Gaussian mixture (weights of any sign).

    Each Gaussian k gives atom A the share ``s_kA = int N_k w_A / int N_k``, so
    ``q_A = Z_A - sum_k w_k s_kA``. Gaussians no wider than ``narrow`` (largest standard
    deviation; the cores) are integrated on their own nodes
    (:func:`~.quadrature.gaussian_nodes`), wider ones on a Becke grid
    (:func:`~.quadrature.becke_grid`), numerator and denominator on the same points.
    Every Gaussian's shares sum to one, so the charges sum to the total charge
    ``sum(Z) - sum_k w_k`` to rounding.

    Parameters
    ----------
    mixture : GaussianMixture
        The density; weights in electrons, centres in Angstrom.
    numbers : array of int, shape (N,)
    positions : array, shape (N, 3), Angstrom
    narrow : float, Angstrom
        Width below which a Gaussian is integrated on its own nodes.

    Returns
    -------
    ndarray, shape (N,), elementary charges.

    Examples
    --------
    >>> from ase.build import molecule
    >>> from ase_electra.models import load_model
    >>> h2 = molecule("H2")
    >>> q = hirshfeld_charges(load_model("promolecule").predict([h2]), h2.numbers, h2.positions)
    >>> bool(abs(q.sum()) < 1e-12 and np.abs(q).max() < 1e-4)
    True
    """
    numbers = np.asarray(numbers)
    positions = np.asarray(positions, dtype=np.float64)
    reference_atoms(numbers)  # one-line error before any work
    m = mixture.to(device="cpu", dtype=torch.float64)
    centre = positions.mean(axis=0)  # work near the origin: the quadratic forms below lose digits far from it
    positions = positions - centre
    m = GaussianMixture(m.weights, m.centres - torch.as_tensor(centre), m.scale_tril)
    width = torch.linalg.eigvalsh(m.covariances)[:, -1].sqrt()  # (K,) largest standard deviation
    cores = (width <= narrow).numpy()
    shares = np.empty((m.n_gaussians, len(numbers)))  # (K, N)
    if cores.any():
        shares[cores] = _node_shares(_subset(m, cores), numbers, positions)
    if not cores.all():
        shares[~cores] = _grid_shares(_subset(m, ~cores), numbers, positions)
    return numbers.astype(np.float64) - m.weights.numpy() @ shares


def _node_shares(mixture: GaussianMixture, numbers: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Shares (K, N) of narrow Gaussians, each on its own nodes."""
    points, rule = gaussian_nodes(mixture)  # (K, J, 3), (J,)
    k, j = points.shape[:2]
    out = np.empty((k, len(numbers)))
    step = max(1, _PAIRS // (j * len(numbers)))
    for start in range(0, k, step):
        w = hirshfeld_weights(numbers, positions, points[start:start + step].reshape(-1, 3))
        out[start:start + step] = np.einsum("j,kjn->kn", rule, w.reshape(-1, j, len(numbers)))
    return out / rule.sum()


def _grid_shares(mixture: GaussianMixture, numbers: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Shares (K, N) of wide Gaussians on a Becke grid, each normalised by its own quadrature."""
    points, weights = becke_grid(numbers, positions)  # (P, 3), (P,)
    exponent = _quadratic_forms(mixture)  # (10, K)
    log_pref = mixture.log_normalisation()  # (K,) log 1/A^3
    integrals = torch.zeros(mixture.n_gaussians, len(numbers), dtype=torch.float64)  # (K, N)
    step = max(1, _PAIRS // max(mixture.n_gaussians, len(numbers)))
    for start in range(0, len(points), step):
        pts = points[start:start + step]  # (p, 3)
        gauss = torch.exp(_monomials(torch.as_tensor(pts)) @ exponent + log_pref)  # (p, K)
        w = torch.as_tensor(weights[start:start + step, None] * hirshfeld_weights(numbers, positions, pts))
        integrals += gauss.T @ w  # (K, N)
    integrals = integrals.numpy()
    return integrals / integrals.sum(axis=1, keepdims=True)


def _quadratic_forms(mixture: GaussianMixture) -> torch.Tensor:
    """Coefficients (10, K) with ``monomials(r) @ c = -|L^-1 (r - mu)|^2 / 2`` for every Gaussian."""
    white = mixture.whitening()
    precision = white.transpose(-1, -2) @ white  # (K, 3, 3), 1/A^2
    mu = mixture.centres  # (K, 3)
    linear = torch.einsum("kab,kb->ka", precision, mu)  # (K, 3)
    a = precision
    return torch.stack([
        -0.5 * a[:, 0, 0], -0.5 * a[:, 1, 1], -0.5 * a[:, 2, 2], -a[:, 0, 1], -a[:, 0, 2], -a[:, 1, 2],
        linear[:, 0], linear[:, 1], linear[:, 2], -0.5 * (linear * mu).sum(-1),
    ])


def _monomials(points: torch.Tensor) -> torch.Tensor:
    """x^2, y^2, z^2, xy, xz, yz, x, y, z, 1 of ``points`` (P, 3), shape (P, 10)."""
    x, y, z = points.unbind(-1)
    return torch.stack([x * x, y * y, z * z, x * y, x * z, y * z, x, y, z, torch.ones_like(x)], dim=-1)


def _subset(mixture: GaussianMixture, keep: np.ndarray) -> GaussianMixture:
    index = torch.as_tensor(np.flatnonzero(keep))
    return GaussianMixture(mixture.weights[index], mixture.centres[index], mixture.scale_tril[index])


def reference_atoms(numbers: np.ndarray) -> dict:
    """The reference table (atomic number -> AtomicGaussians), after checking it holds every element of ``numbers``.

    Raises UnknownElementError (one line) for elements beyond the table (H to Ar).
    """
    table = atomic_gaussians()
    missing = sorted({int(z) for z in numbers} - set(table))
    if missing:
        names = ", ".join(chemical_symbols[z] for z in missing)
        raise UnknownElementError(
            f"Hirshfeld charges: no free-atom reference density for {names} (the promolecule table covers H to Ar)"
        )
    return table


def _logsumexp(a: np.ndarray) -> np.ndarray:
    """log(sum(exp(a), axis=-1)) without overflow, shape a.shape[:-1]."""
    top = a.max(axis=-1)
    return top + np.log(np.exp(a - top[..., None]).sum(axis=-1))
