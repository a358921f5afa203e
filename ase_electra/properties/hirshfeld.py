"""Hirshfeld charges: each atom's share of the density, by the free atoms' proportions.

Atom A owns the fraction ``w_A(r) = rho0_A(r) / sum_B rho0_B(r)`` of the density at r,
with ``rho0`` the spherical neutral free-atom densities of the package's promolecule
table (:func:`~ase_electra.models.promolecule.atomic_gaussians`, PBE/def2-SVP, H to Kr).
Its charge is ``q_A = Z_A - int w_A(r) rho(r) dr`` (elementary charges). The weights
sum to one everywhere, so the charges sum to the total charge up to the quadrature
error of ``int rho``. For a Gaussian mixture that error is zero: each Gaussian's shares
are normalised by its own quadrature (:func:`hirshfeld_charges`). Any other density
(the exact reference, in ``benchmarks/properties.py``) goes through
:func:`hirshfeld_charges_of` on a molecular grid.

For the promolecule model itself (rho = sum_B rho0_B) every charge is zero; the
quadrature leaves below 1e-3 e (``tests/test_properties.py``), at most 2.4e-4 e on
qm9_005128 and qm9_006858.

Cost grows linearly with the atom count: every quadrature point meets only the atoms
whose free-atom density can matter there (:data:`NEGLIGIBLE`), every wide Gaussian only
the grid points within :data:`N_SIGMA` of it, and the Becke cells at a point only the
atoms near it (:func:`~.quadrature.becke_partition`); the compiled loops are in
:mod:`._kernels`. Against the all-pairs quadrature, what these cut-offs leave out moves
no charge by more than 1.7e-8 e on ethanol (``tests/test_hirshfeld.py``) and 4.2e-8 e on
C30H62 (``benchmarks/hirshfeld_speed.py`` times it), far inside the 1e-6 e that
charges are quoted to.

Legend: N atoms, P points, G Gaussians per element.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from ase.data import chemical_symbols
from scipy.spatial import cKDTree

from ..errors import UnknownElementError
from ..gaussians import GaussianMixture
from ..models.promolecule import atomic_gaussians
from ._cells import Cells, bin_points, transpose, within
from ._kernels import gaussian_integrals, grid_electrons, node_electrons, normalised_density
from .quadrature import CELL, becke_shells, gaussian_nodes, sorted_becke_partition

__all__ = ["hirshfeld_charges", "hirshfeld_charges_of", "hirshfeld_weights", "reference_atoms"]

#: Gaussians no wider than this (largest standard deviation, Angstrom) are integrated on
#: their own nodes; wider ones on the Becke grid.
NARROW = 0.2

#: A free-atom density below this fraction of the largest at a point is left out of the
#: Hirshfeld weights there (the weights move by at most this much).
NEGLIGIBLE = 1e-15

#: A wide Gaussian meets the grid points within this Mahalanobis distance of its centre;
#: it holds all but 3.6e-9 of its weight. Against 7 (1.3e-10), charges of C30H62 move by
#: 9e-9 e and the three passes over the grid evaluate a fifth fewer values.
N_SIGMA = 6.5

#: Chunks of Gaussians or cubes that the parallel kernels sum separately, then add in a
#: fixed order: the charges do not depend on the number of threads.
CHUNKS = 64


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
    (:func:`~.quadrature.gaussian_nodes`), wider ones on the Becke grid of
    :func:`~.quadrature.becke_grid` out to ``N_SIGMA`` (Mahalanobis), numerator and
    denominator on the same points.
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
    reference = _Reference.of(numbers)  # one-line error before any work
    m = mixture.to(device="cpu", dtype=torch.float64)
    centre = positions.mean(axis=0)  # work near the origin: the quadratic forms below lose digits far from it
    positions = positions - centre
    m = GaussianMixture(m.weights, m.centres - torch.as_tensor(centre), m.scale_tril)
    width = torch.linalg.eigvalsh(m.covariances)[:, -1].sqrt()  # (K,) largest standard deviation
    cores = (width <= narrow).numpy()
    electrons = np.zeros(len(numbers))
    if cores.any():
        electrons += _node_electrons(_subset(m, cores), positions, reference)
    if not cores.all():
        electrons += _grid_electrons(_subset(m, ~cores), width[~cores].numpy(), numbers, positions, reference)
    return numbers.astype(np.float64) - electrons


@dataclass(frozen=True)
class _Reference:
    """The free-atom densities per atom, log rho_A(d) = logsumexp_g(log_coef[A, g] - inv_two_var[A, g] d^2).

    log_coef, inv_two_var : (N, G), log(e/A^3) and 1/A^2, padded with -inf and 0;
    log_count : (N,) log of each atom's number of Gaussians; table : element -> AtomicGaussians.
    """

    log_coef: np.ndarray
    inv_two_var: np.ndarray
    log_count: np.ndarray
    table: dict

    @classmethod
    def of(cls, numbers: np.ndarray) -> _Reference:
        table = reference_atoms(numbers)
        size = max(len(table[int(z)].weights) for z in numbers)
        log_coef = np.full((len(numbers), size), -np.inf)
        inv_two_var = np.zeros((len(numbers), size))
        log_count = np.empty(len(numbers))
        for a, z in enumerate(numbers):
            atom = table[int(z)]
            g = len(atom.weights)
            log_coef[a, :g] = np.log(atom.weights) - 1.5 * np.log(2.0 * np.pi * atom.sigmas**2)
            inv_two_var[a, :g] = 0.5 / atom.sigmas**2
            log_count[a] = np.log(g)
        return cls(log_coef, inv_two_var, log_count, {int(z): table[int(z)] for z in numbers})

    def reach(self, distance: np.ndarray) -> np.ndarray:
        """How far beyond a point's nearest atom (at ``distance``, Angstrom) another atom's density can still
        exceed ``NEGLIGIBLE`` times the nearest one's, Angstrom; non-decreasing in ``distance``."""
        step = 0.05
        d = np.arange(0.0, float(np.max(distance, initial=0.0)) + 80.0, step)  # (D,)
        log_rho = np.stack([_logsumexp(np.log(atom.weights) - 1.5 * np.log(2.0 * np.pi * atom.sigmas**2)
                                       - 0.5 * d[:, None] ** 2 / atom.sigmas**2) for atom in self.table.values()])
        low, high = log_rho.min(axis=0), log_rho.max(axis=0)  # (D,), high decreasing
        first = np.searchsorted(-high, -(low + math.log(NEGLIGIBLE)), side="right")  # first d with high < eps low
        reach = np.maximum.accumulate(d[np.minimum(first, len(d) - 1)] - d + step)
        return reach[np.minimum(np.ceil(distance / step).astype(np.int64) + 1, len(d) - 1)]

    def candidates(self, centres: np.ndarray, half_diagonal: float, positions: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray]:
        """Atoms (CSR, :func:`._cells.within`) that the Hirshfeld weights can need anywhere in cubes with these
        ``centres`` (C, 3) and ``half_diagonal``, Angstrom."""
        nearest = cKDTree(positions).query(centres)[0]  # (C,) Angstrom
        return within(positions, centres, nearest + 2.0 * half_diagonal + self.reach(nearest + half_diagonal))


def _node_electrons(mixture: GaussianMixture, positions: np.ndarray, reference: _Reference) -> np.ndarray:
    """Electrons (N,) of narrow Gaussians shared among the atoms, each on its own nodes."""
    points, rule = gaussian_nodes(mixture)  # (K, J, 3), (J,)
    cells = bin_points(points.reshape(-1, 3), CELL)
    atom_start, atoms = reference.candidates(cells.centres, cells.half_diagonal, positions)
    return node_electrons(points, np.ascontiguousarray(rule), mixture.weights.numpy(), cells.cell, atom_start, atoms,
                          positions, reference.log_coef, reference.inv_two_var, reference.log_count,
                          math.log(NEGLIGIBLE), _chunks(mixture.n_gaussians)).sum(axis=0)


def _grid_electrons(mixture: GaussianMixture, width: np.ndarray, numbers: np.ndarray, positions: np.ndarray,
                    reference: _Reference) -> np.ndarray:
    """Electrons (N,) of wide Gaussians shared among the atoms on a Becke grid (the points any Gaussian reaches),
    in the three passes of :mod:`._kernels`."""
    points, weights, owner = becke_shells(numbers, positions)  # (P, 3), (P,), (P,)
    cells = bin_points(points, CELL)
    centres = mixture.centres.numpy()  # (K, 3)
    cube_start, cubes = within(cells.centres, centres, N_SIGMA * width + cells.half_diagonal)  # Gaussian -> cubes
    touched = np.zeros(len(cells.centres), dtype=bool)
    touched[cubes] = True
    renumber = np.cumsum(touched) - 1
    keep = touched[cells.cell]
    cells = Cells(renumber[cells.cell[keep]], cells.centres[touched], cells.half_diagonal)
    order, point_start = cells.sorted()
    points = points[keep][order]
    point_weights = weights[keep][order] * sorted_becke_partition(points, owner[keep][order], point_start, cells,
                                                                  numbers, positions)
    inside = point_weights > 0.0  # not in another atom's Becke cell: the passes skip the others
    np.cumsum(np.bincount(cells.cell[order][inside], minlength=len(cells.centres)), out=point_start[1:])
    xyz, point_weights = np.ascontiguousarray(points[inside].T), point_weights[inside]  # (3, P), (P,)
    gauss_start, gauss = transpose(cube_start, renumber[cubes], len(cells.centres))  # cube -> Gaussians
    white = mixture.whitening()
    a = (white.transpose(-1, -2) @ white).numpy()  # (K, 3, 3) precision, 1/A^2
    precision = np.stack([a[:, 0, 0], a[:, 1, 1], a[:, 2, 2], a[:, 0, 1], a[:, 0, 2], a[:, 1, 2]], axis=1)
    slack = cells.half_diagonal / torch.linalg.eigvalsh(mixture.covariances)[:, 0].sqrt().numpy()  # (K,)
    gaussians = (centres, precision, slack, mixture.log_normalisation().numpy())
    n_chunks = _chunks(len(cells.centres))
    integrals = gaussian_integrals(xyz, point_weights, point_start, cells.centres, gauss_start, gauss, *gaussians,
                                   N_SIGMA**2, n_chunks).sum(axis=0)  # (K,)
    density = normalised_density(xyz, point_start, cells.centres, gauss_start, gauss, *gaussians,
                                 mixture.weights.numpy() / integrals, N_SIGMA**2)  # (P,) e/A^3
    atom_start, atoms = reference.candidates(cells.centres, cells.half_diagonal, positions)
    return grid_electrons(xyz, point_weights * density, point_start, atom_start, atoms, positions,
                          reference.log_coef, reference.inv_two_var, reference.log_count, math.log(NEGLIGIBLE),
                          n_chunks).sum(axis=0)


def _chunks(n_tasks: int) -> int:
    """How many of ``CHUNKS`` the kernels use for ``n_tasks`` Gaussians or cubes."""
    return max(1, min(n_tasks, CHUNKS))


def _subset(mixture: GaussianMixture, keep: np.ndarray) -> GaussianMixture:
    """The Gaussians of ``mixture`` where the mask ``keep`` (K,) is true."""
    index = torch.as_tensor(np.flatnonzero(keep))
    return GaussianMixture(mixture.weights[index], mixture.centres[index], mixture.scale_tril[index])


def reference_atoms(numbers: np.ndarray) -> dict:
    """The reference table (atomic number -> AtomicGaussians), after checking it holds every element of ``numbers``.

    Raises UnknownElementError (one line) for elements beyond the table (H to Kr).
    """
    table = atomic_gaussians()
    missing = sorted({int(z) for z in numbers} - set(table))
    if missing:
        names = ", ".join(chemical_symbols[z] for z in missing)
        raise UnknownElementError(
            f"Hirshfeld charges: no free-atom reference density for {names} (the promolecule table covers H to Kr)"
        )
    return table


def _logsumexp(a: np.ndarray) -> np.ndarray:
    """log(sum(exp(a), axis=-1)) without overflow, shape a.shape[:-1]."""
    top = a.max(axis=-1)
    return top + np.log(np.exp(a - top[..., None]).sum(axis=-1))
