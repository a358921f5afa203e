"""Compiled CPU kernel (numba) for the plane-wave coefficients of Gaussians (``reciprocal.py``).

Gaussian k's coefficient at mode m = (m1, m2, m3) is

    c_k(m) = p_k exp(-q_k(m) / 2 - 2 pi i m . f_k),  q_k(m) = m^T A_k m,

with p_k = w_k / V, A_k = B Sigma_k B^T (B the reciprocal vectors as rows, 1/Angstrom)
and f_k the fractional coordinates of the centre relative to the grid's origin. Along a
line of m3 at fixed (m1, m2), q(l) = a l^2 + 2 b l + c and the phase is linear in l, so
c(l + 1) = c(l) r_l, r_{l+1} = r_l exp(-a), r_l = exp(-(b + (l + 1/2) a) - 2 pi i f_3):
one complex and one real multiplication per mode, the recurrence of ``_numba.py`` with a
complex ratio, in two interleaved chains. A line starts (and restarts every ``_RESEED``
modes) with two real ``exp`` and its phase from per-axis tables exp(-2 pi i m f_a), so
no complex ``exp`` runs per line. Each line runs over the l >= 0 (the half spectrum of a
real grid) where q <= R^2.

Threads never race: the planes of m1 are shared out among the threads, each summing its
Gaussians in index order, so the result does not depend on the number of threads.

Legend: K Gaussians.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from ._numba import _add_run  # the geometric-run adder of the real-space kernel; complex values here

__all__ = ["add_coefficients"]

#: The line recurrence restarts from direct ``exp`` every this many modes.
_RESEED = 32


@njit(cache=True, parallel=True)
def _coefficients(metric, pref, extents, radius_sq, phase1, phase2, phase3, shape, out):  # pragma: no cover
    """Add every Gaussian's coefficients into ``out`` (complex, the flat box ``shape`` = (2 T1 + 1,
    2 T2 + 1, T3 + 1) of modes |m_a| <= T_a, m3 >= 0), plane by plane.

    metric (K, 3, 3): A_k; pref (K,): w_k / V; extents (K, 3) int64: the largest |m_a| of
    each Gaussian's ellipsoid q <= radius_sq, T their maxima; phase1, phase2 (K, 2 T + 1) and
    phase3 (K, T + 1): exp(-2 pi i m f_k,a) for m from -T (0 along the third axis).
    """
    n2, nh = shape[1], shape[2]
    top1, top2 = (phase1.shape[1] - 1) // 2, (phase2.shape[1] - 1) // 2
    for task in prange(2 * top1 + 1):
        m1 = task - top1
        for k in range(extents.shape[0]):
            if abs(m1) > extents[k, 0]:
                continue
            a = metric[k, 2, 2]
            inv_a = 1.0 / a
            ratio = math.exp(-a)
            turn = phase3[k, 1] if phase3.shape[1] > 1 else 1.0 + 0.0j
            plane = pref[k] * phase1[k, task]
            e2 = extents[k, 1]
            for m2 in range(-e2, e2 + 1):
                b = metric[k, 0, 2] * m1 + metric[k, 1, 2] * m2
                c = metric[k, 0, 0] * m1 * m1 + 2.0 * metric[k, 0, 1] * m1 * m2 + metric[k, 1, 1] * m2 * m2
                disc = b * b - a * (c - radius_sq)
                if disc < 0.0:
                    continue
                root = math.sqrt(disc)
                l0 = max(0, int(math.ceil((-b - root) * inv_a)))
                l1 = min(extents[k, 2], int(math.floor((-b + root) * inv_a))) + 1
                if l0 >= l1:
                    continue
                row = (task * n2 + m2 + top2) * nh
                line = plane * phase2[k, m2 + top2]
                first = l0
                while first < l1:
                    stop = min(l1, first + _RESEED)
                    value = line * phase3[k, first] * math.exp(-0.5 * (c + first * (2.0 * b + first * a)))
                    r = turn * math.exp(-(b + (first + 0.5) * a))
                    _add_run(out, row + first, stop - first, value, r, ratio)
                    first = stop


def add_coefficients(metric: np.ndarray, frac: np.ndarray, pref: np.ndarray, extents: np.ndarray,
                     radius_sq: float, out: np.ndarray) -> None:
    """Add the coefficients of the Gaussians into ``out`` in place (see the module docstring).

    Parameters
    ----------
    metric : ndarray, shape (K, 3, 3), float64
        A_k = B Sigma_k B^T (dimensionless: q is in squared standard deviations).
    frac : ndarray, shape (K, 3), float64
        Centres minus the grid's origin, in fractions of the cell vectors.
    pref : ndarray, shape (K,), float64, electrons / Angstrom^3
        Weight over cell volume.
    extents : ndarray, shape (K, 3), int64
        Largest |m_a| of each ellipsoid.
    radius_sq : float
        R^2: modes with q > R^2 are left out.
    out : ndarray, shape (2 T1 + 1, 2 T2 + 1, T3 + 1), complex128
        Coefficients of the modes |m_a| <= T_a (T = the largest extents), m3 >= 0, mode
        (m1, m2, m3) at (m1 + T1, m2 + T2, m3); added to.
    """
    if not len(pref):
        return
    top = extents.max(0)
    assert out.shape == (2 * top[0] + 1, 2 * top[1] + 1, top[2] + 1) and out.flags.c_contiguous  # a flat view is added to
    phases = [np.exp(-2j * np.pi * frac[:, a, None] * np.arange(-top[a] if a < 2 else 0, top[a] + 1))
              for a in range(3)]  # (K, 2 E + 1) or (K, E + 1)
    _coefficients(np.ascontiguousarray(metric), np.ascontiguousarray(pref),
                  np.ascontiguousarray(extents, dtype=np.int64), float(radius_sq), *phases,
                  np.array(out.shape, dtype=np.int64), out.reshape(-1))  # fmt: skip
