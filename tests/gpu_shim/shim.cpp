// Host shim: compiles ase_electra/evaluate/gaussians.cu with g++ so the CUDA kernel's
// arithmetic can be tested on machines without a GPU (tests/test_evaluate_cupy.py).
//
// The CUDA qualifiers become nothing, the built-in index variables become globals that
// launch() sets, and atomicAdd becomes a plain +=. launch() runs every (block, thread)
// pair of the launch one after another; that is exact for this kernel, whose threads
// never synchronise or read what other threads write.
//
// Build: g++ -O2 -std=c++17 -shared -fPIC -DBLOCK=<n> -I ase_electra/evaluate shim.cpp
// Entry points evaluate_boxes_f32 / _f64 take the kernel's arguments after the launch's
// grid and block sizes.

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

template <typename T, typename... Args>
void launch(unsigned int grid_dim, unsigned int block_dim, Args... args) {
    gridDim.x = grid_dim;
    blockDim.x = block_dim;
    for (unsigned int b = 0; b < grid_dim; ++b) {
        for (unsigned int t = 0; t < block_dim; ++t) {
            blockIdx.x = b;
            threadIdx.x = t;
            evaluate_boxes<T>(args...);
        }
    }
}

}  // namespace

#define SHIM_ENTRY(NAME, T)                                                                        \
    extern "C" void NAME(unsigned int grid_dim, unsigned int block_dim, const long long* lo,      \
                         const long long* dims, const T* offset, const T* whitening,              \
                         const T* prefactor, const T* voxels, long long nx, long long ny,         \
                         long long nz, T cutoff_sq, long long n_gaussians, T* out) {              \
        launch<T>(grid_dim, block_dim, lo, dims, offset, whitening, prefactor, voxels, nx, ny, nz, \
                  cutoff_sq, n_gaussians, out);                                                    \
    }

SHIM_ENTRY(evaluate_boxes_f32, float)
SHIM_ENTRY(evaluate_boxes_f64, double)
