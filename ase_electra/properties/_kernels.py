"""Numba kernels of the local Hirshfeld quadrature: Becke cells, Hirshfeld weights, electrons per atom.

Every point meets only the candidate atoms of its cube (:mod:`._cells`), and every Gaussian
only the points of the cubes within its reach, so the work grows with the atom count, not
its square. Wide Gaussians go in three passes over the points of a Becke grid:

1. :func:`gaussian_integrals`: each Gaussian's quadrature ``I_k = sum_p v_p N_k(p)``
   (``v_p`` the integration weight);
2. :func:`normalised_density`: ``rho(p) = sum_k (w_k / I_k) N_k(p)`` at every point;
3. :func:`grid_electrons`: ``e_A = sum_p v_p rho(p) w_A(p)``, ``w_A`` the Hirshfeld weight,

which is ``sum_k w_k I_kA / I_k`` with ``I_kA = sum_p v_p N_k(p) w_A(p)`` summed in
another order: each Gaussian's shares normalised by its own quadrature, so the charges sum
to the total charge. A pass runs cube by cube over the Gaussians that reach the cube, and
over a cube's points in a row (:func:`_values`), which the compiler vectorises.

Threads never race: a parallel loop writes either its own points or its own row of a (T, .)
output, and the rows are summed afterwards.

Inputs are float64 and int64, C-contiguous; positions in Angstrom.

Legend: N atoms, P points, C cubes, K Gaussians, G reference Gaussians per atom (padded with
log-coefficient -inf), E elements, T chunks.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

__all__ = ["becke_weights", "node_electrons", "gaussian_integrals", "normalised_density", "grid_electrons"]

_INV_LN2 = 1.4426950408889634
_LN2_HI = 0.6931471803691238  # ln 2 to 33 bits: n * _LN2_HI is exact for |n| < 2^20
_LN2_LO = 1.9082149292705877e-10  # ln 2 - _LN2_HI
_ROUND = 6755399441055744.0  # 1.5 * 2^52: x + _ROUND holds round(x) in its low mantissa bits
_ROUND_BITS = 0x4338000000000000  # the bits of _ROUND
_LOWEST = -708.0  # exp(_LOWEST) is still a normal double
_PROBE = 4  # atoms whose cell functions bound a Becke cell before it is multiplied out

#: The fast-math freedom the kernels take, for the compiler to vectorise their loops: a * b + c
#: as one fused multiply-add (one rounding instead of two) ...
_FMA = {"contract"}
#: ... and, where a loop sums or multiplies up a row, that sum in another order (a vector's
#: lanes apart). Rounding moves; no infinity or NaN rule is relaxed.
_VECTOR = _FMA | {"reassoc"}


# ---------------------------------------------------------------------- exp
@njit(cache=True, inline="always", fastmath=_FMA)
def _exp(x: float) -> float:
    """exp(x) for x in [-708, 709], within 3e-13 relative of ``math.exp``; built from
    arithmetic only, so loops over it vectorise (``math.exp`` is a library call).

    x = n ln2 + r with |r| <= ln2 / 2; exp(r) by its Taylor series to r^10 (remainder below
    2.2e-13: far below what the quadratures resolve, and two multiply-adds fewer per
    value than series to r^12); 2^n added to the exponent bits.
    """
    t = x * _INV_LN2 + _ROUND
    n = t - _ROUND
    r = (x - n * _LN2_HI) - n * _LN2_LO
    p = 1.0 + r * (1.0 + r * (1.0 / 2 + r * (1.0 / 6 + r * (1.0 / 24 + r * (1.0 / 120 + r * (1.0 / 720 + r * (
        1.0 / 5040 + r * (1.0 / 40320 + r * (1.0 / 362880 + r * (1.0 / 3628800))))))))))
    shift = (np.float64(t).view(np.int64) - _ROUND_BITS) << 52
    return np.int64(np.float64(p).view(np.int64) + shift).view(np.float64)


# ---------------------------------------------------------------------- Becke partition
@njit(cache=True, inline="always", fastmath=_FMA)
def _becke_s(nu: float) -> float:
    """Becke's cell function s(nu) = (1 - f3(nu)) / 2 with f3 three iterations of 1.5 x - 0.5 x^3."""
    for _ in range(3):
        nu = nu * (1.5 - 0.5 * nu * nu)
    return 0.5 * (1.0 - nu)


@njit(cache=True, inline="always")
def _pair(i, j, ax, ay, az, cand, kind, adjust, inv_sep, adj):
    """1 / R_ij and a_ij of candidates i and j into ``inv_sep[i, j]``, ``adj[i, j]``; on the diagonal
    0 and -1, so that nu' = -1 there and s(-1) = 1 exactly: the factor drops out."""
    if i == j:
        inv_sep[i, j], adj[i, j] = 0.0, -1.0
    else:
        inv_sep[i, j] = 1.0 / math.sqrt((ax[i] - ax[j]) ** 2 + (ay[i] - ay[j]) ** 2 + (az[i] - az[j]) ** 2)
        adj[i, j] = adjust[kind[cand[i]], kind[cand[j]]]


@njit(cache=True, parallel=True, fastmath=_VECTOR)
def becke_weights(points, owner, point_start, centres, atom_start, atoms, positions, kind, adjust, negligible):
    """Becke partition weight of each point's owner atom, shape (P,).

    Parameters
    ----------
    points : (P, 3), sorted by cube; cube c holds ``points[point_start[c]:point_start[c + 1]]``
    owner : (P,) atom whose grid the point belongs to
    centres : (C, 3) the cubes' centres
    atom_start, atoms : CSR atoms per cube that build the cells; the rest count for nothing
    positions : (N, 3)
    kind, adjust : (N,) element index and (E, E) Becke size adjustment a_AB
    negligible : float
        A cell whose product of cell functions falls below this fraction of the largest cell
        so far is left out of the sum (each moves the weights by less than that fraction).
        The cube's atoms go nearest first; a cell is first bounded by its factors from the
        ``_PROBE`` nearest atoms (every factor is at most one), and only the cells that pass
        multiply out all their factors, in one vectorised loop.
    """
    out = np.zeros(len(points))
    for c in prange(len(atom_start) - 1):
        listed = atoms[atom_start[c]:atom_start[c + 1]]
        n = len(listed)
        distance = np.empty(n)
        for i in range(n):
            dx = centres[c] - positions[listed[i]]
            distance[i] = dx[0] * dx[0] + dx[1] * dx[1] + dx[2] * dx[2]
        cand = listed[np.argsort(distance)]
        ax, ay, az = positions[cand, 0].copy(), positions[cand, 1].copy(), positions[cand, 2].copy()
        probe = min(n, _PROBE)
        # rows of 1 / R_ij and a_ij, filled as the cells need them: the first probe columns at once
        inv_sep = np.empty((n, n))
        adj = np.empty((n, n))
        filled = np.zeros(n, dtype=np.bool_)
        for i in range(n):
            for j in range(probe):
                _pair(i, j, ax, ay, az, cand, kind, adjust, inv_sep, adj)
        d = np.empty(n)
        for p in range(point_start[c], point_start[c + 1]):
            x, y, z = points[p, 0], points[p, 1], points[p, 2]
            for i in range(n):
                d[i] = math.sqrt((x - ax[i]) ** 2 + (y - ay[i]) ** 2 + (z - az[i]) ** 2)
            largest, total, own = 0.0, 0.0, 0.0
            for i in range(n):
                bound = 1.0
                for j in range(probe):
                    nu = (d[i] - d[j]) * inv_sep[i, j]
                    bound *= _becke_s(nu + adj[i, j] * (1.0 - nu * nu))
                if bound < negligible * largest:
                    continue
                if not filled[i]:
                    for j in range(probe, n):
                        _pair(i, j, ax, ay, az, cand, kind, adjust, inv_sep, adj)
                    filled[i] = True
                cell = bound
                for j in range(probe, n):
                    nu = (d[i] - d[j]) * inv_sep[i, j]
                    cell *= _becke_s(nu + adj[i, j] * (1.0 - nu * nu))
                if cell < negligible * largest:
                    continue
                largest = max(largest, cell)
                total += cell
                if cand[i] == owner[p]:
                    own = cell
            out[p] = own / total
    return out


# ---------------------------------------------------------------------- Hirshfeld weights
@njit(cache=True, inline="always", fastmath=_VECTOR)
def _hirshfeld(point, cand, positions, log_coef, inv_two_var, log_count, log_eps, d2, chosen, w):
    """Hirshfeld weights at ``point`` among the candidate atoms ``cand``; returns their number m.

    Candidate i is kept if its free-atom density can exceed ``exp(log_eps)`` times the largest
    there (largest term times the number of terms, against the largest term); the kept ones'
    positions in ``cand`` go to ``chosen[:m]`` and their weights, summing to one, to ``w[:m]``.
    ``d2`` is scratch of length 2 len(cand): squared distances, then largest log-terms.
    """
    n, g_max = len(cand), log_coef.shape[1]
    top = -np.inf
    for i in range(n):
        a = cand[i]
        dx = point - positions[a]
        d2[i] = dx[0] * dx[0] + dx[1] * dx[1] + dx[2] * dx[2]
        peak = -np.inf
        for g in range(g_max):
            peak = max(peak, log_coef[a, g] - inv_two_var[a, g] * d2[i])
        d2[n + i] = peak
        top = max(top, peak)
    m = 0
    total = 0.0
    for i in range(n):
        a = cand[i]
        if d2[n + i] + log_count[a] < top + log_eps:
            continue
        rho = 0.0  # density / exp(top)
        for g in range(g_max):
            rho += _exp(max(log_coef[a, g] - inv_two_var[a, g] * d2[i] - top, _LOWEST))
        chosen[m] = i
        w[m] = rho
        total += rho
        m += 1
    for k in range(m):
        w[k] /= total
    return m


# ---------------------------------------------------------------------- narrow Gaussians
@njit(cache=True, parallel=True, fastmath=_VECTOR)
def node_electrons(points, rule, weights, point_cell, atom_start, atoms, positions, log_coef, inv_two_var,
                   log_count, log_eps, n_chunks):
    """Electrons (T, N) that narrow Gaussians give each atom, integrated on their own nodes.

    ``points`` (K, J, 3) are the nodes of Gaussian k, ``rule`` (J,) their weights, ``weights``
    (K,) the Gaussians' electrons and ``point_cell`` (K * J,) each node's cube, whose candidate
    atoms are ``atoms[atom_start[c]:atom_start[c + 1]]``. Gaussian k gives atom A
    ``weights[k] * sum_j rule_j w_A(points[k, j]) / sum(rule)``.
    """
    n_atoms, (k_total, j_total) = len(positions), points.shape[:2]
    widest = (atom_start[1:] - atom_start[:-1]).max()
    out = np.zeros((n_chunks, n_atoms))
    rule_sum = rule.sum()
    for t in prange(n_chunks):
        d2 = np.empty(2 * widest)
        chosen = np.empty(widest, dtype=np.int64)
        w = np.empty(widest)
        for k in range(t * k_total // n_chunks, (t + 1) * k_total // n_chunks):
            share = weights[k] / rule_sum
            for j in range(j_total):
                c = point_cell[k * j_total + j]
                cand = atoms[atom_start[c]:atom_start[c + 1]]
                m = _hirshfeld(points[k, j], cand, positions, log_coef, inv_two_var, log_count, log_eps, d2, chosen, w)
                for i in range(m):
                    out[t, cand[chosen[i]]] += share * rule[j] * w[i]
    return out


# ---------------------------------------------------------------------- wide Gaussians
@njit(cache=True, inline="always", fastmath=_FMA)
def _values(x, y, z, centre, precision, log_norm, reach2, out):
    """N_k at the points (``x``, ``y``, ``z``), each (n,), into ``out[:n]``, zero beyond Mahalanobis
    distance ``sqrt(reach2)``; ``precision`` (6,) as xx, yy, zz, xy, xz, yz, 1/A^2."""
    cx, cy, cz = centre[0], centre[1], centre[2]
    xx, yy, zz = 0.5 * precision[0], 0.5 * precision[1], 0.5 * precision[2]
    xy, xz, yz = precision[3], precision[4], precision[5]
    half_reach2 = 0.5 * reach2
    for i in range(len(x)):
        dx, dy, dz = x[i] - cx, y[i] - cy, z[i] - cz
        half_m2 = xx * dx * dx + yy * dy * dy + zz * dz * dz + xy * dx * dy + xz * dx * dz + yz * dy * dz
        value = _exp(max(log_norm - half_m2, _LOWEST))
        out[i] = value if half_m2 <= half_reach2 else 0.0


@njit(cache=True, inline="always")
def _misses(cube_centre, centre, precision, slack, reach2):
    """Whether no point of a cube is within Mahalanobis distance ``sqrt(reach2)`` of a Gaussian: its
    centre lies farther than that plus ``slack`` (the cube's half-diagonal over the smallest
    standard deviation, the most a point of the cube can add)."""
    x, y, z = cube_centre[0] - centre[0], cube_centre[1] - centre[1], cube_centre[2] - centre[2]
    m2 = (precision[0] * x * x + precision[1] * y * y + precision[2] * z * z
          + 2.0 * (precision[3] * x * y + precision[4] * x * z + precision[5] * y * z))
    return math.sqrt(m2) > math.sqrt(reach2) + slack


@njit(cache=True, parallel=True, fastmath=_VECTOR)
def gaussian_integrals(xyz, point_weights, point_start, cube_centres, gauss_start, gauss, centres, precision, slack,
                       log_norm, reach2, n_chunks):
    """Pass 1: each Gaussian's quadrature ``sum_p point_weights[p] N_k(p)``, as partial sums (T, K).

    ``xyz`` (3, P) are the points, sorted by cube (cube c, centred on ``cube_centres[c]``, holds
    ``point_start[c]`` to ``point_start[c + 1]``); ``gauss[gauss_start[c]:gauss_start[c + 1]]``
    the Gaussians that may reach cube c, skipped where :func:`_misses` (``slack`` (K,)); Gaussians
    as in :func:`_values` (``centres`` (K, 3), ``precision`` (K, 6), ``log_norm`` (K,) log of the
    normalisation, 1/A^3).
    """
    n_cubes = len(point_start) - 1
    out = np.zeros((n_chunks, len(centres)))
    widest = (point_start[1:] - point_start[:-1]).max()
    for t in prange(n_chunks):
        values = np.empty(widest)
        for c in range(t * n_cubes // n_chunks, (t + 1) * n_cubes // n_chunks):
            start, end = point_start[c], point_start[c + 1]
            x, y, z, v = xyz[0, start:end], xyz[1, start:end], xyz[2, start:end], point_weights[start:end]
            for k in gauss[gauss_start[c]:gauss_start[c + 1]]:
                if _misses(cube_centres[c], centres[k], precision[k], slack[k], reach2):
                    continue
                _values(x, y, z, centres[k], precision[k], log_norm[k], reach2, values)
                acc = 0.0
                for i in range(end - start):
                    acc += v[i] * values[i]
                out[t, k] += acc
    return out


@njit(cache=True, parallel=True, fastmath=_FMA)
def normalised_density(xyz, point_start, cube_centres, gauss_start, gauss, centres, precision, slack, log_norm, coef,
                       reach2):
    """Pass 2: ``sum_k coef[k] N_k(p)`` at every point, shape (P,); arguments as in :func:`gaussian_integrals`."""
    out = np.zeros(xyz.shape[1])
    for c in prange(len(point_start) - 1):
        start, end = point_start[c], point_start[c + 1]
        x, y, z, rho = xyz[0, start:end], xyz[1, start:end], xyz[2, start:end], out[start:end]
        values = np.empty(end - start)
        for k in gauss[gauss_start[c]:gauss_start[c + 1]]:
            if _misses(cube_centres[c], centres[k], precision[k], slack[k], reach2):
                continue
            _values(x, y, z, centres[k], precision[k], log_norm[k], reach2, values)
            for i in range(end - start):
                rho[i] += coef[k] * values[i]
    return out


@njit(cache=True, parallel=True, fastmath=_VECTOR)
def grid_electrons(xyz, electrons, point_start, atom_start, atoms, positions, log_coef, inv_two_var, log_count,
                   log_eps, n_chunks):
    """Pass 3: electrons (T, N) of each atom, ``sum_p electrons[p] w_A(p)``, as partial sums.

    ``electrons`` (P,) is each point's integration weight times the density there; the points
    ``xyz`` (3, P) go by cube as in :func:`gaussian_integrals`, with the candidate atoms
    ``atoms[atom_start[c]:atom_start[c + 1]]`` of cube c for the Hirshfeld weights.
    """
    n_cubes = len(point_start) - 1
    out = np.zeros((n_chunks, len(positions)))
    widest = (atom_start[1:] - atom_start[:-1]).max()
    for t in prange(n_chunks):
        d2 = np.empty(2 * widest)
        chosen = np.empty(widest, dtype=np.int64)
        w = np.empty(widest)
        point = np.empty(3)
        for c in range(t * n_cubes // n_chunks, (t + 1) * n_cubes // n_chunks):
            cand = atoms[atom_start[c]:atom_start[c + 1]]
            for p in range(point_start[c], point_start[c + 1]):
                if electrons[p] == 0.0:
                    continue
                point[0], point[1], point[2] = xyz[0, p], xyz[1, p], xyz[2, p]
                m = _hirshfeld(point, cand, positions, log_coef, inv_two_var, log_count, log_eps, d2, chosen, w)
                for i in range(m):
                    out[t, cand[chosen[i]]] += electrons[p] * w[i]
    return out
