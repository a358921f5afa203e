"""Integration grids for densities made of Gaussians: per-Gaussian nodes and Becke grids.

Per Gaussian (:func:`gaussian_nodes`). For N(r | mu, L L^T) and a smooth f::

    int N(r | mu, L L^T) f(r) dr = E[f(mu + L z)],   z ~ N(0, I)
                                ~= sum_j W_j f(mu + L z_j)

with a spherical product rule for the standard normal (:func:`standard_normal_rule`):
radial nodes from generalised Gauss-Laguerre (alpha = 1/2, in t = |z|^2 / 2, exact for
the radial weight r^2 e^(-r^2/2)) times Gauss-Legendre in cos(theta) and the trapezoidal
rule in phi. The weights W_j sum to one, and the nodes follow each Gaussian's width, so
narrow core Gaussians need no special radial grid (a cube-grid sum misses about 0.3 % of
the electrons near nuclei). Good for Gaussians narrower than the features of f.

Per atom (:func:`becke_grid`): atom-centred radial shells times the same angular rule,
glued by Becke's fuzzy-cell partition, for Gaussians wider than the spacing of atoms
(the features of a Hirshfeld weight sit on the nuclei, where these grids are dense).

Legend: K Gaussians, J nodes per Gaussian, N atoms, P points, A angular points.
"""

from __future__ import annotations

import math
from functools import cache

import numpy as np
import torch
from ase.data import covalent_radii
from scipy.spatial import cKDTree

from ..errors import InvalidInputError
from ..gaussians import GaussianMixture
from ._cells import Cells, bin_points, within
from ._kernels import becke_weights

__all__ = [
    "standard_normal_rule", "gaussian_nodes", "becke_shells", "becke_adjustment", "becke_grid", "becke_partition",
    "sorted_becke_partition", "DEFAULT_RADIAL", "DEFAULT_THETA", "BECKE_REACH", "NEGLIGIBLE_CELL", "CELL",
]

#: Radial nodes and Gauss-Legendre nodes in cos(theta) of the default rule (8 x 6 x 12 nodes).
DEFAULT_RADIAL = 8
DEFAULT_THETA = 6

#: Becke cells at a point are built from the atoms within this distance beyond its nearest
#: atom, Angstrom (:func:`becke_partition`). Against all atoms and all cells, the Hirshfeld
#: charges of C10H22 (13 A long) move by 1.2e-6 e at 4 A, 8e-9 e at 8 A, 3e-15 e at 12 A;
#: those of C30H62 (38 A) by 5e-8 e at 12 A.
BECKE_REACH = 12.0

#: A Becke cell below this fraction of the largest at a point is left out of the sum there
#: (the weights move by less than this fraction per atom).
NEGLIGIBLE_CELL = 1e-14

#: Side of the cubes of the cell lists, Angstrom.
CELL = 1.0


@cache
def standard_normal_rule(n_radial: int = DEFAULT_RADIAL, n_theta: int = DEFAULT_THETA) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights for the 3-D standard normal distribution.

    Parameters
    ----------
    n_radial : int
        Radial nodes; polynomials in |z|^2 up to degree ``2 n_radial - 1`` are exact.
    n_theta : int
        Nodes in cos(theta); ``2 n_theta`` in phi; spherical harmonics up to degree
        ``2 n_theta - 1`` are exact.

    Returns
    -------
    nodes : ndarray, shape (J, 3), dimensionless (standard deviations)
    weights : ndarray, shape (J,), summing to 1

    Examples
    --------
    >>> z, w = standard_normal_rule(4, 3)
    >>> round(float(w.sum()), 12), round(float(w @ z[:, 0] ** 2), 12), round(float(w @ z[:, 2] ** 4), 12)
    (1.0, 1.0, 3.0)
    """
    if n_radial < 1 or n_theta < 1:
        raise InvalidInputError(f"n_radial, n_theta: expected >= 1, got {n_radial}, {n_theta}")
    t, w_t = _gauss_laguerre(n_radial, 0.5)  # int t^(1/2) e^-t g(t) dt
    radii = np.sqrt(2.0 * t)  # (n,)
    radial_w = w_t / math.gamma(1.5)  # (n,) sums to 1
    directions, angular_w = _angular_rule(n_theta)  # (A, 3), (A,) summing to 1
    nodes = (radii[:, None, None] * directions[None]).reshape(-1, 3)
    weights = (radial_w[:, None] * angular_w[None]).reshape(-1)
    nodes.setflags(write=False)
    weights.setflags(write=False)
    return nodes, weights


def gaussian_nodes(
    mixture: GaussianMixture, n_radial: int = DEFAULT_RADIAL, n_theta: int = DEFAULT_THETA
) -> tuple[np.ndarray, np.ndarray]:
    """The rule of :func:`standard_normal_rule` placed on every Gaussian of ``mixture``.

    Returns
    -------
    points : ndarray, shape (K, J, 3), Angstrom
        ``mu_k + L_k z_j``.
    weights : ndarray, shape (J,)
        The same for every Gaussian; ``int N_k f ~= weights @ f(points[k])``.
    """
    z, w = standard_normal_rule(n_radial, n_theta)
    m = mixture.to(device="cpu", dtype=torch.float64)
    L = m.scale_tril.numpy()  # (K, 3, 3)
    points = m.centres.numpy()[:, None, :] + np.einsum("kab,jb->kja", L, z)  # (K, J, 3)
    return points, w


def _gauss_laguerre(n: int, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Generalised Gauss-Laguerre nodes and weights for ``int_0^inf t^alpha e^-t g(t) dt`` (Golub-Welsch)."""
    k = np.arange(n)
    diagonal = 2.0 * k + alpha + 1.0
    off = np.sqrt(k[1:] * (k[1:] + alpha))
    nodes, vectors = np.linalg.eigh(np.diag(diagonal) + np.diag(off, 1) + np.diag(off, -1))
    return nodes, math.gamma(alpha + 1.0) * vectors[0] ** 2


def _angular_rule(n_theta: int) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors (A, 3) and weights (A,) summing to 1: mean over the sphere, exact to degree 2 n_theta - 1."""
    cos_t, w_cos = np.polynomial.legendre.leggauss(n_theta)
    n_phi = 2 * n_theta
    phi = 2.0 * np.pi * (np.arange(n_phi) + 0.5) / n_phi
    sin_t = np.sqrt(1.0 - cos_t**2)
    directions = np.stack(
        [np.outer(sin_t, np.cos(phi)), np.outer(sin_t, np.sin(phi)), np.outer(cos_t, np.ones(n_phi))], axis=-1
    ).reshape(-1, 3)
    return directions, np.outer(w_cos / 2.0, np.full(n_phi, 1.0 / n_phi)).reshape(-1)


def becke_shells(
    numbers: np.ndarray, positions: np.ndarray, n_radial: int = 30, n_theta: int = 12
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Atom-centred radial shells times the angular rule, before any partition.

    Radial part: Gauss-Chebyshev of the second kind mapped by ``r = R (1 + x) / (1 - x)``
    with ``R`` the covalent radius (shells crowd towards the nucleus, the first about
    ``R (pi / n)^2 / 4`` from it); angular part: :func:`_angular_rule`.

    Returns
    -------
    points : ndarray, shape (P, 3), Angstrom, with P = N n_radial 2 n_theta^2, atom by atom
    weights : ndarray, shape (P,), Angstrom^3; each atom's own ``weights @ f(points)`` integrates f.
    owner : ndarray of int, shape (P,), the atom each point belongs to.
    """
    numbers = np.asarray(numbers)
    positions = np.asarray(positions, dtype=np.float64)
    if n_radial < 2 or n_theta < 1:
        raise InvalidInputError(f"n_radial, n_theta: expected >= 2 and >= 1, got {n_radial}, {n_theta}")
    radii = covalent_radii[numbers]  # (N,) Angstrom
    directions, angular_w = _angular_rule(n_theta)  # (A, 3), (A,)
    i = np.arange(1, n_radial + 1)
    x = np.cos(i * np.pi / (n_radial + 1))
    w_x = np.pi / (n_radial + 1) * np.sin(i * np.pi / (n_radial + 1)) ** 2 / np.sqrt(1.0 - x * x)  # int dx
    r = radii[:, None] * (1.0 + x) / (1.0 - x)  # (N, n)
    w_r = 4.0 * np.pi * w_x * 2.0 * radii[:, None] / (1.0 - x) ** 2 * r * r  # (N, n) int 4 pi r^2 dr
    points = positions[:, None, None] + r[:, :, None, None] * directions  # (N, n, A, 3)
    weights = w_r[:, :, None] * angular_w  # (N, n, A)
    owner = np.repeat(np.arange(len(numbers)), n_radial * len(angular_w))
    return points.reshape(-1, 3), weights.reshape(-1), owner


def becke_adjustment(numbers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Becke's size adjustment from covalent radii: each atom's element index (N,) and a_AB per element pair (E, E)."""
    elements, kind = np.unique(np.asarray(numbers), return_inverse=True)
    chi = covalent_radii[elements][:, None] / covalent_radii[elements][None, :]
    u = (chi - 1.0) / (chi + 1.0)
    return kind.reshape(-1).astype(np.int64), np.clip(u / (u * u - 1.0), -0.5, 0.5)


def becke_grid(
    numbers: np.ndarray, positions: np.ndarray, n_radial: int = 30, n_theta: int = 12
) -> tuple[np.ndarray, np.ndarray]:
    """Atom-centred molecular grid with Becke's fuzzy-cell partition.

    Points and integration weights of :func:`becke_shells`, times Becke's (1988) partition:
    three iterations of ``1.5 x - 0.5 x^3``, with his size adjustment from covalent radii;
    each atom's cell weight is zero at every other nucleus. The cells at a point are built
    from the atoms near it only (:func:`becke_partition`), so the cost grows linearly with
    the atom count.

    Parameters
    ----------
    numbers : array of int, shape (N,)
    positions : array, shape (N, 3), Angstrom
    n_radial : int
        Radial shells per atom.
    n_theta : int
        Gauss-Legendre nodes in cos(theta); ``2 n_theta`` in phi.

    Returns
    -------
    points : ndarray, shape (P, 3), Angstrom, with P = N n_radial 2 n_theta^2
    weights : ndarray, shape (P,), Angstrom^3; ``weights @ f(points)`` integrates f.
    """
    points, weights, owner = becke_shells(numbers, positions, n_radial, n_theta)
    return points, weights * becke_partition(points, owner, numbers, positions)


def becke_partition(
    points: np.ndarray, owner: np.ndarray, numbers: np.ndarray, positions: np.ndarray, reach: float = BECKE_REACH
) -> np.ndarray:
    """Becke partition weight (P,) of atom ``owner[p]`` at each of ``points`` (P, 3), Angstrom.

    The cells at a point are built from every atom within ``reach`` (Angstrom) beyond its
    nearest atom, and from some farther ones: the lists are drawn up per cube of side
    ``CELL``. Atoms left off count neither as cells nor as factors of the others' cells;
    cells below ``NEGLIGIBLE_CELL`` of the largest at the point are left out of the sum. All
    points in a cube see the same atoms, so the weights of all atoms at a point still sum
    to one. On C10H22 these weights are those of all atoms and all cells to 2e-14
    (``tests/test_hirshfeld.py``).
    """
    cells = bin_points(points, CELL)
    order, start = cells.sorted()
    out = np.empty(len(points))
    out[order] = sorted_becke_partition(points[order], np.asarray(owner)[order], start, cells, numbers, positions,
                                        reach)
    return out


def sorted_becke_partition(
    points: np.ndarray, owner: np.ndarray, point_start: np.ndarray, cells: Cells, numbers: np.ndarray,
    positions: np.ndarray, reach: float = BECKE_REACH,
) -> np.ndarray:
    """:func:`becke_partition` of points sorted by the cubes of ``cells``: cube c holds
    ``points[point_start[c]:point_start[c + 1]]`` (:meth:`Cells.sorted`)."""
    positions = np.asarray(positions, dtype=np.float64)
    nearest = cKDTree(positions).query(cells.centres)[0]  # (C,) Angstrom
    atom_start, atoms = within(positions, cells.centres, nearest + 2.0 * cells.half_diagonal + reach)
    kind, adjust = becke_adjustment(numbers)
    return becke_weights(np.ascontiguousarray(points), np.asarray(owner, dtype=np.int64), point_start,
                         cells.centres, atom_start, atoms, positions, kind, adjust, NEGLIGIBLE_CELL)
