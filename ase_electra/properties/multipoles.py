"""Analytic dipole and quadrupole moments of nuclei plus a Gaussian mixture.

The moments of a normalised Gaussian N(mu, Sigma) are ``int N r = mu`` and
``int N r r^T = mu mu^T + Sigma``, so for point nuclei (charges Z_i at R_i) and electrons
(weights w_k, of any sign)::

    p        = sum_i Z_i R_i - sum_k w_k mu_k                              (e Angstrom)
    M        = sum_i Z_i R_i R_i^T - sum_k w_k (mu_k mu_k^T + Sigma_k)      (e Angstrom^2)
    Theta    = (3 M - tr(M) I) / 2                                          (e Angstrom^2)

``Theta`` is Buckingham's traceless quadrupole, ``Theta_ab = sum q (3 r_a r_b - r^2
delta_ab) / 2``. Positions are taken relative to ``origin``; the quadrupole of a
structure with a dipole or a net charge depends on it (ASE's dipole is about the
coordinate origin, and so are the calculator's moments).
"""

from __future__ import annotations

import numpy as np
import torch

from ..gaussians import GaussianMixture

__all__ = ["dipole_moment", "quadrupole_moment", "DEBYE"]

#: e Angstrom per debye (1 D = 1e-21 C m^2 / s / c; 1 e Angstrom = 4.80320 D).
DEBYE = 0.20819433622621


def dipole_moment(
    mixture: GaussianMixture, numbers: np.ndarray, positions: np.ndarray, origin: np.ndarray | None = None
) -> np.ndarray:
    """Dipole of nuclei plus electrons, shape (3,), e Angstrom.

    Parameters
    ----------
    mixture : GaussianMixture
        One structure's electrons; centres in Angstrom.
    numbers : array of int, shape (N,)
    positions : array, shape (N, 3), Angstrom
    origin : array, shape (3,), Angstrom, optional
        Reference point; default the coordinate origin.
    """
    o = _origin(origin)
    w, mu, _ = _moments(mixture, o)
    return np.asarray(numbers, dtype=np.float64) @ (np.asarray(positions, dtype=np.float64) - o) - w @ mu


def quadrupole_moment(
    mixture: GaussianMixture, numbers: np.ndarray, positions: np.ndarray, origin: np.ndarray | None = None
) -> np.ndarray:
    """Traceless (Buckingham) quadrupole of nuclei plus electrons, shape (3, 3), e Angstrom^2.

    Parameters as for :func:`dipole_moment`.

    Examples
    --------
    >>> m = GaussianMixture(torch.tensor([2.0]), torch.zeros(1, 3), 0.5 * torch.eye(3)[None])
    >>> quadrupole_moment(m, np.array([2]), np.zeros((1, 3))).round(12).tolist()[0]  # helium-like: none
    [0.0, 0.0, 0.0]
    """
    o = _origin(origin)
    w, mu, cov = _moments(mixture, o)
    r = np.asarray(positions, dtype=np.float64) - o  # (N, 3)
    second = np.einsum("i,ia,ib->ab", np.asarray(numbers, dtype=np.float64), r, r)
    second -= np.einsum("k,kab->ab", w, mu[:, :, None] * mu[:, None, :] + cov)
    return 0.5 * (3.0 * second - np.trace(second) * np.eye(3))


def _origin(origin: np.ndarray | None) -> np.ndarray:
    return np.zeros(3) if origin is None else np.asarray(origin, dtype=np.float64).reshape(3)


def _moments(mixture: GaussianMixture, origin: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weights (K,), centres relative to ``origin`` (K, 3) and covariances (K, 3, 3), float64 NumPy."""
    m = mixture.detach().to(device="cpu", dtype=torch.float64)
    return m.weights.numpy(), m.centres.numpy() - origin, m.covariances.numpy()
