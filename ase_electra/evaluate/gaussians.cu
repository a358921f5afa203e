// Gaussian mixture densities on a grid and their gradients: the CUDA kernels behind
// backend="cupy".
//
// Same semantics as the torch reference (_torch.py). Gaussian k covers the points of its
// index box (lo, dims from _boxes.py); at box point (ox, oy, oz) its whitened position is
//
//     z = L^-1 (r - mu) = base + ox * step_x + oy * step_y + oz * step_z,
//
// with base = L^-1 offset and step_a = L^-1 voxel_a, and it adds prefactor * exp(-|z|^2 / 2)
// where |z|^2 <= cutoff_sq[k], its own squared Mahalanobis cut-off. Grid indices wrap
// modulo the grid shape, so periodic images add up; on non-periodic axes the boxes are
// already clipped to the grid and wrapping changes nothing. Prefactors may have either sign.
//
// Lines and the recurrence. Each box is a set of z-lines, one per (ox, oy). Along a line,
// with u = z at oz = 0 and s = step_z, q(k) = |u + k s|^2 = |u|^2 + 2k u.s + k^2 |s|^2 is a
// quadratic in k, so
//   * the points with q <= cutoff_sq are one range [k_lo, k_hi], the roots of the quadratic
//     clipped to the box: no per-point comparison, and a line that misses the ellipsoid
//     costs one square root;
//   * e_k = exp(-q(k) / 2) follows e_{k+1} = e_k r_k, r_{k+1} = r_k c with c = exp(-|s|^2):
//     three exps per line (e at the start, r, c) and two multiplications per point.
// The recurrence starts at the point of the range nearest the line's minimum of q (the
// largest value, so nothing underflows before the values that matter) and walks up and
// down from there, with r' = c / r for the downward walk (a direct exp where c or r would
// be subnormal: Gaussians some 25 times narrower than a voxel). It runs in double for both
// kernel types: in float the rounding of c compounds as k^2 / 2 ulps (about 6e-4 of the
// peak after 400 points), in double it stays near 1e-12.
//
// Thread mapping. The lines of all Gaussians are numbered consecutively (line_start, the
// exclusive prefix sum of dims_x * dims_y) and each thread takes whole lines; a thread finds
// its Gaussian by binary search in line_start. A block per Gaussian would leave most of its
// threads idle on the many small Gaussians (a 0.05 A Gaussian on a 0.1 A grid has about 25
// lines) while each wide one would queue its thousands of lines on one block's threads;
// numbering lines spreads a wide box over as many threads as it has lines and gives every
// thread at most one line's work at a time, whatever the mix of widths. Consecutive threads
// take neighbouring lines of the same Gaussian. The launcher orders boxes largest first.
//
// Output. evaluate_lines adds into out with atomicAdd: lines of different Gaussians, and
// periodic images of one Gaussian, reach the same grid point, so the summation order (and
// the last bit of a float sum) depends on scheduling. gradient_lines reads the upstream
// gradient G = grad_out (same flat layout as out) and gives, per Gaussian, with e_p the
// exponential and d_p = offset + ox voxel_x + oy voxel_y + oz voxel_z (so z_p = L^-1 d_p):
//     grad[k][0]     = dL/dprefactor = sum_p G_p e_p
//     grad[k][1..3]  = dL/doffset    = -prefactor L^-T sum_p G_p e_p z_p
//     grad[k][4..12] = dL/dL^-1      = -prefactor sum_p G_p e_p z_p d_p^T  (row-major)
// Each thread sums its run of lines_per_thread consecutive lines in registers, using
// per-line moments sum_j w_j, sum_j w_j j, sum_j w_j j^2 (w = G e, j = k - k_start) since
// z and d are linear in k along a line, and adds the 13 sums into grad (double) with
// atomicAdd when its Gaussian changes and at the end. Neither kernel synchronises threads
// or reads what another thread writes, so one launch needs no barrier.
//
// Compile with -DBLOCK=<threads per block>; the launcher (_cupy.py) owns that number.
// No headers are included: NVRTC, nvcc and the host shim (tests/gpu_shim) all compile
// this file as it is.
//
// Legend: K Gaussians. Arrays are C-contiguous. Units: Angstrom, e/Angstrom^3.

#ifndef BLOCK
#error "compile with -DBLOCK=<threads per block>"
#endif

// Values per Gaussian in the gradient output: prefactor, offset (3), whitening (3 x 3).
#define GRAD_VALUES 13

// i mod n in [0, n) for any sign of i.
__host__ __device__ inline long long positive_mod(long long i, long long n) {
    const long long r = i % n;
    return r < 0 ? r + n : r;
}

// Grid index of box point o along an axis of n points whose box starts at start in [0, n).
__host__ __device__ inline long long wrap(long long start, long long o, long long n) {
    const long long i = start + o;
    return i < n ? i : i % n;
}

// The Gaussian owning line l: the largest k with line_start[k] <= l (empty boxes own none).
__host__ __device__ inline long long owner(const long long* __restrict__ line_start, long long n_gaussians,
                                           long long l) {
    long long first = 0, last = n_gaussians;  // line_start[first] <= l < line_start[last]
    while (last - first > 1) {
        const long long mid = first + (last - first) / 2;
        if (line_start[mid] <= l) {
            first = mid;
        } else {
            last = mid;
        }
    }
    return first;
}

// One Gaussian's geometry in double, whitened: what every line of its box needs.
struct Gaussian {
    long long k;
    long long dy, dz;        // box size along y and z, points
    long long sx, sy, sz;    // first box index along each axis, wrapped into the grid
    double base[3];          // L^-1 offset
    double step[3][3];       // step[a][c] = (L^-1 voxel_a)_c
    double white[3][3];      // L^-1
    double offset[3];        // grid point lo minus the centre, Angstrom
    double pref, cutoff_sq;
};

template <typename T>
__host__ __device__ inline void load_gaussian(
    Gaussian& g, long long k, const long long* __restrict__ lo, const long long* __restrict__ dims,
    const T* __restrict__ offset, const T* __restrict__ whitening, const T* __restrict__ prefactor,
    const T* __restrict__ cutoff_sq, const T* __restrict__ voxels, long long nx, long long ny, long long nz) {
    g.k = k;
    g.dy = dims[3 * k + 1];
    g.dz = dims[3 * k + 2];
    g.sx = positive_mod(lo[3 * k], nx);
    g.sy = positive_mod(lo[3 * k + 1], ny);
    g.sz = positive_mod(lo[3 * k + 2], nz);
    for (int c = 0; c < 3; ++c) {
        g.offset[c] = static_cast<double>(offset[3 * k + c]);
        for (int b = 0; b < 3; ++b) {
            g.white[c][b] = static_cast<double>(whitening[9 * k + 3 * c + b]);
        }
    }
    for (int c = 0; c < 3; ++c) {
        g.base[c] = g.white[c][0] * g.offset[0] + g.white[c][1] * g.offset[1] + g.white[c][2] * g.offset[2];
        for (int a = 0; a < 3; ++a) {
            g.step[a][c] = g.white[c][0] * static_cast<double>(voxels[3 * a])
                           + g.white[c][1] * static_cast<double>(voxels[3 * a + 1])
                           + g.white[c][2] * static_cast<double>(voxels[3 * a + 2]);
        }
    }
    g.pref = static_cast<double>(prefactor[k]);
    g.cutoff_sq = static_cast<double>(cutoff_sq[k]);
}

// The part of z-line (ox, oy) inside the cut-off and the recurrence's start there.
struct Line {
    long long first, last;  // k range with q(k) <= cutoff_sq, inside the box; empty if first > last
    long long start;        // where the recurrence starts, in [first, last]
    double z[3];            // whitened position at k = start
    double e, r, c;         // exp(-q/2) at start, e_{start+1} / e_start, exp(-|s|^2)
    double r_down;          // e_{start-1} / e_start
    long long flat;         // flat grid index of the line's grid point with z index 0
    long long iz;           // wrapped grid z index of point start
};

__host__ __device__ inline bool find_line(Line& line, const Gaussian& g, long long ox, long long oy,
                                          long long nx, long long ny, long long nz) {
    double u[3];
    for (int c = 0; c < 3; ++c) {
        u[c] = g.base[c] + static_cast<double>(ox) * g.step[0][c] + static_cast<double>(oy) * g.step[1][c];
    }
    const double* s = g.step[2];
    const double a = s[0] * s[0] + s[1] * s[1] + s[2] * s[2];  // > 0: voxel_z is not zero
    const double b = u[0] * s[0] + u[1] * s[1] + u[2] * s[2];
    const double uu = u[0] * u[0] + u[1] * u[1] + u[2] * u[2];
    // q(k) <= cutoff_sq  <=>  a k^2 + 2 b k + uu - cutoff_sq <= 0
    const double disc = b * b - a * (uu - g.cutoff_sq);
    if (!(disc >= 0.0)) {
        return false;
    }
    const double root = sqrt(disc);
    double k_lo = ceil((-b - root) / a), k_hi = floor((-b + root) / a);
    k_lo = k_lo > 0.0 ? k_lo : 0.0;
    k_hi = k_hi < static_cast<double>(g.dz - 1) ? k_hi : static_cast<double>(g.dz - 1);
    if (k_lo > k_hi) {
        return false;
    }
    double k_min = rint(-b / a);  // the line's largest value
    k_min = k_min < k_lo ? k_lo : (k_min > k_hi ? k_hi : k_min);
    line.first = static_cast<long long>(k_lo);
    line.last = static_cast<long long>(k_hi);
    line.start = static_cast<long long>(k_min);
    for (int c = 0; c < 3; ++c) {
        line.z[c] = u[c] + k_min * s[c];
    }
    const double zz = line.z[0] * line.z[0] + line.z[1] * line.z[1] + line.z[2] * line.z[2];
    const double zs = line.z[0] * s[0] + line.z[1] * s[1] + line.z[2] * s[2];
    line.e = exp(-0.5 * zz);
    line.r = exp(-zs - 0.5 * a);  // q(start + 1) - q(start) = 2 z.s + |s|^2
    line.c = exp(-a);
    // e_{start-1} / e_start = exp(z.s - |s|^2 / 2) = c / r, unless c or r would be subnormal.
    line.r_down = a < 700.0 && zs + 0.5 * a < 700.0 ? line.c / line.r : exp(zs - 0.5 * a);
    line.flat = (wrap(g.sx, ox, nx) * ny + wrap(g.sy, oy, ny)) * nz;
    line.iz = wrap(g.sz, line.start, nz);
    return true;
}

// Calls visit(grid index, k - start, e_k) for every point of the line: upwards from start,
// then downwards from start - 1.
template <typename Visit>
__host__ __device__ inline void walk_line(const Line& line, long long nz, Visit& visit) {
    double e = line.e, r = line.r;
    long long iz = line.iz;
    for (long long j = 0; j <= line.last - line.start; ++j) {
        visit(line.flat + iz, j, e);
        e *= r;
        r *= line.c;
        iz = iz + 1 == nz ? 0 : iz + 1;
    }
    r = line.r_down;
    e = line.e * r;
    iz = line.iz;
    for (long long j = -1; j >= line.first - line.start; --j) {
        iz = iz == 0 ? nz - 1 : iz - 1;
        visit(line.flat + iz, j, e);
        r *= line.c;
        e *= r;
    }
}

template <typename T>
struct AddValue {
    T* out;
    double pref;
    __host__ __device__ inline void operator()(long long index, long long, double e) {
        atomicAdd(out + index, static_cast<T>(pref * e));
    }
};

template <typename T>
struct Moments {
    const T* grad_out;
    double m0, m1, m2;  // sum_j w_j, sum_j w_j j, sum_j w_j j^2 with w = G e
    __host__ __device__ inline void operator()(long long index, long long j, double e) {
        const double w = static_cast<double>(grad_out[index]) * e;
        const double fj = static_cast<double>(j);
        m0 += w;
        m1 += w * fj;
        m2 += w * fj * fj;
    }
};

// Launch with blockDim.x <= BLOCK and any gridDim.x; out (nx * ny * nz) is accumulated in place.
template <typename T>
__global__ void __launch_bounds__(BLOCK) evaluate_lines(
    const long long* __restrict__ line_start,  // (K + 1,) first line of each box; line_start[K] = lines
    const long long* __restrict__ lo,          // (K, 3) first grid index of each box
    const long long* __restrict__ dims,        // (K, 3) box size in points
    const T* __restrict__ offset,              // (K, 3) Angstrom: grid point lo minus the centre
    const T* __restrict__ whitening,           // (K, 3, 3) 1/Angstrom: L^-1
    const T* __restrict__ prefactor,           // (K,) e/Angstrom^3: weight times normalisation
    const T* __restrict__ cutoff_sq,           // (K,) squared Mahalanobis cut-off radius
    const T* __restrict__ voxels,              // (3, 3) Angstrom: voxel vectors as rows
    const long long nx,
    const long long ny,
    const long long nz,
    const long long n_gaussians,               // K
    T* __restrict__ out) {                     // (nx * ny * nz,) e/Angstrom^3, added to
    if (n_gaussians <= 0) {
        return;
    }
    const long long n_lines = line_start[n_gaussians];
    const long long stride = static_cast<long long>(gridDim.x) * blockDim.x;
    for (long long l = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x; l < n_lines; l += stride) {
        // Loaded afresh for each line: a thread's next line (l + stride) is rarely in the
        // same box, and a cached copy would cost some 20 registers across the loop.
        const long long k = owner(line_start, n_gaussians, l);
        Gaussian g;
        load_gaussian<T>(g, k, lo, dims, offset, whitening, prefactor, cutoff_sq, voxels, nx, ny, nz);
        const long long row = l - line_start[k];  // ox * dy + oy
        const long long ox = row / g.dy;
        Line line;
        if (find_line(line, g, ox, row - ox * g.dy, nx, ny, nz)) {
            AddValue<T> add{out, g.pref};
            walk_line(line, nz, add);
        }
    }
}

// What gradient_lines sums over one Gaussian's lines: sum_p G_p e_p, sum_p G_p e_p z_p and
// sum_p G_p e_p z_p d_p^T.
struct Sums {
    double s0, s1[3], s2[3][3];

    __host__ __device__ inline void clear() {
        s0 = 0.0;
        for (int c = 0; c < 3; ++c) {
            s1[c] = 0.0;
            for (int b = 0; b < 3; ++b) {
                s2[c][b] = 0.0;
            }
        }
    }
};

// Add Gaussian k's sums into its 13 gradient values.
template <typename T>
__host__ __device__ inline void flush_gradient(const long long k, const Sums& sums, const T* __restrict__ whitening,
                                               const T* __restrict__ prefactor, double* __restrict__ grad) {
    const T* white = whitening + 9 * k;  // (3, 3): row c is (L^-1)_c
    const double pref = static_cast<double>(prefactor[k]);
    double* gk = grad + GRAD_VALUES * k;
    atomicAdd(gk, sums.s0);
    for (int b = 0; b < 3; ++b) {  // -pref (L^-T s1)_b
        double wt = 0.0;
        for (int c = 0; c < 3; ++c) {
            wt += static_cast<double>(white[3 * c + b]) * sums.s1[c];
        }
        atomicAdd(gk + 1 + b, -pref * wt);
    }
    for (int c = 0; c < 3; ++c) {
        for (int b = 0; b < 3; ++b) {
            atomicAdd(gk + 4 + 3 * c + b, -pref * sums.s2[c][b]);
        }
    }
}

// Launch with blockDim.x <= BLOCK and any gridDim.x; grad (K, 13) is accumulated in place.
template <typename T>
__global__ void __launch_bounds__(BLOCK) gradient_lines(
    const long long* __restrict__ line_start,  // (K + 1,) as for evaluate_lines
    const long long* __restrict__ lo,          // (K, 3)
    const long long* __restrict__ dims,        // (K, 3)
    const T* __restrict__ offset,              // (K, 3) Angstrom
    const T* __restrict__ whitening,           // (K, 3, 3) 1/Angstrom
    const T* __restrict__ prefactor,           // (K,) e/Angstrom^3
    const T* __restrict__ cutoff_sq,           // (K,)
    const T* __restrict__ voxels,              // (3, 3) Angstrom
    const long long nx,
    const long long ny,
    const long long nz,
    const long long n_gaussians,               // K
    const T* __restrict__ grad_out,            // (nx * ny * nz,) dL/d out
    const long long lines_per_thread,          // >= 1: consecutive lines summed before adding
    double* __restrict__ grad) {               // (K, 13) dL/d (prefactor, offset, whitening), added to
    if (n_gaussians <= 0 || lines_per_thread <= 0) {
        return;
    }
    const long long n_lines = line_start[n_gaussians];
    const long long stride = static_cast<long long>(gridDim.x) * blockDim.x * lines_per_thread;
    long long current = -1;  // the Gaussian whose lines sums holds
    Sums sums;
    sums.clear();
    for (long long run = (static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x) * lines_per_thread;
         run < n_lines; run += stride) {
        const long long end = run + lines_per_thread < n_lines ? run + lines_per_thread : n_lines;
        for (long long l = run; l < end; ++l) {
            const long long k = owner(line_start, n_gaussians, l);
            if (k != current) {
                if (current >= 0) {
                    flush_gradient<T>(current, sums, whitening, prefactor, grad);
                }
                current = k;
                sums.clear();
            }
            // Only the sums live across lines; the geometry is loaded again (from cache)
            // for each line, which keeps the registers, and so the occupancy, lower.
            Gaussian g;
            load_gaussian<T>(g, k, lo, dims, offset, whitening, prefactor, cutoff_sq, voxels, nx, ny, nz);
            const long long row = l - line_start[k];
            const long long ox = row / g.dy, oy = row - ox * g.dy;
            Line line;
            if (!find_line(line, g, ox, oy, nx, ny, nz)) {
                continue;
            }
            Moments<T> moments{grad_out, 0.0, 0.0, 0.0};
            walk_line(line, nz, moments);
            // Along the line z = z_start + j s and d = d_start + j voxel_z, with j = k - start.
            double d[3], vz[3];
            for (int c = 0; c < 3; ++c) {
                vz[c] = static_cast<double>(voxels[6 + c]);
                d[c] = g.offset[c] + static_cast<double>(ox) * static_cast<double>(voxels[c])
                       + static_cast<double>(oy) * static_cast<double>(voxels[3 + c])
                       + static_cast<double>(line.start) * vz[c];
            }
            const double* s = g.step[2];
            sums.s0 += moments.m0;
            for (int c = 0; c < 3; ++c) {
                sums.s1[c] += line.z[c] * moments.m0 + s[c] * moments.m1;
                for (int b = 0; b < 3; ++b) {
                    sums.s2[c][b] += line.z[c] * d[b] * moments.m0
                                     + (line.z[c] * vz[b] + s[c] * d[b]) * moments.m1
                                     + s[c] * vz[b] * moments.m2;
                }
            }
        }
    }
    if (current >= 0) {
        flush_gradient<T>(current, sums, whitening, prefactor, grad);
    }
}

template __global__ void evaluate_lines<float>(
    const long long*, const long long*, const long long*, const float*, const float*, const float*,
    const float*, const float*, long long, long long, long long, long long, float*);
template __global__ void evaluate_lines<double>(
    const long long*, const long long*, const long long*, const double*, const double*, const double*,
    const double*, const double*, long long, long long, long long, long long, double*);
template __global__ void gradient_lines<float>(
    const long long*, const long long*, const long long*, const float*, const float*, const float*,
    const float*, const float*, long long, long long, long long, long long, const float*, long long, double*);
template __global__ void gradient_lines<double>(
    const long long*, const long long*, const long long*, const double*, const double*, const double*,
    const double*, const double*, long long, long long, long long, long long, const double*, long long,
    double*);
