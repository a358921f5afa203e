"""Cell lists for the local quadratures: points binned into cubes, and who is within reach of each cube.

Every point of a quadrature falls into a cube of side ``spacing``; a cube with centre c and
half-diagonal h holds only points p with ``|p - c| <= h``. So an atom or Gaussian within
reach r of some point of the cube is within ``r + h`` of c, and one KD-tree query per cube
(:func:`within`) lists every candidate. The kernels (:mod:`._kernels`) test the points one
by one against these short lists instead of against every atom or Gaussian.

Legend: P points, C cells, Q queries.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import chain

import numpy as np
from numba import get_num_threads
from scipy.spatial import cKDTree

__all__ = ["Cells", "bin_points", "within", "transpose"]


@dataclass(frozen=True)
class Cells:
    """Points binned into cubes.

    Parameters
    ----------
    cell : ndarray of int, shape (P,)
        Index of each point's cube.
    centres : ndarray, shape (C, 3), Angstrom
        Centre of every occupied cube.
    half_diagonal : float, Angstrom
        Largest distance of a point from its cube's centre.
    """

    cell: np.ndarray
    centres: np.ndarray
    half_diagonal: float

    def sorted(self) -> tuple[np.ndarray, np.ndarray]:
        """Point order grouping the cubes, and where each cube starts in it: ``order`` (P,), ``start`` (C + 1,)."""
        order = np.argsort(self.cell, kind="stable")
        start = np.searchsorted(self.cell[order], np.arange(len(self.centres) + 1))
        return order, start


def bin_points(points: np.ndarray, spacing: float) -> Cells:
    """Bin ``points`` (P, 3), Angstrom, into cubes of side ``spacing`` (Angstrom) aligned with the axes."""
    index = np.floor(points / spacing).astype(np.int64)  # (P, 3)
    index -= index.min(axis=0)
    span = index.max(axis=0) + 1
    keys = (index[:, 0] * span[1] + index[:, 1]) * span[2] + index[:, 2]
    unique, cell = np.unique(keys, return_inverse=True)
    corner = np.stack([unique // (span[1] * span[2]), unique // span[2] % span[1], unique % span[2]], axis=1)
    origin = np.floor(points.min(axis=0) / spacing)
    centres = (corner + origin + 0.5) * spacing
    return Cells(cell.reshape(-1), centres, 0.5 * np.sqrt(3.0) * spacing)


def within(targets: np.ndarray, queries: np.ndarray, radii: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Targets within ``radii[q]`` of each query, as CSR lists, queried on numba's threads.

    Parameters
    ----------
    targets : ndarray, shape (T, 3), Angstrom
    queries : ndarray, shape (Q, 3), Angstrom
    radii : ndarray, shape (Q,), Angstrom

    Returns
    -------
    start : ndarray of int, shape (Q + 1,)
        Query q's targets are ``index[start[q]:start[q + 1]]``.
    index : ndarray of int
    """
    lists = cKDTree(targets).query_ball_point(queries, radii, workers=get_num_threads())
    start = np.zeros(len(lists) + 1, dtype=np.int64)
    np.cumsum(np.fromiter(map(len, lists), dtype=np.int64, count=len(lists)), out=start[1:])
    index = np.fromiter(chain.from_iterable(lists), dtype=np.int64, count=int(start[-1]))
    return start, index


def transpose(start: np.ndarray, index: np.ndarray, n_targets: int) -> tuple[np.ndarray, np.ndarray]:
    """The CSR lists of :func:`within` turned round: for every target, the queries that list it (ascending)."""
    queries = np.repeat(np.arange(len(start) - 1), np.diff(start))
    order = np.argsort(index, kind="stable")
    out_start = np.zeros(n_targets + 1, dtype=np.int64)
    np.cumsum(np.bincount(index, minlength=n_targets), out=out_start[1:])
    return out_start, queries[order]
