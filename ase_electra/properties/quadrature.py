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

from ..errors import InvalidInputError
from ..gaussians import GaussianMixture

__all__ = ["standard_normal_rule", "gaussian_nodes", "becke_grid", "DEFAULT_RADIAL", "DEFAULT_THETA"]

#: Radial nodes and Gauss-Legendre nodes in cos(theta) of the default rule (8 x 6 x 12 nodes).
DEFAULT_RADIAL = 8
DEFAULT_THETA = 6


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


def becke_grid(
    numbers: np.ndarray, positions: np.ndarray, n_radial: int = 30, n_theta: int = 12
) -> tuple[np.ndarray, np.ndarray]:
    """Atom-centred molecular grid with Becke's fuzzy-cell partition.

    Radial part: Gauss-Chebyshev of the second kind mapped by ``r = R (1 + x) / (1 - x)``
    with ``R`` the covalent radius (shells crowd towards the nucleus, the first about
    ``R (pi / n)^2 / 4`` from it); angular part: :func:`_angular_rule`. Partition: Becke
    (1988), three iterations of ``1.5 x - 0.5 x^3``, with his size adjustment from
    covalent radii; each atom's cell weight is zero at every other nucleus.

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
    numbers = np.asarray(numbers)
    positions = np.asarray(positions, dtype=np.float64)
    if n_radial < 2 or n_theta < 1:
        raise InvalidInputError(f"n_radial, n_theta: expected >= 2 and >= 1, got {n_radial}, {n_theta}")
    radii = covalent_radii[numbers]  # (N,) Angstrom
    directions, angular_w = _angular_rule(n_theta)
    i = np.arange(1, n_radial + 1)
    x = np.cos(i * np.pi / (n_radial + 1))
    w_x = np.pi / (n_radial + 1) * np.sin(i * np.pi / (n_radial + 1)) ** 2 / np.sqrt(1.0 - x * x)  # int dx
    points, weights = [], []
    for atom, (centre, radius) in enumerate(zip(positions, radii)):
        r = radius * (1.0 + x) / (1.0 - x)  # (n,)
        w_r = 4.0 * np.pi * w_x * 2.0 * radius / (1.0 - x) ** 2 * r * r  # (n,) int 4 pi r^2 dr
        pts = centre + (r[:, None, None] * directions[None]).reshape(-1, 3)  # (n * A, 3)
        w = (w_r[:, None] * angular_w[None]).reshape(-1)
        points.append(pts)
        weights.append(w * _becke_cell(pts, atom, positions, radii))
    return np.concatenate(points), np.concatenate(weights)


def _becke_cell(points: np.ndarray, atom: int, positions: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """Becke partition weight of ``atom`` at ``points`` (P, 3), shape (P,)."""
    n = len(positions)
    if n == 1:
        return np.ones(len(points))
    pts = torch.as_tensor(points)
    pos = torch.as_tensor(positions)
    dist = torch.cdist(pts, pos)  # (P, N)
    separation = torch.cdist(pos, pos) + torch.eye(n, dtype=pos.dtype)  # (N, N), no zero division
    chi = torch.as_tensor(radii)[:, None] / torch.as_tensor(radii)[None, :]
    u = (chi - 1.0) / (chi + 1.0)
    a = torch.clamp(u / (u * u - 1.0), -0.5, 0.5)  # (N, N) size adjustment
    inv_sep = 1.0 / separation
    idx = torch.arange(n)
    out = torch.empty(len(pts), dtype=pos.dtype)
    step = max(1, (1 << 22) // (n * n))
    for start in range(0, len(pts), step):
        d = dist[start:start + step]
        nu = (d[:, :, None] - d[:, None, :]).mul_(inv_sep)  # (p, N, N): mu
        nu.add_((1.0 - nu * nu).mul_(a))  # size-adjusted
        for _ in range(3):
            nu.mul_((nu * nu).mul_(-0.5).add_(1.5))
        s = nu.neg_().add_(1.0).mul_(0.5)  # (p, N, N)
        s[:, idx, idx] = 1.0
        cell = s.prod(dim=2)  # (p, N)
        out[start:start + step] = cell[:, atom] / cell.sum(dim=1)
    return out.numpy()
