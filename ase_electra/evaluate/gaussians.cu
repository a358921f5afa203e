// Gaussian mixture densities on a grid: the CUDA kernel behind backend="cupy".
//
// Same semantics as the torch reference (_torch.py). Gaussian k is evaluated on the
// points of its index box (lo, dims from _boxes.py) at the whitened position
//
//     z = L^-1 (r - mu) = base + ox * step_x + oy * step_y + oz * step_z,
//
// with base = L^-1 offset and step_a = L^-1 voxel_a, and prefactor * exp(-|z|^2 / 2) is
// added where |z|^2 <= cutoff_sq (n_sigma^2). Grid indices wrap modulo the grid shape,
// so periodic images add up; on non-periodic axes the boxes are already clipped to the
// grid and wrapping changes nothing.
//
// One thread block per Gaussian (the blocks grid-stride over Gaussians); the threads of
// a block stride over the points of its box, so one launch needs no synchronisation.
// Compile with -DBLOCK=<threads per block>; the launcher (_cupy.py) owns that number.
// No headers are included: NVRTC, nvcc and the host shim (tests/gpu_shim) all compile
// this file as it is.
//
// Legend: K Gaussians. Arrays are C-contiguous. Units: Angstrom, e/Angstrom^3.

#ifndef BLOCK
#error "compile with -DBLOCK=<threads per block>"
#endif

template <typename T>
__host__ __device__ inline T exponential(T x);

template <>
__host__ __device__ inline float exponential<float>(float x) { return expf(x); }

template <>
__host__ __device__ inline double exponential<double>(double x) { return exp(x); }

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

// Add Gaussian k to out at the box points first, first + stride, ... (one thread's share).
template <typename T>
__host__ __device__ inline void add_gaussian(
    const long long k,
    const long long first,
    const long long stride,
    const long long* __restrict__ lo,
    const long long* __restrict__ dims,
    const T* __restrict__ offset,
    const T* __restrict__ whitening,
    const T* __restrict__ prefactor,
    const T* __restrict__ voxels,
    const long long nx,
    const long long ny,
    const long long nz,
    const T cutoff_sq,
    T* __restrict__ out) {
    const long long dx = dims[3 * k], dy = dims[3 * k + 1], dz = dims[3 * k + 2];
    const long long volume = dx * dy * dz;
    if (first >= volume) {
        return;
    }
    const T* white = whitening + 9 * k;  // (3, 3): row c is (L^-1)_c
    const T* off = offset + 3 * k;       // (3,)
    T base[3];
    T step[3][3];  // step[c][a] = (L^-1 voxel_a)_c
    for (int c = 0; c < 3; ++c) {
        base[c] = white[3 * c] * off[0] + white[3 * c + 1] * off[1] + white[3 * c + 2] * off[2];
        for (int a = 0; a < 3; ++a) {
            step[c][a] = white[3 * c] * voxels[3 * a] + white[3 * c + 1] * voxels[3 * a + 1]
                         + white[3 * c + 2] * voxels[3 * a + 2];
        }
    }
    const long long sx = positive_mod(lo[3 * k], nx);
    const long long sy = positive_mod(lo[3 * k + 1], ny);
    const long long sz = positive_mod(lo[3 * k + 2], nz);
    const T pref = prefactor[k];
    for (long long p = first; p < volume; p += stride) {
        const long long row = p / dz;  // ox * dy + oy
        const long long oz = p - row * dz;
        const long long ox = row / dy;
        const long long oy = row - ox * dy;
        const T fx = static_cast<T>(ox), fy = static_cast<T>(oy), fz = static_cast<T>(oz);
        T q = 0;
        for (int c = 0; c < 3; ++c) {
            const T z = base[c] + fx * step[c][0] + fy * step[c][1] + fz * step[c][2];
            q += z * z;
        }
        if (q <= cutoff_sq) {
            const long long flat = (wrap(sx, ox, nx) * ny + wrap(sy, oy, ny)) * nz + wrap(sz, oz, nz);
            atomicAdd(out + flat, pref * exponential(static_cast<T>(-0.5) * q));
        }
    }
}

// Launch with blockDim.x <= BLOCK and any gridDim.x; out (nx * ny * nz) is accumulated in place.
template <typename T>
__global__ void __launch_bounds__(BLOCK) evaluate_boxes(
    const long long* __restrict__ lo,    // (K, 3) first grid index of each box
    const long long* __restrict__ dims,  // (K, 3) box size in points
    const T* __restrict__ offset,        // (K, 3) Angstrom: grid point lo minus the centre
    const T* __restrict__ whitening,     // (K, 3, 3) 1/Angstrom: L^-1
    const T* __restrict__ prefactor,     // (K,) e/Angstrom^3: weight times normalisation
    const T* __restrict__ voxels,        // (3, 3) Angstrom: voxel vectors as rows
    const long long nx,
    const long long ny,
    const long long nz,
    const T cutoff_sq,                   // n_sigma^2
    const long long n_gaussians,         // K
    T* __restrict__ out) {
    for (long long k = blockIdx.x; k < n_gaussians; k += gridDim.x) {
        add_gaussian<T>(k, threadIdx.x, blockDim.x, lo, dims, offset, whitening, prefactor, voxels,
                        nx, ny, nz, cutoff_sq, out);
    }
}

template __global__ void evaluate_boxes<float>(
    const long long*, const long long*, const float*, const float*, const float*, const float*,
    long long, long long, long long, float, long long, float*);
template __global__ void evaluate_boxes<double>(
    const long long*, const long long*, const double*, const double*, const double*, const double*,
    long long, long long, long long, double, long long, double*);
