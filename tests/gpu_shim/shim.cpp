// Host shim: compiles ase_electra/evaluate/gaussians.cu with g++ so the CUDA kernels'
// arithmetic can be tested on machines without a GPU (tests/test_evaluate_cupy.py).
//
// The CUDA qualifiers become nothing, the built-in index variables become globals that
// launch() sets, and atomicAdd becomes a plain +=. launch() runs every (block, thread)
// pair of the launch one after another; that is exact for these kernels, whose threads
// never synchronise or read what other threads write.
//
// Build: g++ -O2 -std=c++17 -shared -fPIC -DBLOCK=<n> -I ase_electra/evaluate shim.cpp
// Entry points evaluate_lines_f32 / _f64 and gradient_lines_f32 / _f64 take the kernel's
// arguments after the launch's grid and block sizes.

#include <math.h>

#define __global__
#define __device__
#define __host__
#define __launch_bounds__(...)

namespace {

struct dim3 {
    unsigned int x = 1, y = 1, z = 1;
};

dim3 gridDim, blockDim, blockIdx, threadIdx;

template <typename T>
T atomicAdd(T* address, T value) {
    const T old = *address;
    *address = old + value;
    return old;
}

}  // namespace

#include "gaussians.cu"

namespace {

template <typename Kernel, typename... Args>
void launch(Kernel kernel, unsigned int grid_dim, unsigned int block_dim, Args... args) {
    gridDim.x = grid_dim;
    blockDim.x = block_dim;
    for (unsigned int b = 0; b < grid_dim; ++b) {
        for (unsigned int t = 0; t < block_dim; ++t) {
            blockIdx.x = b;
            threadIdx.x = t;
            kernel(args...);
        }
    }
}

}  // namespace

#define SHIM_ENTRIES(SUFFIX, T)                                                                    \
    extern "C" void evaluate_lines_##SUFFIX(                                                       \
        unsigned int grid_dim, unsigned int block_dim, const long long* line_start,              \
        const long long* lo, const long long* dims, const T* offset, const T* whitening,          \
        const T* prefactor, const T* cutoff_sq, const T* voxels, long long nx, long long ny,      \
        long long nz, long long n_gaussians, T* out) {                                             \
        launch(evaluate_lines<T>, grid_dim, block_dim, line_start, lo, dims, offset, whitening,   \
               prefactor, cutoff_sq, voxels, nx, ny, nz, n_gaussians, out);                        \
    }                                                                                              \
    extern "C" void gradient_lines_##SUFFIX(                                                       \
        unsigned int grid_dim, unsigned int block_dim, const long long* line_start,              \
        const long long* lo, const long long* dims, const T* offset, const T* whitening,          \
        const T* prefactor, const T* cutoff_sq, const T* voxels, long long nx, long long ny,      \
        long long nz, long long n_gaussians, const T* grad_out, long long lines_per_thread,      \
        double* grad) {                                                                            \
        launch(gradient_lines<T>, grid_dim, block_dim, line_start, lo, dims, offset, whitening,   \
               prefactor, cutoff_sq, voxels, nx, ny, nz, n_gaussians, grad_out, lines_per_thread, \
               grad);                                                                              \
    }

SHIM_ENTRIES(f32, float)
SHIM_ENTRIES(f64, double)
