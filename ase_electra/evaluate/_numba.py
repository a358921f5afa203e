"""Compiled CPU evaluators (numba): mixtures on grids and at points, with gradients.

**Grids.** Gaussian k is evaluated on the points of its index box (``_boxes.py``). Its
whitened position at box point (i, j, l) is z = base + i s_x + j s_y + l s_z
(base = L^-1 offset, s_a = L^-1 voxel_a), so along a z-line q(l) = |z|^2 =
C + 2 B l + A l^2 with C = |u|^2, B = u . s_z, A = |s_z|^2 (u the line's first point),
and exp(-q/2) follows the recurrence e_{l+1} = e_l r_l, r_{l+1} = r_l c, c = exp(-A),
r_l = exp(-(B + (l + 1/2) A)): three ``exp`` per line instead of one per point, two
multiplications per point, exact for skewed cells (the method of CP2K's and PySCF's
grid collocation). Each line runs only over the l where q <= m_k^2 (the roots of the
quadratic), so points beyond the cut-off cost nothing. The recurrence runs in float64
and restarts every ``_RESEED`` points (and where a periodic line wraps), so over a line
of 400 points it stays within 1e-13 of direct ``exp``; within a run, even and odd points
follow two interleaved recurrences, so the multiplications do not wait on each other.

A line's first value and ratio need no ``exp`` either, for Gaussians at least a voxel
wide: a cursor walks from one line's first point to the next's, one grid step at a time,
carrying e and its ratios for a step along y and along z both ways, which change by
constant factors per step (the same quadratic form, two axes). The cursor restarts from
direct ``exp`` every ``_CURSOR_LINES`` lines, after a skipped line, and where two lines
start more than ``_MAX_WALK`` points apart, so its rounding stays below 1e-14 and no value
it passes through underflows.

Threads never race on the grid: the grid's x-planes are shared out among the threads
(in a scattered order, so each thread gets planes from all over the molecule), and each
plane sums its Gaussians in index order, so the result does not depend on the number of
threads. The backward pass runs one Gaussian per task and accumulates its 13 gradient
entries privately, with the same lines and recurrence.

**Points.** The points are sorted into cubic cells (a cell list); each Gaussian visits
only the cells its cut-off box overlaps. The forward pass runs one cell of points per
task (each task lists the Gaussians that reach its cell), the backward pass one Gaussian
per task; neither writes where another thread writes.

Gradients (v = p e, e = exp(-|z|^2 / 2), z = W d, W = L^-1, d the position relative to
the centre, G the upstream gradient): dL/dp = sum G e; dL/dd = -p W^T sum G e z;
dL/dW = -p sum G e z d^T.

Everything, the boxes included, is computed in float64 whatever the mixture's dtype, and
the results are rounded to it once at the end.

Legend: K Gaussians, P points, C cells.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from numba import njit, prange

from ..gaussians import GaussianMixture
from ..grid import Grid
from ._boxes import cutoff_squares, grid_tensors, index_boxes, periodic_images

__all__ = ["evaluate_grid", "evaluate_points"]

#: Golden-ratio stride: consecutive tasks take x-planes far apart, balancing the threads.
_GOLDEN = 0.6180339887498949

#: The line recurrence restarts from direct ``exp`` every this many points: its rounding
#: error grows with the square of the run length (2.7e-12 relative over 400 points unbroken).
_RESEED = 32

#: The line cursor restarts from direct ``exp`` after this many lines, and when the next
#: line starts more than ``_MAX_WALK`` points away. Gaussians narrower than a voxel along z or
#: y (|s_z|^2 or |s_y|^2 above 1) start every line directly: their lines hold a few points.
_CURSOR_LINES = 16
_MAX_WALK = 8

#: Target points per cell of the point cell list, and the bounds of the cell size (Angstrom).
_POINTS_PER_CELL = 4.0
_MIN_CELL, _MAX_CELLS = 0.05, 1 << 21


# ---------------------------------------------------------------------- grid kernels
@njit(cache=True, inline="always")
def _line_range(a: float, inv_a: float, b: float, c: float, m2: float, n: int) -> tuple[int, int]:
    """Integers l in [0, n) with a l^2 + 2 b l + c <= m2, as a half-open range (l0, l1); inv_a = 1 / a."""
    disc = b * b - a * (c - m2)
    if disc < 0.0:
        return 0, 0
    root = math.sqrt(disc)
    l0 = max(0, int(math.ceil((-b - root) * inv_a)))
    l1 = min(n, int(math.floor((-b + root) * inv_a)) + 1)
    return l0, max(l0, l1)


@njit(cache=True, inline="always")
def _line_row(lo, gx: int, iy: int, ny: int, nz: int, periodic) -> int:  # pragma: no cover
    """Flat index of the first point of the grid row (gx, y) that box line ``iy`` lands on."""
    gy = lo[1] + iy
    if periodic[1]:
        gy %= ny
    return (gx * ny + gy) * nz


@njit(cache=True, inline="always")
def _run(lo_z: int, first: int, end: int, nz: int, periodic: bool) -> tuple[int, int]:  # pragma: no cover
    """Grid z index of box point ``first`` and the end of the run from it: at most ``_RESEED``
    points, never across the grid's end on a periodic axis (the next run wraps)."""
    gz = lo_z + first
    stop = min(end, first + _RESEED)
    if periodic:
        gz %= nz
        stop = min(stop, first + nz - gz)
    return gz, stop


@njit(cache=True, inline="always")
def _add_run(out, start: int, n: int, e, r, ratio: float) -> None:  # pragma: no cover
    """out[start + i] += e_i for i < n, with e_0 = e, e_{i+1} = e_i r_i, r_{i+1} = r_i ratio (real or
    complex e and r: numba compiles one version per type; the reciprocal kernel uses the complex one).

    Two interleaved chains (even and odd i, each stepping by two: e_{i+2} = e_i r_i r_{i+1})
    so consecutive multiplications do not wait for each other.
    """
    odd = e * r
    step_even = r * r * ratio  # r_i r_{i+1} at i = 0
    ratio2 = ratio * ratio
    step_odd = step_even * ratio2
    ratio4 = ratio2 * ratio2
    i = 0
    while i + 1 < n:
        out[start + i] += e
        out[start + i + 1] += odd
        e *= step_even
        odd *= step_odd
        step_even *= ratio4
        step_odd *= ratio4
        i += 2
    if i < n:
        out[start + i] += e


def _plane_stride(n: int) -> int:
    """A stride coprime to ``n`` near n / golden ratio: task t takes x-plane (t * stride) % n."""
    s = max(1, int(n * _GOLDEN))
    while math.gcd(s, n) != 1:
        s += 1
    return s


@njit(cache=True, inline="always")
def _line_constants(step_k) -> tuple:  # pragma: no cover
    """A Gaussian's per-step factors: a = |s_z|^2, beta = s_y . s_z, delta = |s_y|^2 and their
    exponentials, and whether the line cursor serves it (at least a voxel wide along y and z)."""
    a = step_k[0, 2] ** 2 + step_k[1, 2] ** 2 + step_k[2, 2] ** 2
    beta = step_k[0, 1] * step_k[0, 2] + step_k[1, 1] * step_k[1, 2] + step_k[2, 1] * step_k[2, 2]
    delta = step_k[0, 1] ** 2 + step_k[1, 1] ** 2 + step_k[2, 1] ** 2
    if a <= 1.0 and delta <= 1.0:
        return a, math.exp(-a), math.exp(a), beta, math.exp(-beta), math.exp(beta), delta, math.exp(-delta), True
    return a, math.exp(-a), 0.0, beta, 0.0, 0.0, delta, 0.0, False


@njit(cache=True, inline="always")
def _line_start(cursor: tuple, kc: tuple, iy: int, l0: int, b: float, c: float, gamma: float) -> tuple:  # pragma: no cover
    """The cursor moved to the first point ``l0`` of line ``iy``: (e, r_z, 1 / r_z(l0 - 1), r_y,
    line, l, age), where e = exp(-q/2) there, r_z the ratio of e one step along +z and r_y one
    step along +y. Walks from the previous line's start when it may, else starts from ``exp``.

    ``kc`` is :func:`_line_constants`; b, c the line's coefficients, gamma = u . s_y.
    """
    e, rz, back, ry, line, l, age = cursor
    a, ratio, iratio, beta, eb, ieb, delta, ed, smooth = kc
    if smooth and line == iy - 1 and age < _CURSOR_LINES and abs(l0 - l) <= _MAX_WALK:
        e *= ry  # one step along +y
        ry *= ed
        rz *= eb
        back *= ieb
        while l < l0:  # along +z
            e *= rz
            rz *= ratio
            back *= iratio
            ry *= eb
            l += 1
        while l > l0:  # along -z
            e *= back
            back *= ratio
            rz *= iratio
            ry *= ieb
            l -= 1
        return e, rz, back, ry, iy, l0, age + 1
    e = math.exp(-0.5 * (c + l0 * (2.0 * b + l0 * a)))
    rz = math.exp(-(b + (l0 + 0.5) * a))
    if smooth:
        back = ratio / rz
        ry = math.exp(-(gamma + beta * l0 + 0.5 * delta))
    return e, rz, back, ry, iy, l0, 1


@njit(cache=True, inline="always")
def _run_start(cursor: tuple, first: int, l0: int, a: float, b: float, c: float) -> tuple[float, float]:  # pragma: no cover
    """e = exp(-q/2) and the ratio r_z at point ``first`` of a line that starts at ``l0``: the
    cursor's for the line's first run, direct ``exp`` for the runs after it."""
    if first == l0:
        return cursor[0], cursor[1]
    return math.exp(-0.5 * (c + first * (2.0 * b + first * a))), math.exp(-(b + (first + 0.5) * a))


#: A cursor that restarts on the next line.
_NO_CURSOR = (0.0, 0.0, 0.0, 0.0, -2, 0, 0)


@njit(cache=True, parallel=True)
def _grid_forward(lo, dims, base, step, pref, cutoff_sq, shape, periodic, stride, out):  # pragma: no cover
    """Add every Gaussian's values into ``out`` (flat nx * ny * nz, float64), plane by plane."""
    nx, ny, nz = shape[0], shape[1], shape[2]
    for task in prange(nx):
        gx = (task * stride) % nx
        for k in range(lo.shape[0]):
            dx, dy, dz = dims[k, 0], dims[k, 1], dims[k, 2]
            if dx == 0 or dy == 0 or dz == 0:
                continue
            first = gx - lo[k, 0]
            if periodic[0]:
                first %= nx
            elif first < 0 or first >= dx:
                continue
            kc = _line_constants(step[k])
            a, ratio, inv_a = kc[0], kc[1], 1.0 / kc[0]
            for ix in range(first, dx, nx):
                cursor = _NO_CURSOR
                for iy in range(dy):
                    u0 = base[k, 0] + ix * step[k, 0, 0] + iy * step[k, 0, 1]
                    u1 = base[k, 1] + ix * step[k, 1, 0] + iy * step[k, 1, 1]
                    u2 = base[k, 2] + ix * step[k, 2, 0] + iy * step[k, 2, 1]
                    b = u0 * step[k, 0, 2] + u1 * step[k, 1, 2] + u2 * step[k, 2, 2]
                    c = u0 * u0 + u1 * u1 + u2 * u2
                    l0, l1 = _line_range(a, inv_a, b, c, cutoff_sq[k], dz)
                    if l0 >= l1:
                        continue
                    gamma = u0 * step[k, 0, 1] + u1 * step[k, 1, 1] + u2 * step[k, 2, 1]
                    cursor = _line_start(cursor, kc, iy, l0, b, c, gamma)
                    row = _line_row(lo[k], gx, iy, ny, nz, periodic)
                    first = l0
                    while first < l1:
                        gz, stop = _run(lo[k, 2], first, l1, nz, periodic[2])
                        e, r = _run_start(cursor, first, l0, a, b, c)
                        _add_run(out, row + gz, stop - first, pref[k] * e, r, ratio)
                        first = stop


@njit(cache=True, parallel=True)
def _grid_backward(lo, dims, base, step, offset, white, voxels, pref, cutoff_sq, shape, periodic, grad,
                   out_pref, out_offset, out_white):  # pragma: no cover
    """Per-Gaussian gradients from the upstream gradient ``grad`` (flat grid, float64).

    Along a line z(l) = u + l s_z and d(l) = d_line + l voxel_z, so the line's share of
    sum G e z d^T needs only S0 = sum G e, S1 = sum G e l and S2 = sum G e l^2.
    """
    nx, ny, nz = shape[0], shape[1], shape[2]
    for k in prange(lo.shape[0]):
        dx, dy, dz = dims[k, 0], dims[k, 1], dims[k, 2]
        if dx == 0 or dy == 0 or dz == 0:
            continue
        s = step[k, :, 2]
        v = voxels[2]
        kc = _line_constants(step[k])
        a, ratio, inv_a = kc[0], kc[1], 1.0 / kc[0]
        t0 = 0.0
        tz = np.zeros(3)
        tzd = np.zeros((3, 3))
        u = np.empty(3)
        d = np.empty(3)
        for ix in range(dx):
            gx = lo[k, 0] + ix
            if periodic[0]:
                gx %= nx
            cursor = _NO_CURSOR
            for iy in range(dy):
                for i in range(3):
                    u[i] = base[k, i] + ix * step[k, i, 0] + iy * step[k, i, 1]
                    d[i] = offset[k, i] + ix * voxels[0, i] + iy * voxels[1, i]
                b = u[0] * s[0] + u[1] * s[1] + u[2] * s[2]
                c = u[0] * u[0] + u[1] * u[1] + u[2] * u[2]
                l0, l1 = _line_range(a, inv_a, b, c, cutoff_sq[k], dz)
                if l0 >= l1:
                    continue
                gamma = u[0] * step[k, 0, 1] + u[1] * step[k, 1, 1] + u[2] * step[k, 2, 1]
                cursor = _line_start(cursor, kc, iy, l0, b, c, gamma)
                row = _line_row(lo[k], gx, iy, ny, nz, periodic)
                s0 = s1 = s2 = 0.0
                first = l0
                while first < l1:
                    gz, stop = _run(lo[k, 2], first, l1, nz, periodic[2])
                    e, r = _run_start(cursor, first, l0, a, b, c)
                    for l in range(first, stop):
                        ge = grad[row + gz + l - first] * e
                        s0 += ge
                        s1 += ge * l
                        s2 += ge * l * l
                        e *= r
                        r *= ratio
                    first = stop
                t0 += s0
                for i in range(3):
                    tz[i] += s0 * u[i] + s1 * s[i]
                    for j in range(3):
                        tzd[i, j] += s0 * u[i] * d[j] + s1 * (u[i] * v[j] + s[i] * d[j]) + s2 * s[i] * v[j]
        _store_gradient(k, pref[k], t0, tz, tzd, white, out_pref, out_offset, out_white)


@njit(cache=True, inline="always")
def _store_gradient(k, p, t0, tz, tzd, white, out_pref, out_d, out_white):  # pragma: no cover
    """Gaussian k's gradients from its sums t0 = sum G e, tz = sum G e z, tzd = sum G e z d^T."""
    out_pref[k] = t0
    for j in range(3):
        out_d[k, j] = -p * (white[k, 0, j] * tz[0] + white[k, 1, j] * tz[1] + white[k, 2, j] * tz[2])
        for i in range(3):
            out_white[k, i, j] = -p * tzd[i, j]


# ---------------------------------------------------------------------- point kernels
@njit(cache=True)
def _cell_list(points, lower, size, n_cells):  # pragma: no cover
    """Sort points into cells: (order (P,), start (C + 1,)); cell (a, b, c) has index (a nb + b) nc + c."""
    n = points.shape[0]
    cell = np.empty(n, dtype=np.int64)
    for p in range(n):
        index = 0
        for a in range(3):
            i = int((points[p, a] - lower[a]) / size)
            index = index * n_cells[a] + min(max(i, 0), n_cells[a] - 1)
        cell[p] = index
    order = np.argsort(cell, kind="mergesort")
    start = np.zeros(n_cells[0] * n_cells[1] * n_cells[2] + 1, dtype=np.int64)
    for p in range(n):
        start[cell[p] + 1] += 1
    for c in range(1, start.shape[0]):
        start[c] += start[c - 1]
    return order, start


@njit(cache=True, inline="always")
def _cell_box(centre, reach, lower, size, n_cells):  # pragma: no cover
    """First and last cell index along each axis that a Gaussian's cut-off box overlaps (-1 if none)."""
    first = np.empty(3, dtype=np.int64)
    last = np.empty(3, dtype=np.int64)
    for a in range(3):
        lo = int(math.floor((centre[a] - reach[a] - lower[a]) / size))
        hi = int(math.floor((centre[a] + reach[a] - lower[a]) / size))
        first[a] = max(lo, 0)
        last[a] = min(hi, n_cells[a] - 1)
        if first[a] > last[a]:
            first[0] = -1
            return first, last
    return first, last


@njit(cache=True)
def _gaussians_per_cell(centres, reach, lower, size, n_cells):  # pragma: no cover
    """Which Gaussians reach each cell: CSR (start (C + 1,), members), members in Gaussian order.

    Two passes over the same cells: the first counts, the second fills.
    """
    n_total = n_cells[0] * n_cells[1] * n_cells[2]
    count = np.zeros(n_total + 1, dtype=np.int64)
    members = np.empty(0, dtype=np.int64)
    fill = count[:-1].copy()
    for filling in (False, True):
        if filling:
            for c in range(1, n_total + 1):
                count[c] += count[c - 1]
            members = np.empty(count[n_total], dtype=np.int64)
            fill = count[:-1].copy()
        for k in range(centres.shape[0]):
            first, last = _cell_box(centres[k], reach[k], lower, size, n_cells)
            if first[0] < 0:
                continue
            for a in range(first[0], last[0] + 1):
                for b in range(first[1], last[1] + 1):
                    for c in range(first[2], last[2] + 1):
                        cell = (a * n_cells[1] + b) * n_cells[2] + c
                        if filling:
                            members[fill[cell]] = k
                            fill[cell] += 1
                        else:
                            count[cell + 1] += 1
    return count, members


@njit(cache=True, inline="always")
def _exponent(points, p, centres, white, k, z):  # pragma: no cover
    """q = |W_k (r_p - mu_k)|^2, with z = W_k (r_p - mu_k) written into ``z``."""
    d0 = points[p, 0] - centres[k, 0]
    d1 = points[p, 1] - centres[k, 1]
    d2 = points[p, 2] - centres[k, 2]
    for i in range(3):
        z[i] = white[k, i, 0] * d0 + white[k, i, 1] * d1 + white[k, i, 2] * d2
    return z[0] * z[0] + z[1] * z[1] + z[2] * z[2]


@njit(cache=True, parallel=True)
def _points_forward(points, order, start, g_start, members, centres, white, pref, cutoff_sq, out):  # pragma: no cover
    """Density at every point: one cell of points per task, summing the Gaussians that reach it."""
    for cell in prange(start.shape[0] - 1):
        if start[cell] == start[cell + 1]:
            continue
        z = np.empty(3)
        for i in range(start[cell], start[cell + 1]):
            p = order[i]
            total = 0.0
            for m in range(g_start[cell], g_start[cell + 1]):
                k = members[m]
                q = _exponent(points, p, centres, white, k, z)
                if q <= cutoff_sq[k]:
                    total += pref[k] * math.exp(-0.5 * q)
            out[p] = total


@njit(cache=True, parallel=True)
def _points_gradient(points, order, start, g_start, members, centres, white, pref, cutoff_sq, grad, out):  # pragma: no cover
    """dL/dr at every point, G_p sum_k -p_k e_pk W_k^T z_pk, one cell of points per task."""
    for cell in prange(start.shape[0] - 1):
        z = np.empty(3)
        for i in range(start[cell], start[cell + 1]):
            p = order[i]
            g0 = g1 = g2 = 0.0
            for m in range(g_start[cell], g_start[cell + 1]):
                k = members[m]
                q = _exponent(points, p, centres, white, k, z)
                if q <= cutoff_sq[k]:
                    v = pref[k] * math.exp(-0.5 * q)
                    g0 -= v * (white[k, 0, 0] * z[0] + white[k, 1, 0] * z[1] + white[k, 2, 0] * z[2])
                    g1 -= v * (white[k, 0, 1] * z[0] + white[k, 1, 1] * z[1] + white[k, 2, 1] * z[2])
                    g2 -= v * (white[k, 0, 2] * z[0] + white[k, 1, 2] * z[1] + white[k, 2, 2] * z[2])
            out[p, 0] = grad[p] * g0
            out[p, 1] = grad[p] * g1
            out[p, 2] = grad[p] * g2


@njit(cache=True, parallel=True)
def _points_backward(points, order, start, lower, size, n_cells, centres, reach, white, pref, cutoff_sq, grad,
                     out_pref, out_centres, out_white):  # pragma: no cover
    """Per-Gaussian gradients: one Gaussian per task, over the points of the cells it reaches."""
    for k in prange(centres.shape[0]):
        first, last = _cell_box(centres[k], reach[k], lower, size, n_cells)
        if first[0] < 0:
            continue
        t0 = 0.0
        tz = np.zeros(3)
        tzd = np.zeros((3, 3))
        z = np.empty(3)
        for a in range(first[0], last[0] + 1):
            for b in range(first[1], last[1] + 1):
                row = (a * n_cells[1] + b) * n_cells[2]
                for i in range(start[row + first[2]], start[row + last[2] + 1]):
                    p = order[i]
                    q = _exponent(points, p, centres, white, k, z)
                    if q > cutoff_sq[k]:
                        continue
                    ge = grad[p] * math.exp(-0.5 * q)
                    t0 += ge
                    for c in range(3):
                        d = points[p, c] - centres[k, c]
                        tz[c] += ge * z[c]
                        for r in range(3):
                            tzd[r, c] += ge * z[r] * d
        # d = r - mu, so dL/dmu = -dL/dd.
        _store_gradient(k, pref[k], t0, tz, tzd, white, out_pref, out_centres, out_white)
        for c in range(3):
            out_centres[k, c] = -out_centres[k, c]


# ---------------------------------------------------------------------- autograd wrappers
def _numpy(t: torch.Tensor, dtype=np.float64) -> np.ndarray:
    return np.ascontiguousarray(t.detach().cpu().numpy(), dtype=dtype)


class _GridDensity(torch.autograd.Function):
    """Grid values (flat) from the differentiable box quantities offset, whitening, prefactor."""

    @staticmethod
    def forward(ctx, offset, white, pref, lo, dims, cutoff_sq, voxels, shape, periodic):
        arrays = {
            "offset": _numpy(offset), "white": _numpy(white), "pref": _numpy(pref),
            "lo": _numpy(lo, np.int64), "dims": _numpy(dims, np.int64), "cutoff_sq": _numpy(cutoff_sq),
            "voxels": _numpy(voxels), "shape": np.asarray(shape, dtype=np.int64),
            "periodic": np.asarray(periodic, dtype=np.bool_),
        }  # fmt: skip
        arrays["base"] = np.einsum("kab,kb->ka", arrays["white"], arrays["offset"])  # (K, 3)
        arrays["step"] = np.ascontiguousarray(np.einsum("kcb,ab->kca", arrays["white"], arrays["voxels"]))  # (K, 3, 3)
        a = arrays
        out = np.empty(int(np.prod(a["shape"])))
        out.fill(0.0)  # touch every page here: page faults inside the parallel kernel serialise the threads
        _grid_forward(a["lo"], a["dims"], a["base"], a["step"], a["pref"], a["cutoff_sq"], a["shape"],
                      a["periodic"], _plane_stride(int(a["shape"][0])), out)  # fmt: skip
        ctx.arrays = arrays
        return torch.from_numpy(out)

    @staticmethod
    def backward(ctx, grad):
        a = ctx.arrays
        k = a["lo"].shape[0]
        g_pref, g_offset, g_white = np.zeros(k), np.zeros((k, 3)), np.zeros((k, 3, 3))
        _grid_backward(a["lo"], a["dims"], a["base"], a["step"], a["offset"], a["white"], a["voxels"], a["pref"],
                       a["cutoff_sq"], a["shape"], a["periodic"], _numpy(grad).ravel(),
                       g_pref, g_offset, g_white)  # fmt: skip
        return (torch.from_numpy(g_offset), torch.from_numpy(g_white), torch.from_numpy(g_pref),
                None, None, None, None, None, None)  # fmt: skip


def evaluate_grid(mixture: GaussianMixture, grid: Grid, n_sigma: float, tolerance: float) -> torch.Tensor:
    """Density of one CPU structure on ``grid``, shape ``grid.shape``, e/Angstrom^3, differentiable."""
    m64 = mixture.to(dtype=torch.float64)  # float32 offsets would cost narrow Gaussians 1e-6
    boxes = index_boxes(m64, grid, n_sigma, tolerance)
    _, voxels, _ = grid_tensors(grid, m64.weights)
    flat = _GridDensity.apply(boxes.offset, boxes.whitening, boxes.prefactor, boxes.lo, boxes.dims,
                              boxes.cutoff_sq, voxels, grid.shape, grid.pbc)  # fmt: skip
    return flat.reshape(grid.shape).to(mixture.dtype)


class _PointDensity(torch.autograd.Function):
    """Values at points (P,) from the differentiable centres, whitening, prefactor and points."""

    @staticmethod
    def forward(ctx, centres, white, pref, points, cutoff_sq, reach):
        a = {"centres": _numpy(centres), "white": _numpy(white), "pref": _numpy(pref), "points": _numpy(points),
             "cutoff_sq": _numpy(cutoff_sq), "reach": _numpy(reach)}  # fmt: skip
        a["lower"], a["size"], a["n_cells"] = _cell_geometry(a["points"], a["reach"])
        a["order"], a["start"] = _cell_list(a["points"], a["lower"], a["size"], a["n_cells"])
        a["g_start"], a["members"] = _gaussians_per_cell(a["centres"], a["reach"], a["lower"], a["size"], a["n_cells"])
        out = np.zeros(len(a["points"]))
        _points_forward(a["points"], a["order"], a["start"], a["g_start"], a["members"], a["centres"], a["white"],
                        a["pref"], a["cutoff_sq"], out)  # fmt: skip
        ctx.arrays = a
        return torch.from_numpy(out)

    @staticmethod
    def backward(ctx, grad):
        a = ctx.arrays
        g = _numpy(grad)
        grads = [None] * 6
        if any(ctx.needs_input_grad[:3]):
            k = len(a["pref"])
            g_pref, g_centres, g_white = np.zeros(k), np.zeros((k, 3)), np.zeros((k, 3, 3))
            _points_backward(a["points"], a["order"], a["start"], a["lower"], a["size"], a["n_cells"], a["centres"],
                             a["reach"], a["white"], a["pref"], a["cutoff_sq"], g, g_pref, g_centres, g_white)  # fmt: skip
            grads[:3] = (torch.from_numpy(t) for t in (g_centres, g_white, g_pref))
        if ctx.needs_input_grad[3]:
            g_points = np.zeros_like(a["points"])
            _points_gradient(a["points"], a["order"], a["start"], a["g_start"], a["members"], a["centres"],
                             a["white"], a["pref"], a["cutoff_sq"], g, g_points)  # fmt: skip
            grads[3] = torch.from_numpy(g_points)
        return tuple(grads)


def _cell_geometry(points: np.ndarray, reach: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
    """Lower corner (3,), cell size (Angstrom) and cells per axis (3,) of the points' cell list.

    About ``_POINTS_PER_CELL`` points per cell, but cells grow until the Gaussians' boxes
    overlap at most ~16 cells per point on average, so wide Gaussians among dense points
    keep the lists small.
    """
    lower = points.min(0) if len(points) else np.zeros(3)
    span = (points.max(0) - lower) if len(points) else np.zeros(3)
    volume = float(np.prod(np.maximum(span, _MIN_CELL)))
    size = max(_MIN_CELL, (volume * _POINTS_PER_CELL / max(1, len(points))) ** (1 / 3))
    budget = 16 * max(len(points), len(reach))
    while True:
        n_cells = (span // size).astype(np.int64) + 1
        entries = np.prod(np.minimum(2 * reach / size + 2, n_cells), axis=1).sum() if len(reach) else 0
        if np.prod(n_cells) <= _MAX_CELLS and entries <= budget:
            return lower, size, n_cells
        size *= 1.25


def evaluate_points(
    mixture: GaussianMixture,
    points: torch.Tensor,
    cell: torch.Tensor | None,
    pbc: tuple[bool, bool, bool],
    n_sigma: float,
    tolerance: float,
) -> torch.Tensor:
    """Density of one CPU structure at ``points`` (P, 3), Angstrom; shape (P,), differentiable."""
    dtype = mixture.dtype
    mixture = mixture.to(dtype=torch.float64)
    points = points.to(torch.float64)
    cell = None if cell is None else cell.to(torch.float64)
    pref = mixture.peak_values()
    cutoff_sq = cutoff_squares(pref, n_sigma, tolerance)
    points, index, shifts = periodic_images(mixture, points, cell, pbc, cutoff_sq)
    centres = mixture.centres[index] + shifts  # (J, 3): the copies that reach the points
    cutoff_sq = cutoff_sq[index]
    # Half-width of each copy's axis-aligned box: m_k sqrt(Sigma_aa).
    reach = torch.sqrt(cutoff_sq.detach()[:, None] * (mixture.scale_tril.detach()[index] ** 2).sum(-1))
    return _PointDensity.apply(centres, mixture.whitening()[index], pref[index], points, cutoff_sq, reach).to(dtype)

